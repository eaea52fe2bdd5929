//! The haproxy.cfg reader: one pass over the lines, one section at a time. A `defaults`
//! section is a template that every proxy declared after it starts from, until the next
//! `defaults` replaces it, which is how HAProxy inherits settings.

mod keywords;
mod validate;
mod values;

use super::duration;
use super::lexer::words;
use super::*;
use keywords::*;
use std::net::ToSocketAddrs;
use std::path::Path;
use validate::validate;
use values::*;

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
