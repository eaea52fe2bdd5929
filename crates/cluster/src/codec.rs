//! The length-prefixed framing of a link (4 bytes, big endian, then the record), and the data
//! frames it writes from their parts. A frame that crosses a link is built by several layers
//! (a group's id, an RPC's kind and number, the data frame's kind and channel, the length);
//! had each built a buffer of its own, a raft append's entries would be copied once per layer.
//! Here every layer adds a few bytes of head and the body is copied once, into the socket's
//! buffer.

use crate::wire::{Channel, DATA, MAX_FRAME};
use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The most head bytes a frame carries before its body.
const HEAD_MAX: usize = 40;

/// A frame to write: a short head and a body.
#[derive(Debug, Clone)]
pub struct Outgoing {
    head: [u8; HEAD_MAX],
    head_len: u8,
    body: Bytes,
}

impl Outgoing {
    /// A whole record, as it is (a heartbeat, a handshake's).
    pub fn record(body: Bytes) -> Outgoing {
        Outgoing {
            head: [0; HEAD_MAX],
            head_len: 0,
            body,
        }
    }

    /// A data frame on `channel`: `head` (the sender's own few bytes), then `body`; what the
    /// peer reads is the two together.
    pub fn data(channel: Channel, head: &[u8], body: Bytes) -> Outgoing {
        let mut out = Outgoing::record(body);
        out.push(&[DATA, channel as u8]);
        out.push(head);
        out
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = self.head_len as usize;
        if at + bytes.len() <= HEAD_MAX {
            self.head[at..at + bytes.len()].copy_from_slice(bytes);
            self.head_len += bytes.len() as u8;
            return;
        }
        // A head too long for the room (no caller sends one): into the body, at the cost of
        // the copy this type saves.
        let mut body = BytesMut::with_capacity(bytes.len() + self.body.len());
        body.extend_from_slice(bytes);
        body.extend_from_slice(&self.body);
        self.body = body.freeze();
    }

    fn len(&self) -> usize {
        self.head_len as usize + self.body.len()
    }
}

/// A link's codec: reads records as [`LengthDelimitedCodec`] does, writes records and
/// [`Outgoing`] frames in its format.
pub struct Codec(LengthDelimitedCodec);

impl Codec {
    pub fn new() -> Codec {
        Codec(
            LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME)
                .new_codec(),
        )
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Decoder for Codec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        self.0.decode(src)
    }
}

impl Encoder<Bytes> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        self.0.encode(item, dst)
    }
}

impl Encoder<Outgoing> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let len = item.len();
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
            ));
        }
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.extend_from_slice(&item.head[..item.head_len as usize]);
        dst.extend_from_slice(&item.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Frame;

    /// A data frame written from its parts reads back as the one frame a peer expects, and
    /// its bytes are those the length-delimited codec writes for the whole.
    #[test]
    fn parts_are_written_as_one_record() {
        let mut codec = Codec::new();
        let mut parts = BytesMut::new();
        let out = Outgoing::data(Channel::Quorum, b"head", Bytes::from_static(b"body"));
        codec.encode(out, &mut parts).unwrap();
        let mut whole = BytesMut::new();
        let frame = Frame::Data(Channel::Quorum, Bytes::from_static(b"headbody")).encode();
        LengthDelimitedCodec::builder()
            .new_codec()
            .encode(frame, &mut whole)
            .unwrap();
        assert_eq!(parts, whole);
        let read = codec.decode(&mut parts).unwrap().unwrap();
        assert_eq!(
            Frame::decode(read.freeze()).unwrap(),
            Frame::Data(Channel::Quorum, Bytes::from_static(b"headbody"))
        );
        assert!(parts.is_empty());
    }

    #[test]
    fn a_long_head_still_comes_before_the_body() {
        let head = [7u8; 60];
        let mut dst = BytesMut::new();
        Codec::new()
            .encode(
                Outgoing::data(Channel::Meta, &head, Bytes::from_static(b"body")),
                &mut dst,
            )
            .unwrap();
        let mut expected = head.to_vec();
        expected.extend_from_slice(b"body");
        let read = Codec::new().decode(&mut dst).unwrap().unwrap();
        assert_eq!(
            Frame::decode(read.freeze()).unwrap(),
            Frame::Data(Channel::Meta, Bytes::from(expected))
        );
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_not_written() {
        let mut codec = Codec::new();
        let mut dst = BytesMut::new();
        let big = Bytes::from(vec![0u8; MAX_FRAME]);
        let err = codec
            .encode(Outgoing::data(Channel::Meta, b"", big), &mut dst)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(dst.is_empty());
    }
}
