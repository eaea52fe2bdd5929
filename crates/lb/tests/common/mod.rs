//! Fixtures for the balancer's tests: warren nodes as real processes (so that they can be
//! killed, paused and restarted), warren-lb as a real process on a generated configuration,
//! and small clients for its statistics page and runtime socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "ports.rs"]
mod ports;
pub use ports::free_port;

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warren-lb-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The node binary, built with the workspace's binaries (`cargo build --bins`, which the
/// test command runs first).
pub fn warren_bin() -> PathBuf {
    let lb = PathBuf::from(env!("CARGO_BIN_EXE_warren-lb"));
    let bin = lb.with_file_name("warren");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --bins)",
        bin.display()
    );
    bin
}

pub fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).expect("signal our own child");
}

fn spawn_node(port: u16, dir: &Path) -> Child {
    let child = Command::new(warren_bin())
        .arg("--amqp-listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--cluster-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .env("WARREN_COOKIE", "balancer-test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start warren");
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)));
    child
}

/// A warren node in its own process.
pub struct Node {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn start() -> Node {
        Node::start_on(free_port(), temp_dir("node"))
    }

    pub fn start_on(port: u16, dir: PathBuf) -> Node {
        Node {
            port,
            dir: dir.clone(),
            child: Some(spawn_node(port, &dir)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c, nix::sys::signal::Signal::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c, nix::sys::signal::Signal::SIGCONT);
        }
    }

    /// The same node again, on the same port and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.child = Some(spawn_node(self.port, &self.dir));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c, nix::sys::signal::Signal::SIGCONT);
        }
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// warren-lb in its own process, in the foreground (`-db`).
pub struct Lb {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Lb {
    /// Starts warren-lb on `config` and waits until `ready` accepts connections.
    pub fn start(config: &str, ready: SocketAddr) -> Lb {
        let dir = temp_dir("lb");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("write config");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_warren-lb"))
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start warren-lb");
        wait_for_port(ready);
        Lb {
            child,
            dir,
            config: path,
        }
    }

    /// What warren-lb wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP/1.0 GET; returns the status code, headers and body.
pub fn http_get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the stats listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(user_pass) = auth {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(user_pass);
        req.push_str(&format!("Authorization: Basic {b}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// One command on the runtime socket.
pub fn control(path: &Path, cmd: &str) -> String {
    let mut s =
        std::os::unix::net::UnixStream::connect(path).expect("connect to the runtime socket");
    s.write_all(format!("{cmd}\n").as_bytes())
        .expect("send command");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read answer");
    out
}

/// The `status` field of one server in HAProxy's CSV.
pub fn csv_status(csv: &str, proxy: &str, server: &str) -> Option<String> {
    let header: Vec<&str> = csv
        .lines()
        .next()?
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    csv.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        (f.get(px) == Some(&proxy) && f.get(sv) == Some(&server)).then(|| f[st].to_string())
    })
}

/// Waits (up to a generous guard) until `f` holds; returns how long it took.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting until {what}");
}
