//! HAProxy's CSV statistics (`<stats uri>;csv`, and `show stat` on the runtime socket):
//! HAProxy's column names in HAProxy's order, empty where a field does not apply.

use super::{Row, RowKind};

/// The columns of HAProxy 2.x's CSV, up to the last standard field.
pub const COLUMNS: [&str; 97] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
];

/// The whole CSV document, header first.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!("# {},\n", COLUMNS.join(","));
    for r in rows {
        let fields: Vec<String> = COLUMNS.iter().map(|c| field(r, c)).collect();
        out.push_str(&fields.join(","));
        out.push_str(",\n");
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// Commas and line breaks would break the format; HAProxy avoids them in these fields too.
fn clean(s: &str) -> String {
    s.replace([',', '\n', '\r'], " ")
}

fn field(r: &Row, column: &str) -> String {
    let server = r.kind == RowKind::Server;
    match column {
        "pxname" => clean(&r.pxname),
        "svname" => clean(&r.svname),
        "qcur" => opt(&r.qcur),
        "qmax" => opt(&r.qmax),
        "scur" => r.scur.to_string(),
        "smax" => r.smax.to_string(),
        "slim" => opt(&r.slim),
        "stot" => r.stot.to_string(),
        "bin" => r.bin.to_string(),
        "bout" => r.bout.to_string(),
        "dreq" | "dresp" if r.kind != RowKind::Server => "0".into(),
        "ereq" if r.kind == RowKind::Frontend => "0".into(),
        "econ" => opt(&r.econ),
        "eresp" if r.kind != RowKind::Frontend => "0".into(),
        "wretr" => opt(&r.wretr),
        "wredis" => opt(&r.wredis),
        "status" => clean(&r.status),
        "weight" => opt(&r.weight),
        "act" => opt(&r.act),
        "bck" => opt(&r.bck),
        "chkfail" => opt(&r.chkfail),
        "chkdown" => opt(&r.chkdown),
        "lastchg" => opt(&r.lastchg),
        "downtime" => opt(&r.downtime),
        "pid" => "1".into(),
        "iid" => r.iid.to_string(),
        "sid" => r.sid.to_string(),
        "lbtot" if r.kind != RowKind::Frontend => r.stot.to_string(),
        "type" => r.kind.code().to_string(),
        "check_status" => opt(&r.check_status),
        "check_duration" => opt(&r.check_duration),
        "lastsess" => opt(&r.lastsess),
        "last_chk" => r.last_chk.as_deref().map(clean).unwrap_or_default(),
        "check_desc" => r.check_desc.as_deref().map(clean).unwrap_or_default(),
        "check_rise" => opt(&r.check_rise),
        "check_fall" => opt(&r.check_fall),
        "check_health" => opt(&r.check_health),
        "addr" => opt(&r.addr),
        "mode" => "tcp".into(),
        "algo" => r.algo.unwrap_or_default().to_string(),
        "conn_tot" if r.kind == RowKind::Frontend => r.stot.to_string(),
        "connect" if server || r.kind == RowKind::Backend => r.stot.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_haproxys() {
        let doc = render(&[]);
        assert!(doc.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,"));
        assert!(doc.contains(",status,weight,act,bck,chkfail,chkdown,lastchg,downtime,"));
        assert!(doc.contains(",check_status,check_code,check_duration,"));
        assert!(doc.trim_end().ends_with("safe_conn_cur,"));
    }

    #[test]
    fn each_row_has_every_column_in_order() {
        let mut r = Row::blank(RowKind::Server, "mq", "node1", 2, 1);
        r.status = "UP 2/3".into();
        r.scur = 4;
        r.check_status = Some("L7OK".into());
        r.last_chk = Some("a, b".into());
        let doc = render(&[r]);
        let line = doc.lines().nth(1).unwrap();
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(
            fields.len(),
            COLUMNS.len() + 1,
            "trailing comma as HAProxy writes"
        );
        let col = |name: &str| fields[COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(col("pxname"), "mq");
        assert_eq!(col("svname"), "node1");
        assert_eq!(col("scur"), "4");
        assert_eq!(col("status"), "UP 2/3");
        assert_eq!(col("type"), "2");
        assert_eq!(col("check_status"), "L7OK");
        assert_eq!(col("last_chk"), "a  b", "commas cannot break the row");
    }
}
