//! A small network made of namespaces for the VRRP tests: a switch (a bridge in its own
//! namespace), balancer hosts `h1`, `h2` (and more) and a client `c`, each joined to the
//! switch by a veth pair, on 10.200.0.0/24, with no route out. Everything is removed when the
//! network is dropped, even if the test fails. Each host runs a tiny TCP service that answers
//! with the host's name, so the client can tell who holds the virtual address.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const VIP: &str = "10.200.0.100";
pub const SERVICE_PORT: u16 = 7000;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Net {
    pub tag: String,
    hosts: Vec<String>,
    children: Vec<Child>,
    pub dir: PathBuf,
}

pub struct Host<'a> {
    pub net: &'a Net,
    pub name: String,
}

impl Net {
    /// Hosts h1..hN (balancers, at 10.200.0.1..N) and c (the client, at 10.200.0.50).
    pub fn new(balancers: usize) -> Net {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("v{}{n}", std::process::id() % 10_000);
        let dir = std::env::temp_dir().join(format!("warren-vip-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut net = Net {
            tag: tag.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
            dir,
        };
        let sw = net.ns("sw");
        let _ = Command::new("ip")
            .args(["netns", "del", &sw])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &sw]);
        net.hosts.push("sw".into());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let mut names: Vec<(String, String)> = (1..=balancers)
            .map(|i| (format!("h{i}"), format!("10.200.0.{i}/24")))
            .collect();
        names.push(("c".into(), "10.200.0.50/24".into()));
        for (host, addr) in names {
            let ns = net.ns(&host);
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", &ns]);
            net.hosts.push(host.clone());
            let a = format!("{tag}{host}a");
            let b = format!("{tag}{host}b");
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &ns]);
            ip(&["link", "set", &b, "netns", &sw]);
            ip(&["-n", &ns, "link", "set", &a, "name", "eth0"]);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &sw, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &b, "up"]);
        }
        for i in 1..=balancers {
            let host = format!("h{i}");
            let service = format!(
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{SERVICE_PORT}))\ns.listen(64)\nwhile True:\n    c,_=s.accept()\n    c.sendall(b'{host}')\n    c.close()\n"
            );
            let child = net
                .exec(&host, "python3")
                .args(["-c", &service])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the host's service");
            net.children.push(child);
        }
        net
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// A command to run inside `host`'s namespace.
    pub fn exec(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        c
    }

    pub fn ip_in(&self, host: &str, args: &[&str]) {
        let ns = self.ns(host);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Whether `host` has the virtual address on its interface.
    pub fn holds_vip(&self, host: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns(host), "-4", "addr", "show", "dev", "eth0"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    }

    /// The balancers that hold the address now.
    pub fn holders(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| h.starts_with('h'))
            .filter(|h| self.holds_vip(h))
            .cloned()
            .collect()
    }

    /// Asks the address once from the client: the name of the host that answered.
    pub fn probe(&self) -> Option<String> {
        let code = format!(
            "import socket\ns=socket.create_connection(('{VIP}',{SERVICE_PORT}),timeout=0.2)\nprint(s.recv(16).decode())"
        );
        let out = self
            .exec("c", "python3")
            .args(["-c", &code])
            .output()
            .ok()?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !name.is_empty()).then_some(name)
    }

    /// Starts a prober in the client that asks the address every 10 ms and writes one line per
    /// answer ("<seconds since start> <host>" or "<seconds> -") to a file.
    pub fn start_prober(&mut self) -> PathBuf {
        let out = self.dir.join("probe.log");
        let code = format!(
            "import socket,time,sys\nf=open('{}','w',buffering=1)\nt0=time.time()\nwhile True:\n    try:\n        s=socket.create_connection(('{VIP}',{SERVICE_PORT}),timeout=0.05)\n        r=s.recv(16).decode() or '-'\n        s.close()\n    except OSError:\n        r='-'\n    f.write('%.3f %s\\n'%(time.time()-t0,r))\n    time.sleep(0.01)\n",
            out.display()
        );
        let child = self
            .exec("c", "python3")
            .args(["-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the prober");
        self.children.push(child);
        out
    }

    /// Writes a config file for a host.
    pub fn config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// Starts a daemon in `host`; returns its pid. The network stops it when dropped.
    pub fn spawn(&mut self, host: &str, program: &Path, args: &[&str]) -> u32 {
        let log = std::fs::File::create(self.dir.join(format!("{host}-{}.log", short(program))))
            .expect("log file");
        let child = self
            .exec(host, program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a daemon in the namespace");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Sends `sig` to a daemon this network started.
    pub fn signal(&self, pid: u32, sig: nix::sys::signal::Signal) {
        if self.children.iter().any(|c| c.id() == pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// Waits until a daemon this network started has exited.
    pub fn wait(&mut self, pid: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.id() == pid) {
            let _ = c.wait();
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self, pid: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.id() == pid) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self, host: &str, program: &Path) -> String {
        std::fs::read_to_string(self.dir.join(format!("{host}-{}.log", short(program))))
            .unwrap_or_default()
    }
}

fn short(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(h)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting until {what}");
}

/// Reads the prober's log: the outage (from `after` seconds on) until `host` first answers.
pub fn outage_until(log: &Path, after: f64, host: &str) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|l| {
        let (t, who) = l.split_once(' ')?;
        let t: f64 = t.parse().ok()?;
        (t >= after && who == host).then_some(t - after)
    })
}

/// Seconds since the prober started, read from its last line.
pub fn prober_now(log: &Path) -> f64 {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .last()
                .and_then(|l| l.split(' ').next()?.parse().ok())
        })
        .unwrap_or(0.0)
}

/// A keepalived.conf for one host: VRRPv3, 100 ms adverts; `extra` goes into the instance,
/// `script` (a vrrp_script block) before it.
pub fn conf(state: &str, priority: u8, extra: &str, script: &str) -> String {
    format!(
        "global_defs {{
    router_id test
    vrrp_garp_master_delay 0
}}
{script}
vrrp_instance VI_AMQP {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    vrrp_version 3
{extra}
    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
}}
"
    )
}
