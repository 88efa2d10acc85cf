//! The benchmark's limit: a bare pcap-parser record walk over a classic pcap (1 MiB buffer,
//! as racetrace's reader), counting records and bytes and touching nothing else.

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_default();
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let mut reader = match LegacyPcapReader::new(1 << 20, file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: {e:?}");
            std::process::exit(2);
        }
    };
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                if let PcapBlockOwned::Legacy(b) = block {
                    records += 1;
                    bytes += u64::from(b.caplen);
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    break;
                }
            }
            Err(e) => {
                eprintln!("{path}: {e:?}");
                break;
            }
        }
    }
    println!("{records} records, {bytes} captured bytes");
}
