//! The running balancer built from a configuration: the process limits, a backend per
//! `backend`/`listen` section, a frontend per `frontend`/`listen` section, and the statistics
//! pages. Sockets are bound first, synchronously, so that a port in use is reported before
//! the process goes to the background.

use crate::backend::Backend;
use crate::config::{Config, Mode, Proxy, Stats};
use crate::log::Logger;
use crate::proxy::{Frontend, Process};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use tokio::sync::Semaphore;

/// HAProxy's per-frontend default when neither the proxy nor the process sets one.
const DEFAULT_MAXCONN: u32 = 2000;
/// The process limit when `global` sets none.
const DEFAULT_GLOBAL_MAXCONN: u32 = 4096;

pub struct Runtime {
    pub process: Arc<Process>,
    pub frontends: Vec<Arc<Frontend>>,
    pub backends: Vec<Arc<Backend>>,
    pub stats_pages: Vec<StatsPage>,
    pub started: std::time::SystemTime,
}

/// A statistics page: its proxy, settings and listening addresses.
#[derive(Debug, Clone)]
pub struct StatsPage {
    pub proxy: String,
    pub binds: Vec<SocketAddr>,
    pub stats: Stats,
}

/// The runtime in service, replaced as a whole on reload; the stats page and the runtime
/// socket read it on every request.
pub type Current = Arc<arc_swap::ArcSwap<Runtime>>;

/// What a listening address serves.
pub enum Role {
    Frontend(Arc<Frontend>),
    Stats,
}

impl Runtime {
    pub fn new(config: &Config, echo_events: bool) -> Self {
        let process = Arc::new(Process::new(
            config.global.maxconn.unwrap_or(DEFAULT_GLOBAL_MAXCONN),
        ));
        Self::build(config, echo_events, process, None)
    }

    /// The runtime for a reloaded configuration: the process and its limits stay, and each
    /// server that is still there (same backend, name and address) keeps its health and
    /// administrative state, so a reload neither revives a dead server nor drops a live one.
    pub fn reloaded(config: &Config, echo_events: bool, previous: &Runtime) -> Self {
        Self::build(
            config,
            echo_events,
            previous.process.clone(),
            Some(previous),
        )
    }

    fn build(
        config: &Config,
        echo_events: bool,
        process: Arc<Process>,
        previous: Option<&Runtime>,
    ) -> Self {
        let tcp = |p: &&Proxy| p.mode == Mode::Tcp;
        let backends: Vec<Arc<Backend>> = config
            .proxies
            .iter()
            .filter(tcp)
            .filter(|p| p.kind.serves())
            .map(|p| {
                let b = Backend::new(p);
                if let Some(old) = previous.and_then(|r| r.backend(&p.name)) {
                    for s in &b.servers {
                        if let Some(o) = old.server(&s.name).filter(|o| o.addr == s.addr) {
                            s.take_state_from(o);
                        }
                    }
                }
                Arc::new(b)
            })
            .collect();
        let mut frontends = Vec::new();
        for p in config
            .proxies
            .iter()
            .filter(tcp)
            .filter(|p| p.kind.accepts())
        {
            let Some(backend) = p
                .target_backend()
                .and_then(|name| backends.iter().find(|b| b.name == name))
            else {
                continue;
            };
            let maxconn = p
                .maxconn
                .unwrap_or(config.global.maxconn.unwrap_or(DEFAULT_MAXCONN));
            // Session logs follow the frontend's `log` lines; state changes are logged where
            // the backend logs.
            frontends.push(Arc::new(Frontend {
                name: p.name.clone(),
                binds: p.binds.clone(),
                backend: backend.clone(),
                slots: Arc::new(Semaphore::new(maxconn as usize)),
                maxconn,
                timeout_client: p.timeouts.client,
                clitcpka: p.options.clitcpka,
                tcplog: p.options.tcplog,
                dontlognull: p.options.dontlognull,
                log: Arc::new(Logger::new(&p.log, echo_events)),
                cur: AtomicU32::new(0),
                max: AtomicU32::new(0),
                total: AtomicU64::new(0),
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
            }));
        }
        let stats_pages = config
            .proxies
            .iter()
            .filter(|p| p.mode == Mode::Http)
            .filter_map(|p| {
                p.stats.as_ref().map(|s| StatsPage {
                    proxy: p.name.clone(),
                    binds: p.binds.clone(),
                    stats: s.clone(),
                })
            })
            .collect();
        Runtime {
            process,
            frontends,
            backends,
            stats_pages,
            started: previous.map_or_else(std::time::SystemTime::now, |p| p.started),
        }
    }

    /// Every address to listen on, and what for.
    pub fn addresses(&self) -> Vec<(SocketAddr, String, Role)> {
        let mut out = Vec::new();
        for fe in &self.frontends {
            for addr in &fe.binds {
                out.push((*addr, fe.name.clone(), Role::Frontend(fe.clone())));
            }
        }
        for page in &self.stats_pages {
            for addr in &page.binds {
                out.push((*addr, page.proxy.clone(), Role::Stats));
            }
        }
        out
    }

    /// The statistics page served on `addr`.
    pub fn stats_page_at(&self, addr: SocketAddr) -> Option<&StatsPage> {
        self.stats_pages.iter().find(|p| p.binds.contains(&addr))
    }

    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The logger of the frontend that feeds `backend`, for its state-change events.
    pub fn logger_for(&self, backend: &str) -> Arc<Logger> {
        self.frontends
            .iter()
            .find(|f| f.backend.name == backend)
            .map(|f| f.log.clone())
            .unwrap_or_else(|| Arc::new(Logger::new(&[], true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::server::{Admin, CheckResult};
    use std::time::Duration;

    fn config(node2: &str) -> Config {
        parse_str(
            "t.cfg",
            &format!(
                "listen mq\n    bind 127.0.0.1:0\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n    server node1 127.0.0.1:5673 check fall 1\n    server node2 {node2} check fall 1\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn a_reload_keeps_the_health_of_servers_that_stay() {
        let old = Runtime::new(&config("127.0.0.1:5674"), false);
        let be = old.backend("mq").unwrap();
        be.servers[0].record(CheckResult {
            code: "L4CON",
            passed: false,
            info: String::new(),
            duration: Duration::ZERO,
        });
        be.servers[1].set_admin(Admin::Drain);
        assert_eq!(be.servers[0].status(), "DOWN");

        let same = Runtime::reloaded(&config("127.0.0.1:5674"), false, &old);
        let be = same.backend("mq").unwrap();
        assert_eq!(
            be.servers[0].status(),
            "DOWN",
            "a reload does not revive it"
        );
        assert_eq!(be.servers[1].status(), "DRAIN");
        assert!(Arc::ptr_eq(&same.process, &old.process));

        let moved = Runtime::reloaded(&config("127.0.0.1:5675"), false, &same);
        let be = moved.backend("mq").unwrap();
        assert_eq!(
            be.servers[1].status(),
            "UP",
            "a server at a new address starts afresh"
        );
    }
}
