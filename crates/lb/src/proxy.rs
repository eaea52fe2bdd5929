//! Frontends: accept connections (within the frontend's and the process's `maxconn`), pick a
//! server, connect with `timeout connect`, `retries` and `redispatch`, then pump bytes until
//! the session ends, and log it in HAProxy's tcplog shape.

use crate::backend::{Backend, NoServer};
use crate::log::{Logger, accept_date};
use crate::pump::{End, pump};
use crate::server::ServerState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits shared by every frontend of the process.
#[derive(Debug)]
pub struct Process {
    pub slots: Arc<Semaphore>,
    pub maxconn: u32,
    /// Sessions open now, on every frontend.
    pub actconn: AtomicU32,
    /// Sessions accepted since the process started (reloads included): HAProxy's `CumConns`.
    pub totalconn: AtomicU64,
}

impl Process {
    pub fn new(maxconn: u32) -> Self {
        Process {
            slots: Arc::new(Semaphore::new(maxconn as usize)),
            maxconn,
            actconn: AtomicU32::new(0),
            totalconn: AtomicU64::new(0),
        }
    }
}

pub struct Frontend {
    pub name: String,
    pub binds: Vec<SocketAddr>,
    pub backend: Arc<Backend>,
    pub slots: Arc<Semaphore>,
    pub maxconn: u32,
    pub timeout_client: Option<Duration>,
    pub clitcpka: bool,
    pub tcplog: bool,
    pub dontlognull: bool,
    pub log: Arc<Logger>,
    pub cur: AtomicU32,
    pub max: AtomicU32,
    pub total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Accepts on one listener for the life of the process.
pub async fn accept_loop(fe: Arc<Frontend>, process: Arc<Process>, listener: Arc<TcpListener>) {
    loop {
        // Like HAProxy, a frontend at its limit stops accepting: new clients wait in the
        // kernel's backlog rather than being refused.
        let Ok(global) = process.slots.clone().acquire_owned().await else {
            return;
        };
        let Ok(local) = fe.slots.clone().acquire_owned().await else {
            return;
        };
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(frontend = %fe.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(session(
            fe.clone(),
            process.clone(),
            client,
            peer,
            (global, local),
        ));
    }
}

/// How a session ended, for the log's termination state.
struct Outcome {
    server: Option<Arc<ServerState>>,
    queue_wait: Option<Duration>,
    connect_time: Option<Duration>,
    retries: u32,
    bytes_out: u64,
    bytes_in: u64,
    term: &'static str,
}

async fn session(
    fe: Arc<Frontend>,
    process: Arc<Process>,
    client: TcpStream,
    peer: SocketAddr,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    let accepted = SystemTime::now();
    let started = Instant::now();
    process.actconn.fetch_add(1, Ordering::Relaxed);
    process.totalconn.fetch_add(1, Ordering::Relaxed);
    let cur = fe.cur.fetch_add(1, Ordering::Relaxed) + 1;
    fe.max.fetch_max(cur, Ordering::Relaxed);
    fe.total.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    if fe.clitcpka {
        keepalive(&client);
    }
    let be = fe.backend.clone();
    be.session_started();
    let outcome = serve(&fe, &be, &client, peer).await;
    be.session_ended();
    fe.cur.fetch_sub(1, Ordering::Relaxed);
    if fe.tcplog && fe.log.is_enabled() && !(fe.dontlognull && outcome.bytes_in == 0) {
        let line = tcplog_line(&fe, &be, &process, peer, accepted, started, &outcome);
        fe.log.session(&line);
    }
    process.actconn.fetch_sub(1, Ordering::Relaxed);
}

async fn serve(fe: &Frontend, be: &Backend, client: &TcpStream, peer: SocketAddr) -> Outcome {
    let mut out = Outcome {
        server: None,
        queue_wait: None,
        connect_time: None,
        retries: 0,
        bytes_out: 0,
        bytes_in: 0,
        term: "--",
    };
    let connect_timeout = be.timeouts.connect.unwrap_or(Duration::from_secs(5));
    let queue_timeout = be.timeouts.queue.unwrap_or(connect_timeout);
    let queued_at = Instant::now();
    let mut exclude = None;
    let mut pinned: Option<usize> = None;
    let (index, server_stream) = loop {
        let index = match pinned {
            Some(i) => i,
            None => match pick_or_queue(be, peer, exclude, queued_at + queue_timeout).await {
                Ok(i) => i,
                Err(NoServer::AllFull) => {
                    out.term = "sQ";
                    return out;
                }
                Err(NoServer::NoneUsable) => {
                    out.term = "SC";
                    return out;
                }
            },
        };
        out.queue_wait.get_or_insert(queued_at.elapsed());
        let srv = be.servers[index].clone();
        out.server = Some(srv.clone());
        let attempt = Instant::now();
        match tokio::time::timeout(connect_timeout, TcpStream::connect(srv.addr)).await {
            Ok(Ok(s)) => {
                out.connect_time = Some(attempt.elapsed());
                break (index, s);
            }
            Ok(Err(_)) | Err(_) => {
                srv.connect_errors.fetch_add(1, Ordering::Relaxed);
                if out.retries >= be.retries {
                    out.term = "SC";
                    return out;
                }
                out.retries += 1;
                srv.retries.fetch_add(1, Ordering::Relaxed);
                if be.redispatch && out.retries == be.retries {
                    // The last retry goes to another server, as `option redispatch` does.
                    srv.redispatches.fetch_add(1, Ordering::Relaxed);
                    exclude = Some(index);
                    pinned = None;
                } else {
                    // HAProxy retries the same server after a turn-around of up to 1 s.
                    pinned = Some(index);
                    tokio::time::sleep(connect_timeout.min(Duration::from_secs(1))).await;
                }
            }
        }
    };
    let srv = be.servers[index].clone();
    let _ = server_stream.set_nodelay(true);
    if be.srvtcpka {
        keepalive(&server_stream);
    }
    srv.session_started();
    let idle = be
        .timeouts
        .tunnel
        .or(match (fe.timeout_client, be.timeouts.server) {
            (Some(c), Some(s)) => Some(c.max(s)),
            (c, s) => c.or(s),
        });
    let totals = pump(
        client,
        &server_stream,
        idle,
        be.splice,
        srv.kill.subscribe(),
        |n| {
            fe.bytes_in.fetch_add(n, Ordering::Relaxed);
            be.bytes_in.fetch_add(n, Ordering::Relaxed);
            srv.bytes_in.fetch_add(n, Ordering::Relaxed);
        },
        |n| {
            fe.bytes_out.fetch_add(n, Ordering::Relaxed);
            be.bytes_out.fetch_add(n, Ordering::Relaxed);
            srv.bytes_out.fetch_add(n, Ordering::Relaxed);
        },
    )
    .await;
    srv.session_ended();
    out.bytes_in = totals.bytes_in;
    out.bytes_out = totals.bytes_out;
    out.term = match totals.end {
        End::Done => "--",
        End::Idle => "cD",
        End::Killed => "KD",
        End::ClientError => "CD",
        End::ServerError => "SD",
    };
    out
}

/// Picks a server, waiting in the backend's queue while every usable server is full.
async fn pick_or_queue(
    be: &Backend,
    peer: SocketAddr,
    exclude: Option<usize>,
    deadline: Instant,
) -> Result<usize, NoServer> {
    let mut queued = false;
    let result = loop {
        let room = be.room.notified();
        tokio::pin!(room);
        room.as_mut().enable();
        match be.pick(peer.ip(), exclude) {
            Err(NoServer::AllFull) => {
                if !queued {
                    queued = true;
                    let q = be.queued.fetch_add(1, Ordering::Relaxed) + 1;
                    be.queued_max.fetch_max(q, Ordering::Relaxed);
                }
                if tokio::time::timeout_at(deadline.into(), room)
                    .await
                    .is_err()
                {
                    break Err(NoServer::AllFull);
                }
            }
            other => break other,
        }
    };
    if queued {
        be.queued.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

fn keepalive(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_keepalive(true);
}

/// `%ci:%cp [%tr] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`
fn tcplog_line(
    fe: &Frontend,
    be: &Backend,
    process: &Process,
    peer: SocketAddr,
    accepted: SystemTime,
    started: Instant,
    o: &Outcome,
) -> String {
    let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
    let server = o.server.as_ref().map_or("<NOSRV>", |s| s.name.as_str());
    let srv_conn = o
        .server
        .as_ref()
        .map_or(0, |s| s.cur.load(Ordering::Relaxed));
    format!(
        "{}:{} [{}] {} {}/{} {}/{}/{} {} {} {}/{}/{}/{}/{} 0/{}",
        peer.ip(),
        peer.port(),
        accept_date(accepted),
        fe.name,
        be.name,
        server,
        ms(o.queue_wait),
        ms(o.connect_time),
        started.elapsed().as_millis(),
        o.bytes_out,
        o.term,
        process.actconn.load(Ordering::Relaxed),
        fe.cur.load(Ordering::Relaxed),
        be.cur.load(Ordering::Relaxed),
        srv_conn,
        o.retries,
        be.queued.load(Ordering::Relaxed),
    )
}
