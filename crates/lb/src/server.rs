//! One backend server as the balancer sees it while running: its health (HAProxy's check
//! counter, with rise and fall), its administrative state (ready, drain, maintenance), and its
//! counters for the stats page.

use crate::config::{Server, ServerParams};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// What an operator has set (runtime socket), independent of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Ready,
    /// Takes no new sessions; existing ones go on.
    Drain,
    /// Out of service: no new sessions and no checks.
    Maint,
}

/// The outcome of one health check, in HAProxy's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// L4OK, L4CON, L4TOUT, L7OK, L7RSP, L7TOUT.
    pub code: &'static str,
    pub passed: bool,
    pub info: String,
    pub duration: Duration,
}

impl CheckResult {
    /// HAProxy's "reason" wording for state-change log lines.
    pub fn reason(&self) -> &'static str {
        match self.code {
            "L4OK" => "Layer4 check passed",
            "L7OK" => "Layer7 check passed",
            "L4CON" => "Layer4 connection problem",
            "L4TOUT" => "Layer4 timeout",
            "L7TOUT" => "Layer7 timeout",
            _ => "Layer7 wrong status",
        }
    }
}

#[derive(Debug)]
pub struct Health {
    pub admin: Admin,
    pub up: bool,
    /// HAProxy's counter: UP while at least `rise`, from `rise` up to `rise + fall - 1`;
    /// DOWN from 0 up to `rise - 1`.
    pub health: u32,
    pub last_check: Option<CheckResult>,
    pub last_change: Instant,
    pub down_since: Option<Instant>,
    pub downtime: Duration,
    /// UP to DOWN transitions.
    pub went_down: u64,
    pub failed_checks: u64,
}

/// What a check result changed, for the caller to log and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    WentUp,
    WentDown,
}

#[derive(Debug)]
pub struct ServerState {
    pub name: String,
    pub backend: String,
    pub addr: SocketAddr,
    pub params: ServerParams,
    /// Runtime weight (0 drains).
    pub weight: AtomicU32,
    pub health: Mutex<Health>,
    pub cur: AtomicU32,
    pub max: AtomicU32,
    pub total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connect_errors: AtomicU64,
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    pub last_session: Mutex<Option<SystemTime>>,
    /// Bumped to end every session on this server (on-marked-down shutdown-sessions, maint).
    pub kill: watch::Sender<u64>,
}

impl ServerState {
    pub fn new(backend: &str, s: &Server) -> Self {
        let p = &s.params;
        let admin = if p.disabled {
            Admin::Maint
        } else {
            Admin::Ready
        };
        // Like HAProxy, a server starts UP (with its health at the top of the range) and has
        // to fail `fall` checks to go down.
        ServerState {
            name: s.name.clone(),
            backend: backend.to_string(),
            addr: s.addr,
            params: p.clone(),
            weight: AtomicU32::new(p.weight),
            health: Mutex::new(Health {
                admin,
                up: true,
                health: p.rise + p.fall - 1,
                last_check: None,
                last_change: Instant::now(),
                down_since: None,
                downtime: Duration::ZERO,
                went_down: 0,
                failed_checks: 0,
            }),
            cur: AtomicU32::new(0),
            max: AtomicU32::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            redispatches: AtomicU64::new(0),
            last_session: Mutex::new(None),
            kill: watch::channel(0).0,
        }
    }

    /// Takes over the health and administrative state of the same server in the runtime a
    /// reload replaces.
    pub fn take_state_from(&self, old: &ServerState) {
        let o = old.lock();
        let mut h = self.lock();
        h.admin = o.admin;
        h.up = o.up;
        h.health = o.health.min(self.params.rise + self.params.fall - 1);
        h.last_check = o.last_check.clone();
        h.last_change = o.last_change;
        h.down_since = o.down_since;
        h.downtime = o.downtime;
        h.went_down = o.went_down;
        h.failed_checks = o.failed_checks;
        // A weight set on the runtime socket survives, unless the file changed it.
        if old.params.weight == self.params.weight {
            self.weight
                .store(old.weight.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether new sessions may go here.
    pub fn usable(&self) -> bool {
        let h = self.lock();
        h.admin == Admin::Ready && h.up && self.weight.load(Ordering::Relaxed) > 0
    }

    /// What the checks say, whatever the administrative state.
    pub fn checks_up(&self) -> bool {
        self.lock().up
    }

    pub fn is_up(&self) -> bool {
        let h = self.lock();
        h.admin != Admin::Maint && h.up
    }

    pub fn has_room(&self) -> bool {
        self.params
            .maxconn
            .is_none_or(|m| self.cur.load(Ordering::Relaxed) < m)
    }

    /// Applies one check result with HAProxy's counter.
    pub fn record(&self, result: CheckResult) -> Transition {
        let rise = self.params.rise;
        let fall = self.params.fall;
        let full = rise + fall - 1;
        let mut h = self.lock();
        let passed = result.passed;
        h.last_check = Some(result);
        if h.admin == Admin::Maint {
            return Transition::None;
        }
        let now = Instant::now();
        if passed {
            if h.up {
                h.health = (h.health + 1).min(full);
                return Transition::None;
            }
            h.health += 1;
            if h.health >= rise {
                h.up = true;
                h.health = full;
                h.last_change = now;
                if let Some(since) = h.down_since.take() {
                    h.downtime += now - since;
                }
                return Transition::WentUp;
            }
            Transition::None
        } else {
            h.failed_checks += 1;
            if !h.up {
                h.health = 0;
                return Transition::None;
            }
            if h.health > rise {
                h.health -= 1;
                return Transition::None;
            }
            h.up = false;
            h.health = 0;
            h.last_change = now;
            h.down_since = Some(now);
            h.went_down += 1;
            Transition::WentDown
        }
    }

    /// Whether a check state is in transition (for fastinter) or down (for downinter).
    pub fn check_phase(&self) -> CheckPhase {
        let h = self.lock();
        let full = self.params.rise + self.params.fall - 1;
        if h.up && h.health == full {
            CheckPhase::Steady
        } else if !h.up && h.health == 0 {
            CheckPhase::Down
        } else {
            CheckPhase::Transition
        }
    }

    /// The status column of HAProxy's stats: UP, DOWN, "UP 2/3" (going down), "DOWN 1/2"
    /// (going up), MAINT, DRAIN, "no check".
    pub fn status(&self) -> String {
        let h = self.lock();
        let p = &self.params;
        match h.admin {
            Admin::Maint => return "MAINT".into(),
            Admin::Drain if h.up || !p.check => return "DRAIN".into(),
            _ => {}
        }
        if !p.check {
            return "no check".into();
        }
        let full = p.rise + p.fall - 1;
        if h.up {
            if h.health == full {
                "UP".into()
            } else {
                format!("UP {}/{}", h.health - p.rise + 1, p.fall)
            }
        } else if h.health == 0 {
            "DOWN".into()
        } else {
            format!("DOWN {}/{}", h.health, p.rise)
        }
    }

    pub fn admin(&self) -> Admin {
        self.lock().admin
    }

    /// Sets the administrative state; returns the previous one.
    pub fn set_admin(&self, admin: Admin) -> Admin {
        let mut h = self.lock();
        let before = h.admin;
        if before != admin {
            h.admin = admin;
            h.last_change = Instant::now();
        }
        before
    }

    /// Ends every session on this server.
    pub fn kill_sessions(&self) {
        self.kill.send_modify(|g| *g += 1);
    }

    pub fn last_check(&self) -> Option<CheckResult> {
        self.lock().last_check.clone()
    }

    /// Seconds since the last state change, and total downtime so far.
    pub fn times(&self) -> (Duration, Duration) {
        let h = self.lock();
        let down_now = h.down_since.map_or(Duration::ZERO, |s| s.elapsed());
        (h.last_change.elapsed(), h.downtime + down_now)
    }

    pub fn counters(&self) -> (u64, u64) {
        let h = self.lock();
        (h.failed_checks, h.went_down)
    }

    pub fn session_started(&self) {
        let cur = self.cur.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(cur, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.last_session.lock() {
            *t = Some(SystemTime::now());
        }
    }

    pub fn session_ended(&self) {
        self.cur.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPhase {
    Steady,
    Transition,
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    fn server(rise: u32, fall: u32) -> ServerState {
        ServerState::new(
            "be",
            &Server {
                name: "s1".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                params: ServerParams {
                    check: true,
                    rise,
                    fall,
                    ..ServerParams::default()
                },
                at: Location {
                    file: "t".into(),
                    line: 1,
                },
            },
        )
    }

    fn check(passed: bool) -> CheckResult {
        CheckResult {
            code: if passed { "L4OK" } else { "L4CON" },
            passed,
            info: String::new(),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn goes_down_after_fall_failures_and_up_after_rise_successes() {
        let s = server(2, 3);
        assert_eq!(s.status(), "UP");
        assert_eq!(s.record(check(false)), Transition::None);
        assert_eq!(s.status(), "UP 2/3");
        assert_eq!(s.record(check(false)), Transition::None);
        assert_eq!(s.status(), "UP 1/3");
        assert_eq!(s.check_phase(), CheckPhase::Transition);
        assert_eq!(s.record(check(false)), Transition::WentDown);
        assert_eq!(s.status(), "DOWN");
        assert!(!s.usable());
        assert_eq!(s.check_phase(), CheckPhase::Down);
        assert_eq!(s.record(check(true)), Transition::None);
        assert_eq!(s.status(), "DOWN 1/2");
        assert_eq!(s.record(check(true)), Transition::WentUp);
        assert_eq!(s.status(), "UP");
        assert!(s.usable());
        assert_eq!(s.counters(), (3, 1));
    }

    #[test]
    fn a_success_while_going_down_climbs_back_one_step() {
        // HAProxy's counter is not reset by one success: it climbs by one.
        let s = server(2, 3);
        s.record(check(false));
        s.record(check(false));
        s.record(check(true));
        assert_eq!(s.status(), "UP 2/3");
        s.record(check(false));
        s.record(check(false));
        assert_eq!(s.status(), "DOWN");
    }

    #[test]
    fn a_failure_while_going_up_starts_over() {
        let s = server(3, 1);
        assert_eq!(s.record(check(false)), Transition::WentDown);
        s.record(check(true));
        s.record(check(true));
        assert_eq!(s.status(), "DOWN 2/3");
        s.record(check(false));
        assert_eq!(s.status(), "DOWN");
        for _ in 0..2 {
            s.record(check(true));
        }
        assert_eq!(s.record(check(true)), Transition::WentUp);
    }

    #[test]
    fn maintenance_and_drain_take_the_server_out_of_rotation() {
        let s = server(2, 3);
        s.set_admin(Admin::Drain);
        assert_eq!(s.status(), "DRAIN");
        assert!(!s.usable());
        s.set_admin(Admin::Maint);
        assert_eq!(s.status(), "MAINT");
        assert_eq!(
            s.record(check(false)),
            Transition::None,
            "no checks count in maint"
        );
        s.set_admin(Admin::Ready);
        assert!(s.usable());
    }
}
