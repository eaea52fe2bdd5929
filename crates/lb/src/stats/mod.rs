//! The statistics a running balancer reports, as rows in HAProxy's model (one FRONTEND row,
//! one row per server, one BACKEND row per proxy), rendered as the HTML page, as HAProxy's
//! CSV, and as Prometheus text; served over HTTP behind basic auth.

pub mod csv;
pub mod html;
pub mod http;
pub mod prometheus;

use crate::runtime::Runtime;
use crate::server::Admin;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Frontend,
    Backend,
    Server,
}

impl RowKind {
    /// HAProxy's `type` column: 0 frontend, 1 backend, 2 server.
    pub fn code(self) -> u8 {
        match self {
            RowKind::Frontend => 0,
            RowKind::Backend => 1,
            RowKind::Server => 2,
        }
    }
}

/// One line of statistics. Fields a row kind does not have are `None`.
#[derive(Debug, Clone)]
pub struct Row {
    pub kind: RowKind,
    pub pxname: String,
    pub svname: String,
    pub iid: usize,
    pub sid: usize,
    pub qcur: Option<u64>,
    pub qmax: Option<u64>,
    pub scur: u64,
    pub smax: u64,
    pub slim: Option<u64>,
    pub stot: u64,
    pub bin: u64,
    pub bout: u64,
    pub econ: Option<u64>,
    pub wretr: Option<u64>,
    pub wredis: Option<u64>,
    pub status: String,
    pub weight: Option<u64>,
    pub act: Option<u64>,
    pub bck: Option<u64>,
    pub chkfail: Option<u64>,
    pub chkdown: Option<u64>,
    pub lastchg: Option<u64>,
    pub downtime: Option<u64>,
    pub check_status: Option<String>,
    pub check_duration: Option<u64>,
    pub check_desc: Option<String>,
    pub last_chk: Option<String>,
    pub check_rise: Option<u64>,
    pub check_fall: Option<u64>,
    pub check_health: Option<u64>,
    pub lastsess: Option<i64>,
    pub addr: Option<String>,
    pub algo: Option<&'static str>,
    pub backup: bool,
}

impl Row {
    fn blank(kind: RowKind, pxname: &str, svname: &str, iid: usize, sid: usize) -> Row {
        Row {
            kind,
            pxname: pxname.to_string(),
            svname: svname.to_string(),
            iid,
            sid,
            qcur: None,
            qmax: None,
            scur: 0,
            smax: 0,
            slim: None,
            stot: 0,
            bin: 0,
            bout: 0,
            econ: None,
            wretr: None,
            wredis: None,
            status: String::new(),
            weight: None,
            act: None,
            bck: None,
            chkfail: None,
            chkdown: None,
            lastchg: None,
            downtime: None,
            check_status: None,
            check_duration: None,
            check_desc: None,
            last_chk: None,
            check_rise: None,
            check_fall: None,
            check_health: None,
            lastsess: None,
            addr: None,
            algo: None,
            backup: false,
        }
    }
}

/// Every row, proxy by proxy in configuration order.
pub fn rows(rt: &Runtime) -> Vec<Row> {
    let mut out = Vec::new();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let load32 = |a: &std::sync::atomic::AtomicU32| a.load(Ordering::Relaxed) as u64;
    let mut names: Vec<&str> = Vec::new();
    for fe in &rt.frontends {
        names.push(&fe.name);
    }
    for be in &rt.backends {
        if !names.contains(&be.name.as_str()) {
            names.push(&be.name);
        }
    }
    for (i, name) in names.iter().enumerate() {
        let iid = i + 1;
        if let Some(fe) = rt.frontends.iter().find(|f| f.name == *name) {
            let mut r = Row::blank(RowKind::Frontend, name, "FRONTEND", iid, 0);
            r.scur = load32(&fe.cur);
            r.smax = load32(&fe.max);
            r.slim = Some(fe.maxconn as u64);
            r.stot = load(&fe.total);
            r.bin = load(&fe.bytes_in);
            r.bout = load(&fe.bytes_out);
            r.status = "OPEN".into();
            out.push(r);
        }
        let Some(be) = rt.backend(name) else {
            continue;
        };
        let (mut act, mut bck) = (0, 0);
        for (j, s) in be.servers.iter().enumerate() {
            let mut r = Row::blank(RowKind::Server, name, &s.name, iid, j + 1);
            r.qcur = Some(0);
            r.qmax = Some(0);
            r.scur = load32(&s.cur);
            r.smax = load32(&s.max);
            r.slim = s.params.maxconn.map(u64::from);
            r.stot = load(&s.total);
            r.bin = load(&s.bytes_in);
            r.bout = load(&s.bytes_out);
            r.econ = Some(load(&s.connect_errors));
            r.wretr = Some(load(&s.retries));
            r.wredis = Some(load(&s.redispatches));
            r.status = s.status();
            let weight = load32(&s.weight);
            r.weight = Some(weight);
            r.backup = s.params.backup;
            let counts = s.is_up() && s.admin() == Admin::Ready;
            r.act = Some(u64::from(!s.params.backup && counts));
            r.bck = Some(u64::from(s.params.backup && counts));
            if counts {
                if s.params.backup {
                    bck += 1;
                } else {
                    act += 1;
                }
            }
            let (since_change, downtime) = s.times();
            r.lastchg = Some(since_change.as_secs());
            if s.params.check {
                let (fails, downs) = s.counters();
                r.chkfail = Some(fails);
                r.chkdown = Some(downs);
                r.downtime = Some(downtime.as_secs());
                r.check_rise = Some(s.params.rise as u64);
                r.check_fall = Some(s.params.fall as u64);
                if let Some(c) = s.last_check() {
                    r.check_status = Some(c.code.to_string());
                    r.check_duration = Some(c.duration.as_millis() as u64);
                    r.check_desc = Some(c.reason().to_string());
                    r.last_chk = Some(c.info.clone());
                }
            }
            r.lastsess = Some(
                s.last_session
                    .lock()
                    .ok()
                    .and_then(|t| *t)
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(-1, |d| d.as_secs() as i64),
            );
            r.addr = Some(s.addr.to_string());
            out.push(r);
        }
        let mut r = Row::blank(RowKind::Backend, name, "BACKEND", iid, 0);
        r.qcur = Some(load32(&be.queued));
        r.qmax = Some(load32(&be.queued_max));
        r.scur = load32(&be.cur);
        r.smax = load32(&be.max);
        r.stot = load(&be.total);
        r.bin = load(&be.bytes_in);
        r.bout = load(&be.bytes_out);
        r.econ = Some(be.servers.iter().map(|s| load(&s.connect_errors)).sum());
        r.wretr = Some(be.servers.iter().map(|s| load(&s.retries)).sum());
        r.wredis = Some(be.servers.iter().map(|s| load(&s.redispatches)).sum());
        r.status = if act + bck > 0 { "UP" } else { "DOWN" }.into();
        r.weight = Some(
            be.servers
                .iter()
                .filter(|s| s.usable())
                .map(|s| load32(&s.weight))
                .sum(),
        );
        r.act = Some(act);
        r.bck = Some(bck);
        r.algo = Some(be.balance.name());
        out.push(r);
    }
    out
}
