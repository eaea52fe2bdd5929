//! Reading and writing AMQP's primitive field types, including the packing of consecutive
//! `bit` fields into one octet, which is why both sides keep a little state.

use crate::error::DecodeError;
use crate::table::FieldTable;
use crate::types::{LongStr, ShortStr};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Reads fields from a payload. Strings are slices of the payload, never copies.
pub struct Decoder {
    buf: Bytes,
    /// The octet that holds the current run of bits, and how many of them were read.
    bit_octet: u8,
    bits_used: u8,
}

impl Decoder {
    pub fn new(buf: Bytes) -> Self {
        Decoder {
            buf,
            bit_octet: 0,
            bits_used: 8,
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.bits_used = 8;
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.bits_used = 8;
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.bits_used = 8;
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.bits_used = 8;
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    pub fn bit(&mut self) -> Result<bool, DecodeError> {
        if self.bits_used >= 8 {
            self.need(1)?;
            self.bit_octet = self.buf.get_u8();
            self.bits_used = 0;
        }
        let v = self.bit_octet & (1 << self.bits_used) != 0;
        self.bits_used += 1;
        Ok(v)
    }

    /// `n` raw bytes as a slice of the payload.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.bits_used = 8;
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    pub fn short_str(&mut self) -> Result<ShortStr, DecodeError> {
        let n = self.u8()? as usize;
        Ok(ShortStr::from_bytes(self.bytes(n)?))
    }

    pub fn long_str(&mut self) -> Result<LongStr, DecodeError> {
        let n = self.u32()? as usize;
        Ok(LongStr(self.bytes(n)?))
    }

    pub fn table(&mut self) -> Result<FieldTable, DecodeError> {
        let n = self.u32()? as usize;
        let raw = self.bytes(n)?;
        FieldTable::decode(raw)
    }

    /// Whatever is left, as one slice.
    pub fn rest(&mut self) -> Bytes {
        self.bits_used = 8;
        self.buf.split_off(0)
    }
}

/// Writes fields into a buffer.
pub struct Encoder<'a> {
    buf: &'a mut BytesMut,
    /// Where the octet of the current run of bits sits, and how many bits it holds.
    bit_at: usize,
    bits_used: u8,
}

impl<'a> Encoder<'a> {
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Encoder {
            buf,
            bit_at: 0,
            bits_used: 8,
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.bits_used = 8;
        self.buf.put_u8(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.bits_used = 8;
        self.buf.put_u16(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.bits_used = 8;
        self.buf.put_u32(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.bits_used = 8;
        self.buf.put_u64(v);
    }

    pub fn bit(&mut self, v: bool) {
        if self.bits_used >= 8 {
            self.bit_at = self.buf.len();
            self.buf.put_u8(0);
            self.bits_used = 0;
        }
        if v {
            self.buf[self.bit_at] |= 1 << self.bits_used;
        }
        self.bits_used += 1;
    }

    pub fn raw(&mut self, b: &[u8]) {
        self.bits_used = 8;
        self.buf.put_slice(b);
    }

    pub fn short_str(&mut self, s: &ShortStr) {
        // ShortStr guarantees at most 255 bytes.
        self.u8(s.len() as u8);
        self.raw(s.as_bytes());
    }

    pub fn long_str(&mut self, s: &[u8]) {
        self.u32(s.len() as u32);
        self.raw(s);
    }

    pub fn table(&mut self, t: &FieldTable) {
        self.bits_used = 8;
        t.encode(self.buf);
    }
}

/// A type that can be a method argument.
pub trait Field: Sized {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError>;
    fn encode(&self, e: &mut Encoder<'_>);
}

impl Field for u8 {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.u8()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.u8(*self)
    }
}

impl Field for u16 {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.u16()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.u16(*self)
    }
}

impl Field for u32 {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.u32()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.u32(*self)
    }
}

impl Field for u64 {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.u64()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.u64(*self)
    }
}

impl Field for bool {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.bit()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.bit(*self)
    }
}

impl Field for ShortStr {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.short_str()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.short_str(self)
    }
}

impl Field for LongStr {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.long_str()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.long_str(self.as_bytes())
    }
}

impl Field for FieldTable {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        d.table()
    }
    fn encode(&self, e: &mut Encoder<'_>) {
        e.table(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_pack_into_one_octet_and_reset_after_other_fields() {
        let mut buf = BytesMut::new();
        let mut e = Encoder::new(&mut buf);
        e.bit(true);
        e.bit(false);
        e.bit(true);
        e.u8(7);
        e.bit(true);
        assert_eq!(&buf[..], &[0b101, 7, 1]);
        let mut d = Decoder::new(buf.freeze());
        assert!(d.bit().unwrap());
        assert!(!d.bit().unwrap());
        assert!(d.bit().unwrap());
        assert_eq!(d.u8().unwrap(), 7);
        assert!(d.bit().unwrap());
        d.finish().unwrap();
    }

    #[test]
    fn nine_bits_take_two_octets() {
        let mut buf = BytesMut::new();
        let mut e = Encoder::new(&mut buf);
        for i in 0..9 {
            e.bit(i % 2 == 0);
        }
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut d = Decoder::new(Bytes::from_static(&[5, b'a']));
        assert_eq!(d.short_str(), Err(DecodeError::Truncated));
        let mut d = Decoder::new(Bytes::from_static(&[0, 0, 0]));
        assert_eq!(d.u32(), Err(DecodeError::Truncated));
    }
}
