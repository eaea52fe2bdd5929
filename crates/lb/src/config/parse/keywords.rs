//! The keywords of a proxy section (`listen`, `frontend`, `backend`, `defaults`): `bind`,
//! `mode`, `balance`, `server` with its check parameters, `timeout`, `option`, `stats`,
//! `maxconn`, `retries`, `log`, … Each either sets the proxy being built (or the template a
//! `defaults` section makes) or is an error naming the line.

use super::*;

/// One line inside `defaults`, `frontend`, `backend` or `listen`; `b` is the proxy being
/// built (none inside `defaults`).
pub(super) fn proxy_line(
    at: &Location,
    w: &[&str],
    section: &str,
    t: &mut Template,
    mut b: Option<&mut Building>,
) -> Result<(), ConfigError> {
    let kind = b.as_ref().map(|b| b.kind);
    let not_here = |what: &str| {
        err(
            at,
            format!("'{what}' is not allowed in a '{section}' section"),
        )
    };
    match w[0] {
        "bind" => {
            let Some(b) = b.as_deref_mut() else {
                return Err(not_here("bind"));
            };
            if !b.kind.accepts() {
                return Err(not_here("bind"));
            }
            let Some(addr) = w.get(1) else {
                return Err(err(at, "'bind' expects an address"));
            };
            if let Some(extra) = w.get(2) {
                return Err(err(
                    at,
                    format!("bind option '{extra}' is not supported by warren-lb"),
                ));
            }
            b.binds.extend(bind_addrs(at, addr)?);
        }
        "mode" => {
            t.mode = match one(at, w)? {
                "tcp" => Mode::Tcp,
                "http" => Mode::Http,
                other => {
                    return Err(err(
                        at,
                        format!("mode '{other}' is not supported (tcp or http)"),
                    ));
                }
            }
        }
        "balance" => {
            t.balance = match one(at, w)? {
                "roundrobin" => Balance::RoundRobin,
                "leastconn" => Balance::LeastConn,
                "source" => Balance::Source,
                "first" => Balance::First,
                other => {
                    return Err(err(
                        at,
                        format!(
                            "balance '{other}' is not supported (roundrobin, leastconn, source, first)"
                        ),
                    ));
                }
            }
        }
        "server" => {
            let Some(b) = b.as_deref_mut() else {
                return Err(not_here("server"));
            };
            if !b.kind.serves() {
                return Err(not_here("server"));
            }
            let (Some(name), Some(addr)) = (w.get(1), w.get(2)) else {
                return Err(err(at, "'server' expects <name> and <addr>:<port>"));
            };
            if b.servers.iter().any(|s| s.name == *name) {
                return Err(err(
                    at,
                    format!("server '{name}' is declared twice in '{}'", b.name),
                ));
            }
            let addr = server_addr(at, addr)?;
            let mut params = t.default_server.clone();
            server_params(at, &w[3..], &mut params)?;
            b.servers.push(Server {
                name: name.to_string(),
                addr,
                params,
                at: at.clone(),
            });
        }
        "default-server" => {
            if kind == Some(ProxyKind::Frontend) {
                return Err(not_here("default-server"));
            }
            server_params(at, &w[1..], &mut t.default_server)?;
        }
        "default_backend" => {
            if kind == Some(ProxyKind::Backend) {
                return Err(not_here("default_backend"));
            }
            t.default_backend = Some(one(at, w)?.to_string());
        }
        "use_backend" => {
            let Some(b) = b else {
                return Err(not_here("use_backend"));
            };
            if !b.kind.accepts() {
                return Err(not_here("use_backend"));
            }
            let Some(name) = w.get(1) else {
                return Err(err(at, "'use_backend' expects a backend name"));
            };
            if w.len() > 2 {
                return Err(err(
                    at,
                    "ACL conditions ('if'/'unless') are not supported by warren-lb; use one unconditional 'use_backend'",
                ));
            }
            b.use_backend = Some(name.to_string());
        }
        "timeout" => {
            let (Some(which), Some(value)) = (w.get(1), w.get(2)) else {
                return Err(err(at, "'timeout' expects <kind> <value>"));
            };
            let d =
                duration::parse(value).map_err(|m| err(at, format!("'timeout {which}': {m}")))?;
            let ts = &mut t.timeouts;
            match *which {
                "connect" => ts.connect = Some(d),
                "client" => ts.client = Some(d),
                "server" => ts.server = Some(d),
                "tunnel" => ts.tunnel = Some(d),
                "check" => ts.check = Some(d),
                "queue" => ts.queue = Some(d),
                "http-request" | "http-keep-alive" => {
                    note_http_only(&mut t.options, format!("timeout {which}"))
                }
                other => {
                    return Err(err(
                        at,
                        format!(
                            "'timeout {other}' is not supported (connect, client, server, tunnel, check, queue)"
                        ),
                    ));
                }
            }
        }
        "option" | "no" => option_line(at, w, t)?,
        "retries" => t.retries = number(at, w)?,
        "maxconn" => {
            if kind == Some(ProxyKind::Backend) {
                return Err(not_here("maxconn"));
            }
            t.maxconn = Some(number(at, w)?)
        }
        "log" => match w.get(1) {
            Some(&"global") => t.log_global = true,
            Some(_) => t.log.push(log_target(at, &w[1..])?),
            None => return Err(err(at, "'log' expects 'global' or a target")),
        },
        "stats" => stats_line(at, w, t)?,
        other => {
            return Err(err(
                at,
                format!(
                    "unknown keyword '{other}' in '{section}' section (not supported by warren-lb)"
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn note_http_only(o: &mut Options, what: String) {
    if !o.http_only.contains(&what) {
        o.http_only.push(what);
    }
}

pub(super) fn option_line(at: &Location, w: &[&str], t: &mut Template) -> Result<(), ConfigError> {
    let (on, rest) = if w[0] == "no" {
        if w.get(1) != Some(&"option") {
            return Err(err(at, "'no' is only supported before 'option'"));
        }
        (false, &w[2..])
    } else {
        (true, &w[1..])
    };
    let Some(name) = rest.first() else {
        return Err(err(at, "'option' expects a name"));
    };
    let o = &mut t.options;
    match *name {
        "tcplog" => t.log_format = if on { LogFormat::Tcp } else { LogFormat::None },
        "httplog" => t.log_format = if on { LogFormat::Http } else { LogFormat::None },
        "dontlognull" => o.dontlognull = on,
        "clitcpka" => o.clitcpka = on,
        "srvtcpka" => o.srvtcpka = on,
        "tcpka" => {
            o.clitcpka = on;
            o.srvtcpka = on;
        }
        "redispatch" => o.redispatch = on,
        "amqp-check" => o.amqp_check = on,
        "splice-request" => o.splice_request = on,
        "splice-response" => o.splice_response = on,
        // HAProxy splices when it judges it useful; for a TCP proxy that is both directions.
        "splice-auto" => {
            o.splice_request = on;
            o.splice_response = on;
        }
        "http-server-close"
        | "forwardfor"
        | "httpclose"
        | "http-keep-alive"
        | "http-pretend-keepalive"
        | "http-buffer-request" => {
            if on {
                note_http_only(o, format!("option {name}"));
            } else {
                o.http_only.retain(|x| x != &format!("option {name}"));
            }
        }
        other => {
            return Err(err(
                at,
                format!("'option {other}' is not supported by warren-lb"),
            ));
        }
    }
    Ok(())
}

pub(super) fn stats_line(at: &Location, w: &[&str], t: &mut Template) -> Result<(), ConfigError> {
    let stats = t.stats.get_or_insert_with(Stats::default);
    match w.get(1).copied() {
        Some("enable") => {}
        Some("uri") => {
            stats.uri = w
                .get(2)
                .ok_or_else(|| err(at, "'stats uri' expects a path"))?
                .to_string()
        }
        Some("auth") => {
            let pair = w
                .get(2)
                .ok_or_else(|| err(at, "'stats auth' expects <user>:<password>"))?;
            let Some((user, pass)) = pair.split_once(':') else {
                return Err(err(at, "'stats auth' expects <user>:<password>"));
            };
            stats.auth.push((user.to_string(), pass.to_string()));
        }
        Some("refresh") => {
            let v = w.get(2).copied().unwrap_or("");
            stats.refresh =
                Some(duration::parse(v).map_err(|m| err(at, format!("'stats refresh': {m}")))?);
        }
        Some("realm") => {
            stats.realm = w
                .get(2)
                .ok_or_else(|| err(at, "'stats realm' expects a name"))?
                .to_string()
        }
        Some(other) => {
            return Err(err(
                at,
                format!("'stats {other}' is not supported (enable, uri, auth, refresh, realm)"),
            ));
        }
        None => return Err(err(at, "'stats' expects a keyword")),
    }
    Ok(())
}

pub(super) fn server_params(
    at: &Location,
    w: &[&str],
    p: &mut ServerParams,
) -> Result<(), ConfigError> {
    let mut i = 0;
    let value = |i: usize, what: &str| -> Result<&str, ConfigError> {
        w.get(i + 1)
            .copied()
            .ok_or_else(|| err(at, format!("'{what}' expects a value")))
    };
    let time = |i: usize, what: &str| -> Result<std::time::Duration, ConfigError> {
        let v = value(i, what)?;
        let d = duration::parse(v).map_err(|m| err(at, format!("'{what}': {m}")))?;
        if d.is_zero() {
            return Err(err(at, format!("'{what}' must be greater than zero")));
        }
        Ok(d)
    };
    let count = |i: usize, what: &str, min: u32| -> Result<u32, ConfigError> {
        let v = value(i, what)?;
        match v.parse::<u32>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(err(
                at,
                format!("'{what}' expects a whole number of at least {min}, not '{v}'"),
            )),
        }
    };
    while i < w.len() {
        let k = w[i];
        match k {
            "check" => p.check = true,
            "no-check" => p.check = false,
            "backup" => p.backup = true,
            "disabled" => p.disabled = true,
            "enabled" => p.disabled = false,
            "inter" => {
                p.inter = time(i, k)?;
                i += 1;
            }
            "fastinter" => {
                p.fastinter = Some(time(i, k)?);
                i += 1;
            }
            "downinter" => {
                p.downinter = Some(time(i, k)?);
                i += 1;
            }
            "rise" => {
                p.rise = count(i, k, 1)?;
                i += 1;
            }
            "fall" => {
                p.fall = count(i, k, 1)?;
                i += 1;
            }
            "weight" => {
                let n = count(i, k, 0)?;
                if n > 256 {
                    return Err(err(at, "'weight' must be between 0 and 256"));
                }
                p.weight = n;
                i += 1;
            }
            "maxconn" => {
                p.maxconn = Some(count(i, k, 0)?).filter(|n| *n > 0);
                i += 1;
            }
            "on-marked-down" => {
                match value(i, k)? {
                    "shutdown-sessions" => p.shutdown_sessions = true,
                    other => {
                        return Err(err(
                            at,
                            format!(
                                "'on-marked-down {other}' is not supported (shutdown-sessions)"
                            ),
                        ));
                    }
                }
                i += 1;
            }
            other => {
                return Err(err(
                    at,
                    format!("server option '{other}' is not supported by warren-lb"),
                ));
            }
        }
        i += 1;
    }
    Ok(())
}

/// The options of `stats socket`; returns the file mode if one is given.
pub(super) fn socket_params(at: &Location, w: &[&str]) -> Result<Option<u32>, ConfigError> {
    let mut i = 0;
    let mut mode = None;
    while i < w.len() {
        match w[i] {
            "mode" => {
                let v = w.get(i + 1).copied().unwrap_or("");
                mode = Some(u32::from_str_radix(v, 8).map_err(|_| {
                    err(
                        at,
                        format!("'stats socket' mode '{v}' is not an octal number"),
                    )
                })?);
                i += 2;
            }
            "level" | "user" | "group" | "uid" | "gid" | "expose-fd" => i += 2,
            other => {
                return Err(err(
                    at,
                    format!("'stats socket' option '{other}' is not supported"),
                ));
            }
        }
    }
    if i > w.len() {
        return Err(err(at, "'stats socket' option without a value"));
    }
    Ok(mode)
}
