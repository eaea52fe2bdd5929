//! Health checks, one task per checked server, with HAProxy's timing: every `inter` while the
//! server is steady, every `fastinter` while it is going up or down, every `downinter` while
//! it is down. A check is a TCP connect, or with `option amqp-check` the AMQP handshake's
//! first step: the server must answer the protocol header with `connection.start`.

use crate::backend::Backend;
use crate::log::Logger;
use crate::server::{Admin, CheckPhase, CheckResult, ServerState, Transition};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AMQP_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// How long each part of a check may take, by HAProxy's rule: with `timeout check`, the
/// connect gets min(timeout connect, inter) and the reply `timeout check`; without it, `inter`
/// covers the whole check.
#[derive(Debug, Clone, Copy)]
pub struct CheckTimeouts {
    pub connect: Duration,
    pub reply: Duration,
}

impl CheckTimeouts {
    pub fn new(inter: Duration, connect: Option<Duration>, check: Option<Duration>) -> Self {
        match check {
            Some(check) => CheckTimeouts {
                connect: connect.map_or(inter, |c| c.min(inter)),
                reply: check,
            },
            None => CheckTimeouts {
                connect: inter,
                reply: inter,
            },
        }
    }
}

/// Runs one check against `addr`.
pub async fn check_once(addr: SocketAddr, amqp: bool, t: CheckTimeouts) -> CheckResult {
    let started = Instant::now();
    let result = |code: &'static str, passed: bool, info: String| CheckResult {
        code,
        passed,
        info,
        duration: started.elapsed(),
    };
    let mut stream = match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
        Err(_) => return result("L4TOUT", false, "connect timed out".into()),
        Ok(Err(e)) => return result("L4CON", false, io_reason(&e)),
        Ok(Ok(s)) => s,
    };
    if !amqp {
        return result("L4OK", true, String::new());
    }
    let exchange = async {
        stream.write_all(AMQP_HEADER).await?;
        // A method frame header (7 bytes) and the class and method ids (4 more).
        let mut head = [0u8; 11];
        stream.read_exact(&mut head).await?;
        Ok::<[u8; 11], std::io::Error>(head)
    };
    let outcome = match tokio::time::timeout(t.reply, exchange).await {
        Err(_) => result("L7TOUT", false, "no reply to the AMQP header".into()),
        Ok(Err(e)) => result("L7RSP", false, io_reason(&e)),
        Ok(Ok(head)) => {
            let is_start = head[0] == 1
                && head[1..3] == [0, 0]
                && head[7..9] == 10u16.to_be_bytes()
                && head[9..11] == 10u16.to_be_bytes();
            if is_start {
                result("L7OK", true, "connection.start".into())
            } else if head.starts_with(b"AMQP") {
                result("L7RSP", false, "server refused the protocol version".into())
            } else {
                result("L7RSP", false, "reply is not connection.start".into())
            }
        }
    };
    // Closing without a word is how RabbitMQ sees any aborted handshake; nothing to clean up.
    drop(stream);
    outcome
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        std::io::ErrorKind::UnexpectedEof => "Connection closed by peer".into(),
        std::io::ErrorKind::ConnectionReset => "Connection reset by peer".into(),
        _ => e.to_string(),
    }
}

/// The check loop of one server, for the life of the process.
pub async fn run(backend: Arc<Backend>, server: Arc<ServerState>, log: Arc<Logger>) {
    let p = server.params.clone();
    let t = CheckTimeouts::new(p.inter, backend.timeouts.connect, backend.timeouts.check);
    // Spread the first checks of many servers over one interval, as HAProxy does.
    let spread = p.inter.mul_f64(jitter(&server.name));
    tokio::time::sleep(spread).await;
    loop {
        if server.admin() != Admin::Maint {
            let result = check_once(server.addr, backend.amqp_check, t).await;
            let reason = result.reason();
            let info = result.info.clone();
            let took = result.duration;
            match server.record(result) {
                Transition::None => {}
                Transition::WentUp => {
                    let (active, backup) = backend.active_up();
                    log.event(&format!(
                        "Server {}/{} is UP, reason: {reason}, check duration: {}ms. {active} active and {backup} backup servers online. 0 sessions requeued, 0 total in queue.",
                        backend.name,
                        server.name,
                        took.as_millis()
                    ));
                    backend.room.notify_waiters();
                }
                Transition::WentDown => {
                    let (active, backup) = backend.active_up();
                    let sessions = server.cur.load(std::sync::atomic::Ordering::Relaxed);
                    log.event(&format!(
                        "Server {}/{} is DOWN, reason: {reason}, info: \"{info}\", check duration: {}ms. {active} active and {backup} backup servers left. {sessions} sessions active, 0 requeued, 0 remaining in queue.",
                        backend.name,
                        server.name,
                        took.as_millis()
                    ));
                    if active == 0 && backup == 0 {
                        log.event(&format!(
                            "backend {} has no server available!",
                            backend.name
                        ));
                    }
                    if p.shutdown_sessions {
                        server.kill_sessions();
                    }
                }
            }
        }
        let wait = match server.check_phase() {
            CheckPhase::Steady => p.inter,
            CheckPhase::Transition => p.fastinter.unwrap_or(p.inter),
            CheckPhase::Down => p.downinter.unwrap_or(p.inter),
        };
        tokio::time::sleep(wait).await;
    }
}

/// A fraction in [0, 1) that differs between servers, without a random source.
fn jitter(name: &str) -> f64 {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    (h % 1000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn quick() -> CheckTimeouts {
        CheckTimeouts::new(Duration::from_secs(2), None, None)
    }

    #[test]
    fn timeouts_follow_haproxys_rule() {
        let inter = Duration::from_secs(5);
        let t = CheckTimeouts::new(inter, Some(Duration::from_secs(1)), None);
        assert_eq!(
            (t.connect, t.reply),
            (inter, inter),
            "without 'timeout check': inter"
        );
        let t = CheckTimeouts::new(
            inter,
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(t.connect, inter, "min(timeout connect, inter)");
        assert_eq!(t.reply, Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_refused_connect_fails_at_layer_4() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let r = check_once(addr, false, quick()).await;
        assert_eq!((r.code, r.passed), ("L4CON", false));
        assert_eq!(r.info, "Connection refused");
    }

    #[tokio::test]
    async fn a_listening_port_passes_the_tcp_check() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = check_once(l.local_addr().unwrap(), false, quick()).await;
        assert_eq!((r.code, r.passed), ("L4OK", true));
    }

    async fn server_replying(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut header = [0u8; 8];
                if s.read_exact(&mut header).await.is_ok() && header == *AMQP_HEADER {
                    let _ = s.write_all(reply).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_amqp_check_wants_connection_start() {
        // A method frame on channel 0 with class 10, method 10.
        let start: &[u8] = &[1, 0, 0, 0, 0, 0, 8, 0, 10, 0, 10, 0, 9, 0, 0, 0, 0xce];
        let r = check_once(server_replying(start).await, true, quick()).await;
        assert_eq!((r.code, r.passed), ("L7OK", true));

        let wrong_version = b"AMQP\x00\x00\x09\x01\x00\x00\x00";
        let r = check_once(server_replying(wrong_version).await, true, quick()).await;
        assert_eq!((r.code, r.passed), ("L7RSP", false));

        let short: &[u8] = b"HTTP/1.1";
        let r = check_once(server_replying(short).await, true, quick()).await;
        assert_eq!(
            (r.code, r.passed),
            ("L7RSP", false),
            "closed before a whole frame"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_at_layer_7() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = CheckTimeouts::new(
            Duration::from_millis(300),
            None,
            Some(Duration::from_millis(100)),
        );
        let r = check_once(l.local_addr().unwrap(), true, t).await;
        assert_eq!((r.code, r.passed), ("L7TOUT", false));
    }
}
