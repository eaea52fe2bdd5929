//! Frames on a link between two nodes. Each frame is a length-prefixed record (4 bytes, big
//! endian) whose first byte says what it is. The handshake's records are postcard-encoded;
//! a data frame is its channel's byte followed by the payload as it was given, so a message
//! body crosses the link without being re-encoded.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The largest frame a node accepts: room for the largest message AMQP lets a client publish
/// (128 MiB), with its envelope.
pub const MAX_FRAME: usize = 160 << 20;

/// The version of this protocol; a node refuses a peer that speaks another.
pub const VERSION: u16 = 1;

/// What the traffic on a link is for. Each has its own receiver on a node, so that one kind of
/// traffic is never parsed by another's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    /// The metadata's Raft group.
    Meta,
    /// Queue traffic: commands for a queue on another node, and the mail it sends back.
    Queue,
    /// Requests from warrenctl and between nodes about the cluster itself.
    Control,
    /// The Raft groups of quorum queues, each request naming its queue.
    Quorum,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Meta,
        Channel::Queue,
        Channel::Control,
        Channel::Quorum,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn from_byte(b: u8) -> Option<Channel> {
        Channel::ALL.get(b as usize).copied()
    }
}

/// Who is on the other end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerKind {
    /// A node of the cluster.
    Node,
    /// A tool (warrenctl) that holds the cookie but is not a member.
    Tool,
}

/// The first record on a link, from the side that dialled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub name: String,
    pub kind: PeerKind,
    pub nonce: [u8; 32],
}

/// The answer: who answered, its own challenge, and its proof of the cookie over both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub version: u16,
    pub name: String,
    pub nonce: [u8; 32],
    pub proof: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Challenge(Challenge),
    /// The dialling side's proof of the cookie.
    Proof([u8; 32]),
    /// The answering side accepted the proof: the link is up.
    Welcome,
    /// The dialling side found the answering side's proof wrong: the cookies differ.
    Mismatch,
    Heartbeat,
    Data(Channel, Bytes),
}

const HELLO: u8 = 1;
const CHALLENGE: u8 = 2;
const PROOF: u8 = 3;
const WELCOME: u8 = 4;
const HEARTBEAT: u8 = 5;
pub(crate) const DATA: u8 = 6;
const MISMATCH: u8 = 7;

impl Frame {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Frame::Hello(h) => {
                out.put_u8(HELLO);
                out.extend_from_slice(&postcard::to_stdvec(h).unwrap_or_default());
            }
            Frame::Challenge(c) => {
                out.put_u8(CHALLENGE);
                out.extend_from_slice(&postcard::to_stdvec(c).unwrap_or_default());
            }
            Frame::Proof(p) => {
                out.put_u8(PROOF);
                out.extend_from_slice(p);
            }
            Frame::Welcome => out.put_u8(WELCOME),
            Frame::Mismatch => out.put_u8(MISMATCH),
            Frame::Heartbeat => out.put_u8(HEARTBEAT),
            Frame::Data(channel, payload) => {
                out.reserve(2 + payload.len());
                out.put_u8(DATA);
                out.put_u8(*channel as u8);
                out.extend_from_slice(payload);
            }
        }
        out.freeze()
    }

    /// Decodes one frame; a peer that sends something else is told nothing and dropped.
    pub fn decode(mut raw: Bytes) -> Result<Frame, String> {
        if raw.is_empty() {
            return Err("empty frame".to_owned());
        }
        let kind = raw[0];
        let body = raw.split_off(1);
        let bad = |what: &str| format!("malformed {what} frame");
        match kind {
            HELLO => postcard::from_bytes(&body)
                .map(Frame::Hello)
                .map_err(|_| bad("hello")),
            CHALLENGE => postcard::from_bytes(&body)
                .map(Frame::Challenge)
                .map_err(|_| bad("challenge")),
            PROOF => <[u8; 32]>::try_from(body.as_ref())
                .map(Frame::Proof)
                .map_err(|_| bad("proof")),
            WELCOME if body.is_empty() => Ok(Frame::Welcome),
            MISMATCH if body.is_empty() => Ok(Frame::Mismatch),
            HEARTBEAT if body.is_empty() => Ok(Frame::Heartbeat),
            DATA if !body.is_empty() => {
                let channel = Channel::from_byte(body[0]).ok_or_else(|| bad("data"))?;
                Ok(Frame::Data(channel, body.slice(1..)))
            }
            other => Err(format!("unknown frame type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_a_round_trip_and_garbage_is_refused() {
        let frames = [
            Frame::Hello(Hello {
                version: VERSION,
                name: "warren@a".into(),
                kind: PeerKind::Tool,
                nonce: [7; 32],
            }),
            Frame::Challenge(Challenge {
                version: VERSION,
                name: "warren@b".into(),
                nonce: [1; 32],
                proof: [2; 32],
            }),
            Frame::Proof([3; 32]),
            Frame::Welcome,
            Frame::Mismatch,
            Frame::Heartbeat,
            Frame::Data(Channel::Queue, Bytes::from_static(b"payload")),
            Frame::Data(Channel::Control, Bytes::new()),
        ];
        for f in frames {
            assert_eq!(Frame::decode(f.encode()).unwrap(), f);
        }
        for garbage in [
            &b""[..],
            b"\x09",
            b"\x06",
            b"\x06\x09x",
            b"\x03short",
            b"\x01\xff",
        ] {
            assert!(
                Frame::decode(Bytes::copy_from_slice(garbage)).is_err(),
                "{garbage:?}"
            );
        }
    }
}
