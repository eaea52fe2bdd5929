//! Moves bytes both ways between a client and its server until both sides are done. A side
//! that closes its sending half has that passed on (half-close), so protocols that finish one
//! direction first still work; an idle session ends after the idle timeout; the server being
//! marked down with `shutdown-sessions` ends it at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// HAProxy's default buffer size.
const BUF: usize = 16 * 1024;

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

/// Pumps until the session ends; `on_in` and `on_out` see each chunk's size as it passes.
pub async fn pump(
    client: &mut TcpStream,
    server: &mut TcpStream,
    idle: Option<Duration>,
    mut kill: watch::Receiver<u64>,
    on_in: impl Fn(u64),
    on_out: impl Fn(u64),
) -> Totals {
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    // When bytes last moved, in nanoseconds after `base` (shared by both directions).
    let base = Instant::now();
    let last = AtomicU64::new(0);
    let (moved_in, moved_out) = (AtomicU64::new(0), AtomicU64::new(0));
    let up = copy(&mut cr, &mut sw, (base, &last), (&moved_in, &on_in));
    let down = copy(&mut sr, &mut cw, (base, &last), (&moved_out, &on_out));
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

/// Copies one direction, counting into `moved` as it goes; passes the end of the stream on
/// as a half-close. False when the stream failed.
async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    (base, last): (Instant, &AtomicU64),
    (moved, seen): (&AtomicU64, &impl Fn(u64)),
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return true;
            }
            Ok(n) => n,
            Err(_) => return false,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
        moved.fetch_add(n as u64, Ordering::Relaxed);
        last.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        seen(n as u64);
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
        let (mut client_app, mut client_side) = pair().await;
        let (mut server_side, mut server_app) = pair().await;
        let (_kill_tx, kill) = watch::channel(0);
        let seen_in = AtomicU64::new(0);
        let pumping = async {
            pump(
                &mut client_side,
                &mut server_side,
                Some(Duration::from_secs(10)),
                kill,
                |n| {
                    seen_in.fetch_add(n, Ordering::Relaxed);
                },
                |_| {},
            )
            .await
        };
        let apps = async {
            client_app.write_all(b"request").await.unwrap();
            client_app.shutdown().await.unwrap();
            let mut got = Vec::new();
            server_app.read_to_end(&mut got).await.unwrap();
            assert_eq!(
                got, b"request",
                "the server sees the client's end of stream"
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
        assert_eq!(totals.end, End::Done);
        assert_eq!((totals.bytes_in, totals.bytes_out), (7, 10));
        assert_eq!(seen_in.load(Ordering::Relaxed), 7);
    }

    #[tokio::test]
    async fn an_idle_session_ends_after_the_timeout() {
        let (_client_app, mut client_side) = pair().await;
        let (mut server_side, _server_app) = pair().await;
        let (_kill_tx, kill) = watch::channel(0);
        let totals = pump(
            &mut client_side,
            &mut server_side,
            Some(Duration::from_millis(100)),
            kill,
            |_| {},
            |_| {},
        )
        .await;
        assert_eq!(totals.end, End::Idle);
    }

    #[tokio::test]
    async fn a_killed_server_ends_its_sessions() {
        let (_client_app, mut client_side) = pair().await;
        let (mut server_side, _server_app) = pair().await;
        let (kill_tx, kill) = watch::channel(0);
        let killer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            kill_tx.send_modify(|g| *g += 1);
        };
        let (totals, ()) = tokio::join!(
            pump(
                &mut client_side,
                &mut server_side,
                None,
                kill,
                |_| {},
                |_| {}
            ),
            killer
        );
        assert_eq!(totals.end, End::Killed);
    }
}
