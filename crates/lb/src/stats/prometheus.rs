//! The statistics as Prometheus text (exposition format 0.0.4), with the metric names of
//! HAProxy's own exporter so that existing dashboards keep working.

use super::{Row, RowKind};
use std::fmt::Write;

struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Row) -> Option<f64>,
}

const FRONTEND: &[Metric] = &[
    Metric {
        name: "haproxy_frontend_current_sessions",
        kind: "gauge",
        help: "Number of current sessions.",
        value: |r| Some(r.scur as f64),
    },
    Metric {
        name: "haproxy_frontend_max_sessions",
        kind: "gauge",
        help: "Maximum observed number of sessions.",
        value: |r| Some(r.smax as f64),
    },
    Metric {
        name: "haproxy_frontend_limit_sessions",
        kind: "gauge",
        help: "Configured session limit.",
        value: |r| r.slim.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_frontend_sessions_total",
        kind: "counter",
        help: "Total number of sessions.",
        value: |r| Some(r.stot as f64),
    },
    Metric {
        name: "haproxy_frontend_bytes_in_total",
        kind: "counter",
        help: "Current total of incoming bytes.",
        value: |r| Some(r.bin as f64),
    },
    Metric {
        name: "haproxy_frontend_bytes_out_total",
        kind: "counter",
        help: "Current total of outgoing bytes.",
        value: |r| Some(r.bout as f64),
    },
];

const BACKEND: &[Metric] = &[
    Metric {
        name: "haproxy_backend_status",
        kind: "gauge",
        help: "Current status of the service (1 UP, 0 DOWN).",
        value: |r| Some(if r.status == "UP" { 1.0 } else { 0.0 }),
    },
    Metric {
        name: "haproxy_backend_current_sessions",
        kind: "gauge",
        help: "Number of current sessions.",
        value: |r| Some(r.scur as f64),
    },
    Metric {
        name: "haproxy_backend_sessions_total",
        kind: "counter",
        help: "Total number of sessions.",
        value: |r| Some(r.stot as f64),
    },
    Metric {
        name: "haproxy_backend_current_queue",
        kind: "gauge",
        help: "Number of sessions waiting for a server.",
        value: |r| r.qcur.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_backend_active_servers",
        kind: "gauge",
        help: "Current number of active servers.",
        value: |r| r.act.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_backend_backup_servers",
        kind: "gauge",
        help: "Current number of backup servers.",
        value: |r| r.bck.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_backend_bytes_in_total",
        kind: "counter",
        help: "Current total of incoming bytes.",
        value: |r| Some(r.bin as f64),
    },
    Metric {
        name: "haproxy_backend_bytes_out_total",
        kind: "counter",
        help: "Current total of outgoing bytes.",
        value: |r| Some(r.bout as f64),
    },
    Metric {
        name: "haproxy_backend_connection_errors_total",
        kind: "counter",
        help: "Total number of connection errors.",
        value: |r| r.econ.map(|v| v as f64),
    },
];

const SERVER: &[Metric] = &[
    Metric {
        name: "haproxy_server_status",
        kind: "gauge",
        help: "Current status of the server (1 UP, 0 otherwise).",
        value: |r| {
            Some(
                if r.status == "UP" || r.status.starts_with("UP ") || r.status == "no check" {
                    1.0
                } else {
                    0.0
                },
            )
        },
    },
    Metric {
        name: "haproxy_server_current_sessions",
        kind: "gauge",
        help: "Number of current sessions.",
        value: |r| Some(r.scur as f64),
    },
    Metric {
        name: "haproxy_server_max_sessions",
        kind: "gauge",
        help: "Maximum observed number of sessions.",
        value: |r| Some(r.smax as f64),
    },
    Metric {
        name: "haproxy_server_sessions_total",
        kind: "counter",
        help: "Total number of sessions.",
        value: |r| Some(r.stot as f64),
    },
    Metric {
        name: "haproxy_server_bytes_in_total",
        kind: "counter",
        help: "Current total of incoming bytes.",
        value: |r| Some(r.bin as f64),
    },
    Metric {
        name: "haproxy_server_bytes_out_total",
        kind: "counter",
        help: "Current total of outgoing bytes.",
        value: |r| Some(r.bout as f64),
    },
    Metric {
        name: "haproxy_server_connection_errors_total",
        kind: "counter",
        help: "Total number of connection errors.",
        value: |r| r.econ.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_retry_warnings_total",
        kind: "counter",
        help: "Total number of retry warnings.",
        value: |r| r.wretr.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_redispatch_warnings_total",
        kind: "counter",
        help: "Total number of redispatch warnings.",
        value: |r| r.wredis.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_weight",
        kind: "gauge",
        help: "Service weight.",
        value: |r| r.weight.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_check_failures_total",
        kind: "counter",
        help: "Total number of failed check (Only counts checks failed when the server is up).",
        value: |r| r.chkfail.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_check_up_down_total",
        kind: "counter",
        help: "Total number of UP->DOWN transitions.",
        value: |r| r.chkdown.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_downtime_seconds_total",
        kind: "counter",
        help: "Total downtime (in seconds) for the service.",
        value: |r| r.downtime.map(|v| v as f64),
    },
    Metric {
        name: "haproxy_server_check_duration_seconds",
        kind: "gauge",
        help: "Previously run health check duration, in seconds.",
        value: |r| r.check_duration.map(|ms| ms as f64 / 1000.0),
    },
];

pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    for (kind, metrics) in [
        (RowKind::Frontend, FRONTEND),
        (RowKind::Backend, BACKEND),
        (RowKind::Server, SERVER),
    ] {
        for m in metrics {
            let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
            let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
            for r in rows.iter().filter(|r| r.kind == kind) {
                let Some(v) = (m.value)(r) else { continue };
                let labels = match kind {
                    RowKind::Server => format!(
                        "proxy=\"{}\",server=\"{}\"",
                        label(&r.pxname),
                        label(&r.svname)
                    ),
                    _ => format!("proxy=\"{}\"", label(&r.pxname)),
                };
                let _ = writeln!(out, "{}{{{labels}}} {v}", m.name);
            }
        }
    }
    out
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_labelled_by_proxy_and_name() {
        let mut up = Row::blank(RowKind::Server, "mq", "node1", 1, 1);
        up.status = "UP".into();
        up.stot = 7;
        let mut down = Row::blank(RowKind::Server, "mq", "node\"2", 1, 2);
        down.status = "DOWN".into();
        let text = render(&[up, down]);
        assert!(text.contains("# TYPE haproxy_server_status gauge"));
        assert!(text.contains("haproxy_server_status{proxy=\"mq\",server=\"node1\"} 1\n"));
        assert!(text.contains("haproxy_server_status{proxy=\"mq\",server=\"node\\\"2\"} 0\n"));
        assert!(text.contains("haproxy_server_sessions_total{proxy=\"mq\",server=\"node1\"} 7\n"));
    }
}
