//! Field tables and field values: the `table` type of AMQP 0-9-1 with every value type that
//! RabbitMQ accepts (the spec's S, I, D, T, F plus the b, B, s, u, i, l, L, f, d, t, x, A, V
//! extensions that RabbitMQ and most clients use).

use crate::error::DecodeError;
use crate::types::ShortStr;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// How deep tables and arrays may nest. A frame could otherwise nest thousands of levels and
/// make recursive decoding overflow the stack; no real client comes near this.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    /// Both `l` and `L` decode to a signed 64-bit value, as RabbitMQ decodes them.
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    LongStr(Bytes),
    ByteArray(Bytes),
    Array(Vec<FieldValue>),
    Timestamp(u64),
    Table(FieldTable),
    Void,
}

impl FieldValue {
    /// The value as a signed integer, for any of the integer types.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v.into()),
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::I16(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::I32(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            FieldValue::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// RabbitMQ's name for the value's type, as it appears in its error texts.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal { .. } => "decimal",
            FieldValue::LongStr(_) => "longstr",
            FieldValue::ByteArray(_) => "binary",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
        }
    }

    fn decode(buf: &mut Bytes, depth: usize) -> Result<FieldValue, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let tag = take_u8(buf)?;
        Ok(match tag {
            b't' => FieldValue::Bool(take_u8(buf)? != 0),
            b'b' => FieldValue::I8(take_u8(buf)? as i8),
            b'B' => FieldValue::U8(take_u8(buf)?),
            b's' => FieldValue::I16(take_n::<2>(buf)?.get_i16()),
            b'u' => FieldValue::U16(take_n::<2>(buf)?.get_u16()),
            b'I' => FieldValue::I32(take_n::<4>(buf)?.get_i32()),
            b'i' => FieldValue::U32(take_n::<4>(buf)?.get_u32()),
            b'l' | b'L' => FieldValue::I64(take_n::<8>(buf)?.get_i64()),
            b'f' => FieldValue::F32(take_n::<4>(buf)?.get_f32()),
            b'd' => FieldValue::F64(take_n::<8>(buf)?.get_f64()),
            b'D' => {
                let scale = take_u8(buf)?;
                let value = take_n::<4>(buf)?.get_u32();
                FieldValue::Decimal { scale, value }
            }
            b'S' => FieldValue::LongStr(take_sized(buf)?),
            b'x' => FieldValue::ByteArray(take_sized(buf)?),
            b'T' => FieldValue::Timestamp(take_n::<8>(buf)?.get_u64()),
            b'F' => FieldValue::Table(FieldTable::decode_at(take_sized(buf)?, depth + 1)?),
            b'A' => {
                let mut raw = take_sized(buf)?;
                let mut items = Vec::new();
                while raw.has_remaining() {
                    items.push(FieldValue::decode(&mut raw, depth + 1)?);
                }
                FieldValue::Array(items)
            }
            b'V' => FieldValue::Void,
            other => return Err(DecodeError::UnknownFieldType(other)),
        })
    }

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            FieldValue::Bool(v) => {
                buf.put_u8(b't');
                buf.put_u8(u8::from(*v));
            }
            FieldValue::I8(v) => {
                buf.put_u8(b'b');
                buf.put_i8(*v);
            }
            FieldValue::U8(v) => {
                buf.put_u8(b'B');
                buf.put_u8(*v);
            }
            FieldValue::I16(v) => {
                buf.put_u8(b's');
                buf.put_i16(*v);
            }
            FieldValue::U16(v) => {
                buf.put_u8(b'u');
                buf.put_u16(*v);
            }
            FieldValue::I32(v) => {
                buf.put_u8(b'I');
                buf.put_i32(*v);
            }
            FieldValue::U32(v) => {
                buf.put_u8(b'i');
                buf.put_u32(*v);
            }
            FieldValue::I64(v) => {
                buf.put_u8(b'l');
                buf.put_i64(*v);
            }
            FieldValue::F32(v) => {
                buf.put_u8(b'f');
                buf.put_f32(*v);
            }
            FieldValue::F64(v) => {
                buf.put_u8(b'd');
                buf.put_f64(*v);
            }
            FieldValue::Decimal { scale, value } => {
                buf.put_u8(b'D');
                buf.put_u8(*scale);
                buf.put_u32(*value);
            }
            FieldValue::LongStr(b) => {
                buf.put_u8(b'S');
                buf.put_u32(b.len() as u32);
                buf.put_slice(b);
            }
            FieldValue::ByteArray(b) => {
                buf.put_u8(b'x');
                buf.put_u32(b.len() as u32);
                buf.put_slice(b);
            }
            FieldValue::Array(items) => {
                buf.put_u8(b'A');
                let at = reserve_len(buf);
                for item in items {
                    item.encode(buf);
                }
                patch_len(buf, at);
            }
            FieldValue::Timestamp(v) => {
                buf.put_u8(b'T');
                buf.put_u64(*v);
            }
            FieldValue::Table(t) => {
                buf.put_u8(b'F');
                t.encode(buf);
            }
            FieldValue::Void => buf.put_u8(b'V'),
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

/// An ordered list of named values. Order is kept because clients see tables echoed back
/// (server properties, x-death) and small tables are faster to scan than to hash.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_bytes() == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Sets a value, replacing an earlier one of the same name.
    pub fn insert(&mut self, key: impl Into<ShortStr>, value: FieldValue) {
        let key = key.into();
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.0.push((key, value));
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        self.insert(key, value.into());
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ShortStr, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Checks that a table body (without its length prefix) is well formed, without building
    /// it: the broker validates message headers this way on publish and keeps them raw.
    pub fn validate(raw: &[u8]) -> Result<(), DecodeError> {
        validate_table(raw, 0)
    }

    /// Decodes a table body (without its length prefix).
    pub fn decode(raw: Bytes) -> Result<FieldTable, DecodeError> {
        FieldTable::decode_at(raw, 0)
    }

    fn decode_at(mut raw: Bytes, depth: usize) -> Result<FieldTable, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let mut entries = Vec::new();
        while raw.has_remaining() {
            let n = take_u8(&mut raw)? as usize;
            if raw.len() < n {
                return Err(DecodeError::Truncated);
            }
            let key = ShortStr::from_bytes(raw.split_to(n));
            let value = FieldValue::decode(&mut raw, depth)?;
            entries.push((key, value));
        }
        Ok(FieldTable(entries))
    }

    /// Encodes the table with its 32-bit length prefix.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = reserve_len(buf);
        for (k, v) in &self.0 {
            buf.put_u8(k.len() as u8);
            buf.put_slice(k.as_bytes());
            v.encode(buf);
        }
        patch_len(buf, at);
    }
}

fn validate_table(mut raw: &[u8], depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    while !raw.is_empty() {
        let n = raw[0] as usize;
        raw = raw.get(1 + n..).ok_or(DecodeError::Truncated)?;
        raw = validate_value(raw, depth)?;
    }
    Ok(())
}

/// Skips one value, returning what follows it.
fn validate_value(raw: &[u8], depth: usize) -> Result<&[u8], DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let (&tag, rest) = raw.split_first().ok_or(DecodeError::Truncated)?;
    let fixed = |n: usize| rest.get(n..).ok_or(DecodeError::Truncated);
    let sized = || -> Result<(&[u8], &[u8]), DecodeError> {
        let len = rest.get(..4).ok_or(DecodeError::Truncated)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let body = rest.get(4..4 + len).ok_or(DecodeError::Truncated)?;
        Ok((body, &rest[4 + len..]))
    };
    match tag {
        b't' | b'b' | b'B' => fixed(1),
        b's' | b'u' => fixed(2),
        b'I' | b'i' | b'f' => fixed(4),
        b'l' | b'L' | b'd' | b'T' => fixed(8),
        b'D' => fixed(5),
        b'V' => Ok(rest),
        b'S' | b'x' => sized().map(|(_, after)| after),
        b'F' => {
            let (body, after) = sized()?;
            validate_table(body, depth + 1)?;
            Ok(after)
        }
        b'A' => {
            let (mut body, after) = sized()?;
            while !body.is_empty() {
                body = validate_value(body, depth + 1)?;
            }
            Ok(after)
        }
        other => Err(DecodeError::UnknownFieldType(other)),
    }
}

fn take_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u8())
}

fn take_n<const N: usize>(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    if buf.len() < N {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.split_to(N))
}

fn take_sized(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let n = take_n::<4>(buf)?.get_u32() as usize;
    if buf.len() < n {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.split_to(n))
}

fn reserve_len(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_u32(0);
    at
}

fn patch_len(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(t: &FieldTable) -> FieldTable {
        let mut buf = BytesMut::new();
        t.encode(&mut buf);
        let mut b = buf.freeze();
        let n = b.get_u32() as usize;
        assert_eq!(n, b.len());
        FieldTable::decode(b).unwrap()
    }

    #[test]
    fn every_value_type_roundtrips() {
        let inner = FieldTable::new().with("k", "v");
        let t = FieldTable(vec![
            ("bool".into(), FieldValue::Bool(true)),
            ("i8".into(), FieldValue::I8(-5)),
            ("u8".into(), FieldValue::U8(250)),
            ("i16".into(), FieldValue::I16(-300)),
            ("u16".into(), FieldValue::U16(60000)),
            ("i32".into(), FieldValue::I32(-70000)),
            ("u32".into(), FieldValue::U32(4_000_000_000)),
            ("i64".into(), FieldValue::I64(-1 << 40)),
            ("f32".into(), FieldValue::F32(1.5)),
            ("f64".into(), FieldValue::F64(-2.25)),
            (
                "dec".into(),
                FieldValue::Decimal {
                    scale: 2,
                    value: 12345,
                },
            ),
            ("str".into(), FieldValue::from("hello")),
            (
                "bin".into(),
                FieldValue::ByteArray(Bytes::from_static(&[0, 1, 2])),
            ),
            (
                "arr".into(),
                FieldValue::Array(vec![FieldValue::I32(1), FieldValue::Void]),
            ),
            ("ts".into(), FieldValue::Timestamp(1_700_000_000)),
            ("tbl".into(), FieldValue::Table(inner)),
            ("void".into(), FieldValue::Void),
        ]);
        assert_eq!(roundtrip(&t), t);
    }

    #[test]
    fn capital_l_decodes_as_signed_long() {
        let raw = Bytes::from_static(&[
            1, b'n', b'L', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
        ]);
        let t = FieldTable::decode(raw).unwrap();
        assert_eq!(t.get("n"), Some(&FieldValue::I64(-2)));
    }

    #[test]
    fn unknown_type_is_rejected() {
        let raw = Bytes::from_static(&[1, b'n', b'Z', 0]);
        assert_eq!(
            FieldTable::decode(raw),
            Err(DecodeError::UnknownFieldType(b'Z'))
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        // 10,000 nested arrays: each level is 'A' plus a length.
        let depth = 10_000;
        let mut v = vec![];
        for i in 0..depth {
            let remaining = (depth - i - 1) * 5;
            v.push(b'A');
            v.extend_from_slice(&(remaining as u32).to_be_bytes());
        }
        let mut raw = vec![1, b'a'];
        raw.extend(v);
        assert_eq!(
            FieldTable::decode(Bytes::from(raw)),
            Err(DecodeError::TooDeep)
        );
    }

    #[test]
    fn validate_agrees_with_decode() {
        let good = FieldTable(vec![
            (
                "a".into(),
                FieldValue::Array(vec![FieldValue::I8(1), FieldValue::from("x")]),
            ),
            (
                "t".into(),
                FieldValue::Table(FieldTable::new().with("k", true)),
            ),
            ("d".into(), FieldValue::Decimal { scale: 1, value: 2 }),
        ]);
        let mut buf = BytesMut::new();
        good.encode(&mut buf);
        let body = buf.freeze().slice(4..);
        assert_eq!(FieldTable::validate(&body), Ok(()));
        for cut in 0..body.len() {
            assert_eq!(
                FieldTable::validate(&body[..cut]).is_ok(),
                FieldTable::decode(body.slice(..cut)).is_ok(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            FieldTable::validate(&[1, b'n', b'Z']),
            Err(DecodeError::UnknownFieldType(b'Z'))
        );
    }

    #[test]
    fn truncated_table_is_rejected() {
        let raw = Bytes::from_static(&[1, b'n', b'S', 0, 0, 0, 9, b'a']);
        assert_eq!(FieldTable::decode(raw), Err(DecodeError::Truncated));
    }
}
