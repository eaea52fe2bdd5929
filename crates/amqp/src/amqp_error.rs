//! Protocol errors as RabbitMQ reports them: a reply code, a text that starts with the code's
//! name ("NOT_FOUND - no queue 'q' in vhost '/'"), and the class and method that caused it.
//! Soft codes close the channel, hard codes the connection (see `reply::is_hard`).

use crate::constants::reply;

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AmqpError {
    pub code: u16,
    /// The explanation, without the leading "CODE_NAME - ".
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Names the method that failed, unless a more precise one was set already.
    pub fn in_method(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    pub fn is_hard(&self) -> bool {
        reply::is_hard(self.code)
    }

    /// The reply text as sent on the wire. RabbitMQ sends the bare name when there is no
    /// explanation (541 `INTERNAL_ERROR`).
    pub fn reply_text(&self) -> String {
        if self.text.is_empty() {
            return reply::name(self.code).to_owned();
        }
        format!("{} - {}", reply::name(self.code), self.text)
    }

    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(reply::NOT_FOUND, text)
    }
    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(reply::ACCESS_REFUSED, text)
    }
    pub fn precondition_failed(text: impl Into<String>) -> Self {
        Self::new(reply::PRECONDITION_FAILED, text)
    }
    pub fn resource_locked(text: impl Into<String>) -> Self {
        Self::new(reply::RESOURCE_LOCKED, text)
    }
    pub fn command_invalid(text: impl Into<String>) -> Self {
        Self::new(reply::COMMAND_INVALID, text)
    }
    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(reply::NOT_ALLOWED, text)
    }
    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(reply::NOT_IMPLEMENTED, text)
    }
    pub fn channel_error(text: impl Into<String>) -> Self {
        Self::new(reply::CHANNEL_ERROR, text)
    }
    pub fn unexpected_frame(text: impl Into<String>) -> Self {
        Self::new(reply::UNEXPECTED_FRAME, text)
    }
    pub fn frame_error(text: impl Into<String>) -> Self {
        Self::new(reply::FRAME_ERROR, text)
    }
    pub fn syntax_error(text: impl Into<String>) -> Self {
        Self::new(reply::SYNTAX_ERROR, text)
    }
    pub fn internal_error(text: impl Into<String>) -> Self {
        Self::new(reply::INTERNAL_ERROR, text)
    }
}

impl std::fmt::Display for AmqpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}/{})",
            self.reply_text(),
            self.class_id,
            self.method_id
        )
    }
}

impl std::error::Error for AmqpError {}

pub type AmqpResult<T> = Result<T, AmqpError>;

/// A binary as Erlang's `~p` prints it, which RabbitMQ's error texts quote: `<<"text">>` when
/// every byte is printable, `<<0,60,0,10>>` otherwise.
pub fn erlang_binary(b: &[u8]) -> String {
    let printable = !b.is_empty() && b.iter().all(|c| (32..127).contains(c));
    if printable {
        let mut s = String::from("<<\"");
        for &c in b {
            if c == b'"' || c == b'\\' {
                s.push('\\');
            }
            s.push(c as char);
        }
        s.push_str("\">>");
        s
    } else {
        let parts: Vec<String> = b.iter().map(|c| c.to_string()).collect();
        format!("<<{}>>", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_print_as_erlang_does() {
        assert_eq!(erlang_binary(b"abc"), "<<\"abc\">>");
        assert_eq!(erlang_binary(&[0, 60, 0, 10]), "<<0,60,0,10>>");
        assert_eq!(erlang_binary(b""), "<<>>");
        assert_eq!(erlang_binary(&[0, 0, 5, 97, 98]), "<<0,0,5,97,98>>");
    }
}
