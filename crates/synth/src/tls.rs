//! TLS records for test captures: a ClientHello with SNI, ALPN and supported_versions, a
//! ServerHello choosing TLS 1.2 or 1.3, ChangeCipherSpec, and opaque encrypted records.

fn u16be(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend_from_slice(&u16be(body.len()));
    r.extend_from_slice(body);
    r
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut h = vec![kind, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    h.extend_from_slice(body);
    h
}

fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&u16be(body.len()));
    e.extend_from_slice(body);
    e
}

/// A ClientHello record offering TLS 1.3 and 1.2.
pub fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
    let mut r = record(22, &client_hello_message(sni, alpn, false));
    r[2] = 1; // record version 3.1, as browsers send
    r
}

/// A ClientHello handshake message (no record layer, as QUIC's CRYPTO frames carry it),
/// with the Encrypted Client Hello extension when `ech`.
pub fn client_hello_message(sni: &str, alpn: &[&str], ech: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x11; 32]); // random
    b.push(32);
    b.extend_from_slice(&[0x22; 32]); // session id
    b.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    b.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    let mut sn = vec![0];
    sn.extend_from_slice(&u16be(sni.len()));
    sn.extend_from_slice(sni.as_bytes());
    let mut list = u16be(sn.len()).to_vec();
    list.extend_from_slice(&sn);
    exts.extend(ext(0x0000, &list));
    let mut protos = Vec::new();
    for p in alpn {
        protos.push(p.len() as u8);
        protos.extend_from_slice(p.as_bytes());
    }
    let mut al = u16be(protos.len()).to_vec();
    al.extend_from_slice(&protos);
    exts.extend(ext(0x0010, &al));
    exts.extend(ext(0x002b, &[4, 0x03, 0x04, 0x03, 0x03]));
    if ech {
        exts.extend(ext(
            0xfe0d,
            &[0x00, 0x00, 0x01, 0x00, 0x01, 0x07, 0x00, 0x00],
        ));
    }
    b.extend_from_slice(&u16be(exts.len()));
    b.extend_from_slice(&exts);
    handshake(1, &b)
}

/// A ServerHello record choosing TLS 1.3 (`tls13`) or TLS 1.2.
pub fn server_hello(tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x33; 32]);
    b.push(32);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[0x13, 0x01, 0]);
    let exts = if tls13 {
        ext(0x002b, &[0x03, 0x04])
    } else {
        Vec::new()
    };
    b.extend_from_slice(&u16be(exts.len()));
    b.extend_from_slice(&exts);
    record(22, &handshake(2, &b))
}

/// ChangeCipherSpec.
pub fn change_cipher_spec() -> Vec<u8> {
    record(20, &[1])
}

/// An encrypted handshake record (TLS 1.2 Finished) of `len` bytes.
pub fn encrypted_handshake(len: usize) -> Vec<u8> {
    record(22, &vec![0x5a; len])
}

/// An application-data record of `len` bytes.
pub fn app_data(len: usize) -> Vec<u8> {
    record(23, &vec![0xa5; len])
}
