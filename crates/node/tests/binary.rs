//! The `warren` binary as an operator runs it: a TOML config file, flags on top, a clear
//! error for a broken config, and a clean stop on SIGTERM that tells clients why.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use common::RawClient;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use warren_amqp::Method;
use warren_amqp::constants::PROTOCOL_HEADER;

fn warren() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
    c.args(["--cluster-listen", "127.0.0.1:0"])
        .env("WARREN_COOKIE", "binary-test");
    c
}

/// Starts the binary and reads its log until it says where it listens.
fn start(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = warren()
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("warren exited before listening")
            .unwrap();
        if let Some(at) = line.find("local_addr=") {
            break line[at + "local_addr=".len()..].trim().parse().unwrap();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test]
async fn config_file_sets_the_tune_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("warren-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("warren.toml");
    std::fs::write(
        &cfg,
        "[amqp]\nlisten = \"127.0.0.1:1\"\nheartbeat = 7\nchannel_max = 99\n",
    )
    .unwrap();
    let data = dir.join("data");
    let (mut child, addr) = start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--amqp-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(data.is_dir(), "data directory created");
    let mut c = RawClient::connect(addr).await;
    c.send_raw(PROTOCOL_HEADER).await;
    c.method().await;
    c.send(
        0,
        common::start_ok("PLAIN", common::plain("guest", "guest")),
    )
    .await;
    match c.method().await {
        Method::ConnectionTune(t) => assert_eq!((t.heartbeat, t.channel_max), (7, 99)),
        other => panic!("expected tune, got {other:?}"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn sigterm_closes_clients_with_320_and_exits_cleanly() {
    let data = common::temp_data_dir();
    let (mut child, addr) = start(&[
        "--amqp-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let mut c = RawClient::open(addr).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    common::assert_connection_close(
        &c.method().await,
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        0,
        0,
    );
    c.send(0, warren_amqp::methods::ConnectionCloseOk {}.into())
        .await;
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warren still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
}

#[test]
fn broken_config_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("warren-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[amqp]\nframe_max = 12\n").unwrap();
    let out = warren()
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("frame_max must be 0 or at least 4096"),
        "stderr: {err}"
    );
    std::fs::write(&cfg, "[amqp]\nlisten = 5\n").unwrap();
    let out = warren()
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Two nodes on one data directory would take each other's queue logs for their own: the
/// second is refused, naming the first; once the first is gone, a node starts there again.
#[test]
fn a_data_directory_belongs_to_one_node_at_a_time() {
    let dir = common::temp_data_dir();
    let data = dir.to_str().unwrap().to_owned();
    let (mut first, _) = start(&["--amqp-listen", "127.0.0.1:0", "--data-dir", &data]);
    let out = warren()
        .args(["--amqp-listen", "127.0.0.1:0", "--data-dir", &data])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use by another process")
            && err.contains(&format!("pid {}", first.id())),
        "stderr: {err}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut again, _) = start(&["--amqp-listen", "127.0.0.1:0", "--data-dir", &data]);
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn a_listen_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = common::temp_data_dir();
    let out = warren()
        .args(["--amqp-listen", &addr, "--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")),
        "stderr: {err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
