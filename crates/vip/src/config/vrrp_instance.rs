//! One `vrrp_instance` block, checked key by key: state, interface, router id, priority,
//! intervals, authentication, addresses, tracked scripts and interfaces, unicast peers and
//! notify scripts, with keepalived's rules and defaults.

use super::syntax::Node;
use super::{ConfigError, Exists, Instance, Tracked, VirtualAddress, version, weight};
use crate::packet::Version;
use std::net::Ipv4Addr;
use std::time::Duration;

pub(super) fn instance(
    n: &Node,
    default_version: Version,
    exists: Exists,
    warnings: &mut Vec<String>,
) -> Result<Instance, ConfigError> {
    let name = n.one()?.to_string();
    let mut i = Instance {
        name: name.clone(),
        initial_master: false,
        interface: String::new(),
        vrid: 0,
        priority: 100,
        interval: Duration::from_secs(1),
        version: default_version,
        preempt: true,
        preempt_delay: Duration::ZERO,
        auth_pass: None,
        addresses: Vec::new(),
        track_scripts: Vec::new(),
        track_interfaces: Vec::new(),
        unicast_src: None,
        unicast_peers: Vec::new(),
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify: None,
        track_lb: None,
    };
    let mut interval_at = None;
    let mut interface_at: Option<usize> = None;
    // keepalived 2.2.7 (`keepalived -t`) on a name this host lacks prints
    //   (FILE: Line 3) WARNING - interface nosuchif0 for vrrp_instance V doesn't exist
    //   Non-existent interface specified in configuration
    // and exits non-zero (5); the same for `dev` in virtual_ipaddress ("interface X for ip
    // address A/P doesn't exist") and in track_interface ("(V) tracked interface X doesn't
    // exist"). warren-vip refuses them alike, with its usual `FILE:LINE: message` and exit 1.
    let missing = |c: &Node, name: &str, what: &str| -> Result<(), ConfigError> {
        if exists(name) {
            Ok(())
        } else {
            Err(c.err(format!(
                "interface {name} for {what} doesn't exist on this host (`ip -br link` lists its interfaces)"
            )))
        }
    };
    for c in n.block()? {
        match c.key.as_str() {
            "state" => {
                i.initial_master = match c.one()? {
                    "MASTER" => true,
                    "BACKUP" => false,
                    v => return Err(c.err(format!("state must be MASTER or BACKUP, not '{v}'"))),
                }
            }
            "interface" => {
                // keepalived 2.2.7 takes a second `interface` line without a word and uses the
                // last one (`keepalived -t` exits 0); an instance runs on one interface, so
                // warren-vip refuses the second line rather than silently drop the first.
                if let Some(first) = interface_at {
                    return Err(c.err(format!(
                        "vrrp_instance {name} has a second 'interface' (the first is on line {first}); an instance runs on one interface"
                    )));
                }
                interface_at = Some(c.line);
                let v = c.one()?;
                missing(c, v, &format!("vrrp_instance {name}"))?;
                i.interface = v.to_string();
            }
            "virtual_router_id" => i.vrid = c.number(1..=255)?,
            "priority" => i.priority = c.number(1..=255)?,
            "advert_int" => {
                i.interval = c.seconds()?;
                interval_at = Some(c.clone());
            }
            // keepalived spells it `version` inside an instance, `vrrp_version` in global_defs.
            "version" | "vrrp_version" => i.version = version(c)?,
            "nopreempt" => {
                c.flag()?;
                i.preempt = false;
            }
            "preempt_delay" => i.preempt_delay = Duration::from_secs(c.number(0..=1000u64)?),
            "authentication" => {
                for a in c.block()? {
                    match a.key.as_str() {
                        "auth_type" => match a.one()? {
                            "PASS" => {}
                            "AH" => return Err(a.err("auth_type AH is not supported (use PASS)")),
                            v => return Err(a.err(format!("auth_type must be PASS, not '{v}'"))),
                        },
                        "auth_pass" => i.auth_pass = Some(a.one()?.to_string()),
                        other => {
                            return Err(
                                a.err(format!("'{other}' in authentication is not supported"))
                            );
                        }
                    }
                }
            }
            "virtual_ipaddress" => {
                for a in c.block()? {
                    let v = virtual_address(a)?;
                    if let Some(dev) = &v.dev {
                        missing(a, dev, &format!("ip address {}/{}", v.addr, v.prefix))?;
                    }
                    i.addresses.push(v);
                }
            }
            "track_script" => {
                for t in c.block()? {
                    i.track_scripts.push(tracked(t)?);
                }
            }
            "track_interface" => {
                for t in c.block()? {
                    let tr = tracked(t)?;
                    missing(
                        t,
                        &tr.name,
                        &format!("track_interface of vrrp_instance {name}"),
                    )?;
                    i.track_interfaces.push(tr);
                }
            }
            "unicast_src_ip" => i.unicast_src = Some(ip(c, c.one()?)?),
            "unicast_peer" => {
                for p in c.block()? {
                    if !p.args.is_empty() {
                        return Err(p.err("unicast_peer takes one address per line"));
                    }
                    i.unicast_peers.push(ip(p, &p.key)?);
                }
            }
            "notify_master" => i.notify_master = Some(c.args.join(" ")),
            "notify_backup" => i.notify_backup = Some(c.args.join(" ")),
            "notify_fault" => i.notify_fault = Some(c.args.join(" ")),
            "notify" => i.notify = Some(c.args.join(" ")),
            "track_warren_lb" => {
                let v = c.one()?;
                i.track_lb = Some(
                    v.parse()
                        .map_err(|_| c.err(format!("'{v}' is not address:port")))?,
                );
            }
            other => {
                return Err(c.err(format!(
                    "'{other}' in vrrp_instance is not supported by warren-vip"
                )));
            }
        }
    }
    if i.interface.is_empty() {
        return Err(n.err(format!("vrrp_instance {name} has no 'interface'")));
    }
    if i.vrid == 0 {
        return Err(n.err(format!("vrrp_instance {name} has no 'virtual_router_id'")));
    }
    if i.addresses.is_empty() {
        return Err(n.err(format!("vrrp_instance {name} has no 'virtual_ipaddress'")));
    }
    if let Some(at) = interval_at {
        let cs = i.interval.as_millis() / 10;
        match i.version {
            Version::V2 if i.interval.subsec_nanos() != 0 => {
                return Err(at.err("VRRP version 2 advertises whole seconds; use vrrp_version 3 for sub-second advert_int"));
            }
            Version::V3 if !(1..=4095).contains(&cs) => {
                return Err(
                    at.err("advert_int must be from 0.01 to 40.95 seconds in VRRP version 3")
                );
            }
            _ => {}
        }
    }
    if i.version == Version::V3 && i.auth_pass.is_some() {
        warnings.push(format!(
            "vrrp_instance {name}: VRRP version 3 has no authentication; 'authentication' is ignored"
        ));
        i.auth_pass = None;
    }
    Ok(i)
}

pub(super) fn ip(n: &Node, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse()
        .map_err(|_| n.err(format!("'{v}' is not an IPv4 address")))
}

pub(super) fn tracked(n: &Node) -> Result<Tracked, ConfigError> {
    let weight = match n.args.as_slice() {
        [] => None,
        [k, _] if k == "weight" => {
            let w = Node {
                key: "weight".into(),
                args: n.args[1..].to_vec(),
                block: None,
                file: n.file.clone(),
                line: n.line,
            };
            Some(weight(&w)?)
        }
        _ => return Err(n.err(format!("expected '{} [weight <n>]'", n.key))),
    };
    Ok(Tracked {
        name: n.key.clone(),
        weight,
    })
}

/// `10.200.0.100/24 dev vethA label vethA:1`
pub(super) fn virtual_address(n: &Node) -> Result<VirtualAddress, ConfigError> {
    let (addr, prefix) = match n.key.split_once('/') {
        Some((a, p)) => (
            a,
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| n.err(format!("bad prefix length in '{}'", n.key)))?,
        ),
        None => (n.key.as_str(), 32),
    };
    let mut v = VirtualAddress {
        addr: ip(n, addr)?,
        prefix,
        dev: None,
        label: None,
    };
    let mut words = n.args.iter();
    while let Some(k) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| n.err(format!("'{k}' expects a value")))?
            .clone();
        match k.as_str() {
            "dev" => v.dev = Some(value),
            "label" => v.label = Some(value),
            other => {
                return Err(n.err(format!("virtual address option '{other}' is not supported")));
            }
        }
    }
    Ok(v)
}
