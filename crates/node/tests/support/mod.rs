//! Running `warren` processes for tests, as an operator runs them: each node on loopback with
//! its own data directory, its log read line by line, warrenctl pointed at it. Dropping a
//! node kills it and removes its directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "TEST-COOKIE-VALUE";

pub fn warrenctl_path() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_warren")).with_file_name("warrenctl");
    assert!(p.exists(), "build warrenctl first (cargo build --bins)");
    p
}

#[path = "../../../lb/tests/common/ports.rs"]
mod ports;
#[allow(unused_imports)]
pub use ports::free_port;

/// A directory of its own for a test node.
pub fn scratch_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "warren-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// How a node is started (kept, so that it can be started again the same way).
#[derive(Clone, Debug)]
pub struct Spec {
    /// `name@host`.
    pub name: String,
    /// 0: any.
    pub cluster_port: u16,
    /// A config file's text, written into the node's directory.
    pub config: Option<String>,
    pub dir: PathBuf,
    /// A network namespace to run in, and the node's address there (none: loopback).
    pub netns: Option<(String, String)>,
}

pub struct Node {
    pub child: Child,
    pub amqp: SocketAddr,
    pub cluster: SocketAddr,
    pub spec: Spec,
    /// The node's log lines, as they come.
    pub log: mpsc::Receiver<String>,
}

impl Node {
    /// A node alone, named `warren@localhost`.
    pub fn start() -> Node {
        Node::start_as(Spec {
            name: "warren@localhost".into(),
            cluster_port: 0,
            config: None,
            dir: scratch_dir("ctl"),
            netns: None,
        })
    }

    pub fn start_as(spec: Spec) -> Node {
        Node::start_with_cookie(spec, COOKIE)
    }

    /// [`Node::start_as`] with a cookie of its own (warrenctl calls still use [`COOKIE`]).
    pub fn start_with_cookie(spec: Spec, cookie: &str) -> Node {
        let mut cmd = spec.command(Path::new(env!("CARGO_BIN_EXE_warren")));
        let host = spec
            .netns
            .as_ref()
            .map_or("127.0.0.1", |(_, ip)| ip.as_str());
        // A node on a host of its own listens on AMQP's port, as a real host's would: a
        // balancer in front finds it there after a restart too.
        let amqp_port = if spec.netns.is_some() { 5672 } else { 0 };
        cmd.arg("--amqp-listen")
            .arg(format!("{host}:{amqp_port}"))
            .arg("--cluster-listen")
            .arg(format!("{host}:{}", spec.cluster_port))
            .args(["--node-name", &spec.name, "--data-dir"])
            .arg(spec.dir.join("data"));
        if let Some(text) = &spec.config {
            std::fs::create_dir_all(&spec.dir).unwrap();
            let path = spec.dir.join("warren.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd
            .env("WARREN_COOKIE", cookie)
            .env(
                "RUST_LOG",
                std::env::var("WARREN_TEST_RUST_LOG").unwrap_or("info,openraft=off".into()),
            )
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn warren");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr_in = |line: &str| -> SocketAddr {
            let at = line.find("local_addr=").unwrap() + "local_addr=".len();
            line[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (mut amqp, mut cluster) = (None, None);
        let mut early = Vec::new();
        while amqp.is_none() || cluster.is_none() {
            let line = lines.next().expect("warren exited while starting").unwrap();
            if line.contains("AMQP listener started") {
                amqp = Some(addr_in(&line));
            } else if line.contains("cluster listener started") {
                cluster = Some(addr_in(&line));
            }
            early.push(line);
        }
        let (tx, log) = mpsc::channel();
        // What the node said while starting is in its log too.
        for line in early {
            let _ = tx.send(line);
        }
        // WARREN_TEST_LOGS=1 shows every node's log, prefixed by its name.
        let echo = std::env::var_os("WARREN_TEST_LOGS").map(|_| spec.name.clone());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(name) = &echo {
                    eprintln!("[{name}] {line}");
                }
                let _ = tx.send(line);
            }
        });
        Node {
            child,
            amqp: amqp.unwrap(),
            cluster: cluster.unwrap(),
            spec,
            log,
        }
    }

    /// Kills the node with SIGKILL (nothing is written at the end), keeping its directory
    /// for a restart.
    pub fn kill(mut self) -> Stopped {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let spec = self.spec.clone();
        self.spec.dir = PathBuf::new();
        Stopped(Some(spec))
    }

    /// Kills the node with SIGKILL and starts it again on the same data directory.
    pub fn kill_and_restart(self) -> Node {
        self.kill().start()
    }

    /// How warrenctl names this node.
    pub fn name(&self) -> String {
        format!("{}:{}", self.spec.name, self.cluster.port())
    }

    /// Runs warrenctl against this node with `cookie`: exit code, stdout, stderr.
    pub fn ctl_with(&self, cookie: &str, args: &[&str]) -> (i32, String, String) {
        self.ctl_as(&self.name(), cookie, args)
    }

    /// Runs warrenctl where the node runs, naming it `-n name@host` alone, as on a host
    /// whose node listens on the default cluster port.
    pub fn ctl_by_name(&self, args: &[&str]) -> (i32, String, String) {
        self.ctl_as(&self.spec.name, COOKIE, args)
    }

    fn ctl_as(&self, node: &str, cookie: &str, args: &[&str]) -> (i32, String, String) {
        let out = self
            .spec
            .command(&warrenctl_path())
            .args(["-n", node])
            .args(args)
            .env("WARREN_COOKIE", cookie)
            .output()
            .expect("run warrenctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        self.ctl_with(COOKIE, args)
    }

    /// Waits up to `within` for a log line containing `what`.
    pub fn logged_within(&self, what: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(what) {
                return true;
            }
        }
        false
    }

    pub fn logged(&self, what: &str) -> bool {
        self.logged_within(what, Duration::from_secs(5))
    }
}

impl Spec {
    /// A command that runs `program` where the node runs (its namespace, if it has one).
    fn command(&self, program: &Path) -> Command {
        match &self.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// A node that was killed: its directory, until it starts again or this is dropped.
pub struct Stopped(Option<Spec>);

impl Stopped {
    pub fn start(mut self) -> Node {
        Node::start_as(self.0.take().expect("a stopped node's spec"))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(spec) = &self.0 {
            let _ = std::fs::remove_dir_all(&spec.dir);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.spec.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.spec.dir);
        }
    }
}

/// A lapin connection to the node as guest, and a channel on it.
pub async fn lapin_channel(amqp: SocketAddr) -> (lapin::Connection, lapin::Channel) {
    lapin_channel_at(&format!("amqp://guest:guest@{amqp}/%2f")).await
}

/// A lapin connection to `url`, and a channel on it.
pub async fn lapin_channel_at(url: &str) -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Publishes a persistent message to `queue` through the default exchange on a channel in
/// confirm mode, and checks that it was confirmed.
pub async fn publish_confirmed(ch: &lapin::Channel, queue: &str, body: &[u8]) {
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            persistent,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "a publish to {queue} was not confirmed");
}

/// Checks `f` every 100 ms for up to `within`.
pub fn eventually(what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(within(limit, f), "timed out waiting for {what}");
}

/// Whether `f` holds within `limit`, checked every 100 ms.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
pub mod cluster;
pub mod net;
