//! What can go wrong while decoding. Every variant maps to one AMQP reply (see
//! `DecodeError::reply_code`), so the broker answers malformed input with a protocol error and
//! never with a panic.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload ended before a field it announced.
    Truncated,
    /// A frame did not end with the frame-end octet 0xCE.
    BadFrameEnd(u8),
    /// A frame type other than method, header, body or heartbeat.
    UnknownFrameType(u8),
    /// A frame larger than the negotiated `frame_max`.
    FrameTooLarge { size: u32, max: u32 },
    /// A class/method pair that AMQP 0-9-1 does not define.
    UnknownMethod { class_id: u16, method_id: u16 },
    /// A field-table value type octet that RabbitMQ does not accept.
    UnknownFieldType(u8),
    /// Field tables nested deeper than we are willing to recurse.
    TooDeep,
    /// Bytes left over after the last field of a method.
    TrailingBytes,
}

impl DecodeError {
    /// The reply code RabbitMQ closes the connection with for this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            DecodeError::UnknownMethod { .. } => crate::constants::reply::COMMAND_INVALID,
            DecodeError::Truncated
            | DecodeError::UnknownFieldType(_)
            | DecodeError::TooDeep
            | DecodeError::TrailingBytes => crate::constants::reply::SYNTAX_ERROR,
            DecodeError::BadFrameEnd(_)
            | DecodeError::UnknownFrameType(_)
            | DecodeError::FrameTooLarge { .. } => crate::constants::reply::FRAME_ERROR,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "frame payload truncated"),
            DecodeError::BadFrameEnd(b) => write!(f, "invalid frame end marker 0x{b:02x}"),
            DecodeError::UnknownFrameType(t) => write!(f, "unknown frame type {t}"),
            DecodeError::FrameTooLarge { size, max } => {
                write!(f, "frame size {size} exceeds negotiated frame_max {max}")
            }
            DecodeError::UnknownMethod {
                class_id,
                method_id,
            } => {
                write!(f, "unknown method {class_id}/{method_id}")
            }
            DecodeError::UnknownFieldType(t) => {
                write!(f, "unknown field table value type 0x{t:02x}")
            }
            DecodeError::TooDeep => write!(f, "field table nested too deep"),
            DecodeError::TrailingBytes => write!(f, "unexpected bytes after the last field"),
        }
    }
}

impl std::error::Error for DecodeError {}
