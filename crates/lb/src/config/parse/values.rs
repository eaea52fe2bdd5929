//! The values keywords take: a single word, a number, listening and server addresses (with
//! host names resolved as HAProxy resolves them at start), and log targets.

use super::*;

pub(super) fn one<'a>(at: &Location, w: &[&'a str]) -> Result<&'a str, ConfigError> {
    match w {
        [_, v] => Ok(v),
        [k] => Err(err(at, format!("'{k}' expects a value"))),
        [k, _, extra, ..] => Err(err(at, format!("unexpected '{extra}' after '{k}'"))),
        [] => Err(err(at, "empty line")),
    }
}

pub(super) fn number(at: &Location, w: &[&str]) -> Result<u32, ConfigError> {
    let v = one(at, w)?;
    v.parse()
        .map_err(|_| err(at, format!("'{}' expects a number, not '{v}'", w[0])))
}

/// `bind` addresses: `addr:port`, `:port` or `*:port` (every IPv4 address), `[v6]:port`,
/// a comma-separated list of those, and port ranges are not supported.
pub(super) fn bind_addrs(at: &Location, spec: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::new();
    for one in spec.split(',') {
        let (host, port) = split_port(at, one)?;
        let host = match host {
            "" | "*" | "0.0.0.0" => "0.0.0.0",
            "::" => "::",
            h => h,
        };
        out.extend(resolve(at, host, port)?);
    }
    Ok(out)
}

pub(super) fn server_addr(at: &Location, spec: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = split_port(at, spec)?;
    if port == 0 {
        return Err(err(at, format!("server address '{spec}' needs a port")));
    }
    resolve(at, host, port)?
        .into_iter()
        .next()
        .ok_or_else(|| err(at, format!("cannot resolve '{host}'")))
}

pub(super) fn split_port<'a>(at: &Location, spec: &'a str) -> Result<(&'a str, u16), ConfigError> {
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        let Some((h, p)) = rest.split_once("]:") else {
            return Err(err(at, format!("'{spec}': expected [address]:port")));
        };
        (h, p)
    } else {
        match spec.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => return Err(err(at, format!("'{spec}': missing port (address:port)"))),
        }
    };
    if port.contains('-') {
        return Err(err(at, format!("'{spec}': port ranges are not supported")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| err(at, format!("'{spec}': invalid port '{port}'")))?;
    Ok((host, port))
}

pub(super) fn resolve(
    at: &Location,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ConfigError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| err(at, format!("cannot resolve '{host}': {e}")))?
        .collect();
    // HAProxy takes the first address a name resolves to, preferring IPv4.
    let v4 = addrs.iter().find(|a| a.is_ipv4()).copied();
    Ok(v4.or(addrs.first().copied()).into_iter().collect())
}

/// `log <target> [len <n>] [format <f>] <facility> [<level> [<minlevel>]]`.
pub(super) fn log_target(at: &Location, w: &[&str]) -> Result<LogTarget, ConfigError> {
    let Some(target) = w.first() else {
        return Err(err(at, "'log' expects a target"));
    };
    let mut rest = &w[1..];
    while let [k, _, tail @ ..] = rest {
        if *k == "len" || *k == "format" || *k == "sample" {
            rest = tail;
        } else {
            break;
        }
    }
    let facility = match rest.first() {
        Some(f) => facility(f).ok_or_else(|| err(at, format!("unknown log facility '{f}'")))?,
        None => return Err(err(at, "'log' expects a facility (e.g. local0)")),
    };
    if let Some(level) = rest.get(1) {
        if !LEVELS.contains(level) {
            return Err(err(at, format!("unknown log level '{level}'")));
        }
    }
    Ok(match *target {
        "stderr" => LogTarget::Stderr,
        "stdout" => LogTarget::Stdout,
        t if t.starts_with('/') => LogTarget::Unix {
            path: t.into(),
            facility,
        },
        t => {
            let t = t.strip_prefix("udp@").unwrap_or(t);
            let addr = match split_port(at, t) {
                Ok((h, p)) => resolve(at, h, p)?,
                Err(_) => resolve(at, t, 514)?,
            };
            let addr = addr
                .into_iter()
                .next()
                .ok_or_else(|| err(at, format!("cannot resolve log server '{t}'")))?;
            LogTarget::Udp { addr, facility }
        }
    })
}

pub(super) const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

pub(super) fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
        "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
        "local5", "local6", "local7",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}
