//! warren-vip on two balancer hosts made of network namespaces, with a client that keeps
//! asking the virtual address who holds it: the master holds it; SIGKILL, SIGTERM, a cut link
//! and a failing check each move it to the backup; the old master coming back takes it again
//! (or not, with nopreempt); and once things settle only one host holds it. Needs root and
//! iproute2 (the test command installs it).

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;

fn vip() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_warren-vip"))
}

const SETTLE: Duration = Duration::from_secs(60);

/// h1 master at 100, h2 backup at 90; waits until the client reaches h1.
fn pair(net: &mut Net, h1_extra: &str, h2_extra: &str) -> (u32, u32) {
    let c1 = net.config("h1.conf", &conf("MASTER", 100, h1_extra, ""));
    let c2 = net.config("h2.conf", &conf("BACKUP", 90, h2_extra, ""));
    // h1 first: started together, the two timers run out within milliseconds of each other,
    // and with nopreempt whichever wins keeps the address.
    let a = net.spawn("h1", vip(), &["-n", "-f", c1.to_str().unwrap()]);
    eventually("h1 takes the address", SETTLE, || net.holds_vip("h1"));
    let b = net.spawn("h2", vip(), &["-n", "-f", c2.to_str().unwrap()]);
    eventually("the client reaches h1 through the address", SETTLE, || {
        net.probe().as_deref() == Some("h1")
    });
    (a, b)
}

fn settled_on(net: &Net, host: &str) {
    eventually(&format!("only {host} holds the address"), SETTLE, || {
        net.holders() == [host.to_string()]
    });
}

#[test]
fn sigkill_of_the_master_moves_the_address_and_the_dead_masters_copy_expires() {
    let mut net = Net::new(2);
    let (a, _b) = pair(&mut net, "", "");
    settled_on(&net, "h1");
    let log = net.start_prober();
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = prober_now(&log);
    net.kill9(a);
    eventually("the client reaches h2", SETTLE, || {
        net.probe().as_deref() == Some("h2")
    });
    // keepalived leaves the address on a killed master's interface; warren-vip's expires.
    settled_on(&net, "h2");
    std::thread::sleep(Duration::from_millis(200));
    let outage = outage_until(&log, killed_at, "h2").expect("the prober saw h2");
    eprintln!("outage after SIGKILL of the master (advert_int 0.1): {outage:.3} s");
}

#[test]
fn sigterm_of_the_master_hands_over_at_once() {
    let mut net = Net::new(2);
    let (a, _b) = pair(&mut net, "", "");
    net.signal(a, Signal::SIGTERM);
    eventually("the client reaches h2", SETTLE, || {
        net.probe().as_deref() == Some("h2")
    });
    settled_on(&net, "h2");
    eventually("h2 reports it is master", SETTLE, || {
        net.log("h2", vip()).contains("Entering MASTER STATE")
    });
    assert!(net.log("h1", vip()).contains("Entering INIT STATE"));
}

#[test]
fn a_cut_link_moves_the_address_and_the_master_takes_it_back_when_it_returns() {
    let mut net = Net::new(2);
    pair(&mut net, "", "");
    net.ip_in("h1", &["link", "set", "eth0", "down"]);
    eventually("the client reaches h2", SETTLE, || {
        net.probe().as_deref() == Some("h2")
    });
    net.ip_in("h1", &["link", "set", "eth0", "up"]);
    // The higher priority preempts when it hears the backup again.
    eventually("the client reaches h1 again", SETTLE, || {
        net.probe().as_deref() == Some("h1")
    });
    settled_on(&net, "h1");
}

#[test]
fn a_failing_check_lowers_the_masters_priority_and_the_backup_takes_over() {
    let mut net = Net::new(2);
    let flag = net.dir.join("balancer-down");
    let script = format!(
        "vrrp_script chk_lb {{\n    script \"test ! -e {}\"\n    interval 0.1\n    weight -20\n    fall 2\n    rise 2\n}}",
        flag.display()
    );
    let c1 = net.config(
        "h1.conf",
        &conf(
            "MASTER",
            100,
            "    track_script {\n        chk_lb\n    }",
            &script,
        ),
    );
    let c2 = net.config("h2.conf", &conf("BACKUP", 90, "", ""));
    net.spawn("h1", vip(), &["-n", "-f", c1.to_str().unwrap()]);
    net.spawn("h2", vip(), &["-n", "-f", c2.to_str().unwrap()]);
    eventually("the client reaches h1", SETTLE, || {
        net.probe().as_deref() == Some("h1")
    });
    std::fs::write(&flag, "").unwrap();
    eventually("the client reaches h2", SETTLE, || {
        net.probe().as_deref() == Some("h2")
    });
    settled_on(&net, "h2");
    std::fs::remove_file(&flag).unwrap();
    eventually("h1 preempts once its check passes", SETTLE, || {
        net.probe().as_deref() == Some("h1")
    });
    settled_on(&net, "h1");
}

#[test]
fn a_returning_master_preempts_unless_nopreempt() {
    let mut net = Net::new(2);
    let (a, _b) = pair(&mut net, "", "");
    net.kill9(a);
    eventually("h2 takes over", SETTLE, || {
        net.probe().as_deref() == Some("h2")
    });
    let c1 = net.dir.join("h1.conf");
    net.spawn("h1", vip(), &["-n", "-f", c1.to_str().unwrap()]);
    eventually("h1 preempts", SETTLE, || {
        net.probe().as_deref() == Some("h1")
    });
    settled_on(&net, "h1");

    let mut net = Net::new(2);
    // Slower adverts here: the test checks that h1 does not take over while h2 is alive, which
    // a pause of the busy machine longer than three 100 ms adverts could fake.
    let (a, _b) = pair(
        &mut net,
        "    nopreempt\n    advert_int 0.5",
        "    nopreempt\n    advert_int 0.5",
    );
    net.kill9(a);
    eventually("h2 takes over", SETTLE, || {
        net.probe().as_deref() == Some("h2")
    });
    let c1 = net.dir.join("h1.conf");
    net.spawn("h1", vip(), &["-n", "-f", c1.to_str().unwrap()]);
    // Give h1 ample time to (wrongly) take over.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(net.probe().as_deref(), Some("h2"), "nopreempt: h2 keeps it");
    settled_on(&net, "h2");
    assert!(
        net.log("h1", vip()).contains("Entering BACKUP STATE"),
        "{}",
        net.log("h1", vip())
    );
}
