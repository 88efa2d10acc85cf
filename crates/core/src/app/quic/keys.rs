//! Initial packet protection (RFC 9001 §5, RFC 9369 §3.3): the keys anyone can derive from
//! the client's first Destination Connection ID, header protection removed, the payload
//! opened. ring does the cryptography (HKDF-SHA256, AES-128-GCM, AES header protection).

use ring::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use super::wire::{Long, Version};

/// Length argument for HKDF-Expand (ring asks for it as a type).
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, into `out`.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// Which endpoint's Initial keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The client's ("client in").
    Client,
    /// The server's ("server in").
    Server,
}

/// The secret of `sender`'s Initial packets for client DCID `dcid` (RFC 9001 §5.2).
pub fn initial_secret(v: &Version, dcid: &[u8], sender: Sender) -> [u8; 32] {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &v.salt).extract(dcid);
    let label: &[u8] = match sender {
        Sender::Client => b"client in",
        Sender::Server => b"server in",
    };
    let mut s = [0u8; 32];
    let _ = expand_label(&initial, label, &mut s);
    s
}

/// The key, IV and header protection key of one sender's Initial packets.
pub struct Keys {
    aead: LessSafeKey,
    iv: [u8; 12],
    hp: quic::HeaderProtectionKey,
    /// The raw bytes (key, iv, hp), for the RFC's test vectors.
    pub raw: ([u8; 16], [u8; 12], [u8; 16]),
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// `sender`'s Initial keys in version `v` for client DCID `dcid`.
    pub fn initial(v: &Version, dcid: &[u8], sender: Sender) -> Option<Keys> {
        let secret = initial_secret(v, dcid, sender);
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        expand_label(&prk, v.labels[0], &mut key)?;
        expand_label(&prk, v.labels[1], &mut iv)?;
        expand_label(&prk, v.labels[2], &mut hp)?;
        Some(Keys {
            aead: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: quic::HeaderProtectionKey::new(&quic::AES_128, &hp).ok()?,
            raw: (key, iv, hp),
        })
    }

    /// Remove header protection from `p` and open its payload. `largest` is the largest
    /// packet number opened so far in this packet number space (for the full number, RFC
    /// 9000 §A.3). Returns the packet number and the frames, or `None` when it does not open
    /// (not these keys, or damaged).
    pub fn open(&self, p: &Long<'_>, largest: Option<u64>) -> Option<(u64, Vec<u8>)> {
        let b = p.bytes;
        let sample = b.get(p.pn_offset + 4..p.pn_offset + 20)?;
        let mask = self.hp.new_mask(sample).ok()?;
        let first = b[0] ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 0x03) + 1;
        let body = p.pn_offset + pn_len;
        let mut header = b.get(..body)?.to_vec();
        header[0] = first;
        let mut truncated = 0u64;
        for (k, x) in header[p.pn_offset..].iter_mut().enumerate() {
            *x ^= mask[1 + k];
            truncated = (truncated << 8) | u64::from(*x);
        }
        let pn = full_packet_number(largest, truncated, pn_len);
        let mut nonce = self.iv;
        for (k, x) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + k] ^= x;
        }
        let mut payload = b.get(body..)?.to_vec();
        let n = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut payload,
            )
            .ok()?
            .len();
        payload.truncate(n);
        Some((pn, payload))
    }
}

/// The full packet number from its `len`-byte truncation (RFC 9000 §A.3).
fn full_packet_number(largest: Option<u64>, truncated: u64, len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l + 1);
    let win = 1u64 << (8 * len);
    let half = win / 2;
    let candidate = (expected & !(win - 1)) | truncated;
    if candidate + half <= expected && candidate < (1 << 62) - win {
        candidate + win
    } else if candidate > expected + half && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{long, V1, V2};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 Appendix A.1: the Initial secrets and keys for DCID 0x8394c8f03e515708.
    #[test]
    fn rfc_9001_a_1_keys() {
        let dcid = hex(DCID);
        assert_eq!(
            initial_secret(&V1, &dcid, Sender::Client).to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c4 2d6b7db67881289af4008f1f6c357aea")
        );
        assert_eq!(
            initial_secret(&V1, &dcid, Sender::Server).to_vec(),
            hex("3c199828fd139efd216c155ad844cc81 fb82fa8d7446fa7d78be803acdda951b")
        );
        let c = Keys::initial(&V1, &dcid, Sender::Client).unwrap().raw;
        assert_eq!(c.0.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(c.1.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(c.2.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
        let s = Keys::initial(&V1, &dcid, Sender::Server).unwrap().raw;
        assert_eq!(s.0.to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(s.1.to_vec(), hex("0ac1493ca1905853b0bba03e"));
        assert_eq!(s.2.to_vec(), hex("c206b8d9b9f0f37644430b490eeaa314"));
    }

    /// RFC 9001 Appendix A.2: the client's protected Initial opens to packet number 2 and
    /// the RFC's CRYPTO frame (the ClientHello of example.com), then PADDING.
    #[test]
    fn rfc_9001_a_2_client_initial_opens() {
        let packet = hex(include_str!("testdata/rfc9001-a2-client-initial.hex"));
        assert_eq!(packet.len(), 1200);
        let p = long(&packet).unwrap();
        assert_eq!(p.dcid, &hex(DCID)[..]);
        let keys = Keys::initial(&V1, p.dcid, Sender::Client).unwrap();
        let (pn, frames) = keys.open(&p, None).unwrap();
        assert_eq!(pn, 2);
        assert_eq!(frames.len(), 1162);
        assert_eq!(&frames[..4], &hex("060040f1")[..]);
        assert_eq!(&frames[4..8], &hex("010000ed")[..]);
        assert!(frames[245..].iter().all(|&b| b == 0), "PADDING");
        // A flipped byte anywhere fails to open: never a wrong plaintext, never a panic.
        for at in [0usize, 20, 21, 600, 1199] {
            let mut bad = packet.clone();
            bad[at] ^= 0x01;
            if let Ok(p) = long(&bad) {
                assert!(keys.open(&p, None).is_none(), "byte {at}");
            }
        }
    }

    /// RFC 9001 Appendix A.3: the server's Initial, with the server's keys.
    #[test]
    fn rfc_9001_a_3_server_initial_opens() {
        let packet = hex(
            "cf000000010008f067a5502a4262b500 4075c0d95a482cd0991cd25b0aac406a
             5816b6394100f37a1c69797554780bb3 8cc5a99f5ede4cf73c3ec2493a1839b3
             dbcba3f6ea46c5b7684df3548e7ddeb9 c3bf9c73cc3f3bded74b562bfb19fb84
             022f8ef4cdd93795d77d06edbb7aaf2f 58891850abbdca3d20398c276456cbc4
             2158407dd074ee",
        );
        let p = long(&packet).unwrap();
        assert_eq!(p.scid, &hex("f067a5502a4262b5")[..]);
        let keys = Keys::initial(&V1, &hex(DCID), Sender::Server).unwrap();
        let (pn, frames) = keys.open(&p, None).unwrap();
        assert_eq!(pn, 1);
        assert_eq!(
            frames,
            hex(
                "02000000000600405a020000560303ee fce7f7b37ba1d1632e96677825ddf739
                 88cfc79825df566dc5430b9a045a1200 130100002e00330024001d00209d3c94
                 0d89690b84d08a60993c144eca684d10 81287c834d5311bcf32bb9da1a002b00
                 020304"
            )
        );
    }

    /// RFC 9369 Appendix A.1: version 2's client Initial keys for the same DCID.
    #[test]
    fn rfc_9369_a_1_version_2_keys() {
        let c = Keys::initial(&V2, &hex(DCID), Sender::Client).unwrap().raw;
        assert_eq!(c.0.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(c.1.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(c.2.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    /// RFC 9000 Appendix A.3's example: 0x9b32 after 0xa82f30ea is 0xa82f9b32.
    #[test]
    fn packet_numbers_are_recovered_from_their_truncation() {
        assert_eq!(
            full_packet_number(Some(0xa82f_30ea), 0x9b32, 2),
            0xa82f_9b32
        );
        assert_eq!(full_packet_number(None, 2, 4), 2);
        assert_eq!(full_packet_number(Some(255), 0, 1), 256);
    }
}
