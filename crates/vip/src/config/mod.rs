//! keepalived.conf, the subset a VRRP virtual address needs: `global_defs`, `vrrp_script`,
//! `vrrp_instance` (with `authentication`, `virtual_ipaddress`, `track_script`,
//! `track_interface`, `unicast_peer`, `notify_*`) and `include`. The file is read into a tree
//! of blocks first; then each block is checked, and anything unknown or malformed is an error
//! naming the file and line.
//!
//! `parse_file`, what warren-vip runs for `-t` and at start, also looks every interface name up
//! on this host (in the network namespace it runs in), as keepalived does; `parse_str` reads a
//! text alone and looks no name up.

mod syntax;
mod vrrp_instance;

use crate::packet::Version;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use syntax::{Node, read_nodes, tree};
use vrrp_instance::instance;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub router_id: Option<String>,
    pub garp_master_repeat: u32,
    pub garp_master_delay: Duration,
    pub scripts: Vec<TrackScript>,
    pub instances: Vec<Instance>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackScript {
    pub name: String,
    pub script: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualAddress {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub dev: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub name: String,
    /// None: use the script's own weight (or, for an interface, fault when it is down).
    pub weight: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub initial_master: bool,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub interval: Duration,
    pub version: Version,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub auth_pass: Option<String>,
    pub addresses: Vec<VirtualAddress>,
    pub track_scripts: Vec<Tracked>,
    pub track_interfaces: Vec<Tracked>,
    pub unicast_src: Option<Ipv4Addr>,
    pub unicast_peers: Vec<Ipv4Addr>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify: Option<String>,
    /// warren's extension: the instance tracks a local warren-lb at this address
    /// (`track_warren_lb 127.0.0.1:5672`), faulting when it stops accepting connections.
    pub track_lb: Option<std::net::SocketAddr>,
}

/// Reads `path` (and what it includes) and refuses interface names this host does not have.
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let nodes = read_nodes(path, 0)?;
    interpret(&nodes, &interface_exists)
}

/// Reads `text` alone: interface names are taken as written, not looked up on this host.
pub fn parse_str(file: &str, text: &str) -> Result<Config, ConfigError> {
    let nodes = tree(file, text, Path::new("."), 0)?;
    interpret(&nodes, &|_| true)
}

/// Whether this host (this network namespace) has an interface of that name.
pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// Whether an interface name exists where the configuration will run.
type Exists<'a> = &'a dyn Fn(&str) -> bool;

fn interpret(nodes: &[Node], exists: Exists) -> Result<Config, ConfigError> {
    let mut cfg = Config {
        garp_master_repeat: 5,
        garp_master_delay: Duration::from_secs(5),
        ..Config::default()
    };
    let mut default_version = Version::V2;
    for n in nodes {
        match n.key.as_str() {
            "global_defs" => {
                for g in n.block()? {
                    match g.key.as_str() {
                        "router_id" => cfg.router_id = Some(g.one()?.to_string()),
                        "enable_script_security" => g.flag()?,
                        "script_user" => {
                            if g.args.is_empty() || g.args.len() > 2 {
                                return Err(g.err("'script_user' expects <user> [<group>]"));
                            }
                        }
                        "vrrp_garp_master_repeat" => cfg.garp_master_repeat = g.number(0..=100)?,
                        "vrrp_garp_master_delay" => {
                            cfg.garp_master_delay = Duration::from_secs(g.number(0..=3600u64)?)
                        }
                        "vrrp_version" => default_version = version(g)?,
                        other => {
                            return Err(g.err(format!(
                                "'{other}' in global_defs is not supported by warren-vip"
                            )));
                        }
                    }
                }
            }
            "vrrp_script" => cfg.scripts.push(script(n)?),
            "vrrp_instance" => {
                cfg.instances
                    .push(instance(n, default_version, exists, &mut cfg.warnings)?)
            }
            other => {
                return Err(n.err(format!("'{other}' is not supported by warren-vip")));
            }
        }
    }
    for i in &cfg.instances {
        for t in &i.track_scripts {
            if !cfg.scripts.iter().any(|s| s.name == t.name) {
                return Err(ConfigError {
                    file: String::new(),
                    line: 0,
                    message: format!(
                        "vrrp_instance {} tracks script '{}', which is not defined",
                        i.name, t.name
                    ),
                });
            }
        }
    }
    for (k, a) in cfg.instances.iter().enumerate() {
        if cfg.instances[..k]
            .iter()
            .any(|b| b.vrid == a.vrid && b.interface == a.interface)
        {
            return Err(ConfigError {
                file: String::new(),
                line: 0,
                message: format!(
                    "two instances use virtual_router_id {} on {}",
                    a.vrid, a.interface
                ),
            });
        }
    }
    Ok(cfg)
}

fn version(n: &Node) -> Result<Version, ConfigError> {
    match n.one()? {
        "2" => Ok(Version::V2),
        "3" => Ok(Version::V3),
        v => Err(n.err(format!("vrrp_version must be 2 or 3, not '{v}'"))),
    }
}

fn script(n: &Node) -> Result<TrackScript, ConfigError> {
    let name = n.one()?.to_string();
    let mut s = TrackScript {
        name,
        script: String::new(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        weight: 0,
        rise: 1,
        fall: 1,
    };
    for c in n.block()? {
        match c.key.as_str() {
            "script" => s.script = c.args.join(" "),
            "interval" => s.interval = c.seconds()?,
            "timeout" => s.timeout = c.seconds()?,
            "weight" => s.weight = weight(c)?,
            "rise" => s.rise = c.number(1..=1000)?,
            "fall" => s.fall = c.number(1..=1000)?,
            "user" => {}
            other => {
                return Err(c.err(format!("'{other}' in vrrp_script is not supported")));
            }
        }
    }
    if s.script.is_empty() {
        return Err(n.err(format!("vrrp_script {} has no 'script'", s.name)));
    }
    Ok(s)
}

fn weight(n: &Node) -> Result<i32, ConfigError> {
    let v = n
        .args
        .first()
        .ok_or_else(|| n.err("'weight' expects a number"))?;
    match v.parse::<i32>() {
        Ok(w) if (-253..=253).contains(&w) => Ok(w),
        _ => Err(n.err(format!("weight must be from -253 to 253, not '{v}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/seed/keepalived-A.conf");

    #[test]
    fn the_seed_configuration_reads_as_written() {
        let cfg = parse_str("keepalived-A.conf", SEED).expect("valid");
        assert_eq!(cfg.router_id.as_deref(), Some("lbA"));
        let s = &cfg.scripts[0];
        assert_eq!(s.name, "chk_haproxy");
        assert_eq!(s.script, "/usr/bin/killall -0 haproxy");
        assert_eq!((s.weight, s.rise, s.fall), (-20, 2, 2));
        assert_eq!(s.interval, Duration::from_secs(1));
        let i = &cfg.instances[0];
        assert_eq!(i.name, "VI_AMQP");
        assert!(i.initial_master);
        assert_eq!(
            (i.interface.as_str(), i.vrid, i.priority),
            ("vethA", 51, 100)
        );
        assert_eq!(i.interval, Duration::from_secs(1));
        assert_eq!(i.version, Version::V2, "keepalived's default");
        assert_eq!(i.auth_pass.as_deref(), Some("amqpvip1"));
        assert_eq!(
            i.addresses,
            [VirtualAddress {
                addr: Ipv4Addr::new(10, 200, 0, 100),
                prefix: 24,
                dev: Some("vethA".into()),
                label: None
            }]
        );
        assert_eq!(
            i.track_scripts,
            [Tracked {
                name: "chk_haproxy".into(),
                weight: None
            }]
        );
        assert!(i.preempt);
    }

    #[test]
    fn the_rest_of_the_subset() {
        let cfg = parse_str(
            "t.conf",
            "global_defs {\n vrrp_version 3\n vrrp_garp_master_repeat 2\n}\nvrrp_script chk { script \"/bin/true\"\n weight 10 }\nvrrp_instance V {\n state BACKUP\n interface eth0\n virtual_router_id 7\n priority 90\n advert_int 0.1\n nopreempt\n preempt_delay 5\n virtual_ipaddress {\n  10.0.0.9\n }\n track_script {\n  chk weight -30\n }\n track_interface {\n  eth1\n }\n unicast_src_ip 10.0.0.1\n unicast_peer {\n  10.0.0.2\n  10.0.0.3\n }\n notify_master \"/etc/k/master.sh arg\"\n notify_fault /etc/k/fault.sh\n track_warren_lb 127.0.0.1:5672\n}\n",
        )
        .expect("valid");
        assert_eq!(cfg.garp_master_repeat, 2);
        let i = &cfg.instances[0];
        assert_eq!(i.version, Version::V3);
        assert_eq!(i.interval, Duration::from_millis(100));
        assert!(!i.preempt);
        assert_eq!(i.preempt_delay, Duration::from_secs(5));
        assert_eq!(i.addresses[0].prefix, 32);
        assert_eq!(i.track_scripts[0].weight, Some(-30));
        assert_eq!(i.track_interfaces[0].name, "eth1");
        assert_eq!(i.unicast_peers.len(), 2);
        assert_eq!(i.notify_master.as_deref(), Some("/etc/k/master.sh arg"));
        assert_eq!(i.track_lb, Some("127.0.0.1:5672".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "vrrp_instance V {\n interface e\n virtual_router_id 300\n}\n",
                3,
                "from 1 to 255",
            ),
            (
                "vrrp_instance V {\n interface e\n frobnicate\n}\n",
                3,
                "'frobnicate' in vrrp_instance",
            ),
            (
                "vrrp_instance V {\n state LEADER\n}\n",
                2,
                "MASTER or BACKUP",
            ),
            (
                "vrrp_instance V {\n interface e\n virtual_router_id 1\n advert_int 0.5\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n",
                4,
                "version 2 advertises whole seconds",
            ),
            (
                "vrrp_instance V {\n authentication {\n auth_type AH\n }\n}\n",
                3,
                "AH is not supported",
            ),
            (
                "vrrp_instance V {\n virtual_ipaddress {\n 10.0.0.300/24\n }\n}\n",
                3,
                "not an IPv4 address",
            ),
            (
                "virtual_server 10.0.0.1 80 {\n}\n",
                1,
                "not supported by warren-vip",
            ),
            ("vrrp_instance V {\n interface e\n", 2, "missing '}'"),
            ("}\n", 1, "unmatched"),
        ];
        for (text, line, message) in cases {
            let e = parse_str("bad.conf", text).expect_err(text);
            assert_eq!(
                (e.file.as_str(), e.line),
                ("bad.conf", *line),
                "{text:?}: {e}"
            );
            assert!(e.message.contains(message), "{text:?}: {e}");
        }
    }

    #[test]
    fn include_reads_files_relative_to_the_including_one() {
        let dir = std::env::temp_dir().join(format!("warren-vip-include-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(
            dir.join("conf.d/10-script.conf"),
            "vrrp_script chk {\n script \"/bin/true\"\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("conf.d/20-instance.conf"),
            "vrrp_instance V {\n interface lo\n virtual_router_id 9\n virtual_ipaddress {\n 10.0.0.9\n }\n track_script {\n chk\n }\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "global_defs {\n router_id x\n}\ninclude conf.d/*.conf\n",
        )
        .unwrap();
        let cfg = parse_file(&dir.join("main.conf")).expect("valid");
        assert_eq!(cfg.scripts.len(), 1);
        assert_eq!(cfg.instances[0].vrid, 9);
        std::fs::write(dir.join("conf.d/30-bad.conf"), "\nbogus_keyword\n").unwrap();
        let e = parse_file(&dir.join("main.conf")).unwrap_err();
        assert!(e.file.ends_with("30-bad.conf") && e.line == 2, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_interface_line_is_refused_with_its_line() {
        let e = parse_str(
            "two.conf",
            "vrrp_instance V {\n interface eth0\n state MASTER\n interface eth1\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n",
        )
        .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("two.conf", 4), "{e}");
        assert!(
            e.message
                .contains("vrrp_instance V has a second 'interface' (the first is on line 2)"),
            "{e}"
        );
        // Even when both lines name the same interface.
        let e = parse_str(
            "t",
            "vrrp_instance V {\n interface e\n interface e\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        // One per instance: two instances may each name theirs.
        let one = "vrrp_instance A {\n interface e\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n";
        parse_str(
            "t",
            &format!("{one}{}", one.replace("A {", "B {").replace(" 1\n", " 2\n")),
        )
        .expect("valid");
    }

    #[test]
    fn interfaces_this_host_lacks_are_refused_when_reading_a_file() {
        assert!(interface_exists("lo") && !interface_exists("nosuchif0"));
        let dir = std::env::temp_dir().join(format!("warren-vip-iface-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("k.conf");
        let text = |iface: &str, dev: &str, track: &str| {
            format!(
                "vrrp_instance V {{\n state MASTER\n interface {iface}\n virtual_router_id 1\n virtual_ipaddress {{\n  10.0.0.1/24 dev {dev}\n }}\n track_interface {{\n  {track}\n }}\n}}\n"
            )
        };
        std::fs::write(&file, text("lo", "lo", "lo")).unwrap();
        let cfg = parse_file(&file).expect("lo exists everywhere");
        assert_eq!(cfg.instances[0].interface, "lo");
        let cases = [
            (
                text("nosuchif0", "lo", "lo"),
                3,
                "interface nosuchif0 for vrrp_instance V doesn't exist",
            ),
            (
                text("lo", "nosuchif0", "lo"),
                6,
                "interface nosuchif0 for ip address 10.0.0.1/24 doesn't exist",
            ),
            (
                text("lo", "lo", "nosuchif0"),
                9,
                "interface nosuchif0 for track_interface of vrrp_instance V doesn't exist",
            ),
        ];
        for (t, line, message) in cases {
            std::fs::write(&file, &t).unwrap();
            let e = parse_file(&file).expect_err(&t);
            assert_eq!(
                (e.file.as_str(), e.line),
                (file.to_str().unwrap(), line),
                "{e}"
            );
            assert!(e.message.contains(message), "{e}");
        }
        // The text alone names no host: parse_str takes any name.
        assert!(parse_str("k.conf", &text("nosuchif0", "nosuchif0", "nosuchif0")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn undefined_scripts_and_duplicate_routers_are_refused() {
        let e = parse_str("t", "vrrp_instance V {\n interface e\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.1\n }\n track_script {\n nope\n }\n}\n").unwrap_err();
        assert!(e.message.contains("'nope', which is not defined"), "{e}");
        let one = "vrrp_instance A {\n interface e\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n";
        let e = parse_str("t", &format!("{one}{}", one.replace("A {", "B {"))).unwrap_err();
        assert!(
            e.message.contains("two instances use virtual_router_id 1"),
            "{e}"
        );
    }
}
