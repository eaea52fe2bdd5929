//! A published message as the broker holds it. Shared by `Arc` between every queue it was
//! routed to; the body is the list of body-frame payloads as they were read, so neither
//! fan-out nor delivery copies it.

use bytes::Bytes;
use warren_amqp::{RawProperties, ShortStr};

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub properties: RawProperties,
    pub body: Body,
}

impl Message {
    pub fn body_size(&self) -> u64 {
        self.body.len()
    }
}

/// Body-frame payloads in order. Most messages fit in one frame, which is held without a
/// list (an allocation per message saved on the hot path).
#[derive(Debug, Clone, Default)]
pub struct Body {
    chunks: Chunks,
    len: u64,
}

#[derive(Debug, Clone, Default)]
enum Chunks {
    #[default]
    None,
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Body {
    pub fn new() -> Self {
        Body::default()
    }

    pub fn from_bytes(b: Bytes) -> Self {
        let mut body = Body::new();
        body.push(b);
        body
    }

    pub fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len() as u64;
        self.chunks = match std::mem::take(&mut self.chunks) {
            Chunks::None => Chunks::One(b),
            Chunks::One(first) => Chunks::Many(vec![first, b]),
            Chunks::Many(mut v) => {
                v.push(b);
                Chunks::Many(v)
            }
        };
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn chunks(&self) -> &[Bytes] {
        match &self.chunks {
            Chunks::None => &[],
            Chunks::One(b) => std::slice::from_ref(b),
            Chunks::Many(v) => v,
        }
    }

    /// The whole body in one buffer; copies only when it arrived in several frames.
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len as usize);
                for c in many {
                    v.extend_from_slice(c);
                }
                Bytes::from(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_keeps_its_frames_in_order_and_counts_them() {
        let mut body = Body::new();
        assert!(body.chunks().is_empty());
        body.push(Bytes::new());
        assert!(body.chunks().is_empty(), "empty frames are not kept");
        body.push(Bytes::from_static(b"ab"));
        assert_eq!(body.chunks(), [Bytes::from_static(b"ab")]);
        assert_eq!(body.to_bytes(), Bytes::from_static(b"ab"));
        body.push(Bytes::from_static(b"cde"));
        body.push(Bytes::from_static(b"f"));
        assert_eq!(body.chunks().len(), 3);
        assert_eq!(body.len(), 6);
        assert_eq!(body.to_bytes(), Bytes::from_static(b"abcdef"));
    }
}
