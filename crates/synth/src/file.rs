//! The capture file writers: frames as classic pcap or as pcapng (one interface).

use super::Link;
use racetrace_core::domain::Nanos;

/// Write frames as a classic pcap. `nanos`: nanosecond magic; `snaplen` cuts frames.
pub fn write_pcap(frames: &[(Nanos, Vec<u8>)], link: Link, nanos: bool, snaplen: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&link.linktype().to_le_bytes());
    for (t, f) in frames {
        let sec = t.div_euclid(1_000_000_000) as u32;
        let frac = t.rem_euclid(1_000_000_000) as u32;
        let frac = if nanos { frac } else { frac / 1000 };
        let cap = (f.len() as u32).min(snaplen);
        out.extend_from_slice(&sec.to_le_bytes());
        out.extend_from_slice(&frac.to_le_bytes());
        out.extend_from_slice(&cap.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f.get(..cap as usize).unwrap_or(f));
    }
    out
}

/// Write frames as pcapng with one interface of the given `if_tsresol` (power of ten).
pub fn write_pcapng(frames: &[(Nanos, Vec<u8>)], link: Link, tsresol: u8) -> Vec<u8> {
    let mut out = Vec::new();
    // Section header block.
    block(&mut out, 0x0a0d_0d0a, &{
        let mut b = Vec::new();
        b.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        b
    });
    // Interface description block with if_tsresol.
    block(&mut out, 1, &{
        let mut b = Vec::new();
        b.extend_from_slice(&(link.linktype() as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&9u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[tsresol, 0, 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b
    });
    let per_sec = 10u64.pow(u32::from(tsresol));
    for (t, f) in frames {
        let units = (*t as u128 * u128::from(per_sec) / 1_000_000_000) as u64;
        enhanced_packet(&mut out, units, f);
    }
    out
}

/// Append one enhanced packet block on interface 0 (`units` in the interface's resolution).
pub fn enhanced_packet(out: &mut Vec<u8>, units: u64, frame: &[u8]) {
    let mut b = Vec::with_capacity(frame.len() + 24);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(units as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(frame);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    block(out, 6, &b);
}

/// Append one pcapng block (type, total length, body, total length).
pub fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let len = (body.len() + 12) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&len.to_le_bytes());
}
