//! `guest` may only log in from loopback. To connect from a non-loopback address without
//! touching the host's network, the test makes its own network namespace joined to the host by
//! a veth pair, runs the node on the host end, and re-runs this test binary inside the
//! namespace as the client (lapin). Needs root and iproute2, which the test command installs.

mod common;

use common::TestNode;
use lapin::{Connection, ConnectionProperties, ErrorKind};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "WARREN_NETNS_CLIENT_URL";

/// A namespace and veth pair, removed when dropped (even if the test fails).
struct Netns {
    name: String,
    host_if: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// Runs `ip` for cleanup, where "already gone" is fine.
fn quietly(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Netns {
    fn create(tag: u32) -> Netns {
        let name = format!("wrn-t{tag}");
        let host_if = format!("wrnh{tag}");
        let ns_if = format!("wrnn{tag}");
        // Leftovers of a crashed earlier run with the same id would make `add` fail.
        quietly(&["netns", "del", &name]);
        quietly(&["link", "del", &host_if]);
        let me = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", "10.231.7.1/30", "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            "10.231.7.2/30",
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        me
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        quietly(&["link", "del", &self.host_if]);
        quietly(&["netns", "del", &self.name]);
    }
}

#[tokio::test]
async fn guest_is_refused_from_a_non_loopback_address() {
    let ns = Netns::create(std::process::id() % 10_000);
    let node = TestNode::start_with(|c| c.amqp.listen = "10.231.7.1:0".parse().unwrap()).await;
    let url = format!("amqp://guest:guest@{}/%2f", node.addr);
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(&exe)
        .args(["--ignored", "--exact", "netns_client", "--nocapture"])
        .env(CHILD_ENV, &url)
        .output()
        .await
        .expect("run the client in the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REFUSED 403 ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."),
        "client output: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.shutdown().await;
}

/// The client half, run inside the namespace by the test above.
#[tokio::test]
#[ignore = "run by guest_is_refused_from_a_non_loopback_address inside its namespace"]
async fn netns_client() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    match Connection::connect(&url, ConnectionProperties::default()).await {
        Ok(_) => println!("CONNECTED"),
        Err(e) => match e.kind() {
            ErrorKind::ProtocolError(p) => println!("REFUSED {} {}", p.get_id(), p.get_message()),
            other => println!("ERROR {other:?}"),
        },
    }
}
