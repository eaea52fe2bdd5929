//! Framing and payloads. Every record on disk is `length (u32) | crc32 of payload (u32) |
//! payload`, so a reader can tell a whole record from a torn or damaged one. Message payloads
//! carry what the broker needs to deliver the message again after a restart.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of framing in front of every payload.
pub const FRAME: usize = 8;
/// No record may claim more than this: anything larger is damage, not data.
pub const MAX_RECORD: u32 = 512 * 1024 * 1024;

const KIND_MESSAGE: u8 = 1;

/// A message as the store keeps it. Strings and bodies are `Bytes` so that writing and reading
/// do not copy more than the file I/O does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The queue's sequence number for the message.
    pub seq: u64,
    /// Persistent messages come back after a restart; transient ones written only to save
    /// memory do not.
    pub persistent: bool,
    /// When the message expires, in milliseconds since the Unix epoch (0: never).
    pub expires_at_ms: u64,
    pub priority: u8,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// The content header's raw property bytes.
    pub properties: Bytes,
    pub body: Bytes,
}

impl StoredMessage {
    /// Appends the framed record to `out`; returns its length including the framing.
    pub fn encode(&self, out: &mut BytesMut) -> usize {
        let start = out.len();
        out.put_u64(0); // framing, patched below
        out.put_u8(KIND_MESSAGE);
        out.put_u64(self.seq);
        out.put_u8(u8::from(self.persistent));
        out.put_u64(self.expires_at_ms);
        out.put_u8(self.priority);
        put_short(out, &self.exchange);
        put_short(out, &self.routing_key);
        out.put_u32(self.properties.len() as u32);
        out.put_slice(&self.properties);
        out.put_u32(self.body.len() as u32);
        out.put_slice(&self.body);
        seal(out, start)
    }

    /// Decodes a payload (framing already checked).
    pub fn decode(mut p: Bytes) -> Option<StoredMessage> {
        if p.remaining() < 1 + 8 + 1 + 8 + 1 || p.get_u8() != KIND_MESSAGE {
            return None;
        }
        let seq = p.get_u64();
        let persistent = p.get_u8() != 0;
        let expires_at_ms = p.get_u64();
        let priority = p.get_u8();
        let exchange = take_short(&mut p)?;
        let routing_key = take_short(&mut p)?;
        let properties = take_long(&mut p)?;
        let body = take_long(&mut p)?;
        if p.has_remaining() {
            return None;
        }
        Some(StoredMessage {
            seq,
            persistent,
            expires_at_ms,
            priority,
            exchange,
            routing_key,
            properties,
            body,
        })
    }
}

fn put_short(out: &mut BytesMut, b: &[u8]) {
    let n = b.len().min(255);
    out.put_u8(n as u8);
    out.put_slice(&b[..n]);
}

fn take_short(p: &mut Bytes) -> Option<Bytes> {
    if !p.has_remaining() {
        return None;
    }
    let n = p.get_u8() as usize;
    (p.remaining() >= n).then(|| p.split_to(n))
}

fn take_long(p: &mut Bytes) -> Option<Bytes> {
    if p.remaining() < 4 {
        return None;
    }
    let n = p.get_u32() as usize;
    (p.remaining() >= n).then(|| p.split_to(n))
}

/// Fills in the framing of the record that starts at `start`; returns its whole length.
pub fn seal(out: &mut BytesMut, start: usize) -> usize {
    seal_for(out, start, 0)
}

/// [`seal`] for a file's `generation`: the checksum starts from it, so that a record of
/// another generation left in the file (one recycled, see `journal`) never reads as one of
/// this. CRC32 is linear: records that differ only in the generation they were sealed for
/// always have different checksums. Generation 0 is the plain CRC32 of the payload.
pub fn seal_for(out: &mut BytesMut, start: usize, generation: u32) -> usize {
    seal_in(&mut out[start..], generation)
}

/// Fills in the framing of the one record `record` holds (framing and payload); returns its
/// length.
pub fn seal_in(record: &mut [u8], generation: u32) -> usize {
    if record.len() < FRAME {
        return 0;
    }
    let len = (record.len() - FRAME) as u32;
    let crc = checksum(&record[FRAME..], generation);
    record[..4].copy_from_slice(&len.to_be_bytes());
    record[4..8].copy_from_slice(&crc.to_be_bytes());
    record.len()
}

fn checksum(payload: &[u8], generation: u32) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(generation);
    h.update(payload);
    h.finalize()
}

/// What a reader finds at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A whole record whose checksum matches: its payload.
    Ok(Bytes),
    /// A whole record whose checksum does not match (`len` bytes long in all): skip it.
    Damaged { len: usize },
    /// Not enough bytes for the record the framing announces, or a length no record can
    /// have: the end of what can be trusted.
    Torn,
}

/// Reads one framed record from the front of `buf` (which must hold at least the framing).
pub fn unframe(buf: &Bytes) -> Framed {
    unframe_for(buf, 0)
}

/// [`unframe`] for a file's `generation` (see [`seal_for`]).
pub fn unframe_for(buf: &Bytes, generation: u32) -> Framed {
    if buf.len() < FRAME {
        return Framed::Torn;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_RECORD || buf.len() < FRAME + len as usize {
        return Framed::Torn;
    }
    let payload = buf.slice(FRAME..FRAME + len as usize);
    if checksum(&payload, generation) != crc {
        return Framed::Damaged {
            len: FRAME + len as usize,
        };
    }
    Framed::Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(seq: u64) -> StoredMessage {
        StoredMessage {
            seq,
            persistent: true,
            expires_at_ms: 0,
            priority: 3,
            exchange: Bytes::from_static(b"ex"),
            routing_key: Bytes::from_static(b"rk"),
            properties: Bytes::from_static(&[0x10, 0x00, 2]),
            body: Bytes::from(vec![seq as u8; 100]),
        }
    }

    #[test]
    fn message_roundtrips_through_a_frame() {
        let m = sample(42);
        let mut out = BytesMut::new();
        let n = m.encode(&mut out);
        assert_eq!(n, out.len());
        match unframe(&out.freeze()) {
            Framed::Ok(p) => assert_eq!(StoredMessage::decode(p), Some(m)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_torn_prefix_and_every_flipped_bit_is_noticed() {
        let mut out = BytesMut::new();
        sample(7).encode(&mut out);
        let whole = out.freeze();
        for cut in 0..whole.len() {
            assert_eq!(unframe(&whole.slice(..cut)), Framed::Torn, "cut at {cut}");
        }
        for byte in 8..whole.len() {
            for bit in 0..8 {
                let mut v = whole.to_vec();
                v[byte] ^= 1 << bit;
                assert!(
                    matches!(unframe(&Bytes::from(v)), Framed::Damaged { .. }),
                    "flip {byte}:{bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn a_record_of_one_generation_never_reads_as_another() {
        for len in [0usize, 1, 7, 100, 4096] {
            for generation in [0u32, 1, 2, 0x8000_0000, u32::MAX] {
                let mut out = BytesMut::new();
                out.put_bytes(0, FRAME);
                out.extend((0..len).map(|i| i as u8));
                seal_for(&mut out, 0, generation);
                let framed = out.freeze();
                assert!(matches!(unframe_for(&framed, generation), Framed::Ok(_)));
                for other in [
                    generation.wrapping_add(1),
                    generation.wrapping_sub(1),
                    !generation,
                ] {
                    assert!(
                        matches!(unframe_for(&framed, other), Framed::Damaged { .. }),
                        "a record of generation {generation} ({len} B) read as {other}"
                    );
                }
            }
        }
    }
}
