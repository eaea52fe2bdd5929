//! The string types of AMQP 0-9-1. Both are byte strings on the wire (RabbitMQ treats them
//! as binaries); they hold `Bytes` so that decoding slices the frame instead of copying it.

use bytes::Bytes;
use std::borrow::Cow;
use std::fmt;

/// A `shortstr`: at most 255 bytes. Names of exchanges, queues, consumer tags, routing keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ShortStr(Bytes);

#[cfg(feature = "serde")]
impl serde::Serialize for ShortStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ShortStr {
    /// Longer input than a `shortstr` can hold is refused, not cut: it did not come from us.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = Bytes::deserialize(d)?;
        if b.len() > SHORT_STR_MAX {
            return Err(serde::de::Error::invalid_length(
                b.len(),
                &"at most 255 bytes",
            ));
        }
        Ok(ShortStr(b))
    }
}

/// The longest a `shortstr` can be: its length is one octet.
pub const SHORT_STR_MAX: usize = 255;

impl ShortStr {
    /// An empty short string.
    pub const fn empty() -> Self {
        ShortStr(Bytes::new())
    }

    /// A short string from a static text, for names the server itself uses.
    pub const fn from_static(s: &'static str) -> Self {
        ShortStr(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes that the caller knows are at most 255 long; longer input is cut at 255 so
    /// that a value built from user input can never make an unencodable frame.
    pub fn from_bytes(b: Bytes) -> Self {
        if b.len() > SHORT_STR_MAX {
            ShortStr(b.slice(..SHORT_STR_MAX))
        } else {
            ShortStr(b)
        }
    }

    /// A short string from owned text, cut at 255 bytes on a character boundary.
    pub fn from_string(s: String) -> Self {
        if s.len() <= SHORT_STR_MAX {
            return ShortStr(Bytes::from(s));
        }
        let mut end = SHORT_STR_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        ShortStr(Bytes::copy_from_slice(&s.as_bytes()[..end]))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text, with invalid UTF-8 replaced; used for messages and logs.
    pub fn as_str_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The text, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        self.0.starts_with(prefix)
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        ShortStr::from_string(s.to_owned())
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> Self {
        ShortStr::from_string(s)
    }
}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str_lossy())
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str_lossy())
    }
}

/// A `longstr`: up to 2^32-1 bytes of anything. SASL responses, server properties.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct LongStr(pub Bytes);

impl LongStr {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl From<&str> for LongStr {
    fn from(s: &str) -> Self {
        LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for LongStr {
    fn from(s: String) -> Self {
        LongStr(Bytes::from(s))
    }
}

impl From<Bytes> for LongStr {
    fn from(b: Bytes) -> Self {
        LongStr(b)
    }
}

impl fmt::Debug for LongStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let short = ShortStr::from_string(s);
        assert!(short.len() <= SHORT_STR_MAX);
        assert!(short.as_str().is_some(), "cut must not split a character");
    }

    #[test]
    fn long_bytes_are_cut_to_255() {
        let short = ShortStr::from_bytes(Bytes::from(vec![b'a'; 300]));
        assert_eq!(short.len(), 255);
    }
}
