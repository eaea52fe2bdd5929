//! Interoperation with keepalived (Debian's package) in one virtual router, VRRP versions 2
//! (with keepalived's simple-text authentication) and 3: each side accepts the other as
//! master (only one holds the address), and each fails over to the other. Also measures
//! keepalived's own takeover after SIGKILL of its master with the seed's `advert_int 1`.
//! Needs root, iproute2 and keepalived (the test command installs them).

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

fn vip() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warren-vip"))
}

fn keepalived() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/keepalived");
    assert!(
        p.exists(),
        "keepalived is not installed (apt-get install keepalived)"
    );
    p
}

fn conf(version: u8, state: &str, priority: u8) -> String {
    let (interval, auth) = if version == 2 {
        (
            "1",
            "    authentication {\n        auth_type PASS\n        auth_pass amqpvip1\n    }\n",
        )
    } else {
        // Sub-second, as version 3 allows, but with room for a busy machine's pauses: the
        // test checks that no one takes over while the master is alive.
        ("0.5", "")
    };
    format!(
        "global_defs {{
    router_id {state}{priority}
    vrrp_garp_master_delay 0
}}
vrrp_instance VI_AMQP {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {interval}
    version {version}
{auth}    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
}}
"
    )
}

/// keepalived runs its VRRP work in a child process, which is not ours to wait for: this
/// stops the children named in the pid files when the test ends, even if it fails.
struct VrrpChildren(Vec<PathBuf>);

impl VrrpChildren {
    fn kill9(&self) {
        for f in &self.0 {
            if let Some(pid) = std::fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for VrrpChildren {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts keepalived (VRRP only, in the foreground, its own pid files) in `host`.
fn start_keepalived(net: &mut Net, host: &str, config: &Path, children: &mut VrrpChildren) -> u32 {
    let pid = net.dir.join(format!("{host}-keepalived.pid"));
    let vrrp_pid = net.dir.join(format!("{host}-vrrp.pid"));
    children.0.push(vrrp_pid.clone());
    let args = [
        "--dont-fork",
        "--log-console",
        "--vrrp",
        "--use-file",
        config.to_str().unwrap(),
        "--pid",
        pid.to_str().unwrap(),
        "--vrrp_pid",
        vrrp_pid.to_str().unwrap(),
    ];
    net.spawn(host, &keepalived(), &args)
}

fn reaches(net: &Net, host: &str) {
    eventually(&format!("the client reaches {host}"), SETTLE, || {
        net.probe().as_deref() == Some(host)
    });
}

fn only(net: &Net, host: &str) {
    eventually(&format!("only {host} holds the address"), SETTLE, || {
        net.holders() == [host.to_string()]
    });
}

/// keepalived master, warren-vip backup; then the other way round.
fn interoperate(version: u8) {
    keepalived_master(version);
    warren_vip_master(version);
}

fn keepalived_master(version: u8) {
    let mut net = Net::new(2);
    // Declared after the network, so dropped before it (while its pid files still exist).
    let mut kids = VrrpChildren(Vec::new());
    let k = net.config("k.conf", &conf(version, "MASTER", 100));
    let w = net.config("w.conf", &conf(version, "BACKUP", 90));
    let kpid = start_keepalived(&mut net, "h1", &k, &mut kids);
    net.spawn("h2", &vip(), &["-n", "-f", w.to_str().unwrap()]);
    reaches(&net, "h1");
    only(&net, "h1");
    // warren-vip accepts keepalived's advertisements: it stays backup. (At startup both may
    // time out together and warren-vip be master for a moment, until keepalived's higher
    // priority is heard: that is VRRP.)
    let masters = |net: &Net| net.log("h2", &vip()).matches("Entering MASTER").count();
    let before = masters(&net);
    std::thread::sleep(Duration::from_secs(3));
    only(&net, "h1");
    assert_eq!(masters(&net), before, "{}", net.log("h2", &vip()));
    // keepalived stops: warren-vip takes over.
    net.signal(kpid, Signal::SIGTERM);
    net.wait(kpid);
    reaches(&net, "h2");
    only(&net, "h2");
    // keepalived returns with the higher priority and preempts: warren-vip yields to it.
    start_keepalived(&mut net, "h1", &k, &mut kids);
    reaches(&net, "h1");
    only(&net, "h1");
}

fn warren_vip_master(version: u8) {
    let mut net = Net::new(2);
    let mut kids = VrrpChildren(Vec::new());
    let w = net.config("w.conf", &conf(version, "MASTER", 100));
    let k = net.config("k.conf", &conf(version, "BACKUP", 90));
    let wpid = net.spawn("h1", &vip(), &["-n", "-f", w.to_str().unwrap()]);
    start_keepalived(&mut net, "h2", &k, &mut kids);
    reaches(&net, "h1");
    only(&net, "h1");
    // keepalived accepts warren-vip's advertisements (and authentication): one holder.
    std::thread::sleep(Duration::from_secs(3));
    only(&net, "h1");
    net.kill9(wpid);
    reaches(&net, "h2");
    only(&net, "h2");
}

#[test]
fn keepalived_and_warren_vip_fail_over_to_each_other_with_vrrp_version_2() {
    interoperate(2);
}

#[test]
fn keepalived_and_warren_vip_fail_over_to_each_other_with_vrrp_version_3() {
    interoperate(3);
}

#[test]
fn keepalived_takeover_after_sigkill_with_the_seeds_advert_int() {
    let mut net = Net::new(2);
    let mut kids = VrrpChildren(Vec::new());
    let a = net.config("a.conf", &conf(2, "MASTER", 100));
    let b = net.config("b.conf", &conf(2, "BACKUP", 90));
    let master = start_keepalived(&mut net, "h1", &a, &mut kids);
    start_keepalived(&mut net, "h2", &b, &mut kids);
    reaches(&net, "h1");
    only(&net, "h1");
    let log = net.start_prober();
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = prober_now(&log);
    // Both of keepalived's processes die, as with kill -9 of the service or the OOM killer.
    VrrpChildren(vec![net.dir.join("h1-vrrp.pid")]).kill9();
    net.kill9(master);
    reaches(&net, "h2");
    std::thread::sleep(Duration::from_millis(200));
    let outage = outage_until(&log, killed_at, "h2").expect("the prober saw h2");
    eprintln!("keepalived, advert_int 1: outage after SIGKILL of the master {outage:.3} s");
    // keepalived leaves the address on the killed master's interface.
    assert!(
        net.holds_vip("h1"),
        "keepalived leaves its address behind after kill -9"
    );
}
