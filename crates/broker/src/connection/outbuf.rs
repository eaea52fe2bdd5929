//! The connection's write side: frames accumulate here while a batch of input is handled and
//! go out in one (vectored) write.
//!
//! Small bodies are copied into the buffer with the frames around them, which is cheaper than
//! an extra I/O vector entry; bodies of `ZERO_COPY_MIN` bytes or more are queued as the
//! `Bytes` they arrived in and written straight from there.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use warren_amqp::constants::{FRAME_END, FRAME_OVERHEAD};
use warren_amqp::frame::{write_body_start, write_header, write_method};
use warren_amqp::{Method, RawProperties};

/// Bodies at least this long are written from their own buffers instead of being copied.
const ZERO_COPY_MIN: usize = 2048;
/// At most this many buffers go to one vectored write.
const MAX_IOV: usize = 64;

#[derive(Default)]
pub struct OutBuf {
    /// Buffers ready to write, in order; `tail` follows them.
    segments: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl OutBuf {
    pub fn new() -> Self {
        OutBuf {
            segments: VecDeque::new(),
            tail: BytesMut::with_capacity(16 * 1024),
            len: 0,
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn method(&mut self, channel: u16, method: &Method) {
        write_method(&mut self.tail, channel, method);
    }

    pub fn heartbeat(&mut self) {
        warren_amqp::frame::write_heartbeat(&mut self.tail);
    }

    /// A method with content: the method frame, the header frame and the body split into
    /// frames no larger than `frame_max`.
    pub fn content(
        &mut self,
        channel: u16,
        method: &Method,
        props: &RawProperties,
        body: &[Bytes],
        body_len: u64,
        frame_max: u32,
    ) {
        write_method(&mut self.tail, channel, method);
        write_header(&mut self.tail, channel, body_len, props);
        // frame_max 0 means no limit was negotiated.
        let max_payload = match frame_max {
            0 => usize::MAX,
            n => (n as usize).saturating_sub(FRAME_OVERHEAD).max(1),
        };
        for chunk in body {
            let mut at = 0;
            while at < chunk.len() {
                let n = (chunk.len() - at).min(max_payload);
                write_body_start(&mut self.tail, channel, n);
                if n >= ZERO_COPY_MIN {
                    self.push_segment(chunk.slice(at..at + n));
                } else {
                    self.tail.extend_from_slice(&chunk[at..at + n]);
                }
                self.tail.extend_from_slice(&[FRAME_END]);
                at += n;
            }
        }
    }

    fn push_segment(&mut self, b: Bytes) {
        if !self.tail.is_empty() {
            let head = self.tail.split().freeze();
            self.len += head.len();
            self.segments.push_back(head);
        }
        self.len += b.len();
        self.segments.push_back(b);
    }

    /// The buffers to hand to one vectored write.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut v: Vec<IoSlice<'_>> = self
            .segments
            .iter()
            .take(MAX_IOV)
            .map(|s| IoSlice::new(s))
            .collect();
        if v.len() < MAX_IOV && !self.tail.is_empty() {
            v.push(IoSlice::new(&self.tail));
        }
        v
    }

    /// Drops the first `n` bytes, which the socket has taken.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.segments.front_mut() {
                Some(front) => {
                    let k = n.min(front.len());
                    front.advance(k);
                    self.len -= k;
                    n -= k;
                    if front.is_empty() {
                        self.segments.pop_front();
                    }
                }
                None => {
                    let k = n.min(self.tail.len());
                    self.tail.advance(k);
                    n -= k;
                    if k == 0 {
                        break;
                    }
                }
            }
        }
        if self.tail.is_empty() && self.tail.capacity() > 4 * 1024 * 1024 {
            // Do not keep a huge buffer after one burst.
            self.tail = BytesMut::with_capacity(16 * 1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::methods::BasicDeliver;
    use warren_amqp::{Frame, parse_frame};

    fn drain(out: &mut OutBuf) -> BytesMut {
        let mut all = BytesMut::new();
        while !out.is_empty() {
            let slices = out.io_slices();
            let n: usize = slices.iter().map(|s| s.len()).sum();
            for s in &slices {
                all.extend_from_slice(s);
            }
            drop(slices);
            out.advance(n);
        }
        all
    }

    #[test]
    fn large_bodies_are_split_at_frame_max_and_not_copied() {
        let body = Bytes::from(vec![7u8; 10_000]);
        let mut out = OutBuf::new();
        let m = Method::BasicDeliver(BasicDeliver::default());
        out.content(
            1,
            &m,
            &RawProperties::empty(),
            std::slice::from_ref(&body),
            10_000,
            4096,
        );
        assert!(
            out.segments.iter().any(|s| s.as_ptr() == body.as_ptr()),
            "first chunk shared"
        );
        let mut wire = drain(&mut out);
        let mut got = Vec::new();
        while let Some(f) = parse_frame(&mut wire, 4096).unwrap() {
            if let Frame::Body { payload, .. } = f {
                assert!(payload.len() <= 4088);
                got.extend_from_slice(&payload);
            }
        }
        assert_eq!(got, vec![7u8; 10_000]);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut out = OutBuf::new();
        let m = Method::BasicDeliver(BasicDeliver::default());
        let big = Bytes::from(vec![1u8; 5000]);
        out.content(1, &m, &RawProperties::empty(), &[big], 5000, 131072);
        out.heartbeat();
        let total = out.len();
        let mut all = Vec::new();
        while !out.is_empty() {
            let first = out.io_slices()[0].to_vec();
            let n = first.len().min(3);
            all.extend_from_slice(&first[..n]);
            out.advance(n);
        }
        assert_eq!(all.len(), total);
        let mut wire = BytesMut::from(&all[..]);
        let mut frames = 0;
        while parse_frame(&mut wire, 0).unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 4);
    }
}
