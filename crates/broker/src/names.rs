//! Names the server makes up: `amq.gen-…` queues, `amq.ctag-…` consumer tags and direct
//! reply-to addresses. They come from the OS random source because some of them are
//! capabilities: knowing a reply-to name is enough to send to that consumer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 16 random bytes in URL-safe base64 (22 characters), as RabbitMQ's `rabbit_guid` makes them.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS source failing is not something a client controls; fall back to time and
        // address entropy rather than refusing to name a queue.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes());
        let addr = &bytes as *const _ as usize;
        bytes[..8]
            .iter_mut()
            .zip(addr.to_le_bytes())
            .for_each(|(b, a)| *b ^= a);
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn queue_name() -> String {
    format!("amq.gen-{}", random_token())
}

pub fn consumer_tag() -> String {
    format!("amq.ctag-{}", random_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_have_rabbitmq_shape() {
        let q = queue_name();
        assert!(q.starts_with("amq.gen-"));
        assert_eq!(q.len(), "amq.gen-".len() + 22);
        assert!(
            q["amq.gen-".len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(queue_name(), queue_name());
        assert!(consumer_tag().starts_with("amq.ctag-"));
    }
}
