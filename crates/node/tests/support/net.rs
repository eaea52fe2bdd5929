//! Hosts for tests, made with network namespaces: three, each in a namespace of its own
//! joined to a switch (a bridge in another namespace), and the test's own end of the switch
//! for its clients, on 10.201.0.0/24 with no route out. Cutting a host's cable leaves it
//! alone. Needs root and iproute2, which the test command installs; everything is removed when
//! the `Net` is dropped, even if the test fails.

use std::process::{Command, Stdio};

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces and cables, removed on drop.
pub struct Net {
    tag: String,
    spaces: Vec<String>,
    host_cable: String,
    /// `/etc/netns/<space>` directories written by [`Net::name_hosts`].
    etc: Vec<std::path::PathBuf>,
}

impl Net {
    /// A switch, hosts n1..n3 at 10.201.0.1..3, and this process at 10.201.0.100.
    pub fn new() -> Net {
        let tag = format!("wp{}", std::process::id() % 100_000);
        let mut net = Net {
            spaces: Vec::new(),
            host_cable: format!("{tag}h"),
            etc: Vec::new(),
            tag,
        };
        let sw = net.space("sw");
        ip(&["netns", "add", &sw]);
        net.spaces.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 1..=3 {
            let ns = net.space(&format!("n{i}"));
            ip(&["netns", "add", &ns]);
            net.spaces.push(ns.clone());
            let (a, b) = (format!("{}n{i}a", net.tag), net.cable(i));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &ns]);
            ip(&["link", "set", &b, "netns", &sw]);
            ip(&["-n", &ns, "link", "set", &a, "name", "eth0"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.201.0.{i}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &sw, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &b, "up"]);
        }
        // This process's end: its clients reach the nodes through the switch.
        let theirs = format!("{}s", net.tag);
        ip(&[
            "link",
            "add",
            &net.host_cable,
            "type",
            "veth",
            "peer",
            "name",
            &theirs,
        ]);
        ip(&["link", "set", &theirs, "netns", &sw]);
        ip(&["-n", &sw, "link", "set", &theirs, "master", "br0"]);
        ip(&["-n", &sw, "link", "set", &theirs, "up"]);
        ip(&["addr", "add", "10.201.0.100/24", "dev", &net.host_cable]);
        ip(&["link", "set", &net.host_cable, "up"]);
        net
    }

    /// Names hosts n1..n3 inside every host's namespace (`names[0]` is 10.201.0.1...), as
    /// /etc/hosts would on real hosts: `ip netns exec` reads `/etc/netns/<space>/hosts` in
    /// place of `/etc/hosts`.
    pub fn name_hosts(&mut self, names: &[&str]) {
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (i, name) in names.iter().enumerate() {
            hosts.push_str(&format!("10.201.0.{} {name}\n", i + 1));
        }
        for i in 1..=3 {
            let dir = std::path::Path::new("/etc/netns").join(self.space(&format!("n{i}")));
            std::fs::create_dir_all(&dir).expect("make /etc/netns/<space>");
            self.etc.push(dir.clone());
            std::fs::write(dir.join("hosts"), &hosts).expect("write a namespace's hosts");
        }
    }

    pub fn space(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// The switch's end of node `i`'s cable.
    fn cable(&self, i: usize) -> String {
        format!("{}n{i}b", self.tag)
    }

    /// Cuts node `i` off from everything (or joins it again).
    pub fn set_cable(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.space("sw"),
            "link",
            "set",
            &self.cable(i),
            state,
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_cable])
            .stderr(Stdio::null())
            .status();
        for ns in &self.spaces {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        for dir in &self.etc {
            let _ = std::fs::remove_dir_all(dir);
        }
        if !self.etc.is_empty() {
            // Only if empty: other namespaces may have files there.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}
