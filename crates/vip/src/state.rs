//! The VRRP state machine of RFC 5798 §6.4 (Initialize, Backup, Master), with keepalived's
//! additions: a Fault state (a tracked interface or check failed), `nopreempt` and
//! `preempt_delay`. It is pure: events and the time go in, actions come out (packets to send,
//! addresses to add or remove, timers to arm), so every transition is tested without sockets.

use crate::packet::Version;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub version: Version,
    /// The configured priority (1..=255; 255 means the address owner).
    pub priority: u8,
    pub interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Our primary address on the interface, which breaks ties between equal priorities.
    pub primary: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    /// A valid advertisement for this virtual router.
    Advert {
        from: Ipv4Addr,
        priority: u8,
        interval: Duration,
    },
    MasterDownTimer,
    AdverTimer,
    /// Tracking changed the priority the instance runs with.
    Priority(u8),
    /// A tracked interface or check failed (true) or recovered (false).
    Fault(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendAdvert {
        priority: u8,
    },
    AddAddresses,
    RemoveAddresses,
    GratuitousArp,
    ArmMasterDown(Duration),
    ArmAdver(Duration),
    StopTimers,
    /// The instance entered this state (for notify scripts and logs).
    Entered(State),
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub settings: Settings,
    state: State,
    /// The priority in effect (tracking may move it away from the configured one).
    priority: u8,
    /// The interval the current master advertises (learned from its packets).
    master_interval: Duration,
    /// When a lower-priority master was first seen, for preempt_delay.
    lower_seen: Option<Instant>,
    fault: bool,
}

impl Machine {
    pub fn new(settings: Settings) -> Machine {
        let priority = settings.priority;
        let master_interval = settings.interval;
        Machine {
            settings,
            state: State::Initialize,
            priority,
            master_interval,
            lower_seen: None,
            fault: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Skew_Time: lower priorities wait longer before taking over.
    pub fn skew(&self) -> Duration {
        let base = match self.settings.version {
            Version::V3 => self.master_interval,
            Version::V2 => Duration::from_secs(1),
        };
        base * (256 - u32::from(self.priority)) / 256
    }

    /// Master_Down_Interval: three missed advertisements and the skew.
    pub fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, event) {
            (_, Event::Fault(true)) => {
                self.fault = true;
                if self.state == State::Master {
                    // A master that can no longer serve hands over at once.
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveAddresses);
                }
                if self.state != State::Fault {
                    out.push(Action::StopTimers);
                    self.enter(State::Fault, &mut out);
                }
            }
            (State::Fault, Event::Fault(false)) => {
                self.fault = false;
                self.become_backup(&mut out);
            }
            (_, Event::Fault(false)) => self.fault = false,
            (State::Fault, Event::Priority(p)) => self.priority = p,
            (State::Fault, Event::Shutdown) => self.enter(State::Initialize, &mut out),
            (State::Fault, _) => {}

            (State::Initialize, Event::Startup) => {
                if self.fault {
                    self.enter(State::Fault, &mut out);
                } else if self.settings.priority == 255 {
                    self.become_master(&mut out);
                } else {
                    self.become_backup(&mut out);
                }
            }
            (State::Initialize, Event::Priority(p)) => self.priority = p,
            (State::Initialize, _) => {}

            (State::Backup, Event::Shutdown) => {
                out.push(Action::StopTimers);
                self.enter(State::Initialize, &mut out);
            }
            (State::Backup, Event::MasterDownTimer) => self.become_master(&mut out),
            (State::Backup, Event::Advert { priority: 0, .. }) => {
                // The master is leaving: take over after the skew alone.
                out.push(Action::ArmMasterDown(self.skew()));
            }
            (
                State::Backup,
                Event::Advert {
                    priority, interval, ..
                },
            ) => {
                let lower = priority < self.priority;
                let delaying = lower
                    && self.settings.preempt
                    && !self.settings.preempt_delay.is_zero()
                    && now.saturating_duration_since(*self.lower_seen.get_or_insert(now))
                        < self.settings.preempt_delay;
                if !lower {
                    self.lower_seen = None;
                }
                if !self.settings.preempt || !lower || delaying {
                    self.master_interval = interval;
                    out.push(Action::ArmMasterDown(self.master_down_interval()));
                }
                // Otherwise a lower-priority master is ignored, and its timer runs out.
            }
            (State::Backup, Event::Priority(p)) => self.priority = p,
            (State::Backup, _) => {}

            (State::Master, Event::Shutdown) => {
                out.push(Action::StopTimers);
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveAddresses);
                self.enter(State::Initialize, &mut out);
            }
            (State::Master, Event::AdverTimer) => {
                out.push(Action::SendAdvert {
                    priority: self.priority,
                });
                out.push(Action::ArmAdver(self.settings.interval));
            }
            (State::Master, Event::Advert { priority: 0, .. }) => {
                out.push(Action::SendAdvert {
                    priority: self.priority,
                });
                out.push(Action::ArmAdver(self.settings.interval));
            }
            (
                State::Master,
                Event::Advert {
                    from,
                    priority,
                    interval,
                },
            ) => {
                let higher = priority > self.priority
                    || (priority == self.priority && from > self.settings.primary);
                if higher {
                    out.push(Action::StopTimers);
                    out.push(Action::RemoveAddresses);
                    self.master_interval = interval;
                    self.enter(State::Backup, &mut out);
                    out.push(Action::ArmMasterDown(self.master_down_interval()));
                }
            }
            (State::Master, Event::Priority(p)) => {
                self.priority = p;
                // Tell the backups at once, so that a higher one can preempt.
                out.push(Action::SendAdvert { priority: p });
                out.push(Action::ArmAdver(self.settings.interval));
            }
            (State::Master, _) => {}
        }
        out
    }

    fn become_master(&mut self, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.priority,
        });
        out.push(Action::AddAddresses);
        out.push(Action::GratuitousArp);
        out.push(Action::ArmAdver(self.settings.interval));
        self.enter(State::Master, out);
    }

    fn become_backup(&mut self, out: &mut Vec<Action>) {
        self.master_interval = self.settings.interval;
        self.lower_seen = None;
        self.enter(State::Backup, out);
        out.push(Action::ArmMasterDown(self.master_down_interval()));
    }

    fn enter(&mut self, state: State, out: &mut Vec<Action>) {
        self.state = state;
        out.push(Action::Entered(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const PEER_LOW: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);
    const PEER_HIGH: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    const SEC: Duration = Duration::from_secs(1);

    fn machine(priority: u8) -> Machine {
        Machine::new(Settings {
            version: Version::V3,
            priority,
            interval: SEC,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary: ME,
        })
    }

    fn advert(from: Ipv4Addr, priority: u8) -> Event {
        Event::Advert {
            from,
            priority,
            interval: SEC,
        }
    }

    fn started(priority: u8) -> (Machine, Instant) {
        let mut m = machine(priority);
        let now = Instant::now();
        m.handle(Event::Startup, now);
        (m, now)
    }

    fn master(priority: u8) -> (Machine, Instant) {
        let (mut m, now) = started(priority);
        m.handle(Event::MasterDownTimer, now);
        assert_eq!(m.state(), State::Master);
        (m, now)
    }

    #[test]
    fn timers_follow_rfc_5798() {
        let m = machine(100);
        // Skew_Time = ((256 - 100) * 1 s) / 256; Master_Down_Interval = 3 s + skew.
        assert_eq!(m.skew(), SEC * 156 / 256);
        assert_eq!(m.master_down_interval(), SEC * 3 + SEC * 156 / 256);
        let mut v2 = machine(200);
        v2.settings.version = Version::V2;
        v2.settings.interval = SEC * 2;
        v2.master_interval = SEC * 2;
        assert_eq!(v2.skew(), SEC * 56 / 256, "version 2's skew is in seconds");
        assert_eq!(v2.master_down_interval(), SEC * 6 + SEC * 56 / 256);
    }

    #[test]
    fn startup_goes_to_backup_or_to_master_for_the_address_owner() {
        let mut m = machine(100);
        let acts = m.handle(Event::Startup, Instant::now());
        assert_eq!(m.state(), State::Backup);
        assert_eq!(
            acts,
            [
                Action::Entered(State::Backup),
                Action::ArmMasterDown(m.master_down_interval())
            ]
        );
        let mut owner = machine(255);
        let acts = owner.handle(Event::Startup, Instant::now());
        assert_eq!(owner.state(), State::Master);
        assert_eq!(
            acts,
            [
                Action::SendAdvert { priority: 255 },
                Action::AddAddresses,
                Action::GratuitousArp,
                Action::ArmAdver(SEC),
                Action::Entered(State::Master)
            ]
        );
    }

    #[test]
    fn a_backup_takes_over_when_the_master_goes_quiet() {
        let (mut m, now) = started(100);
        let acts = m.handle(Event::MasterDownTimer, now);
        assert!(acts.contains(&Action::AddAddresses));
        assert!(acts.contains(&Action::GratuitousArp));
        assert!(acts.contains(&Action::SendAdvert { priority: 100 }));
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn a_backup_resets_its_timer_on_adverts_and_learns_the_masters_interval() {
        let (mut m, now) = started(100);
        let acts = m.handle(
            Event::Advert {
                from: PEER_HIGH,
                priority: 150,
                interval: Duration::from_millis(100),
            },
            now,
        );
        let mdi = Duration::from_millis(300) + Duration::from_millis(100) * 156 / 256;
        assert_eq!(acts, [Action::ArmMasterDown(mdi)]);
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn priority_zero_means_take_over_after_the_skew() {
        let (mut m, now) = started(100);
        let acts = m.handle(advert(PEER_HIGH, 0), now);
        assert_eq!(acts, [Action::ArmMasterDown(m.skew())]);
    }

    #[test]
    fn preemption_ignores_a_lower_master_and_nopreempt_accepts_it() {
        let (mut m, now) = started(100);
        assert!(m.handle(advert(PEER_HIGH, 50), now).is_empty(), "ignored");
        let mut np = machine(100);
        np.settings.preempt = false;
        np.handle(Event::Startup, now);
        assert_eq!(
            np.handle(advert(PEER_HIGH, 50), now),
            [Action::ArmMasterDown(np.master_down_interval())]
        );
    }

    #[test]
    fn preempt_delay_holds_back_preemption_for_a_while() {
        let mut m = machine(100);
        m.settings.preempt_delay = SEC * 5;
        let t0 = Instant::now();
        m.handle(Event::Startup, t0);
        let accepted = [Action::ArmMasterDown(m.master_down_interval())];
        assert_eq!(m.handle(advert(PEER_HIGH, 50), t0), accepted);
        assert_eq!(m.handle(advert(PEER_HIGH, 50), t0 + SEC * 4), accepted);
        assert!(
            m.handle(advert(PEER_HIGH, 50), t0 + SEC * 5).is_empty(),
            "now preempts"
        );
    }

    #[test]
    fn a_master_sends_adverts_on_its_timer() {
        let (mut m, now) = master(100);
        assert_eq!(
            m.handle(Event::AdverTimer, now),
            [Action::SendAdvert { priority: 100 }, Action::ArmAdver(SEC)]
        );
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_or_a_higher_address_at_equal_priority() {
        let (mut m, now) = master(100);
        assert!(
            m.handle(advert(PEER_HIGH, 90), now).is_empty(),
            "lower: ignored"
        );
        assert!(
            m.handle(advert(PEER_LOW, 100), now).is_empty(),
            "equal, lower address"
        );
        let acts = m.handle(advert(PEER_HIGH, 100), now);
        assert_eq!(
            m.state(),
            State::Backup,
            "equal priority, higher address wins"
        );
        assert!(acts.contains(&Action::RemoveAddresses));
        let (mut m, now) = master(100);
        m.handle(advert(PEER_LOW, 101), now);
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn a_master_answers_priority_zero_with_an_advert() {
        let (mut m, now) = master(100);
        assert_eq!(
            m.handle(advert(PEER_HIGH, 0), now),
            [Action::SendAdvert { priority: 100 }, Action::ArmAdver(SEC)]
        );
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn shutdown_of_a_master_sends_priority_zero_and_drops_the_addresses() {
        let (mut m, now) = master(100);
        let acts = m.handle(Event::Shutdown, now);
        assert_eq!(
            acts,
            [
                Action::StopTimers,
                Action::SendAdvert { priority: 0 },
                Action::RemoveAddresses,
                Action::Entered(State::Initialize)
            ]
        );
        let (mut b, now) = started(100);
        b.handle(Event::Shutdown, now);
        assert_eq!(b.state(), State::Initialize);
    }

    #[test]
    fn a_fault_hands_over_and_recovery_returns_as_backup() {
        let (mut m, now) = master(100);
        let acts = m.handle(Event::Fault(true), now);
        assert_eq!(m.state(), State::Fault);
        assert!(acts.contains(&Action::SendAdvert { priority: 0 }));
        assert!(acts.contains(&Action::RemoveAddresses));
        assert!(
            m.handle(advert(PEER_HIGH, 50), now).is_empty(),
            "deaf while faulty"
        );
        assert!(m.handle(Event::MasterDownTimer, now).is_empty());
        m.handle(Event::Fault(false), now);
        assert_eq!(m.state(), State::Backup);
        // A fault before startup keeps the instance in Fault.
        let mut f = machine(100);
        f.handle(Event::Fault(true), now);
        f.handle(Event::Startup, now);
        assert_eq!(f.state(), State::Fault);
    }

    #[test]
    fn tracking_lowers_a_masters_priority_so_a_backup_can_preempt() {
        let (mut m, now) = master(100);
        assert_eq!(
            m.handle(Event::Priority(80), now),
            [Action::SendAdvert { priority: 80 }, Action::ArmAdver(SEC)]
        );
        assert_eq!(m.priority(), 80);
        // The backup at 90 now ignores the master's adverts and takes over on its timer.
        let (mut b, now) = started(90);
        assert!(b.handle(advert(PEER_LOW, 80), now).is_empty());
        b.handle(Event::MasterDownTimer, now);
        assert_eq!(b.state(), State::Master);
        // And the old master yields to it.
        m.handle(advert(PEER_LOW, 90), now);
        assert_eq!(m.state(), State::Backup);
    }
}
