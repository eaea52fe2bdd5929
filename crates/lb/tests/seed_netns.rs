//! The article's haproxy.cfg, run as written: fixed ports (5672, 1080, nodes on 5673 and
//! 5674), `daemon`, `pidfile`, `chroot`, `user`, `stats socket`. The fixed ports live in a
//! network namespace the test creates (only its own loopback, no route out), so nothing on
//! the host is in the way. The test re-runs itself inside the namespace as the client.
//! Needs root and iproute2, which the test command installs.

mod common;

use common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "WARREN_LB_SEED_CLIENT";
const PIDFILE: &str = "/var/run/haproxy.pid";
const SOCKET: &str = "/var/lib/haproxy/stats";

fn seed() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed/haproxy.cfg")
}

struct Namespace(String);

impl Namespace {
    fn create() -> Namespace {
        let name = format!("wrn-lb{}", std::process::id() % 100_000);
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip netns add (needs root and iproute2)");
        let ok = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .expect("run ip")
            .success();
        assert!(ok);
        Namespace(name)
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The daemon we started, found by its pidfile; stopped on drop even if the test fails.
struct Daemon(Option<i32>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(PIDFILE);
        let _ = std::fs::remove_file(SOCKET);
    }
}

#[test]
fn the_seed_configuration_runs_as_written_against_two_warren_nodes() {
    if std::env::var(CHILD_ENV).is_ok() {
        return tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(client_side());
    }
    let ns = Namespace::create();
    let dirs = [temp_dir("seed-node1"), temp_dir("seed-node2")];
    let mut nodes = Vec::new();
    for (port, dir) in [5673, 5674].iter().zip(&dirs) {
        nodes.push(
            ns.command(&warren_bin())
                .arg("--amqp-listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(["--cluster-listen", "127.0.0.1:0"])
                .arg("--data-dir")
                .arg(dir)
                .env("WARREN_COOKIE", "balancer-test")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a node in the namespace"),
        );
    }
    // As written: `daemon` sends warren-lb to the background; the command returns at once.
    let _ = std::fs::remove_file(PIDFILE);
    let out = ns
        .command(Path::new(env!("CARGO_BIN_EXE_warren-lb")))
        .arg("-f")
        .arg(seed())
        .output()
        .expect("run warren-lb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut daemon = Daemon(None);
    eventually("the pidfile is written", || {
        daemon.0 = std::fs::read_to_string(PIDFILE)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        daemon.0.is_some()
    });

    let client = ns
        .command(&std::env::current_exe().expect("this test binary"))
        .args([
            "the_seed_configuration_runs_as_written_against_two_warren_nodes",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .status()
        .expect("run the client in the namespace");

    for mut n in nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    assert!(
        client.success(),
        "the client side failed (see its output above)"
    );
    drop(daemon);
}

async fn client_side() {
    // Only the nodes are probed. The balancer bound its ports before it wrote the pidfile
    // the parent waited for, and a probe of 5672 would itself be a session the balancer
    // places: under load it can be placed after the first client's, shifting the alternation.
    for port in [5673, 5674] {
        wait_for_port(([127, 0, 0, 1], port).into());
    }
    let through = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let mut held = Vec::new();
    for i in 0..4 {
        let conn = Connection::connect(through, ConnectionProperties::default())
            .await
            .expect("connect through the balancer");
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            format!("seed-{i}").as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
        held.push(conn);
    }
    let mut on_node1 = Vec::new();
    for i in 0..4 {
        let conn = Connection::connect(
            "amqp://guest:guest@127.0.0.1:5673/%2f",
            ConnectionProperties::default(),
        )
        .await
        .expect("connect to node1");
        let ch = conn.create_channel().await.expect("channel");
        let found = ch
            .queue_declare(
                format!("seed-{i}").as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok();
        on_node1.push(found);
    }
    assert!(
        on_node1 == [true, false, true, false] || on_node1 == [false, true, false, true],
        "connections alternate between the nodes: {on_node1:?}"
    );

    let stats = ([127, 0, 0, 1], 1080).into();
    assert_eq!(http_get(stats, "/haproxy_stats", None).0, 401);
    let (code, _, csv) = http_get(stats, "/haproxy_stats;csv", Some("admin:admin"));
    assert_eq!(code, 200);
    for node in ["node1", "node2"] {
        assert_eq!(
            csv_status(&csv, "rabbitmq_cluster", node).as_deref(),
            Some("UP"),
            "{csv}"
        );
    }
    let stat = control(Path::new(SOCKET), "show stat");
    assert!(stat.contains("\nrabbitmq_cluster,node1,"), "{stat}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(held);
}
