//! The HTML statistics page: one table per proxy, rows coloured by state as HAProxy colours
//! them, refreshed by the browser every `stats refresh`.

use super::{Row, RowKind};
use std::fmt::Write;
use std::time::Duration;

pub fn render(rows: &[Row], refresh: Option<Duration>, uptime: Duration) -> String {
    let mut h = String::with_capacity(8192);
    h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n");
    if let Some(r) = refresh {
        let _ = writeln!(
            h,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    h.push_str("<title>Statistics Report for warren-lb</title>\n<style>\n");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<h1>warren-lb statistics</h1>\n");
    let _ = writeln!(
        h,
        "<p class=\"info\">pid = {} &middot; uptime = {} &middot; CSV export: <a href=\"?;csv\">;csv</a></p>",
        std::process::id(),
        human(uptime)
    );
    let mut proxy: Option<&str> = None;
    for r in rows {
        if proxy != Some(r.pxname.as_str()) {
            if proxy.is_some() {
                h.push_str("</table>\n");
            }
            proxy = Some(&r.pxname);
            let _ = writeln!(
                h,
                "<table class=\"proxy\" id=\"{0}\"><tr class=\"titre\"><th colspan=\"18\">{0}</th></tr>",
                escape(&r.pxname)
            );
            h.push_str(HEADER);
        }
        row(&mut h, r);
    }
    if proxy.is_some() {
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

const HEADER: &str = "<tr class=\"head\"><th>Name</th><th>Status</th><th>LastChk</th>\
<th>Wght</th><th>Act</th><th>Bck</th><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th>\
<th>Bytes in</th><th>Bytes out</th><th>Conn err</th><th>Retr</th><th>Redis</th>\
<th>Chk fail</th><th>Dwn</th><th>Dwntme / LastChg</th></tr>\n";

const STYLE: &str = "body{font-family:arial,helvetica,sans-serif;font-size:12px}\
table.proxy{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #999;padding:2px 6px;font-size:11px;text-align:right}\
td.name,th{text-align:left}\
.titre{background:#20d0d0;color:#000}.head{background:#e8e8d0}\
.frontend,.backend{background:#e8e8d0;font-weight:bold}\
.active_up{background:#c0ffc0}.active_down{background:#ff9090}\
.active_going_up{background:#ffd020}.active_going_down{background:#ffffa0}\
.active_draining{background:#20a0ff}.maintain{background:#c07820}\
.backup_up{background:#b0d0ff}.backup_down{background:#ff9090}\
.active_no_check{background:#e0e0e0}\n";

fn row(h: &mut String, r: &Row) {
    let class = match r.kind {
        RowKind::Frontend => "frontend".to_string(),
        RowKind::Backend => "backend".to_string(),
        RowKind::Server => state_class(&r.status, r.backup),
    };
    let n = |v: &Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let last_chk = match (&r.check_status, &r.check_duration) {
        (Some(s), Some(d)) => format!("{s} in {d}ms"),
        _ => String::new(),
    };
    let times = match (r.downtime, r.lastchg) {
        (Some(d), Some(c)) => format!(
            "{} / {}",
            human(Duration::from_secs(d)),
            human(Duration::from_secs(c))
        ),
        (None, Some(c)) => human(Duration::from_secs(c)),
        _ => String::new(),
    };
    let _ = writeln!(
        h,
        "<tr class=\"{class}\" data-server=\"{}\"><td class=\"name\">{}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"scur\">{}</td><td>{}</td><td>{}</td><td class=\"stot\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&r.svname),
        escape(&r.svname),
        escape(&r.status),
        escape(&last_chk),
        n(&r.weight),
        n(&r.act),
        n(&r.bck),
        r.scur,
        r.smax,
        n(&r.slim),
        r.stot,
        r.bin,
        r.bout,
        n(&r.econ),
        n(&r.wretr),
        n(&r.wredis),
        n(&r.chkfail),
        n(&r.chkdown),
        escape(&times),
    );
}

fn state_class(status: &str, backup: bool) -> String {
    let side = if backup { "backup" } else { "active" };
    if status == "MAINT" {
        "maintain".into()
    } else if status == "DRAIN" {
        "active_draining".into()
    } else if status == "no check" {
        "active_no_check".into()
    } else if status.starts_with("UP ") {
        format!("{side}_going_down")
    } else if status.starts_with("DOWN ") {
        format!("{side}_going_up")
    } else if status == "UP" {
        format!("{side}_up")
    } else {
        format!("{side}_down")
    }
}

/// `1d2h`, `3m4s`, `5s`, as HAProxy shortens durations.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_coloured_by_state() {
        assert_eq!(state_class("UP", false), "active_up");
        assert_eq!(state_class("UP 1/3", false), "active_going_down");
        assert_eq!(state_class("DOWN 1/2", false), "active_going_up");
        assert_eq!(state_class("DOWN", true), "backup_down");
        assert_eq!(state_class("MAINT", false), "maintain");
    }

    #[test]
    fn the_page_refreshes_and_escapes_names() {
        let mut r = Row::blank(RowKind::Server, "mq<1>", "n&1", 1, 1);
        r.status = "UP".into();
        let page = render(&[r], Some(Duration::from_secs(30)), Duration::from_secs(65));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(page.contains("mq&lt;1&gt;"));
        assert!(page.contains("n&amp;1"));
        assert!(page.contains("uptime = 1m5s"));
        assert!(!page.contains("mq<1>"));
    }

    #[test]
    fn durations_are_shortened_like_haproxy() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(125)), "2m5s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 60)), "3h1m");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 3600)), "2d1h");
    }
}
