//! keepalived.conf, the subset a VRRP virtual address needs: `global_defs`, `vrrp_script`,
//! `vrrp_instance` (with `authentication`, `virtual_ipaddress`, `track_script`,
//! `track_interface`, `unicast_peer`, `notify_*`) and `include`. The file is read into a tree
//! of blocks first; then each block is checked, and anything unknown or malformed is an error
//! naming the file and line.
//!
//! `parse_file`, what warren-vip runs for `-t` and at start, also looks every interface name up
//! on this host (in the network namespace it runs in), as keepalived does; `parse_str` reads a
//! text alone and looks no name up.

use crate::packet::Version;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// One statement: a keyword, its words, and the block that follows it if any.
#[derive(Debug, Clone)]
struct Node {
    key: String,
    args: Vec<String>,
    block: Option<Vec<Node>>,
    file: String,
    line: usize,
}

impl Node {
    fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    fn one(&self) -> Result<&str, ConfigError> {
        match self.args.as_slice() {
            [v] => Ok(v),
            [] => Err(self.err(format!("'{}' expects a value", self.key))),
            [_, extra, ..] => Err(self.err(format!("unexpected '{extra}' after '{}'", self.key))),
        }
    }

    fn number<T>(&self, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display,
    {
        let v = self.one()?;
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.err(format!(
                "'{}' expects a number from {} to {}, not '{v}'",
                self.key,
                range.start(),
                range.end()
            ))),
        }
    }

    fn seconds(&self) -> Result<Duration, ConfigError> {
        let v = self.one()?;
        match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s < 86_400.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(self.err(format!(
                "'{}' expects seconds (e.g. 1 or 0.1), not '{v}'",
                self.key
            ))),
        }
    }

    fn block(&self) -> Result<&[Node], ConfigError> {
        self.block
            .as_deref()
            .ok_or_else(|| self.err(format!("'{}' expects a {{ block }}", self.key)))
    }

    fn flag(&self) -> Result<(), ConfigError> {
        if self.args.is_empty() && self.block.is_none() {
            Ok(())
        } else {
            Err(self.err(format!("'{}' takes no value", self.key)))
        }
    }
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

fn read_nodes(path: &Path, depth: usize) -> Result<Vec<Node>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    tree(&path.display().to_string(), &text, dir, depth)
}

/// Words with their line numbers; `#` and `!` start comments, double quotes group words, and
/// braces are words of their own.
fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut word = String::new();
        let mut quoted = false;
        let mut in_word = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    in_word = true;
                }
                '#' | '!' if !quoted => break,
                '{' | '}' if !quoted => {
                    if in_word {
                        out.push((i + 1, std::mem::take(&mut word)));
                        in_word = false;
                    }
                    out.push((i + 1, c.to_string()));
                }
                c if c.is_whitespace() && !quoted => {
                    if in_word {
                        out.push((i + 1, std::mem::take(&mut word)));
                        in_word = false;
                    }
                }
                c => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            out.push((i + 1, word));
        }
    }
    out
}

fn tree(file: &str, text: &str, dir: &Path, depth: usize) -> Result<Vec<Node>, ConfigError> {
    let toks = tokens(text);
    let mut pos = 0;
    let nodes = block(file, &toks, &mut pos, dir, depth, false)?;
    Ok(nodes)
}

fn block(
    file: &str,
    toks: &[(usize, String)],
    pos: &mut usize,
    dir: &Path,
    depth: usize,
    nested: bool,
) -> Result<Vec<Node>, ConfigError> {
    let mut nodes = Vec::new();
    let err = |line: usize, m: String| ConfigError {
        file: file.to_string(),
        line,
        message: m,
    };
    while *pos < toks.len() {
        let (line, word) = &toks[*pos];
        *pos += 1;
        match word.as_str() {
            "}" if nested => return Ok(nodes),
            "}" => return Err(err(*line, "unmatched '}'".into())),
            "{" => return Err(err(*line, "'{' without a keyword before it".into())),
            _ => {}
        }
        let mut args = Vec::new();
        let mut child = None;
        // A statement's words are those on its own line (a block opens on the same line).
        while *pos < toks.len() && toks[*pos].0 == *line {
            let w = &toks[*pos].1;
            *pos += 1;
            if w == "{" {
                child = Some(block(file, toks, pos, dir, depth, true)?);
                break;
            }
            if w == "}" {
                *pos -= 1;
                break;
            }
            args.push(w.clone());
        }
        if child.is_none() && *pos < toks.len() && toks[*pos].1 == "{" {
            *pos += 1;
            child = Some(block(file, toks, pos, dir, depth, true)?);
        }
        if word == "include" {
            if depth > 8 {
                return Err(err(*line, "includes nested too deeply".into()));
            }
            for path in include_paths(dir, args.first().map(String::as_str).unwrap_or("")) {
                nodes.extend(read_nodes(&path, depth + 1)?);
            }
            continue;
        }
        nodes.push(Node {
            key: word.clone(),
            args,
            block: child,
            file: file.to_string(),
            line: *line,
        });
    }
    if nested {
        let line = toks.last().map_or(0, |t| t.0);
        return Err(err(line, "missing '}' at the end of the file".into()));
    }
    Ok(nodes)
}

/// `include` takes a path, relative to the including file, with `*` matching in its last part.
fn include_paths(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        dir.join(pattern)
    };
    let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        return vec![full];
    }
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let parent = full.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

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

fn instance(
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

fn ip(n: &Node, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse()
        .map_err(|_| n.err(format!("'{v}' is not an IPv4 address")))
}

fn tracked(n: &Node) -> Result<Tracked, ConfigError> {
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
fn virtual_address(n: &Node) -> Result<VirtualAddress, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../tests/seed/keepalived-A.conf");

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
