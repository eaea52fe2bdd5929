//! Node names as RabbitMQ writes them, `name@host`, and where to reach one. Without Erlang's
//! port mapper, a node's cluster port is 25672 unless the name says otherwise: several nodes on
//! one host are told apart by a `:PORT` suffix (`warren@localhost:25673`).

use std::fmt;

/// The cluster port a node listens on unless told otherwise (RabbitMQ's distribution port).
pub const DEFAULT_PORT: u16 = 25672;

/// A node's name and the address of its cluster port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// `name@host`, as listed by cluster_status.
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    /// Parses `name@host` or `name@host:port`.
    pub fn parse(s: &str) -> Result<NodeAddr, String> {
        let (name, host) = s
            .split_once('@')
            .ok_or_else(|| format!("node name '{s}' is not of the form name@host"))?;
        if name.is_empty() || host.is_empty() {
            return Err(format!("node name '{s}' is not of the form name@host"));
        }
        let (host, port) = match host.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse()
                    .map_err(|_| format!("node name '{s}': '{p}' is not a port"))?;
                (h, port)
            }
            None => (host, DEFAULT_PORT),
        };
        Ok(NodeAddr {
            name: format!("{name}@{host}"),
            host: host.to_owned(),
            port,
        })
    }

    /// The address to dial.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The name with its port when that is not the default, so that it parses back to the
    /// same address.
    pub fn full(&self) -> String {
        if self.port == DEFAULT_PORT {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.port)
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// This machine's host name, as a default node name uses it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The default node name, `warren@<hostname>`.
pub fn default_node_name() -> String {
    format!("warren@{}", host_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_a_port() {
        let a = NodeAddr::parse("warren@m1").unwrap();
        assert_eq!((a.name.as_str(), a.port), ("warren@m1", DEFAULT_PORT));
        assert_eq!(a.endpoint(), "m1:25672");
        assert_eq!(a.full(), "warren@m1");
        let b = NodeAddr::parse("rabbit@localhost:25673").unwrap();
        assert_eq!((b.name.as_str(), b.port), ("rabbit@localhost", 25673));
        assert_eq!(NodeAddr::parse(&b.full()).unwrap(), b);
        for bad in ["warren", "@host", "warren@", "warren@host:x"] {
            assert!(NodeAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
