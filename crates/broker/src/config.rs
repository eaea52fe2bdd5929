//! Node configuration: a TOML file (`--config`) with command-line flags on top. Every key has
//! RabbitMQ's default, so an empty file (or none) gives a node that behaves like a fresh
//! RabbitMQ.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub node: NodeConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub alarms: AlarmConfig,
    pub cluster: ClusterConfig,
}

/// How the node meets the others of its cluster (the binary wires it; the broker only
/// carries it).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Where nodes and warrenctl reach this node (RabbitMQ's distribution port).
    pub listen: SocketAddr,
    /// The cookie file, when `WARREN_COOKIE` is not set [default: ~/.warren.cookie].
    pub cookie_file: Option<PathBuf>,
    /// The nodes (`name@host[:port]`) to form a cluster with at the first start, as
    /// RabbitMQ's classic config peer discovery: the one with the smallest name starts the
    /// metadata group with all of them as voters, the others join it.
    pub peers: Vec<String>,
    /// How long a metadata change may wait for a majority before it fails (Khepri's
    /// `default_timeout` in RabbitMQ 4: 30 s).
    pub metadata_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 25672)),
            cookie_file: None,
            peers: Vec::new(),
            metadata_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmConfig {
    /// Memory alarm threshold as a fraction of the machine's RAM (RabbitMQ: 0.4).
    pub memory_high_watermark: f64,
    /// The same as an absolute number of bytes; when not 0 it wins over the fraction.
    pub memory_high_watermark_bytes: u64,
    /// Disk alarm threshold: free bytes below this on the data directory's filesystem
    /// (RabbitMQ: 50 MB).
    pub disk_free_limit_bytes: u64,
    /// How often memory and disk are checked.
    pub check_interval_ms: u64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            memory_high_watermark: 0.4,
            memory_high_watermark_bytes: 0,
            disk_free_limit_bytes: 50_000_000,
            check_interval_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Size at which a queue's log segment is closed and a new one begun.
    pub segment_bytes: u64,
    /// Body bytes of ready messages each queue keeps in memory; beyond that, messages wait on
    /// disk until they near the head of the queue.
    pub queue_memory_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_bytes: 16 << 20,
            queue_memory_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Largest frame offered in connection.tune (RabbitMQ: 131072).
    pub frame_max: u32,
    /// Most channels per connection offered in connection.tune (RabbitMQ: 2047).
    pub channel_max: u16,
    /// Heartbeat interval in seconds offered in connection.tune (RabbitMQ: 60).
    pub heartbeat: u16,
    /// Largest message body accepted, in bytes (RabbitMQ: 128 MiB).
    pub max_message_size: u64,
    /// Seconds a client has to finish the opening handshake (RabbitMQ: 10).
    pub handshake_timeout: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// The queue type declarations get that name none, in vhosts that have no default of
    /// their own (RabbitMQ's `default_queue_type`): `classic` or `quorum`.
    pub default_queue_type: Option<String>,
}

impl NodeConfig {
    /// `default_queue_type`, once `validate` has accepted it.
    pub fn queue_type(&self) -> Option<warren_meta::QueueType> {
        self.default_queue_type
            .as_deref()
            .and_then(warren_meta::QueueType::parse)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The user created on first start (RabbitMQ: guest/guest).
    pub default_user: String,
    pub default_pass: String,
    /// Users that may only connect from a loopback address.
    pub loopback_users: Vec<String>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5672)),
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 134_217_728,
            handshake_timeout: 10,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
        NodeConfig {
            name: format!("warren@{host}"),
            data_dir: PathBuf::from("data"),
            default_queue_type: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            default_user: "guest".to_owned(),
            default_pass: "guest".to_owned(),
            loopback_users: vec!["guest".to_owned()],
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.amqp.frame_max != 0 && self.amqp.frame_max < warren_amqp::constants::FRAME_MIN_SIZE
        {
            return Err(format!(
                "amqp.frame_max must be 0 or at least {}",
                warren_amqp::constants::FRAME_MIN_SIZE
            ));
        }
        if let Some(t) = &self.node.default_queue_type {
            if warren_meta::QueueType::parse(t).is_none() {
                return Err(format!(
                    "node.default_queue_type must be \"classic\" or \"quorum\", not \"{t}\""
                ));
            }
        }
        if self.auth.default_user.is_empty() {
            return Err("auth.default_user must not be empty".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_rabbitmq_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.amqp.listen.port(), 5672);
        assert_eq!(c.amqp.frame_max, 131072);
        assert_eq!(c.amqp.channel_max, 2047);
        assert_eq!(c.amqp.heartbeat, 60);
        assert_eq!(c.auth.loopback_users, vec!["guest".to_string()]);
        assert_eq!(c.cluster.listen.port(), 25672);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::from_toml("[amqp]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").is_err());
        assert!(Config::from_toml("[amqp]\nframe_max = 100\n").is_err());
        let c = Config::from_toml("[amqp]\nlisten = \"127.0.0.1:5999\"\nheartbeat = 5\n").unwrap();
        assert_eq!(c.amqp.listen.port(), 5999);
        assert_eq!(c.amqp.heartbeat, 5);
        let err = Config::from_toml("[node]\ndefault_queue_type = \"stream\"\n").unwrap_err();
        assert!(err.contains("not \"stream\""), "{err}");
        let c = Config::from_toml("[node]\ndefault_queue_type = \"quorum\"\n").unwrap();
        assert_eq!(c.node.queue_type(), Some(warren_meta::QueueType::Quorum));
    }
}
