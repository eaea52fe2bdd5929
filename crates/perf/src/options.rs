//! Command-line options, named as in RabbitMQ's PerfTest where PerfTest has the option.

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// The project's own client on warren's codec: batched writes, pipelined confirms.
    Native,
    /// amqprs, a third-party client, for cross-checks.
    Amqprs,
}

impl Driver {
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Native => "native",
            Driver::Amqprs => "amqprs",
        }
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "warren-perf",
    version,
    about = "AMQP 0-9-1 load generator (PerfTest-style)"
)]
pub struct Options {
    /// Broker to measure.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Measure the tool itself against a built-in sink that acknowledges and forwards without
    /// doing any work; `--uri` is ignored.
    #[arg(long)]
    pub sink: bool,
    /// Where consumers connect, if not to `--uri`: another node of a cluster, to measure a
    /// queue used across nodes (producers on one, consumers on another).
    #[arg(long)]
    pub consumer_uri: Option<String>,
    /// Which client drives the load.
    #[arg(long, value_enum, default_value = "native")]
    pub driver: Driver,
    /// Producers.
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: u32,
    /// Consumers.
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: u32,
    /// Message body size in bytes (at least 16: a timestamp and a sequence number).
    #[arg(short = 's', long, default_value_t = 16)]
    pub size: usize,
    /// Consumer prefetch (0: unlimited).
    #[arg(short = 'q', long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Publisher confirm window per producer: most unconfirmed messages in flight (0: no
    /// confirms).
    #[arg(short = 'c', long, default_value_t = 0)]
    pub confirm: u32,
    /// Message flags, e.g. `-f persistent` (also makes the queue durable).
    #[arg(short = 'f', long)]
    pub flag: Vec<String>,
    /// Acknowledge every N messages with one multiple ack (1: one ack per message).
    #[arg(short = 'A', long, default_value_t = 1)]
    pub multi_ack_every: u32,
    /// Consume without acknowledgements.
    #[arg(short = 'a', long)]
    pub autoack: bool,
    /// Queue to publish to and consume from (default: one server-named queue per consumer,
    /// bound to the exchange with the routing key).
    #[arg(short = 'u', long)]
    pub queue: Option<String>,
    /// Exchange to publish to.
    #[arg(short = 'e', long, default_value = "direct")]
    pub exchange: String,
    /// Exchange type.
    #[arg(short = 't', long, default_value = "direct")]
    pub exchange_type: String,
    /// Routing key (default: a random one).
    #[arg(short = 'k', long)]
    pub routing_key: Option<String>,
    /// Queue arguments, e.g. `x-queue-type=quorum,x-max-length=1000`.
    #[arg(long)]
    pub queue_args: Option<String>,
    /// Producer rate limit in messages per second, per producer (0: as fast as possible).
    #[arg(short = 'r', long, default_value_t = 0)]
    pub rate: u32,
    /// Run for this many seconds.
    #[arg(short = 'z', long)]
    pub duration: Option<u64>,
    /// Each producer sends this many messages, then stops. With no producers (`-x 0`): the
    /// consumers, together, take this many and the run ends, before `-z` if it comes first;
    /// deliveries past it are not acknowledged and stay in the queue (0: no limit).
    #[arg(short = 'C', long)]
    pub count: Option<u64>,
    /// Open this many extra idle connections and hold them (memory tests).
    #[arg(long, default_value_t = 0)]
    pub connections: u32,
    /// Check that every message is received exactly once (not with fan-out).
    #[arg(long)]
    pub verify: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not print per-second lines.
    #[arg(long)]
    pub quiet: bool,
}

impl Options {
    pub fn persistent(&self) -> bool {
        self.flag.iter().any(|f| f == "persistent")
    }

    /// Queue arguments as (name, value) pairs; numbers become integers.
    pub fn parsed_queue_args(&self) -> Result<Vec<(String, ArgValue)>, String> {
        let Some(spec) = &self.queue_args else {
            return Ok(Vec::new());
        };
        spec.split(',')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("queue argument '{pair}' is not name=value"))?;
                let v = match v.parse::<i64>() {
                    Ok(n) => ArgValue::Int(n),
                    Err(_) => ArgValue::Str(v.to_owned()),
                };
                Ok((k.to_owned(), v))
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.size < crate::body::HEADER_LEN {
            return Err(format!(
                "-s must be at least {} (timestamp and sequence)",
                crate::body::HEADER_LEN
            ));
        }
        if self.duration.is_none() && self.count.is_none() && self.connections == 0 {
            return Err("give a duration (-z) or a message count (-C)".to_owned());
        }
        if self.producers == 0
            && self.consumers > 0
            && self.duration.is_none()
            && self.count == Some(0)
        {
            return Err(
                "with no producers, -C 0 takes no limit: give a duration (-z) too".to_owned(),
            );
        }
        self.parsed_queue_args()?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Int(i64),
    Str(String),
}

/// The parts of an `amqp://user:pass@host:port/vhost` URI.
#[derive(Debug, Clone, PartialEq)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, String> {
        let rest = s
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("'{s}' is not an amqp:// URI"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (decode(u)?, decode(p)?),
                None => (decode(a)?, String::new()),
            },
            None => ("guest".to_owned(), "guest".to_owned()),
        };
        let (hostport, vhost) = match rest.split_once('/') {
            Some((h, v)) => (
                h,
                if v.is_empty() {
                    "/".to_owned()
                } else {
                    decode(v)?
                },
            ),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in '{s}'"))?),
            None => (hostport, 5672),
        };
        Ok(Uri {
            host: if host.is_empty() {
                "localhost".to_owned()
            } else {
                host.to_owned()
            },
            port,
            user,
            password,
            vhost,
        })
    }
}

fn decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad % escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "URI is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_like_rabbitmq_clients() {
        let u = Uri::parse("amqp://bob:s%40cret@example:5673/%2f").unwrap();
        assert_eq!(
            u,
            Uri {
                host: "example".into(),
                port: 5673,
                user: "bob".into(),
                password: "s@cret".into(),
                vhost: "/".into()
            }
        );
        let u = Uri::parse("amqp://localhost").unwrap();
        assert_eq!(
            (u.port, u.user.as_str(), u.vhost.as_str()),
            (5672, "guest", "/")
        );
        let u = Uri::parse("amqp://h/other").unwrap();
        assert_eq!(u.vhost, "other");
        assert!(Uri::parse("http://x").is_err());
    }

    #[test]
    fn queue_args_parse() {
        let o = Options::parse_from([
            "p",
            "-z",
            "1",
            "--queue-args",
            "x-queue-type=quorum,x-max-length=5",
        ]);
        assert_eq!(
            o.parsed_queue_args().unwrap(),
            vec![
                ("x-queue-type".into(), ArgValue::Str("quorum".into())),
                ("x-max-length".into(), ArgValue::Int(5)),
            ]
        );
        let o = Options::parse_from(["p", "-z", "1", "--queue-args", "novalue"]);
        assert!(o.validate().is_err());
    }

    #[test]
    fn consumers_alone_need_a_count_or_a_duration() {
        let check = |args: &[&str]| {
            let mut all = vec!["p"];
            all.extend_from_slice(args);
            Options::parse_from(all).validate()
        };
        assert!(check(&["-x", "0", "-C", "100"]).is_ok());
        assert!(check(&["-x", "0", "-C", "0", "-z", "1"]).is_ok());
        assert!(check(&["-x", "0", "-C", "0"]).is_err(), "would never end");
        assert!(
            check(&["-x", "1", "-C", "0"]).is_ok(),
            "producers send none"
        );
    }
}
