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

/// Body-frame payloads in order. Most messages fit in one frame.
#[derive(Debug, Clone, Default)]
pub struct Body {
    chunks: Vec<Bytes>,
    len: u64,
}

impl Body {
    pub fn new() -> Self {
        Body::default()
    }

    pub fn from_bytes(b: Bytes) -> Self {
        let len = b.len() as u64;
        Body {
            chunks: if b.is_empty() { vec![] } else { vec![b] },
            len,
        }
    }

    pub fn push(&mut self, b: Bytes) {
        self.len += b.len() as u64;
        if !b.is_empty() {
            self.chunks.push(b);
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The whole body in one buffer; copies only when it arrived in several frames.
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
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
