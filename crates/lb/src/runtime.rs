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

/// A listening socket and what it is for.
pub enum Bound {
    Frontend(Arc<Frontend>, std::net::TcpListener),
    Stats(StatsPage, std::net::TcpListener),
}

impl Runtime {
    pub fn new(config: &Config, echo_events: bool) -> Self {
        let process = Arc::new(Process::new(
            config.global.maxconn.unwrap_or(DEFAULT_GLOBAL_MAXCONN),
        ));
        let tcp = |p: &&Proxy| p.mode == Mode::Tcp;
        let backends: Vec<Arc<Backend>> = config
            .proxies
            .iter()
            .filter(tcp)
            .filter(|p| p.kind.serves())
            .map(|p| Arc::new(Backend::new(p)))
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
            started: std::time::SystemTime::now(),
        }
    }

    /// Binds every listening socket; an error names the proxy and address as HAProxy does.
    pub fn bind(&self) -> Result<Vec<Bound>, String> {
        let mut out = Vec::new();
        let listen = |proxy: &str, addr: &SocketAddr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("Starting proxy {proxy}: cannot bind socket ({e}) [{addr}]"))
        };
        for fe in &self.frontends {
            for addr in &fe.binds {
                out.push(Bound::Frontend(fe.clone(), listen(&fe.name, addr)?));
            }
        }
        for page in &self.stats_pages {
            for addr in &page.binds {
                out.push(Bound::Stats(page.clone(), listen(&page.proxy, addr)?));
            }
        }
        Ok(out)
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
