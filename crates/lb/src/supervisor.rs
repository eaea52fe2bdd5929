//! Keeps the balancer's tasks in line with its configuration: the accept loop of each
//! frontend, the statistics listeners, the health checks, the runtime socket. On reload
//! (SIGHUP or SIGUSR2) it reads the files again and, if they are valid and every new address
//! binds, switches over: listening sockets on unchanged addresses are kept (no connection is
//! refused during the switch), established sessions go on with the settings they started
//! with, and servers keep their health.

use crate::config;
use crate::runtime::{Current, Role, Runtime};
use crate::{check, control, proxy, stats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Binds one address the way HAProxy reports a failure.
pub fn bind(addr: SocketAddr, proxy: &str) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("Starting proxy {proxy}: cannot bind socket ({e}) [{addr}]"))
}

/// Binds every address of `rt` (before the process goes to the background).
pub fn bind_all(rt: &Runtime) -> Result<HashMap<SocketAddr, std::net::TcpListener>, String> {
    let mut out = HashMap::new();
    for (addr, proxy, _) in rt.addresses() {
        if let std::collections::hash_map::Entry::Vacant(v) = out.entry(addr) {
            v.insert(bind(addr, &proxy)?);
        }
    }
    Ok(out)
}

pub struct Supervisor {
    files: Vec<PathBuf>,
    echo_events: bool,
    pub current: Current,
    frontend_listeners: HashMap<SocketAddr, Arc<TcpListener>>,
    accepting: Vec<JoinHandle<()>>,
    stats: HashMap<SocketAddr, JoinHandle<()>>,
    checks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts serving `rt` on sockets bound by `bind_all`.
    pub fn start(
        files: Vec<PathBuf>,
        echo_events: bool,
        rt: Runtime,
        bound: HashMap<SocketAddr, std::net::TcpListener>,
        control: Option<std::os::unix::net::UnixListener>,
    ) -> Supervisor {
        let rt = Arc::new(rt);
        let mut sup = Supervisor {
            files,
            echo_events,
            current: Arc::new(arc_swap::ArcSwap::new(rt.clone())),
            frontend_listeners: HashMap::new(),
            accepting: Vec::new(),
            stats: HashMap::new(),
            checks: Vec::new(),
        };
        let mut bound = bound;
        if let Err(e) = sup.activate(rt, &mut bound) {
            tracing::error!(error = %e, "cannot start listening");
        }
        if let Some(l) = control {
            match tokio::net::UnixListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(control::serve(l, sup.current.clone()));
                }
                Err(e) => tracing::error!(error = %e, "cannot use the runtime socket"),
            }
        }
        sup
    }

    /// Reads the configuration again and switches to it; on any error the running
    /// configuration stays and the error is returned.
    pub fn reload(&mut self) -> Result<usize, String> {
        let cfg = config::parse_file(&self.files).map_err(|e| e.to_string())?;
        let old = self.current.load_full();
        let rt = Arc::new(Runtime::reloaded(&cfg, self.echo_events, &old));
        // Bind what is new before touching what runs, so a failure changes nothing.
        let mut fresh = HashMap::new();
        for (addr, proxy, role) in rt.addresses() {
            let have = match role {
                Role::Frontend(_) => self.frontend_listeners.contains_key(&addr),
                Role::Stats => self.stats.contains_key(&addr),
            };
            if !have && !fresh.contains_key(&addr) {
                fresh.insert(addr, bind(addr, &proxy)?);
            }
        }
        let proxies = cfg.proxies.len();
        self.activate(rt, &mut fresh)?;
        Ok(proxies)
    }

    fn activate(
        &mut self,
        rt: Arc<Runtime>,
        fresh: &mut HashMap<SocketAddr, std::net::TcpListener>,
    ) -> Result<(), String> {
        for task in self.accepting.drain(..).chain(self.checks.drain(..)) {
            task.abort();
        }
        let addresses = rt.addresses();
        let mut frontends = HashMap::new();
        let mut stats_addrs = Vec::new();
        for (addr, _, role) in addresses {
            match role {
                Role::Frontend(fe) => {
                    let listener = match self.frontend_listeners.remove(&addr) {
                        Some(l) => l,
                        None => {
                            let l = fresh
                                .remove(&addr)
                                .ok_or_else(|| format!("no socket for {addr}"))?;
                            Arc::new(TcpListener::from_std(l).map_err(|e| e.to_string())?)
                        }
                    };
                    self.accepting.push(tokio::spawn(proxy::accept_loop(
                        fe,
                        rt.process.clone(),
                        listener.clone(),
                    )));
                    frontends.insert(addr, listener);
                }
                Role::Stats => {
                    stats_addrs.push(addr);
                    if !self.stats.contains_key(&addr) {
                        let l = fresh
                            .remove(&addr)
                            .ok_or_else(|| format!("no socket for {addr}"))?;
                        let l = TcpListener::from_std(l).map_err(|e| e.to_string())?;
                        let task = tokio::spawn(stats::http::serve(l, addr, self.current.clone()));
                        self.stats.insert(addr, task);
                    }
                }
            }
        }
        // Addresses no longer configured stop listening.
        self.frontend_listeners = frontends;
        self.stats.retain(|addr, task| {
            let keep = stats_addrs.contains(addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for be in &rt.backends {
            let log = rt.logger_for(&be.name);
            for s in be.servers.iter().filter(|s| s.params.check) {
                self.checks
                    .push(tokio::spawn(check::run(be.clone(), s.clone(), log.clone())));
            }
        }
        self.current.store(rt);
        Ok(())
    }

    /// Stops accepting new sessions (graceful stop).
    pub fn stop_accepting(&mut self) {
        for task in self.accepting.drain(..) {
            task.abort();
        }
        self.frontend_listeners.clear();
    }
}
