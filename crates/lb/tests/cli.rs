//! warren-lb as an operator runs it: `-c` checks a configuration like `haproxy -c`, sessions
//! are logged in HAProxy's tcplog shape, and SIGTERM stops it gracefully (no new sessions,
//! established ones go on until they end).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

fn lb_check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warren-lb"))
        .arg("-c")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run warren-lb -c");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_mode_accepts_the_seed_and_names_the_line_of_an_error() {
    let seed = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/seed/haproxy.cfg"
    ));
    let (code, out, err) = lb_check(seed);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Configuration file is valid");
    assert!(
        err.contains("[WARNING]"),
        "HAProxy's warnings for the seed: {err}"
    );
    assert!(err.contains("'option forwardfor' ignored for proxy 'rabbitmq_cluster'"));

    let dir = temp_dir("check");
    let bad = dir.join("bad.cfg");
    std::fs::write(
        &bad,
        "listen mq\n    bind 127.0.0.1:5672\n    balance uri\n",
    )
    .unwrap();
    let (code, out, err) = lb_check(&bad);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("[ALERT]"), "{err}");
    assert!(
        err.contains(&format!("parsing [{}:3]", bad.display())),
        "{err}"
    );
    assert!(err.contains("balance 'uri' is not supported"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The files under `examples/`, which the README points readers at, stay valid; the local one
/// is written for warren-lb and draws no warning either.
#[test]
fn check_mode_accepts_the_examples() {
    let examples = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"));
    for file in ["local/haproxy.cfg", "article/haproxy.cfg"] {
        let (code, out, err) = lb_check(&examples.join(file));
        assert_eq!(code, 0, "{file}: {err}");
        assert_eq!(out.trim(), "Configuration file is valid", "{file}");
        if file.starts_with("local/") {
            assert!(err.is_empty(), "{file}: {err}");
        }
    }
}

fn single_node_config(front: SocketAddr, node: &Node) -> String {
    format!(
        "listen mq
    bind {front}
    mode tcp
    log stderr local0
    option tcplog
    option dontlognull
    timeout connect 1s
    timeout client 1m
    timeout server 1m
    server node1 127.0.0.1:{}
",
        node.port
    )
}

#[test]
fn sessions_are_logged_in_haproxys_tcplog_shape() {
    let node = Node::start();
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = Lb::start(&single_node_config(front, &node), front);
    let mut s = TcpStream::connect(front).unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let mut start = [0u8; 7];
    s.read_exact(&mut start).unwrap();
    assert_eq!(start[0], 1, "connection.start arrives through the balancer");
    // A clean end: the client closes its half, the node closes the other.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let line = {
        let mut found = String::new();
        eventually("the session is logged", || {
            found = lb
                .stderr()
                .lines()
                .find(|l| l.starts_with(&format!("127.0.0.1:{} [", local.port())))
                .unwrap_or_default()
                .to_string();
            !found.is_empty()
        });
        found
    };
    // 127.0.0.1:40000 [25/Nov/2026:03:00:00.123] mq mq/node1 0/0/5 512 -- 1/1/0/0/0 0/0
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 9, "{line}");
    assert!(
        f[1].starts_with('[') && f[1].ends_with(']') && f[1].contains('/'),
        "{line}"
    );
    assert_eq!(f[2], "mq");
    assert_eq!(f[3], "mq/node1");
    assert_eq!(f[4].split('/').count(), 3, "Tw/Tc/Tt: {line}");
    assert!(
        f[5].parse::<u64>().unwrap() > 0,
        "bytes from the server: {line}"
    );
    assert_eq!(f[6], "--", "ended normally: {line}");
    assert_eq!(f[7].split('/').count(), 5, "{line}");

    // A connection that sends nothing is not logged (dontlognull).
    let before = lb.stderr().lines().count();
    drop(TcpStream::connect(front).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lb.stderr().lines().count(), before);
}

/// A TCP echo server on a loopback port, for as long as the test runs.
fn echo_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn echo(s: &mut TcpStream, word: &[u8]) -> Vec<u8> {
    s.write_all(word).unwrap();
    let mut back = vec![0u8; word.len()];
    s.read_exact(&mut back).unwrap();
    back
}

#[test]
fn sigterm_stops_accepting_and_lets_established_sessions_finish() {
    let server = echo_server();
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "listen echo\n    bind {front}\n    mode tcp\n    timeout connect 1s\n    timeout client 1m\n    timeout server 1m\n    server e 127.0.0.1:{server}\n"
    );
    let mut lb = Lb::start(&config, front);
    let mut s = TcpStream::connect(front).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The session is through the balancer before the signal.
    assert_eq!(echo(&mut s, b"before"), b"before");
    signal(&lb.child, nix::sys::signal::Signal::SIGTERM);
    eventually("new connections are refused", || {
        TcpStream::connect_timeout(&front, Duration::from_millis(200)).is_err()
    });
    assert_eq!(echo(&mut s, b"after"), b"after", "the session goes on");
    assert!(lb.child.try_wait().unwrap().is_none(), "still serving it");
    drop(s);
    eventually(
        "warren-lb exits once the session is over",
        || matches!(lb.child.try_wait(), Ok(Some(status)) if status.success()),
    );
}

#[test]
fn a_full_server_queues_new_sessions_until_room_or_timeout_queue() {
    let node = Node::start();
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "listen mq
    bind {front}
    mode tcp
    timeout connect 1s
    timeout client 1m
    timeout server 1m
    timeout queue 300ms
    server node1 127.0.0.1:{} maxconn 1
",
        node.port
    );
    let lb = Lb::start(&config, front);
    // The readiness probe's session may still hold the only slot for a moment.
    std::thread::sleep(Duration::from_millis(100));
    let handshake = |s: &mut TcpStream| -> bool {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
            return false;
        }
        let mut start = [0u8; 7];
        s.read_exact(&mut start).is_ok() && start[0] == 1
    };
    let mut first = TcpStream::connect(front).unwrap();
    assert!(handshake(&mut first), "the first session gets the server");
    // The second waits in the queue, and is closed when `timeout queue` passes.
    let mut second = TcpStream::connect(front).unwrap();
    assert!(!handshake(&mut second), "no server for the second session");
    // Once the first leaves, a queued session gets the slot.
    let mut third = TcpStream::connect(front).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(first);
    assert!(
        handshake(&mut third),
        "the queued session is served when room comes"
    );
    drop(lb);
}
