//! What else moves the address, and what warren-vip tells the world when it does: a dead local
//! balancer (`track_warren_lb`), a tracked interface going down, unicast mode for networks
//! without multicast, and the notify scripts. Namespaces as in `failover.rs`.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(60);

fn vip() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_warren-vip"))
}

fn start(net: &mut Net, host: &str, text: &str) -> u32 {
    let path = net.config(&format!("{host}.conf"), text);
    net.spawn(host, vip(), &["-n", "-f", path.to_str().unwrap()])
}

fn only(net: &Net, host: &str) {
    eventually(&format!("only {host} holds the address"), SETTLE, || {
        net.holders() == [host.to_string()]
    });
}

#[test]
fn a_dead_local_balancer_moves_the_address() {
    let mut net = Net::new(2);
    // A stand-in for warren-lb on h1: something that accepts AMQP connections.
    let balancer = net.spawn(
        "h1",
        Path::new("python3"),
        &[
            "-c",
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',5672))\ns.listen(16)\nwhile True:\n    c,_=s.accept()\n    c.close()\n",
        ],
    );
    start(
        &mut net,
        "h1",
        &conf("MASTER", 100, "    track_warren_lb 127.0.0.1:5672", ""),
    );
    start(&mut net, "h2", &conf("BACKUP", 90, "", ""));
    only(&net, "h1");
    net.kill9(balancer);
    only(&net, "h2");
    eventually("h1 reports the fault", SETTLE, || {
        net.log("h1", vip()).contains("Entering FAULT STATE")
    });
}

#[test]
fn a_tracked_interface_going_down_faults_the_instance() {
    let mut net = Net::new(2);
    // A second link of h1's (a veth pair within h1), watched by the instance.
    net.ip_in(
        "h1",
        &[
            "link", "add", "uplink", "type", "veth", "peer", "name", "far-end",
        ],
    );
    net.ip_in("h1", &["link", "set", "far-end", "up"]);
    net.ip_in("h1", &["link", "set", "uplink", "up"]);
    start(
        &mut net,
        "h1",
        &conf(
            "MASTER",
            100,
            "    track_interface {\n        uplink\n    }",
            "",
        ),
    );
    start(&mut net, "h2", &conf("BACKUP", 90, "", ""));
    only(&net, "h1");
    net.ip_in("h1", &["link", "set", "uplink", "down"]);
    only(&net, "h2");
    net.ip_in("h1", &["link", "set", "uplink", "up"]);
    only(&net, "h1");
}

#[test]
fn unicast_peers_fail_over_without_multicast() {
    let mut net = Net::new(2);
    let peer = |me: &str, other: &str| {
        format!("    unicast_src_ip {me}\n    unicast_peer {{\n        {other}\n    }}")
    };
    let a = start(
        &mut net,
        "h1",
        &conf("MASTER", 100, &peer("10.200.0.1", "10.200.0.2"), ""),
    );
    start(
        &mut net,
        "h2",
        &conf("BACKUP", 90, &peer("10.200.0.2", "10.200.0.1"), ""),
    );
    only(&net, "h1");
    // Still one holder after a while: the backup hears the master by unicast.
    std::thread::sleep(Duration::from_secs(1));
    only(&net, "h1");
    net.kill9(a);
    only(&net, "h2");
}

#[test]
fn notify_scripts_run_on_each_transition() {
    let mut net = Net::new(2);
    let marks = net.dir.clone();
    let notify = |host: &str| {
        format!(
            "    notify_master \"touch {d}/{host}-master\"\n    notify_backup \"touch {d}/{host}-backup\"\n    notify \"{d}/record.sh\"",
            d = marks.display()
        )
    };
    std::fs::write(
        marks.join("record.sh"),
        format!("#!/bin/sh\necho \"$@\" >> {}/notify.log\n", marks.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", marks.join("record.sh").to_str().unwrap()])
        .status()
        .unwrap();
    let a = start(&mut net, "h1", &conf("MASTER", 100, &notify("h1"), ""));
    start(&mut net, "h2", &conf("BACKUP", 90, &notify("h2"), ""));
    only(&net, "h1");
    eventually("h1's notify_master ran", SETTLE, || {
        marks.join("h1-master").exists()
    });
    eventually("h2's notify_backup ran", SETTLE, || {
        marks.join("h2-backup").exists()
    });
    net.signal(a, nix::sys::signal::Signal::SIGTERM);
    eventually("h2's notify_master ran", SETTLE, || {
        marks.join("h2-master").exists()
    });
    // The generic `notify` script runs beside the specific ones, not before them: wait for
    // its lines too.
    let log = || std::fs::read_to_string(marks.join("notify.log")).unwrap_or_default();
    eventually(
        "the notify script recorded every transition",
        SETTLE,
        || {
            let l = log();
            l.contains("INSTANCE VI_AMQP MASTER 100")
                && l.contains("INSTANCE VI_AMQP BACKUP 90")
                && l.contains("INSTANCE VI_AMQP MASTER 90")
        },
    );
}

#[test]
fn addresses_left_behind_by_a_killed_instance_are_removed_at_start() {
    let mut net = Net::new(2);
    // As keepalived leaves it after kill -9: the address on h2, for ever.
    net.ip_in("h2", &["addr", "add", &format!("{VIP}/24"), "dev", "eth0"]);
    assert!(net.holds_vip("h2"));
    start(&mut net, "h1", &conf("MASTER", 100, "", ""));
    start(&mut net, "h2", &conf("BACKUP", 90, "", ""));
    only(&net, "h1");
}

/// `-t` looks the interfaces up where it runs, as keepalived does: h1 gets the seed's `vethA`.
fn with_article_interfaces(net: &Net) {
    net.ip_in(
        "h1",
        &[
            "link", "add", "vethA", "type", "veth", "peer", "name", "vethB",
        ],
    );
}

#[test]
fn check_mode_reads_the_seed_and_names_the_line_of_an_error() {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed/keepalived-A.conf");
    let net = Net::new(1);
    with_article_interfaces(&net);
    let out = net
        .exec("h1", vip())
        .args(["-t", "-f", seed])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 vrrp_instance(s), 1 vrrp_script(s)"));
    // Where there is no vethA, the same file is refused at its `interface` line.
    let out = net
        .exec("c", vip())
        .args(["-t", "-f", seed])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{seed}:20: interface vethA for vrrp_instance VI_AMQP doesn't exist"
        )),
        "{err}"
    );
    let bad = net.config("bad.conf", "vrrp_instance V {\n    priority 300\n}\n");
    let out = std::process::Command::new(vip())
        .args(["-t", "-f", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
}

/// The files under `examples/`, which the README points readers at, stay valid and draw no
/// warning on a host that has the interfaces they name (`eth0`, `vethA`, `vethB`: h1 here;
/// readers change them to their own, as the files' comments say).
#[test]
fn check_mode_accepts_the_examples() {
    let examples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"));
    let net = Net::new(1);
    with_article_interfaces(&net);
    for file in [
        "local/keepalived.conf",
        "article/keepalived-A.conf",
        "article/keepalived-B.conf",
    ] {
        let out = net
            .exec("h1", vip())
            .arg("-t")
            .arg("-f")
            .arg(examples.join(file))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file}: {err}");
        assert!(err.is_empty(), "{file}: {err}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 vrrp_instance(s)"),
            "{file}"
        );
    }
}
