//! What a test message carries: when it was sent and who sent it, in its first 16 bytes, so
//! the consumer can measure end-to-end latency and check for loss and duplicates.

use std::sync::OnceLock;
use std::time::Instant;

/// Bytes at the start of every body: 8 for the send time, 8 for producer and sequence.
pub const HEADER_LEN: usize = 16;
/// Sequence numbers use the low 48 bits; the producer id the high 16.
const SEQ_BITS: u32 = 48;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's first call; producers and consumers share the clock.
pub fn now_nanos() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Writes the header into the first 16 bytes of `body`.
pub fn stamp(body: &mut [u8], producer: u16, seq: u64) {
    body[..8].copy_from_slice(&now_nanos().to_be_bytes());
    let id = ((producer as u64) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1));
    body[8..16].copy_from_slice(&id.to_be_bytes());
}

/// The send time, producer and sequence of a received body, if it is long enough.
pub fn read(body: &[u8]) -> Option<(u64, u16, u64)> {
    if body.len() < HEADER_LEN {
        return None;
    }
    let sent = u64::from_be_bytes(body[..8].try_into().ok()?);
    let id = u64::from_be_bytes(body[8..16].try_into().ok()?);
    Some((sent, (id >> SEQ_BITS) as u16, id & ((1 << SEQ_BITS) - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_and_read_roundtrip() {
        let mut b = vec![0u8; 20];
        stamp(&mut b, 7, 123_456);
        let (t, p, s) = read(&b).unwrap();
        assert!(t <= now_nanos());
        assert_eq!((p, s), (7, 123_456));
        assert_eq!(read(&b[..10]), None);
    }
}
