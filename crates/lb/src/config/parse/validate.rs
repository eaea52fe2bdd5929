//! The checks that need the whole file: proxies that refer to backends, names used twice,
//! settings that only make sense together; HAProxy's warnings for what it would ignore.

use super::*;

/// Checks a whole proxy once its section is read, and adds HAProxy's warnings for it.
pub(super) fn validate(
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
