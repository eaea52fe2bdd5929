//! Classic queue mirroring, RabbitMQ 3.x's `ha-*` policy keys. warren has no mirrored classic
//! queues (RabbitMQ 4 removed them too); quorum queues replace them. A 3.x configuration that
//! carries such a policy is accepted as it is, so that nothing has to be edited to move, and the
//! operator is told once, in words that name the replacement.

use serde_json::Value;

/// The policy keys that configure classic queue mirroring.
const KEYS: &[&str] = &[
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
];

/// The warning for policy `name` whose definition (a JSON object, as text) holds mirroring
/// keys, or `None` when it holds none.
pub fn warning(name: &str, definition: &str) -> Option<String> {
    let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(definition) else {
        return None;
    };
    let found: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| keys.contains_key(*k))
        .collect();
    if found.is_empty() {
        return None;
    }
    Some(format!(
        "policy '{name}' sets classic queue mirroring ({}), which warren does not have: \
         these keys are ignored. Quorum queues replace mirrored queues: declare queues with \
         x-queue-type=quorum, or give the vhost quorum queues by default \
         (warrenctl add_vhost <vhost> --default-queue-type quorum)",
        found.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mirroring_keys_warn_and_the_warning_names_them_and_the_replacement() {
        let w = warning("ha-all", r#"{"ha-mode":"all","ha-sync-mode":"automatic"}"#)
            .expect("a warning");
        assert!(w.contains("'ha-all'"), "{w}");
        assert!(w.contains("(ha-mode, ha-sync-mode)"), "{w}");
        assert!(w.contains("--default-queue-type quorum"), "{w}");
        assert_eq!(warning("lim", r#"{"max-length":10}"#), None);
        assert_eq!(warning("bad", "not json"), None);
    }
}
