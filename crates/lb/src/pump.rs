//! Moves bytes both ways between a client and its server until both sides are done. A side
//! that closes its sending half has that passed on (half-close), so protocols that finish one
//! direction first still work; an idle session ends after the idle timeout; the server being
//! marked down with `shutdown-sessions` ends it at once.
//!
//! Each direction either copies through a buffer, or (HAProxy's `option splice-request`,
//! `splice-response`, `splice-auto`) moves the bytes socket to pipe to socket with splice(2),
//! so they never enter user space.

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// HAProxy's default buffer size.
const BUF: usize = 16 * 1024;
/// A pipe's default capacity: each splice from a socket takes up to this much at once.
const PIPE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed.
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The server was marked down (shutdown-sessions) or put in maintenance.
    Killed,
    /// The client's side failed (reset).
    ClientError,
    /// The server's side failed.
    ServerError,
}

pub struct Totals {
    pub end: End,
    /// Client to server.
    pub bytes_in: u64,
    /// Server to client.
    pub bytes_out: u64,
}

/// Which directions move by splice(2): client to server (request), server to client
/// (response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Splice {
    pub request: bool,
    pub response: bool,
}

/// Pumps until the session ends; `on_in` and `on_out` see each chunk's size as it passes.
pub async fn pump(
    client: &TcpStream,
    server: &TcpStream,
    idle: Option<Duration>,
    splice: Splice,
    mut kill: watch::Receiver<u64>,
    on_in: impl Fn(u64),
    on_out: impl Fn(u64),
) -> Totals {
    // When bytes last moved, in nanoseconds after `base` (shared by both directions).
    let base = Instant::now();
    let last = AtomicU64::new(0);
    let (moved_in, moved_out) = (AtomicU64::new(0), AtomicU64::new(0));
    let up = direction(
        client,
        server,
        splice.request,
        (base, &last),
        (&moved_in, &on_in),
    );
    let down = direction(
        server,
        client,
        splice.response,
        (base, &last),
        (&moved_out, &on_out),
    );
    tokio::pin!(up, down);
    let (mut in_done, mut out_done) = (false, false);
    let end = loop {
        let idle_expired = async {
            match idle {
                None => std::future::pending::<()>().await,
                Some(limit) => loop {
                    let at = base + Duration::from_nanos(last.load(Ordering::Relaxed)) + limit;
                    if Instant::now() >= at {
                        return;
                    }
                    tokio::time::sleep_until(at.into()).await;
                },
            }
        };
        tokio::select! {
            ok = &mut up, if !in_done => {
                in_done = true;
                if !ok {
                    break End::ClientError;
                }
            }
            ok = &mut down, if !out_done => {
                out_done = true;
                if !ok {
                    break End::ServerError;
                }
            }
            _ = idle_expired => break End::Idle,
            changed = kill.changed() => {
                if changed.is_ok() {
                    break End::Killed;
                }
                // The server is gone from the configuration; nothing can kill this session.
                kill = watch::channel(0).1;
            }
        }
        if in_done && out_done {
            break End::Done;
        }
    };
    Totals {
        end,
        bytes_in: moved_in.load(Ordering::Relaxed),
        bytes_out: moved_out.load(Ordering::Relaxed),
    }
}

/// One direction: spliced when asked and possible, copied otherwise.
async fn direction(
    from: &TcpStream,
    to: &TcpStream,
    use_splice: bool,
    activity: (Instant, &AtomicU64),
    counting: (&AtomicU64, &impl Fn(u64)),
) -> bool {
    if use_splice {
        if let Ok(pipe) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC) {
            return spliced(from, to, pipe, activity, counting).await;
        }
    }
    copy(from, to, activity, counting).await
}

fn moved(
    n: usize,
    (base, last): (Instant, &AtomicU64),
    (total, seen): (&AtomicU64, &impl Fn(u64)),
) {
    total.fetch_add(n as u64, Ordering::Relaxed);
    last.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
    seen(n as u64);
}

/// The end of one direction's stream: pass it on as a half-close.
fn half_close(to: &TcpStream) {
    let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
}

/// Copies one direction through a buffer. False when the stream failed.
async fn copy(
    from: &TcpStream,
    to: &TcpStream,
    activity: (Instant, &AtomicU64),
    counting: (&AtomicU64, &impl Fn(u64)),
) -> bool {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = loop {
            if from.readable().await.is_err() {
                return false;
            }
            match from.try_read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return false,
            }
        };
        if n == 0 {
            half_close(to);
            return true;
        }
        if !write_all(to, &buf[..n]).await {
            return false;
        }
        moved(n, activity, counting);
    }
}

/// Writes everything, trying at once and waiting for room only when the socket is full
/// (the usual case is an empty send buffer: no wait, no extra poll).
async fn write_all(to: &TcpStream, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if to.writable().await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Moves one direction socket to pipe to socket. False when the stream failed.
async fn spliced(
    from: &TcpStream,
    to: &TcpStream,
    (pipe_out, pipe_in): (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
    activity: (Instant, &AtomicU64),
    counting: (&AtomicU64, &impl Fn(u64)),
) -> bool {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        let n = loop {
            if from.readable().await.is_err() {
                return false;
            }
            match from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe_in, None, PIPE, flags).map_err(std::io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return false,
            }
        };
        if n == 0 {
            half_close(to);
            return true;
        }
        // The pipe was empty before this read, so all of it goes out before the next.
        let mut left = n;
        while left > 0 {
            match to.try_io(Interest::WRITABLE, || {
                splice(&pipe_out, None, to, None, left, flags).map_err(std::io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if to.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        moved(n, activity, counting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_close_is_passed_on() {
        for splice in [
            Splice::default(),
            Splice {
                request: true,
                response: true,
            },
        ] {
            flow_and_half_close(splice).await;
        }
    }

    async fn flow_and_half_close(splice: Splice) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client_app, client_side) = pair().await;
        let (server_side, mut server_app) = pair().await;
        let (_kill_tx, kill) = watch::channel(0);
        let seen_in = AtomicU64::new(0);
        let pumping = async {
            pump(
                &client_side,
                &server_side,
                Some(Duration::from_secs(10)),
                splice,
                kill,
                |n| {
                    seen_in.fetch_add(n, Ordering::Relaxed);
                },
                |_| {},
            )
            .await
        };
        // More than a buffer (and a pipe) holds, with a pattern that shows any reordering.
        let request: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let apps = async {
            client_app.write_all(&request).await.unwrap();
            client_app.shutdown().await.unwrap();
            let mut got = Vec::new();
            server_app.read_to_end(&mut got).await.unwrap();
            assert!(
                got == request,
                "the server sees all of it, then the end of stream"
            );
            server_app.write_all(b"late reply").await.unwrap();
            server_app.shutdown().await.unwrap();
            let mut reply = Vec::new();
            client_app.read_to_end(&mut reply).await.unwrap();
            assert_eq!(
                reply, b"late reply",
                "the other direction goes on after a half-close"
            );
        };
        let (totals, ()) = tokio::join!(pumping, apps);
        assert_eq!(totals.end, End::Done, "{splice:?}");
        assert_eq!(
            (totals.bytes_in, totals.bytes_out),
            (request.len() as u64, 10)
        );
        assert_eq!(seen_in.load(Ordering::Relaxed), request.len() as u64);
    }

    #[tokio::test]
    async fn an_idle_session_ends_after_the_timeout() {
        let (_client_app, client_side) = pair().await;
        let (server_side, _server_app) = pair().await;
        let (_kill_tx, kill) = watch::channel(0);
        let totals = pump(
            &client_side,
            &server_side,
            Some(Duration::from_millis(100)),
            Splice::default(),
            kill,
            |_| {},
            |_| {},
        )
        .await;
        assert_eq!(totals.end, End::Idle);
    }

    #[tokio::test]
    async fn a_killed_server_ends_its_sessions() {
        let (_client_app, client_side) = pair().await;
        let (server_side, _server_app) = pair().await;
        let (kill_tx, kill) = watch::channel(0);
        let killer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            kill_tx.send_modify(|g| *g += 1);
        };
        let (totals, ()) = tokio::join!(
            pump(
                &client_side,
                &server_side,
                None,
                Splice::default(),
                kill,
                |_| {},
                |_| {}
            ),
            killer
        );
        assert_eq!(totals.end, End::Killed);
    }
}
