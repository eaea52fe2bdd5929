//! The balancer's configuration, read from HAProxy's file format. `parse` turns the text into
//! these types, applying `defaults` sections the way HAProxy does; what it cannot run is an
//! error naming the file and line, and what HAProxy itself ignores in a TCP proxy is accepted
//! with HAProxy's warning.

pub mod duration;
pub mod lexer;
mod parse;

pub use parse::{parse_file, parse_str};

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a directive was read: `file:line`, as HAProxy prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A configuration that cannot run, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub at: Option<Location>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "parsing [{at}] : {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub struct Config {
    pub global: Global,
    pub proxies: Vec<Proxy>,
    /// What HAProxy would warn about, in HAProxy's words.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn proxy(&self, name: &str) -> Option<&Proxy> {
        self.proxies.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Global {
    pub log: Vec<LogTarget>,
    pub chroot: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub maxconn: Option<u32>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub daemon: bool,
    pub stats_socket: Option<PathBuf>,
    pub stats_socket_mode: Option<u32>,
    /// Threads serving sessions (HAProxy's `nbthread`); the number of CPUs when unset.
    pub nbthread: Option<u32>,
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Stdout,
    /// Syslog over UDP (RFC 3164), with its facility number.
    Udp {
        addr: SocketAddr,
        facility: u8,
    },
    /// Syslog on a local datagram socket such as /dev/log.
    Unix {
        path: PathBuf,
        facility: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Source,
    First,
}

impl Balance {
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::LeastConn => "leastconn",
            Balance::Source => "source",
            Balance::First => "first",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Frontend,
    Backend,
    Listen,
}

impl ProxyKind {
    pub fn accepts(self) -> bool {
        matches!(self, ProxyKind::Frontend | ProxyKind::Listen)
    }

    pub fn serves(self) -> bool {
        matches!(self, ProxyKind::Backend | ProxyKind::Listen)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub tunnel: Option<Duration>,
    pub check: Option<Duration>,
    pub queue: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub tcplog: bool,
    pub dontlognull: bool,
    pub clitcpka: bool,
    pub srvtcpka: bool,
    pub redispatch: bool,
    /// warren's extension: a server passes its check only if it answers the AMQP protocol
    /// header with connection.start.
    pub amqp_check: bool,
    /// Move client-to-server (request) and server-to-client (response) bytes with splice(2).
    pub splice_request: bool,
    pub splice_response: bool,
    /// Settings only an HTTP proxy uses, kept to warn about when the proxy is TCP.
    pub http_only: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub uri: String,
    /// user:password pairs; none means the page is open (HAProxy's behaviour), which warren-lb
    /// refuses unless the page is explicitly enabled without auth.
    pub auth: Vec<(String, String)>,
    pub refresh: Option<Duration>,
    pub realm: String,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            uri: "/haproxy?stats".into(),
            auth: Vec::new(),
            refresh: None,
            realm: "HAProxy Statistics".into(),
        }
    }
}

/// Check and balancing settings of one server (`server` line, or `default-server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerParams {
    pub check: bool,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    pub weight: u32,
    pub backup: bool,
    pub disabled: bool,
    pub maxconn: Option<u32>,
    pub shutdown_sessions: bool,
}

impl Default for ServerParams {
    fn default() -> Self {
        // HAProxy's defaults.
        ServerParams {
            check: false,
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            weight: 1,
            backup: false,
            disabled: false,
            maxconn: None,
            shutdown_sessions: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub params: ServerParams,
    pub at: Location,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    pub name: String,
    pub kind: ProxyKind,
    pub at: Location,
    pub binds: Vec<SocketAddr>,
    pub mode: Mode,
    pub balance: Balance,
    pub timeouts: Timeouts,
    pub options: Options,
    pub retries: u32,
    /// Concurrent sessions a frontend accepts; HAProxy's default is 2000 per proxy when the
    /// process limit allows.
    pub maxconn: Option<u32>,
    pub log: Vec<LogTarget>,
    pub default_server: ServerParams,
    pub servers: Vec<Server>,
    pub default_backend: Option<String>,
    pub use_backend: Option<String>,
    pub stats: Option<Stats>,
}

impl Proxy {
    /// The backend a session accepted here is sent to.
    pub fn target_backend(&self) -> Option<&str> {
        self.use_backend
            .as_deref()
            .or(self.default_backend.as_deref())
            .or((self.kind == ProxyKind::Listen).then_some(self.name.as_str()))
    }

    /// A proxy that only serves the statistics page.
    pub fn stats_only(&self) -> bool {
        self.stats.is_some() && self.servers.is_empty() && self.target_backend_is_self()
    }

    fn target_backend_is_self(&self) -> bool {
        self.use_backend.is_none() && self.default_backend.is_none()
    }
}
