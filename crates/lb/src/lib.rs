//! warren-lb: the balancer in front of a warren (or RabbitMQ) cluster, in the role HAProxy
//! plays in the classic RabbitMQ HA setup, reading HAProxy's configuration file.
//!
//! `config` reads haproxy.cfg into typed sections. `runtime` builds the running parts from it:
//! a `proxy::Frontend` per listening proxy, which accepts clients and hands each to a server
//! that its `backend::Backend` picks (round robin, leastconn, source, first); `pump` moves the
//! bytes. `check` runs health checks that move each `server::ServerState` between UP and DOWN.
//! `stats` reports it all as HAProxy's HTML page, CSV and Prometheus text, and `control` is the
//! runtime socket (`show stat`, `disable server`, ...). `log` writes HAProxy-shaped log lines.
//! `supervisor` keeps the tasks in line with the configuration and reloads it on SIGHUP.

pub mod backend;
pub mod check;
pub mod config;
pub mod control;
pub mod log;
pub mod proxy;
pub mod pump;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod supervisor;
