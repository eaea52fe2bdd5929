//! Frames: splitting a byte stream into method, content header, content body and heartbeat
//! frames, and writing them back.
//!
//! Parsing takes frames off the front of the connection's read buffer with `split_to`, so a
//! body frame's payload is a slice of the bytes read from the socket: it is never copied on its
//! way through the broker.

use crate::codec::Encoder;
use crate::constants::*;
use crate::error::DecodeError;
use crate::methods::Method;
use crate::properties::{ContentHeader, RawProperties};
use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method { channel: u16, method: Method },
    Header { channel: u16, header: ContentHeader },
    Body { channel: u16, payload: Bytes },
    Heartbeat { channel: u16 },
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match *self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => channel,
        }
    }
}

/// A frame that could not be parsed, with what is known of where it came from, so the
/// connection can be closed with the right class and method ids.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub error: DecodeError,
    pub frame_type: u8,
    pub channel: u16,
    pub class_id: u16,
    pub method_id: u16,
    /// The bytes that could not be decoded (a method's arguments, or a frame's payload), which
    /// RabbitMQ quotes in its error text.
    pub octets: Bytes,
}

impl FrameError {
    fn new(error: DecodeError, frame_type: u8, channel: u16, octets: Bytes) -> Self {
        FrameError {
            error,
            frame_type,
            channel,
            class_id: 0,
            method_id: 0,
            octets,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// Takes one whole frame off the front of `buf`, or returns `Ok(None)` if more bytes are
/// needed. `frame_max` bounds the whole frame, header and end octet included (0: no bound).
pub fn parse_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(None);
    }
    let frame_type = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    let total = size as u64 + FRAME_OVERHEAD as u64;
    if frame_max != 0 && total > frame_max as u64 {
        return Err(FrameError::new(
            DecodeError::FrameTooLarge {
                size,
                max: frame_max,
            },
            frame_type,
            channel,
            Bytes::new(),
        ));
    }
    let total = total as usize;
    if buf.len() < total {
        // Make room for the rest of the frame in one allocation.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    let end = frame[total - 1];
    frame.advance(FRAME_HEADER_SIZE);
    frame.truncate(size as usize);
    if end != FRAME_END {
        return Err(FrameError::new(
            DecodeError::BadFrameEnd(end),
            frame_type,
            channel,
            frame,
        ));
    }
    decode_payload(frame_type, channel, frame).map(Some)
}

/// Decodes a frame payload whose type and channel were read from the frame header.
pub fn decode_payload(frame_type: u8, channel: u16, payload: Bytes) -> Result<Frame, FrameError> {
    match frame_type {
        FRAME_METHOD => {
            if payload.len() < 4 {
                return Err(FrameError::new(
                    DecodeError::Truncated,
                    frame_type,
                    channel,
                    payload,
                ));
            }
            let class_id = u16::from_be_bytes([payload[0], payload[1]]);
            let method_id = u16::from_be_bytes([payload[2], payload[3]]);
            let args = payload.slice(4..);
            Method::decode(class_id, method_id, args.clone())
                .map(|method| Frame::Method { channel, method })
                .map_err(|error| FrameError {
                    error,
                    frame_type,
                    channel,
                    class_id,
                    method_id,
                    octets: args,
                })
        }
        FRAME_HEADER => ContentHeader::decode(payload.clone())
            .map(|header| Frame::Header { channel, header })
            .map_err(|e| FrameError::new(e, frame_type, channel, payload)),
        FRAME_BODY => Ok(Frame::Body { channel, payload }),
        FRAME_HEARTBEAT => Ok(Frame::Heartbeat { channel }),
        other => Err(FrameError::new(
            DecodeError::UnknownFrameType(other),
            other,
            channel,
            payload,
        )),
    }
}

fn begin(buf: &mut BytesMut, frame_type: u8, channel: u16) -> usize {
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    let at = buf.len();
    buf.put_u32(0);
    at
}

fn finish(buf: &mut BytesMut, size_at: usize) {
    let size = (buf.len() - size_at - 4) as u32;
    buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

/// Appends a method frame.
pub fn write_method(buf: &mut BytesMut, channel: u16, method: &Method) {
    let at = begin(buf, FRAME_METHOD, channel);
    buf.put_u16(method.class_id());
    buf.put_u16(method.method_id());
    method.encode_args(&mut Encoder::new(buf));
    finish(buf, at);
}

/// Appends a content header frame of class basic with the given raw properties.
pub fn write_header(buf: &mut BytesMut, channel: u16, body_size: u64, props: &RawProperties) {
    let raw = props.as_bytes();
    buf.put_u8(FRAME_HEADER);
    buf.put_u16(channel);
    buf.put_u32((12 + raw.len()) as u32);
    buf.put_u16(class::BASIC);
    buf.put_u16(0);
    buf.put_u64(body_size);
    buf.put_slice(raw);
    buf.put_u8(FRAME_END);
}

/// Appends the seven bytes that precede a body frame's payload; the caller appends (or
/// queues, for a vectored write) the payload and then `FRAME_END`.
pub fn write_body_start(buf: &mut BytesMut, channel: u16, len: usize) {
    buf.put_u8(FRAME_BODY);
    buf.put_u16(channel);
    buf.put_u32(len as u32);
}

/// Appends a whole body frame, copying the payload.
pub fn write_body(buf: &mut BytesMut, channel: u16, payload: &[u8]) {
    write_body_start(buf, channel, payload.len());
    buf.put_slice(payload);
    buf.put_u8(FRAME_END);
}

pub fn write_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::*;
    use crate::properties::BasicProperties;

    #[test]
    fn method_frame_roundtrip_and_partial_input() {
        let m = Method::ChannelOpen(ChannelOpen::default());
        let mut out = BytesMut::new();
        write_method(&mut out, 7, &m);
        let bytes = out.freeze();
        // Fed one byte at a time, the frame appears only when complete.
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let r = parse_frame(&mut buf, 4096).unwrap();
            if i + 1 < bytes.len() {
                assert!(r.is_none());
            } else {
                assert_eq!(
                    r,
                    Some(Frame::Method {
                        channel: 7,
                        method: m.clone()
                    })
                );
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_refused_before_it_arrives() {
        let mut buf = BytesMut::from(&[FRAME_BODY, 0, 1, 0, 0, 0x20, 0][..]);
        let err = parse_frame(&mut buf, 4096).unwrap_err();
        assert_eq!(
            err.error,
            DecodeError::FrameTooLarge {
                size: 0x2000,
                max: 4096
            }
        );
        assert_eq!(err.error.reply_code(), reply::FRAME_ERROR);
    }

    #[test]
    fn frame_exactly_at_frame_max_is_accepted() {
        let mut buf = BytesMut::new();
        write_body(&mut buf, 1, &[0u8; 4088]);
        assert_eq!(buf.len(), 4096);
        assert!(parse_frame(&mut buf, 4096).unwrap().is_some());
    }

    #[test]
    fn bad_frame_end_is_an_error() {
        let mut buf = BytesMut::new();
        write_heartbeat(&mut buf);
        let n = buf.len();
        buf[n - 1] = 0;
        assert_eq!(
            parse_frame(&mut buf, 0).unwrap_err().error,
            DecodeError::BadFrameEnd(0)
        );
    }

    #[test]
    fn header_and_body_frames_roundtrip() {
        let props = BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        }
        .encode();
        let mut buf = BytesMut::new();
        write_header(&mut buf, 3, 5, &props);
        write_body(&mut buf, 3, b"hello");
        let h = parse_frame(&mut buf, 0).unwrap().unwrap();
        match h {
            Frame::Header { channel, header } => {
                assert_eq!(channel, 3);
                assert_eq!(header.body_size, 5);
                assert_eq!(header.class_id, 60);
                assert!(header.properties.is_persistent());
            }
            other => panic!("expected header, got {other:?}"),
        }
        assert_eq!(
            parse_frame(&mut buf, 0).unwrap(),
            Some(Frame::Body {
                channel: 3,
                payload: Bytes::from_static(b"hello")
            })
        );
    }

    #[test]
    fn method_decode_error_carries_ids() {
        let mut buf = BytesMut::new();
        buf.put_slice(&[FRAME_METHOD, 0, 1, 0, 0, 0, 5, 0, 60, 0, 40, 9, FRAME_END]);
        let err = parse_frame(&mut buf, 0).unwrap_err();
        assert_eq!((err.class_id, err.method_id, err.channel), (60, 40, 1));
        assert_eq!(err.error, DecodeError::Truncated);
    }
}
