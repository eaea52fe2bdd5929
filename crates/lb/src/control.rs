//! The runtime socket (`stats socket` in `global`): HAProxy's runtime API on a UNIX socket,
//! one line of commands per connection (several may be joined with `;`). The socket file is
//! created with mode 0600 unless the configuration gives another: its permissions are its
//! credentials.

use crate::runtime::{Current, Runtime};
use crate::server::Admin;
use crate::stats::{csv, rows};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

const HELP: &str = "The following commands are valid at this level:
  help                                    : this message
  show info                               : report information about the running process
  show stat                               : report counters for each proxy and server (CSV)
  show servers state [<backend>]          : dump volatile server information
  disable server <bk>/<srv>               : put a server in maintenance mode
  enable server <bk>/<srv>                : take a server out of maintenance mode
  set server <bk>/<srv> state <st>        : ready, drain or maint
  set server <bk>/<srv> weight <w>        : change a server's weight
  shutdown sessions server <bk>/<srv>     : kill every session on a server
";

pub async fn serve(listener: UnixListener, current: Current) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let rt = current.load_full();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(r.take(64 * 1024));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let mut out = String::new();
            for cmd in line.split(';') {
                out.push_str(&execute(&rt, cmd.trim()));
            }
            let _ = w.write_all(out.as_bytes()).await;
            let _ = w.shutdown().await;
        });
    }
}

/// Runs one command and returns HAProxy's answer (ending with an empty line).
pub fn execute(rt: &Runtime, cmd: &str) -> String {
    let w: Vec<&str> = cmd.split_whitespace().collect();
    let answer = match w.as_slice() {
        [] => return String::new(),
        ["help"] => HELP.to_string(),
        ["show", "info"] => info(rt),
        ["show", "stat", ..] => csv::render(&rows(rt)),
        ["show", "servers", "state"] => servers_state(rt, None),
        ["show", "servers", "state", b] => match rt.backend(b) {
            Some(_) => servers_state(rt, Some(b)),
            None => "Can't find backend.\n".into(),
        },
        ["disable", "server", target] => with_server(rt, target, |s| {
            s.set_admin(Admin::Maint);
            String::new()
        }),
        ["enable", "server", target] => with_server(rt, target, |s| {
            s.set_admin(Admin::Ready);
            String::new()
        }),
        ["set", "server", target, "state", state] => {
            let admin = match *state {
                "ready" => Admin::Ready,
                "drain" => Admin::Drain,
                "maint" => Admin::Maint,
                _ => {
                    return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
                        .into();
                }
            };
            with_server(rt, target, |s| {
                s.set_admin(admin);
                String::new()
            })
        }
        ["set", "server", target, "weight", weight] => match weight.parse::<u32>() {
            Ok(n) if n <= 256 => with_server(rt, target, |s| {
                s.weight.store(n, Ordering::Relaxed);
                String::new()
            }),
            _ => "Require <weight> in the range 0..256.\n".into(),
        },
        ["shutdown", "sessions", "server", target] => with_server(rt, target, |s| {
            s.kill_sessions();
            String::new()
        }),
        _ => format!("Unknown command: '{cmd}'\n{HELP}"),
    };
    format!("{answer}\n")
}

/// `show info`: HAProxy's `Key: value` lines, in HAProxy 2.6's order, limited to the fields
/// warren-lb has a true value for (no SSL, pipes, rates, pools or compression here).
fn info(rt: &Runtime) -> String {
    let p = &rt.process;
    let up = rt.started.elapsed().unwrap_or_default().as_secs();
    let start = rt
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut lines: Vec<(&str, String)> = vec![
        ("Name", "warren-lb".into()),
        ("Version", env!("CARGO_PKG_VERSION").into()),
    ];
    // The threads that serve sessions: the async runtime's workers (`nbthread`).
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        lines.push(("Nbthread", h.metrics().num_workers().to_string()));
    }
    lines.extend([
        ("Nbproc", "1".into()),
        ("Process_num", "1".into()),
        ("Pid", std::process::id().to_string()),
        (
            "Uptime",
            format!(
                "{}d {}h{:02}m{:02}s",
                up / 86400,
                (up % 86400) / 3600,
                (up % 3600) / 60,
                up % 60
            ),
        ),
        ("Uptime_sec", up.to_string()),
        ("Start_time_sec", start.to_string()),
        // No memory limit (HAProxy's -m): 0, as HAProxy prints without one.
        ("Memmax_MB", "0".into()),
    ]);
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        lines.push(("Ulimit-n", soft.to_string()));
    }
    lines.extend([
        ("Maxconn", p.maxconn.to_string()),
        ("CurrConns", p.actconn.load(Ordering::Relaxed).to_string()),
        ("CumConns", p.totalconn.load(Ordering::Relaxed).to_string()),
    ]);
    lines
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

fn with_server(
    rt: &Runtime,
    target: &str,
    act: impl FnOnce(&crate::server::ServerState) -> String,
) -> String {
    let Some((b, s)) = target.split_once('/') else {
        return "Require 'backend/server'.\n".into();
    };
    let Some(backend) = rt.backend(b) else {
        return "No such backend.\n".into();
    };
    let Some(server) = backend.server(s) else {
        return "No such server.\n".into();
    };
    let answer = act(server);
    // A server coming back may let queued sessions go on.
    backend.room.notify_waiters();
    answer
}

/// `show servers state`: format version 1, HAProxy's leading columns.
fn servers_state(rt: &Runtime, only: Option<&str>) -> String {
    let mut out = String::from(
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port\n",
    );
    for (bi, be) in rt.backends.iter().enumerate() {
        if only.is_some_and(|o| o != be.name) {
            continue;
        }
        for (si, s) in be.servers.iter().enumerate() {
            // op state: 0 stopped, 2 running; admin: 0x01 forced maintenance, 0x08 forced drain.
            let op = if s.checks_up() { 2 } else { 0 };
            let admin = match s.admin() {
                Admin::Ready => 0,
                Admin::Maint => 0x01,
                Admin::Drain => 0x08,
            };
            let (since, _) = s.times();
            let check = s.last_check();
            let result = match &check {
                None => 0,
                Some(c) if c.passed => 3,
                Some(_) => 2,
            };
            out.push_str(&format!(
                "{} {} {} {} {} {op} {admin} {} {} {} {} {result} 0 {} 0 0 0 - {}\n",
                bi + 1,
                be.name,
                si + 1,
                s.name,
                s.addr.ip(),
                s.weight.load(Ordering::Relaxed),
                s.params.weight,
                since.as_secs(),
                check.as_ref().map_or(0, |c| u8::from(c.passed)),
                u8::from(s.params.check),
                s.addr.port(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn runtime() -> Runtime {
        let cfg = parse_str(
            "t.cfg",
            "listen mq\n    bind 127.0.0.1:0\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n    server node1 127.0.0.1:5673 check\n    server node2 127.0.0.1:5674 check\n",
        )
        .unwrap();
        Runtime::new(&cfg, false)
    }

    #[test]
    fn servers_are_disabled_enabled_and_drained_by_name() {
        let rt = runtime();
        let be = rt.backend("mq").unwrap();
        assert_eq!(execute(&rt, "disable server mq/node1"), "\n");
        assert_eq!(be.servers[0].status(), "MAINT");
        assert_eq!(execute(&rt, "set server mq/node1 state drain"), "\n");
        assert_eq!(be.servers[0].status(), "DRAIN");
        assert_eq!(execute(&rt, "enable server mq/node1"), "\n");
        assert_eq!(be.servers[0].status(), "UP");
        assert_eq!(
            execute(&rt, "disable server mq/nope"),
            "No such server.\n\n"
        );
        assert_eq!(
            execute(&rt, "disable server nope/node1"),
            "No such backend.\n\n"
        );
        assert!(execute(&rt, "set server mq/node1 state sleepy").contains("expects"));
        assert!(execute(&rt, "frobnicate").starts_with("Unknown command"));
    }

    #[test]
    fn show_info_reports_the_process_in_haproxys_shape() {
        let rt = runtime();
        rt.process.actconn.store(3, Ordering::Relaxed);
        rt.process.totalconn.store(7, Ordering::Relaxed);
        let out = execute(&rt, "show info");
        assert!(out.ends_with("\n\n"), "{out:?}");
        let fields: Vec<(&str, &str)> = out
            .lines()
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_once(": ").expect(l))
            .collect();
        let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| f.1);
        assert_eq!(fields[0], ("Name", "warren-lb"));
        assert_eq!(fields[1].0, "Version");
        assert_eq!(get("Pid"), Some(std::process::id().to_string().as_str()));
        assert!(get("Uptime").unwrap().starts_with("0d 0h00m"), "{out}");
        assert_eq!(get("Maxconn"), Some("4096"));
        assert_eq!(get("CurrConns"), Some("3"));
        assert_eq!(get("CumConns"), Some("7"));
        assert_eq!(get("Nbthread"), None, "no async runtime in this test");
        assert!(execute(&rt, "help").contains("show info"));
    }

    #[test]
    fn show_stat_and_servers_state_list_every_server() {
        let rt = runtime();
        execute(&rt, "disable server mq/node2");
        let stat = execute(&rt, "show stat");
        assert!(stat.starts_with("# pxname,svname,"));
        assert!(stat.contains("\nmq,FRONTEND,"));
        assert!(stat.contains("\nmq,node1,"));
        assert!(stat.contains("\nmq,node2,") && stat.contains(",MAINT,"));
        assert!(stat.contains("\nmq,BACKEND,"));
        let state = execute(&rt, "show servers state");
        let lines: Vec<&str> = state.lines().collect();
        assert_eq!(lines[0], "1");
        assert!(lines[2].starts_with("1 mq 1 node1 127.0.0.1 2 0 "));
        assert!(
            lines[3].starts_with("1 mq 2 node2 127.0.0.1 2 1 "),
            "{}",
            lines[3]
        );
    }
}
