//! Zeek's connection vocabulary: the `history` string (one letter per event kind, upper case
//! for the client, lower case for the server, each letter once per direction in order of first
//! occurrence) and `conn_state` (S0, SF, REJ, RSTO, …), which network engineers already read.

use crate::domain::Side;

/// The history string, built without allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct History {
    letters: [u8; 20],
    len: u8,
}

impl History {
    /// Record event `letter` (given in upper case) sent by `side`, once per direction.
    pub fn add(&mut self, side: Side, letter: u8) {
        let l = match side {
            Side::Client => letter.to_ascii_uppercase(),
            Side::Server => letter.to_ascii_lowercase(),
        };
        let used = self
            .letters
            .get(..usize::from(self.len))
            .unwrap_or_default();
        if used.contains(&l) {
            return;
        }
        if let Some(slot) = self.letters.get_mut(usize::from(self.len)) {
            *slot = l;
            self.len += 1;
        }
    }

    /// Mark the connection as flipped (`^`): the first packet seen was not the client's SYN
    /// and the client was guessed.
    pub fn flip(&mut self) {
        if let Some(slot) = self.letters.get_mut(usize::from(self.len)) {
            *slot = b'^';
            self.len += 1;
        }
    }

    /// A history with these letters, as [`History::as_str`] gave them (the spill's record
    /// format); letters beyond its room are dropped.
    pub fn from_letters(s: &str) -> History {
        let mut h = History::default();
        for (slot, b) in h.letters.iter_mut().zip(s.bytes()) {
            *slot = b;
            h.len += 1;
        }
        h
    }

    /// The letters, e.g. `ShADadFf`.
    pub fn as_str(&self) -> &str {
        let used = self
            .letters
            .get(..usize::from(self.len))
            .unwrap_or_default();
        std::str::from_utf8(used).unwrap_or("")
    }
}

/// The facts `conn_state` is derived from.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateFacts {
    /// The client's SYN was seen.
    pub syn: bool,
    /// The server's SYN-ACK was seen.
    pub synack: bool,
    /// FIN seen from client, server.
    pub fin: [bool; 2],
    /// The first RST's sender, if any.
    pub first_rst: Option<Side>,
}

/// Zeek's `conn_state` for a connection.
pub fn conn_state(f: StateFacts) -> &'static str {
    let [fin_c, fin_s] = f.fin;
    match (f.syn, f.synack) {
        (true, false) => match f.first_rst {
            Some(Side::Client) => "RSTOS0",
            Some(Side::Server) => "REJ",
            None if fin_c => "SH",
            None => "S0",
        },
        (false, true) => match f.first_rst {
            Some(Side::Server) => "RSTRH",
            _ if fin_s => "SHR",
            _ => "OTH",
        },
        (true, true) => match f.first_rst {
            Some(Side::Client) => "RSTO",
            Some(Side::Server) => "RSTR",
            None => match (fin_c, fin_s) {
                (true, true) => "SF",
                (true, false) => "S2",
                (false, true) => "S3",
                (false, false) => "S1",
            },
        },
        (false, false) => match f.first_rst {
            Some(Side::Client) => "RSTO",
            Some(Side::Server) => "RSTR",
            None => "OTH",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_letters_once_per_direction() {
        let mut h = History::default();
        for (side, l) in [
            (Side::Client, b'S'),
            (Side::Server, b'H'),
            (Side::Client, b'A'),
            (Side::Client, b'D'),
            (Side::Client, b'D'),
            (Side::Server, b'D'),
            (Side::Client, b'F'),
            (Side::Server, b'F'),
        ] {
            h.add(side, l);
        }
        assert_eq!(h.as_str(), "ShADdFf");
    }

    #[test]
    fn states() {
        let f = |syn, synack, fin, first_rst| {
            conn_state(StateFacts {
                syn,
                synack,
                fin,
                first_rst,
            })
        };
        assert_eq!(f(true, false, [false; 2], None), "S0");
        assert_eq!(f(true, false, [false; 2], Some(Side::Server)), "REJ");
        assert_eq!(f(true, true, [true, true], None), "SF");
        assert_eq!(f(true, true, [false; 2], Some(Side::Client)), "RSTO");
        assert_eq!(f(false, false, [false; 2], None), "OTH");
    }
}
