//! Content headers and the 14 basic properties.
//!
//! The broker keeps a message's properties as the raw bytes the publisher sent (flags and
//! property list) and forwards them untouched; `RawProperties` reads single properties out of
//! them without building the whole struct, and `BasicProperties` is the full decoded form for
//! the rarer cases that need it (header-exchange routing, tests, clients).

use crate::codec::{Decoder, Encoder};
use crate::error::DecodeError;
use crate::table::FieldTable;
use crate::types::ShortStr;
use bytes::{Buf, Bytes, BytesMut};

/// The property flag bit of each basic property, in wire order.
pub mod flag {
    pub const CONTENT_TYPE: u16 = 1 << 15;
    pub const CONTENT_ENCODING: u16 = 1 << 14;
    pub const HEADERS: u16 = 1 << 13;
    pub const DELIVERY_MODE: u16 = 1 << 12;
    pub const PRIORITY: u16 = 1 << 11;
    pub const CORRELATION_ID: u16 = 1 << 10;
    pub const REPLY_TO: u16 = 1 << 9;
    pub const EXPIRATION: u16 = 1 << 8;
    pub const MESSAGE_ID: u16 = 1 << 7;
    pub const TIMESTAMP: u16 = 1 << 6;
    pub const TYPE: u16 = 1 << 5;
    pub const USER_ID: u16 = 1 << 4;
    pub const APP_ID: u16 = 1 << 3;
    pub const CLUSTER_ID: u16 = 1 << 2;
    /// Set when another flags word follows.
    pub const CONTINUATION: u16 = 1;
}

/// The decoded header of a content header frame. `properties` is the raw flags word(s) and
/// property list, kept as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub weight: u16,
    pub body_size: u64,
    pub properties: RawProperties,
}

impl ContentHeader {
    pub fn decode(payload: Bytes) -> Result<ContentHeader, DecodeError> {
        let mut d = Decoder::new(payload);
        let class_id = d.u16()?;
        let weight = d.u16()?;
        let body_size = d.u64()?;
        let properties = RawProperties::new(d.rest())?;
        Ok(ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        })
    }
}

/// Which property a field of the list is, by the order of the flags.
#[derive(Clone, Copy)]
enum Kind {
    Short,
    Table,
    Octet,
    Timestamp,
}

const KINDS: [(u16, Kind); 14] = [
    (flag::CONTENT_TYPE, Kind::Short),
    (flag::CONTENT_ENCODING, Kind::Short),
    (flag::HEADERS, Kind::Table),
    (flag::DELIVERY_MODE, Kind::Octet),
    (flag::PRIORITY, Kind::Octet),
    (flag::CORRELATION_ID, Kind::Short),
    (flag::REPLY_TO, Kind::Short),
    (flag::EXPIRATION, Kind::Short),
    (flag::MESSAGE_ID, Kind::Short),
    (flag::TIMESTAMP, Kind::Timestamp),
    (flag::TYPE, Kind::Short),
    (flag::USER_ID, Kind::Short),
    (flag::APP_ID, Kind::Short),
    (flag::CLUSTER_ID, Kind::Short),
];

/// Properties as raw bytes: a flags word followed by the present properties.
/// Constructed only through `new`, which checks that every present property is complete,
/// so the accessors below cannot read past the end.
#[derive(Clone, PartialEq, Eq)]
pub struct RawProperties {
    raw: Bytes,
    flags: u16,
    /// Offset of the first property after the flags word(s).
    list_at: usize,
}

impl std::fmt::Debug for RawProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match BasicProperties::decode(self) {
            Ok(p) => p.fmt(f),
            Err(_) => write!(f, "RawProperties({:?})", self.raw),
        }
    }
}

impl RawProperties {
    /// Properties with no flags set.
    pub fn empty() -> RawProperties {
        RawProperties {
            raw: Bytes::from_static(&[0, 0]),
            flags: 0,
            list_at: 2,
        }
    }

    /// Validates the shape of raw properties: flag words, then each flagged property whole.
    pub fn new(raw: Bytes) -> Result<RawProperties, DecodeError> {
        let mut at = 0;
        let mut flags = None;
        loop {
            if raw.len() < at + 2 {
                return Err(DecodeError::Truncated);
            }
            let word = u16::from_be_bytes([raw[at], raw[at + 1]]);
            at += 2;
            // Only the first word carries the 14 basic properties; later words must be empty
            // apart from their continuation bit.
            if flags.is_none() {
                flags = Some(word);
            } else if word & !flag::CONTINUATION != 0 {
                return Err(DecodeError::TrailingBytes);
            }
            if word & flag::CONTINUATION == 0 {
                break;
            }
        }
        let flags = flags.unwrap_or(0) & !flag::CONTINUATION;
        if flags & 0b11 != 0 {
            // Bit 1 names no property.
            return Err(DecodeError::TrailingBytes);
        }
        let props = RawProperties {
            raw,
            flags,
            list_at: at,
        };
        let end = props.skip_to(None)?;
        if end != props.raw.len() {
            return Err(DecodeError::TrailingBytes);
        }
        // Headers are forwarded to consumers as they are: a malformed table must be refused
        // here rather than handed on to break a client.
        if let Some(at) = props.field_at(flag::HEADERS) {
            let b = &props.raw[at..at + 4];
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            FieldTable::validate(&props.raw[at + 4..at + 4 + len])?;
        }
        Ok(props)
    }

    /// Walks the list up to the property with flag `until` (or to the end), returning the
    /// offset where it starts.
    fn skip_to(&self, until: Option<u16>) -> Result<usize, DecodeError> {
        let mut at = self.list_at;
        let raw = &self.raw;
        for (f, kind) in KINDS {
            if Some(f) == until {
                return Ok(at);
            }
            if self.flags & f == 0 {
                continue;
            }
            let len = match kind {
                Kind::Short => 1 + *raw.get(at).ok_or(DecodeError::Truncated)? as usize,
                Kind::Table => {
                    let b = raw.get(at..at + 4).ok_or(DecodeError::Truncated)?;
                    4 + u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
                }
                Kind::Octet => 1,
                Kind::Timestamp => 8,
            };
            at = at.checked_add(len).ok_or(DecodeError::Truncated)?;
            if at > raw.len() {
                return Err(DecodeError::Truncated);
            }
        }
        Ok(at)
    }

    pub fn flags(&self) -> u16 {
        self.flags
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    fn field_at(&self, f: u16) -> Option<usize> {
        if !self.has(f) {
            return None;
        }
        // `new` checked the whole list, so this walk cannot fail.
        self.skip_to(Some(f)).ok()
    }

    fn short_str(&self, f: u16) -> Option<ShortStr> {
        let at = self.field_at(f)?;
        let len = *self.raw.get(at)? as usize;
        Some(ShortStr::from_bytes(self.raw.slice(at + 1..at + 1 + len)))
    }

    fn octet(&self, f: u16) -> Option<u8> {
        let at = self.field_at(f)?;
        self.raw.get(at).copied()
    }

    pub fn delivery_mode(&self) -> Option<u8> {
        self.octet(flag::DELIVERY_MODE)
    }

    /// Persistent messages have delivery mode 2.
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode() == Some(2)
    }

    pub fn priority(&self) -> Option<u8> {
        self.octet(flag::PRIORITY)
    }

    pub fn expiration(&self) -> Option<ShortStr> {
        self.short_str(flag::EXPIRATION)
    }

    pub fn user_id(&self) -> Option<ShortStr> {
        self.short_str(flag::USER_ID)
    }

    pub fn reply_to(&self) -> Option<ShortStr> {
        self.short_str(flag::REPLY_TO)
    }

    pub fn headers(&self) -> Option<Result<FieldTable, DecodeError>> {
        let at = self.field_at(flag::HEADERS)?;
        let b = self.raw.get(at..at + 4)?;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        Some(FieldTable::decode(self.raw.slice(at + 4..at + 4 + len)))
    }

    /// A copy with the short-string property `f` replaced, used where the broker must rewrite a
    /// property (direct reply-to). Only that property is re-encoded.
    pub fn with_short_str(&self, f: u16, value: &ShortStr) -> RawProperties {
        let mut out = BytesMut::with_capacity(self.raw.len() + value.len() + 1);
        let new_flags = self.flags | f;
        out.extend_from_slice(&new_flags.to_be_bytes());
        let start = self.skip_to(Some(f)).unwrap_or(self.raw.len());
        out.extend_from_slice(&self.raw[self.list_at..start]);
        out.extend_from_slice(&[value.len() as u8]);
        out.extend_from_slice(value.as_bytes());
        let after = if self.has(f) {
            let len = self.raw.get(start).copied().unwrap_or(0) as usize;
            start + 1 + len
        } else {
            start
        };
        out.extend_from_slice(&self.raw[after.min(self.raw.len())..]);
        RawProperties {
            raw: out.freeze(),
            flags: new_flags,
            list_at: 2,
        }
    }
}

/// All 14 basic properties, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    pub content_type: Option<ShortStr>,
    pub content_encoding: Option<ShortStr>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<ShortStr>,
    pub reply_to: Option<ShortStr>,
    pub expiration: Option<ShortStr>,
    pub message_id: Option<ShortStr>,
    pub timestamp: Option<u64>,
    pub kind: Option<ShortStr>,
    pub user_id: Option<ShortStr>,
    pub app_id: Option<ShortStr>,
    pub cluster_id: Option<ShortStr>,
}

impl BasicProperties {
    pub fn decode(raw: &RawProperties) -> Result<BasicProperties, DecodeError> {
        let mut d = Decoder::new(raw.raw.slice(raw.list_at..));
        let f = raw.flags;
        let short = |d: &mut Decoder, bit: u16| -> Result<Option<ShortStr>, DecodeError> {
            if f & bit != 0 {
                d.short_str().map(Some)
            } else {
                Ok(None)
            }
        };
        let content_type = short(&mut d, flag::CONTENT_TYPE)?;
        let content_encoding = short(&mut d, flag::CONTENT_ENCODING)?;
        let headers = if f & flag::HEADERS != 0 {
            Some(d.table()?)
        } else {
            None
        };
        let delivery_mode = if f & flag::DELIVERY_MODE != 0 {
            Some(d.u8()?)
        } else {
            None
        };
        let priority = if f & flag::PRIORITY != 0 {
            Some(d.u8()?)
        } else {
            None
        };
        let correlation_id = short(&mut d, flag::CORRELATION_ID)?;
        let reply_to = short(&mut d, flag::REPLY_TO)?;
        let expiration = short(&mut d, flag::EXPIRATION)?;
        let message_id = short(&mut d, flag::MESSAGE_ID)?;
        let timestamp = if f & flag::TIMESTAMP != 0 {
            Some(d.u64()?)
        } else {
            None
        };
        let kind = short(&mut d, flag::TYPE)?;
        let user_id = short(&mut d, flag::USER_ID)?;
        let app_id = short(&mut d, flag::APP_ID)?;
        let cluster_id = short(&mut d, flag::CLUSTER_ID)?;
        d.finish()?;
        Ok(BasicProperties {
            content_type,
            content_encoding,
            headers,
            delivery_mode,
            priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp,
            kind,
            user_id,
            app_id,
            cluster_id,
        })
    }

    pub fn flags(&self) -> u16 {
        let mut f = 0;
        let mut set = |present: bool, bit: u16| {
            if present {
                f |= bit
            }
        };
        set(self.content_type.is_some(), flag::CONTENT_TYPE);
        set(self.content_encoding.is_some(), flag::CONTENT_ENCODING);
        set(self.headers.is_some(), flag::HEADERS);
        set(self.delivery_mode.is_some(), flag::DELIVERY_MODE);
        set(self.priority.is_some(), flag::PRIORITY);
        set(self.correlation_id.is_some(), flag::CORRELATION_ID);
        set(self.reply_to.is_some(), flag::REPLY_TO);
        set(self.expiration.is_some(), flag::EXPIRATION);
        set(self.message_id.is_some(), flag::MESSAGE_ID);
        set(self.timestamp.is_some(), flag::TIMESTAMP);
        set(self.kind.is_some(), flag::TYPE);
        set(self.user_id.is_some(), flag::USER_ID);
        set(self.app_id.is_some(), flag::APP_ID);
        set(self.cluster_id.is_some(), flag::CLUSTER_ID);
        f
    }

    pub fn encode(&self) -> RawProperties {
        let mut buf = BytesMut::new();
        let flags = self.flags();
        {
            let mut e = Encoder::new(&mut buf);
            e.u16(flags);
            let short = |e: &mut Encoder<'_>, v: &Option<ShortStr>| {
                if let Some(s) = v {
                    e.short_str(s);
                }
            };
            short(&mut e, &self.content_type);
            short(&mut e, &self.content_encoding);
            if let Some(h) = &self.headers {
                e.table(h);
            }
            if let Some(v) = self.delivery_mode {
                e.u8(v);
            }
            if let Some(v) = self.priority {
                e.u8(v);
            }
            short(&mut e, &self.correlation_id);
            short(&mut e, &self.reply_to);
            short(&mut e, &self.expiration);
            short(&mut e, &self.message_id);
            if let Some(v) = self.timestamp {
                e.u64(v);
            }
            short(&mut e, &self.kind);
            short(&mut e, &self.user_id);
            short(&mut e, &self.app_id);
            short(&mut e, &self.cluster_id);
        }
        let raw = buf.freeze();
        RawProperties {
            raw,
            flags,
            list_at: 2,
        }
    }
}

/// Reads the class id, weight and body size of a header payload without the properties.
pub fn peek_body_size(payload: &[u8]) -> Option<u64> {
    let mut b = payload.get(4..12)?;
    Some(b.get_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> BasicProperties {
        BasicProperties {
            content_type: Some("text/plain".into()),
            content_encoding: Some("gzip".into()),
            headers: Some(FieldTable::new().with("a", "b")),
            delivery_mode: Some(2),
            priority: Some(5),
            correlation_id: Some("corr".into()),
            reply_to: Some("amq.rabbitmq.reply-to".into()),
            expiration: Some("60000".into()),
            message_id: Some("m1".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("t".into()),
            user_id: Some("guest".into()),
            app_id: Some("app".into()),
            cluster_id: Some("c".into()),
        }
    }

    #[test]
    fn all_fourteen_roundtrip() {
        let p = full();
        let raw = p.encode();
        let again = RawProperties::new(raw.as_bytes().clone()).unwrap();
        assert_eq!(BasicProperties::decode(&again).unwrap(), p);
        assert_eq!(again.delivery_mode(), Some(2));
        assert!(again.is_persistent());
        assert_eq!(again.priority(), Some(5));
        assert_eq!(again.user_id().unwrap(), "guest");
        assert_eq!(again.expiration().unwrap(), "60000");
        assert_eq!(
            again.headers().unwrap().unwrap().get("a"),
            Some(&"b".into())
        );
    }

    #[test]
    fn replacing_reply_to_keeps_the_others() {
        let p = full();
        let raw = p.encode();
        let new = ShortStr::from("amq.rabbitmq.reply-to.XYZ");
        let changed = raw.with_short_str(flag::REPLY_TO, &new);
        let d = BasicProperties::decode(&changed).unwrap();
        assert_eq!(d.reply_to, Some(new.clone()));
        assert_eq!(
            BasicProperties {
                reply_to: p.reply_to.clone(),
                ..d
            },
            p
        );

        let sparse = BasicProperties {
            delivery_mode: Some(1),
            app_id: Some("x".into()),
            ..Default::default()
        }
        .encode();
        let changed = sparse.with_short_str(flag::REPLY_TO, &new);
        let d = BasicProperties::decode(&changed).unwrap();
        assert_eq!(d.reply_to, Some(new));
        assert_eq!(d.delivery_mode, Some(1));
        assert_eq!(d.app_id, Some("x".into()));
    }

    #[test]
    fn truncated_properties_are_rejected() {
        let raw = full().encode();
        let bytes = raw.as_bytes();
        for cut in 0..bytes.len() {
            assert!(
                RawProperties::new(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_headers_table_is_rejected() {
        // flags: headers only; table of 3 bytes: key "n" with unknown type 'Z'.
        let raw = Bytes::from_static(&[0x20, 0x00, 0, 0, 0, 3, 1, b'n', b'Z']);
        assert_eq!(
            RawProperties::new(raw),
            Err(DecodeError::UnknownFieldType(b'Z'))
        );
    }

    #[test]
    fn extra_bytes_after_properties_are_rejected() {
        let mut v = BasicProperties::default().encode().as_bytes().to_vec();
        v.push(0);
        assert!(RawProperties::new(Bytes::from(v)).is_err());
    }
}
