//! Definitions: the topology (users, vhosts, permissions, policies, exchanges, queues and
//! bindings) in RabbitMQ's definitions JSON format, the same format `rabbitmqctl
//! export_definitions` writes. A node keeps its durable part in `definitions.json`; the whole
//! of it, transient queues included, is what a snapshot of the replicated metadata holds.
//! Fields RabbitMQ does not know are optional, so files move both ways.

use crate::ids::{ConnId, NodeId, QueueId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warren_amqp::{FieldTable, FieldValue};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub vhosts: Vec<VhostDef>,
    #[serde(default)]
    pub permissions: Vec<PermissionDef>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeDef>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    #[serde(default)]
    pub bindings: Vec<BindingDef>,
    /// Cluster-wide settings (RabbitMQ's global runtime parameters); warren reads and writes
    /// `cluster_name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global_parameters: Vec<GlobalParameterDef>,
    /// In a node's own snapshot: the last entry of its metadata journal that this file
    /// covers (RabbitMQ ignores the key on import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warren_journal_index: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    pub password_hash: String,
    #[serde(default = "sha256")]
    pub hashing_algorithm: String,
    /// RabbitMQ writes tags as a list (3.x also accepted a comma-separated string).
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
}

fn sha256() -> String {
    "rabbit_password_hashing_sha256".to_owned()
}

fn tags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(a) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalParameterDef {
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VhostDef {
    pub name: String,
    /// RabbitMQ exports a vhost's default queue type here; some exports carry it at the top
    /// level instead, which is read too.
    #[serde(default, skip_serializing_if = "VhostMetadata::is_empty")]
    pub metadata: VhostMetadata,
    #[serde(default, skip_serializing)]
    pub default_queue_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VhostMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
}

impl VhostMetadata {
    fn is_empty(&self) -> bool {
        self.default_queue_type.is_none()
    }
}

impl VhostDef {
    /// The vhost's default queue type by name, wherever the file put it (`undefined` is
    /// RabbitMQ's word for none).
    pub fn queue_type(&self) -> Option<&str> {
        self.metadata
            .default_queue_type
            .as_deref()
            .or(self.default_queue_type.as_deref())
            .filter(|t| *t != "undefined")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default = "apply_to_all")]
    pub apply_to: String,
    #[serde(default)]
    pub definition: Map<String, Value>,
    #[serde(default)]
    pub priority: i64,
}

fn apply_to_all() -> String {
    "all".to_owned()
}

/// Where a queue lives and who it is, beyond what RabbitMQ's format records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuePlacement {
    pub id: QueueId,
    pub home: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_owner: Option<ConnId>,
    /// A quorum queue's members, the first placed to lead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    #[serde(default)]
    pub arguments: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warren: Option<QueuePlacement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub vhost: String,
    pub destination: String,
    pub destination_type: String,
    pub routing_key: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

/// A field table as JSON, the way RabbitMQ's definitions show arguments.
pub fn table_to_json(t: &FieldTable) -> Map<String, Value> {
    t.iter()
        .map(|(k, v)| (k.as_str_lossy().into_owned(), value_to_json(v)))
        .collect()
}

/// Arguments as rabbitmqctl's JSON listings write them: `[key, type, value]` for each, sorted
/// by key, the type named as RabbitMQ names AMQP's field types.
pub fn table_to_listing(t: &FieldTable) -> Value {
    let mut items: Vec<(String, &FieldValue)> = t
        .iter()
        .map(|(k, v)| (k.as_str_lossy().into_owned(), v))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(
        items
            .into_iter()
            .map(|(k, v)| serde_json::json!([k, v.type_name(), value_to_json(v)]))
            .collect(),
    )
}

fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::F32(f) => {
            serde_json::Number::from_f64(*f as f64).map_or(Value::Null, Value::Number)
        }
        FieldValue::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        FieldValue::Decimal { scale, value } => {
            let f = *value as f64 / 10f64.powi(*scale as i32);
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Timestamp(t) => Value::from(*t),
        FieldValue::Table(t) => Value::Object(table_to_json(t)),
        FieldValue::Void => Value::Null,
        other => other.as_i64().map_or(Value::Null, Value::from),
    }
}

/// JSON arguments as a field table: integers become signed 64-bit longs, as RabbitMQ reads
/// them from definitions.
pub fn json_to_table(m: &Map<String, Value>) -> FieldTable {
    FieldTable(
        m.iter()
            .map(|(k, v)| (k.as_str().into(), json_to_value(v)))
            .collect(),
    )
}

fn json_to_value(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => FieldValue::from(s.as_str()),
        Value::Array(a) => FieldValue::Array(a.iter().map(json_to_value).collect()),
        Value::Object(o) => FieldValue::Table(json_to_table(o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_listed_sorted_with_their_types() {
        let mut t = FieldTable::new();
        t.insert("x-queue-type", FieldValue::LongStr("quorum".into()));
        t.insert("x-max-length", FieldValue::I32(10));
        t.insert("x-single-active-consumer", FieldValue::Bool(true));
        assert_eq!(
            table_to_listing(&t),
            serde_json::json!([
                ["x-max-length", "signedint", 10],
                ["x-queue-type", "longstr", "quorum"],
                ["x-single-active-consumer", "bool", true],
            ])
        );
    }

    #[test]
    fn arguments_survive_json() {
        let t = FieldTable::new()
            .with("x-message-ttl", FieldValue::I32(60000))
            .with("x-dead-letter-exchange", "dlx")
            .with("flag", true)
            .with(
                "nested",
                FieldValue::Table(FieldTable::new().with("a", FieldValue::I8(1))),
            );
        let back = json_to_table(&table_to_json(&t));
        assert_eq!(
            back.get("x-message-ttl").and_then(FieldValue::as_i64),
            Some(60000)
        );
        assert_eq!(
            back.get("x-dead-letter-exchange"),
            Some(&FieldValue::from("dlx"))
        );
        assert_eq!(back.get("flag"), Some(&FieldValue::Bool(true)));
        match back.get("nested") {
            Some(FieldValue::Table(n)) => {
                assert_eq!(n.get("a").and_then(FieldValue::as_i64), Some(1))
            }
            other => panic!("nested table lost: {other:?}"),
        }
    }

    #[test]
    fn reads_rabbitmq_exported_definitions() {
        let json = r#"{
          "rabbit_version": "3.10.8",
          "users": [{"name": "guest", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
                     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}}],
          "vhosts": [{"name": "/"}],
          "permissions": [],
          "queues": [{"name": "q1", "vhost": "/", "durable": true, "auto_delete": false,
                      "arguments": {"x-queue-type": "classic"}}],
          "exchanges": [{"name": "x1", "vhost": "/", "type": "topic", "durable": true,
                         "auto_delete": false, "internal": false, "arguments": {}}],
          "bindings": [{"source": "x1", "vhost": "/", "destination": "q1", "destination_type": "queue",
                        "routing_key": "a.#", "arguments": {}}]
        }"#;
        let d: Definitions = serde_json::from_str(json).unwrap();
        assert_eq!(d.users[0].tags, vec!["administrator".to_string()]);
        assert_eq!(d.queues[0].name, "q1");
        assert_eq!(d.exchanges[0].kind, "topic");
        assert_eq!(d.bindings[0].routing_key, "a.#");
        let old_style = r#"{"users": [{"name": "u", "password_hash": "x", "tags": "administrator,monitoring"}]}"#;
        let d: Definitions = serde_json::from_str(old_style).unwrap();
        assert_eq!(
            d.users[0].tags,
            vec!["administrator".to_string(), "monitoring".to_string()]
        );
    }
}
