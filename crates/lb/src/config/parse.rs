//! The haproxy.cfg reader: one pass over the lines, one section at a time. A `defaults`
//! section is a template that every proxy declared after it starts from, until the next
//! `defaults` replaces it, which is how HAProxy inherits settings.

use super::duration;
use super::lexer::words;
use super::*;
use std::net::ToSocketAddrs;
use std::path::Path;

pub fn parse_file(paths: &[impl AsRef<Path>]) -> Result<Config, ConfigError> {
    let mut p = Parser::default();
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            at: None,
            message: format!("cannot read '{}': {e}", path.display()),
        })?;
        p.feed(&path.display().to_string(), &text)?;
    }
    p.finish()
}

pub fn parse_str(file: &str, text: &str) -> Result<Config, ConfigError> {
    let mut p = Parser::default();
    p.feed(file, text)?;
    p.finish()
}

#[derive(Default)]
enum Section {
    #[default]
    None,
    Global,
    Defaults,
    Proxy,
}

/// Where a proxy's log format came from, for HAProxy's httplog warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LogFormat {
    #[default]
    None,
    Tcp,
    Http,
}

/// What a `defaults` section sets, and what each proxy starts from.
#[derive(Debug, Clone)]
struct Template {
    mode: Mode,
    balance: Balance,
    timeouts: Timeouts,
    options: Options,
    log_format: LogFormat,
    retries: u32,
    maxconn: Option<u32>,
    log: Vec<LogTarget>,
    log_global: bool,
    default_server: ServerParams,
    default_backend: Option<String>,
    stats: Option<Stats>,
}

impl Default for Template {
    fn default() -> Self {
        Template {
            mode: Mode::Tcp,
            balance: Balance::RoundRobin,
            timeouts: Timeouts::default(),
            // Unlike HAProxy, warren-lb splices unless told not to (`no option splice-auto`):
            // bytes then go socket to socket without a copy through user space.
            options: Options {
                splice_request: true,
                splice_response: true,
                ..Options::default()
            },
            log_format: LogFormat::None,
            retries: 3,
            maxconn: None,
            log: Vec::new(),
            log_global: false,
            default_server: ServerParams::default(),
            default_backend: None,
            stats: None,
        }
    }
}

struct Building {
    name: String,
    kind: ProxyKind,
    at: Location,
    binds: Vec<SocketAddr>,
    t: Template,
    servers: Vec<Server>,
    use_backend: Option<String>,
}

#[derive(Default)]
struct Parser {
    section: Section,
    global: Global,
    defaults: Template,
    current: Option<Building>,
    proxies: Vec<(Proxy, bool)>,
    warnings: Vec<String>,
}

fn err(at: &Location, message: impl Into<String>) -> ConfigError {
    ConfigError {
        at: Some(at.clone()),
        message: message.into(),
    }
}

impl Parser {
    fn feed(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        for (i, line) in text.lines().enumerate() {
            let at = Location {
                file: file.to_string(),
                line: i + 1,
            };
            let w = words(line).map_err(|m| err(&at, m))?;
            if w.is_empty() {
                continue;
            }
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            self.line(&at, &w)?;
        }
        Ok(())
    }

    fn line(&mut self, at: &Location, w: &[&str]) -> Result<(), ConfigError> {
        match w[0] {
            "global" => {
                self.close_proxy();
                self.section = Section::Global;
                Ok(())
            }
            "defaults" => {
                self.close_proxy();
                self.section = Section::Defaults;
                // A new defaults section starts from scratch, not from the previous one.
                self.defaults = Template::default();
                Ok(())
            }
            "frontend" | "backend" | "listen" => self.open_proxy(at, w),
            "userlist" | "peers" | "resolvers" | "mailers" | "program" | "cache" | "ring"
            | "http-errors" => Err(err(
                at,
                format!("section '{}' is not supported by warren-lb", w[0]),
            )),
            _ => match self.section {
                Section::None => Err(err(
                    at,
                    format!("unknown keyword '{}' out of section", w[0]),
                )),
                Section::Global => self.global_line(at, w),
                Section::Defaults => {
                    let mut t = std::mem::take(&mut self.defaults);
                    let r = proxy_line(at, w, "defaults", &mut t, None);
                    self.defaults = t;
                    r
                }
                Section::Proxy => {
                    let Some(mut b) = self.current.take() else {
                        return Err(err(at, "no proxy section open"));
                    };
                    let kind = section_name(b.kind);
                    let mut t = std::mem::take(&mut b.t);
                    let r = proxy_line(at, w, kind, &mut t, Some(&mut b));
                    b.t = t;
                    self.current = Some(b);
                    r
                }
            },
        }
    }

    fn open_proxy(&mut self, at: &Location, w: &[&str]) -> Result<(), ConfigError> {
        self.close_proxy();
        let kind = match w[0] {
            "frontend" => ProxyKind::Frontend,
            "backend" => ProxyKind::Backend,
            _ => ProxyKind::Listen,
        };
        let Some(name) = w.get(1) else {
            return Err(err(at, format!("'{}' expects <name> as argument", w[0])));
        };
        if self.proxies.iter().any(|(p, _)| p.name == *name) {
            return Err(err(at, format!("proxy '{name}' is declared twice")));
        }
        let mut binds = Vec::new();
        if let Some(addr) = w.get(2) {
            if kind != ProxyKind::Listen {
                return Err(err(
                    at,
                    format!("'{}' takes only a name; use 'bind' for addresses", w[0]),
                ));
            }
            binds = bind_addrs(at, addr)?;
            if w.len() > 3 {
                return Err(err(at, format!("unexpected '{}' after the address", w[3])));
            }
        }
        self.current = Some(Building {
            name: name.to_string(),
            kind,
            at: at.clone(),
            binds,
            t: self.defaults.clone(),
            servers: Vec::new(),
            use_backend: None,
        });
        self.section = Section::Proxy;
        Ok(())
    }

    fn close_proxy(&mut self) {
        if let Some(b) = self.current.take() {
            let mut log = b.t.log.clone();
            if b.t.log_global {
                log.extend(self.global.log.iter().cloned());
            }
            let mut options = b.t.options.clone();
            options.tcplog = b.t.log_format != LogFormat::None;
            let http_log = b.t.log_format == LogFormat::Http;
            self.proxies.push((
                Proxy {
                    name: b.name,
                    kind: b.kind,
                    at: b.at,
                    binds: b.binds,
                    mode: b.t.mode,
                    balance: b.t.balance,
                    timeouts: b.t.timeouts,
                    options,
                    retries: b.t.retries,
                    maxconn: b.t.maxconn,
                    log,
                    default_server: b.t.default_server,
                    servers: b.servers,
                    default_backend: b.t.default_backend,
                    use_backend: b.use_backend,
                    stats: b.t.stats,
                },
                http_log,
            ));
        }
        self.section = Section::None;
    }

    fn global_line(&mut self, at: &Location, w: &[&str]) -> Result<(), ConfigError> {
        let g = &mut self.global;
        match w[0] {
            "log" => {
                if w.get(1) == Some(&"global") {
                    return Err(err(at, "'log global' is only valid in a proxy section"));
                }
                g.log.push(log_target(at, &w[1..])?);
            }
            "chroot" => g.chroot = Some(one(at, w)?.into()),
            "pidfile" => g.pidfile = Some(one(at, w)?.into()),
            "maxconn" => g.maxconn = Some(number(at, w)?),
            "user" => g.user = Some(one(at, w)?.to_string()),
            "group" => g.group = Some(one(at, w)?.to_string()),
            "daemon" => g.daemon = true,
            "nbthread" => {
                let n = number(at, w)?;
                if !(1..=256).contains(&n) {
                    return Err(err(at, "'nbthread' must be from 1 to 256"));
                }
                g.nbthread = Some(n);
            }
            "stats" => match w.get(1) {
                Some(&"socket") => {
                    let Some(path) = w.get(2) else {
                        return Err(err(at, "'stats socket' expects a path"));
                    };
                    if path.contains(':') && !path.starts_with('/') {
                        return Err(err(
                            at,
                            "'stats socket' on a TCP address is not supported; give a UNIX socket path",
                        ));
                    }
                    g.stats_socket_mode = socket_params(at, &w[3..])?;
                    g.stats_socket = Some(path.into());
                }
                Some(&"timeout") => {
                    duration::parse(w.get(2).copied().unwrap_or(""))
                        .map_err(|m| err(at, format!("'stats timeout': {m}")))?;
                }
                _ => {
                    return Err(err(
                        at,
                        "'stats' in 'global' supports 'socket' and 'timeout'",
                    ));
                }
            },
            other => {
                return Err(err(
                    at,
                    format!("unknown keyword '{other}' in 'global' section"),
                ));
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        self.close_proxy();
        let names: Vec<(String, ProxyKind)> = self
            .proxies
            .iter()
            .map(|(p, _)| (p.name.clone(), p.kind))
            .collect();
        let mut proxies = Vec::new();
        for (p, http_log) in self.proxies {
            validate(&p, &names, http_log, &mut self.warnings)?;
            proxies.push(p);
        }
        Ok(Config {
            global: self.global,
            proxies,
            warnings: self.warnings,
        })
    }
}

fn section_name(kind: ProxyKind) -> &'static str {
    match kind {
        ProxyKind::Frontend => "frontend",
        ProxyKind::Backend => "backend",
        ProxyKind::Listen => "listen",
    }
}

/// Checks a whole proxy once its section is read, and adds HAProxy's warnings for it.
fn validate(
    p: &Proxy,
    names: &[(String, ProxyKind)],
    http_log: bool,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let kind = section_name(p.kind);
    if p.kind.accepts() && p.binds.is_empty() {
        return Err(err(
            &p.at,
            format!(
                "{kind} '{}' has no 'bind' directive. Please declare it as a backend if this was intended",
                p.name
            ),
        ));
    }
    for target in [&p.default_backend, &p.use_backend].into_iter().flatten() {
        match names.iter().find(|(n, _)| n == target) {
            Some((_, k)) if k.serves() => {}
            Some(_) => {
                return Err(err(
                    &p.at,
                    format!("proxy '{}': '{target}' is not a backend", p.name),
                ));
            }
            None => {
                return Err(err(
                    &p.at,
                    format!(
                        "proxy '{}': unable to find required backend '{target}'",
                        p.name
                    ),
                ));
            }
        }
    }
    match p.mode {
        Mode::Http => {
            if p.stats.is_none() || !p.servers.is_empty() || p.use_backend.is_some() {
                return Err(err(
                    &p.at,
                    format!(
                        "{kind} '{}': 'mode http' is supported only for the statistics page (stats uri, no servers); AMQP traffic needs 'mode tcp'",
                        p.name
                    ),
                ));
            }
            if p.stats.as_ref().is_some_and(|s| s.auth.is_empty()) {
                return Err(err(
                    &p.at,
                    format!(
                        "{kind} '{}': the statistics page needs 'stats auth <user>:<password>'",
                        p.name
                    ),
                ));
            }
        }
        Mode::Tcp => {
            if http_log {
                warnings.push(format!(
                    "config : 'option httplog' not usable with proxy '{}' (needs 'mode http'). Falling back to 'option tcplog'.",
                    p.name
                ));
            }
            for what in &p.options.http_only {
                warnings.push(format!(
                    "config : '{what}' ignored for proxy '{}' as it requires HTTP mode.",
                    p.name
                ));
            }
            if p.stats.is_some() {
                warnings.push(format!(
                    "config : 'stats' statement ignored for proxy '{}' as it requires HTTP mode.",
                    p.name
                ));
            }
            let t = &p.timeouts;
            let missing = (p.kind.accepts() && t.client.is_none())
                || (p.kind.serves() && (t.connect.is_none() || t.server.is_none()));
            if missing {
                warnings.push(format!(
                    "config : missing timeouts for {kind} '{}'. While not properly invalid, you will certainly encounter various problems with such a configuration. To fix this, please ensure that all following timeouts are set to a non-zero value: 'client', 'connect', 'server'.",
                    p.name
                ));
            }
            if p.kind.accepts() && p.target_backend().is_none() {
                return Err(err(
                    &p.at,
                    format!(
                        "frontend '{}' has no backend: set 'default_backend'",
                        p.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// One line inside `defaults`, `frontend`, `backend` or `listen`; `b` is the proxy being
/// built (none inside `defaults`).
fn proxy_line(
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

fn note_http_only(o: &mut Options, what: String) {
    if !o.http_only.contains(&what) {
        o.http_only.push(what);
    }
}

fn option_line(at: &Location, w: &[&str], t: &mut Template) -> Result<(), ConfigError> {
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

fn stats_line(at: &Location, w: &[&str], t: &mut Template) -> Result<(), ConfigError> {
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

fn server_params(at: &Location, w: &[&str], p: &mut ServerParams) -> Result<(), ConfigError> {
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
fn socket_params(at: &Location, w: &[&str]) -> Result<Option<u32>, ConfigError> {
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

fn one<'a>(at: &Location, w: &[&'a str]) -> Result<&'a str, ConfigError> {
    match w {
        [_, v] => Ok(v),
        [k] => Err(err(at, format!("'{k}' expects a value"))),
        [k, _, extra, ..] => Err(err(at, format!("unexpected '{extra}' after '{k}'"))),
        [] => Err(err(at, "empty line")),
    }
}

fn number(at: &Location, w: &[&str]) -> Result<u32, ConfigError> {
    let v = one(at, w)?;
    v.parse()
        .map_err(|_| err(at, format!("'{}' expects a number, not '{v}'", w[0])))
}

/// `bind` addresses: `addr:port`, `:port` or `*:port` (every IPv4 address), `[v6]:port`,
/// a comma-separated list of those, and port ranges are not supported.
fn bind_addrs(at: &Location, spec: &str) -> Result<Vec<SocketAddr>, ConfigError> {
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

fn server_addr(at: &Location, spec: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = split_port(at, spec)?;
    if port == 0 {
        return Err(err(at, format!("server address '{spec}' needs a port")));
    }
    resolve(at, host, port)?
        .into_iter()
        .next()
        .ok_or_else(|| err(at, format!("cannot resolve '{host}'")))
}

fn split_port<'a>(at: &Location, spec: &'a str) -> Result<(&'a str, u16), ConfigError> {
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

fn resolve(at: &Location, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConfigError> {
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
fn log_target(at: &Location, w: &[&str]) -> Result<LogTarget, ConfigError> {
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

const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
        "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
        "local5", "local6", "local7",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}
