//! One VRRP instance at work: the state machine wired to the socket, the timers, the
//! addresses, gratuitous ARP, the tracked checks and the notify scripts.
//!
//! Leftover virtual addresses (from an instance that was killed) are removed at start. While
//! master, the instance re-adds its addresses with a short kernel lifetime at every
//! advertisement, so a master killed without warning loses them within seconds.

use crate::config::{Config, Instance, TrackScript};
use crate::packet::{Advert, Auth, Version};
use crate::state::{Action, Event, Machine, Settings, State};
use crate::sys::netlink::{Address, Netlink};
use crate::sys::{arp, iface, socket::VrrpSocket};
use crate::track::{self, Debounce, Weighted};
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep, sleep_until};

/// A timer that is either armed for an instant or off.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            sleep: Box::pin(sleep_until(Instant::now())),
            armed: false,
        }
    }

    fn arm(&mut self, after: Duration) {
        self.sleep.as_mut().reset(Instant::now() + after);
        self.armed = true;
    }
}

pub struct Runner {
    inst: Instance,
    machine: Machine,
    socket: VrrpSocket,
    netlink: Netlink,
    iface: iface::Interface,
    primary: Ipv4Addr,
    addresses: Vec<Address>,
    vips: Vec<Ipv4Addr>,
    lifetime_s: u32,
    garp_repeat: u32,
    garp_delay: Duration,
    master_down: Timer,
    adver: Timer,
    tracked: Vec<Weighted>,
}

fn log(inst: &str, msg: &str) {
    eprintln!("warren-vip: ({inst}) {msg}");
}

impl Runner {
    pub fn new(cfg: &Config, inst: Instance) -> std::io::Result<Runner> {
        let vips: Vec<Ipv4Addr> = inst.addresses.iter().map(|a| a.addr).collect();
        let iface = iface::lookup(&inst.interface, &vips)?;
        let primary = inst.unicast_src.or(iface.primary).ok_or_else(|| {
            std::io::Error::other(format!("{} has no IPv4 address", inst.interface))
        })?;
        let netlink = Netlink::open()?;
        let mut addresses = Vec::new();
        for a in &inst.addresses {
            let dev = a.dev.as_deref().unwrap_or(&inst.interface);
            let index = if dev == inst.interface {
                iface.index
            } else {
                iface::lookup(dev, &vips)?.index
            };
            addresses.push(Address {
                index,
                addr: a.addr,
                prefix: a.prefix,
                label: a.label.clone(),
            });
        }
        // An instance killed before us may have left its addresses behind.
        for a in &addresses {
            netlink.remove(a)?;
        }
        let socket = VrrpSocket::open(&inst.interface, primary, &inst.unicast_peers)?;
        let machine = Machine::new(Settings {
            version: inst.version,
            priority: inst.priority,
            interval: inst.interval,
            preempt: inst.preempt,
            preempt_delay: inst.preempt_delay,
            primary,
        });
        let lifetime_s = (inst.interval.as_secs_f64() * 3.0).ceil().max(2.0) as u32;
        let scripts: Vec<&TrackScript> = inst
            .track_scripts
            .iter()
            .filter_map(|t| cfg.scripts.iter().find(|s| s.name == t.name))
            .collect();
        let mut tracked = Vec::new();
        for (t, s) in inst.track_scripts.iter().zip(&scripts) {
            tracked.push(Weighted {
                weight: t.weight.unwrap_or(s.weight),
                healthy: true,
            });
        }
        for t in &inst.track_interfaces {
            tracked.push(Weighted {
                weight: t.weight.unwrap_or(0),
                healthy: true,
            });
        }
        if inst.track_lb.is_some() {
            tracked.push(Weighted {
                weight: 0,
                healthy: true,
            });
        }
        Ok(Runner {
            machine,
            socket,
            netlink,
            iface,
            primary,
            addresses,
            vips,
            lifetime_s,
            garp_repeat: cfg.garp_master_repeat.max(1),
            garp_delay: cfg.garp_master_delay,
            master_down: Timer::new(),
            adver: Timer::new(),
            tracked,
            inst,
        })
    }

    fn start_trackers(&self, cfg: &Config, tx: &mpsc::UnboundedSender<(usize, bool)>) {
        let mut index = 0;
        for t in &self.inst.track_scripts {
            if let Some(s) = cfg.scripts.iter().find(|s| s.name == t.name) {
                tokio::spawn(track::run_script(
                    index,
                    s.script.clone(),
                    s.interval,
                    s.timeout,
                    Debounce::new(s.rise, s.fall),
                    tx.clone(),
                ));
            }
            index += 1;
        }
        for t in &self.inst.track_interfaces {
            tokio::spawn(track::run_interface(index, t.name.clone(), tx.clone()));
            index += 1;
        }
        if let Some(addr) = self.inst.track_lb {
            tokio::spawn(track::run_lb(index, addr, tx.clone()));
        }
    }

    pub async fn run(mut self, cfg: Config, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.start_trackers(&cfg, &tx);
        let acts = self
            .machine
            .handle(Event::Startup, std::time::Instant::now());
        self.apply(acts);
        loop {
            tokio::select! {
                packet = self.socket.recv() => match packet {
                    Ok(p) => self.received(&p),
                    Err(e) => {
                        log(&self.inst.name, &format!("receive failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = self.master_down.sleep.as_mut(), if self.master_down.armed => {
                    self.master_down.armed = false;
                    self.event(Event::MasterDownTimer);
                }
                _ = self.adver.sleep.as_mut(), if self.adver.armed => {
                    self.adver.armed = false;
                    self.event(Event::AdverTimer);
                }
                Some((i, healthy)) = rx.recv() => {
                    if let Some(t) = self.tracked.get_mut(i) {
                        t.healthy = healthy;
                    }
                    let (priority, fault) = track::effective(self.inst.priority, &self.tracked);
                    if fault != (self.machine.state() == State::Fault) {
                        self.event(Event::Fault(fault));
                    }
                    if priority != self.machine.priority() {
                        log(&self.inst.name, &format!("priority is now {priority}"));
                        self.event(Event::Priority(priority));
                    }
                }
                _ = shutdown.changed() => {
                    self.event(Event::Shutdown);
                    return;
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        let acts = self.machine.handle(e, std::time::Instant::now());
        self.apply(acts);
    }

    /// Checks a received packet as RFC 5798 §7.1 asks and hands it to the state machine.
    fn received(&mut self, packet: &[u8]) {
        let (from, advert) = match Advert::decode_ip(packet) {
            Ok(x) => x,
            Err(e) => {
                log(&self.inst.name, &format!("discarded a packet: {e}"));
                return;
            }
        };
        if advert.vrid != self.inst.vrid || from == self.primary {
            return;
        }
        if advert.version != self.inst.version {
            log(
                &self.inst.name,
                "discarded an advertisement of the other VRRP version",
            );
            return;
        }
        if self.inst.version == Version::V2 {
            if advert.auth != self.auth() {
                log(
                    &self.inst.name,
                    &format!("discarded an advertisement from {from}: authentication mismatch"),
                );
                return;
            }
            if Duration::from_millis(advert.interval_cs as u64 * 10) != self.inst.interval {
                log(
                    &self.inst.name,
                    &format!("discarded an advertisement from {from}: advert_int mismatch"),
                );
                return;
            }
        }
        // RFC 3768 and 5798 §7.1: a list of addresses that differs from ours is logged, and
        // dropped unless it comes from the address owner.
        if !same_set(&advert.addresses, &self.vips) {
            log(
                &self.inst.name,
                &format!("advertisement from {from} lists other addresses (misconfiguration?)"),
            );
            if advert.priority != 255 {
                return;
            }
        }
        let interval = Duration::from_millis(advert.interval_cs.max(1) as u64 * 10);
        self.event(Event::Advert {
            from,
            priority: advert.priority,
            interval,
        });
    }

    fn auth(&self) -> Auth {
        match &self.inst.auth_pass {
            Some(p) if self.inst.version == Version::V2 => Auth::simple(p),
            _ => Auth::None,
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => {
                    let advert = Advert {
                        version: self.inst.version,
                        vrid: self.inst.vrid,
                        priority,
                        interval_cs: (self.inst.interval.as_millis() / 10) as u16,
                        addresses: self.vips.clone(),
                        auth: self.auth(),
                    };
                    if let Err(e) = self.socket.send(&advert, self.primary) {
                        log(
                            &self.inst.name,
                            &format!("cannot send an advertisement: {e}"),
                        );
                    }
                    if priority != 0 && self.machine.state() == State::Master {
                        self.renew_addresses();
                    }
                }
                Action::AddAddresses => self.renew_addresses(),
                Action::RemoveAddresses => {
                    for addr in &self.addresses {
                        if let Err(e) = self.netlink.remove(addr) {
                            log(
                                &self.inst.name,
                                &format!("cannot remove {}: {e}", addr.addr),
                            );
                        }
                    }
                }
                Action::GratuitousArp => self.gratuitous_arp(),
                Action::ArmMasterDown(d) => self.master_down.arm(d),
                Action::ArmAdver(d) => self.adver.arm(d),
                Action::StopTimers => {
                    self.master_down.armed = false;
                    self.adver.armed = false;
                }
                Action::Entered(state) => self.entered(state),
            }
        }
    }

    /// Adds (or refreshes) the addresses with their short lifetime.
    fn renew_addresses(&self) {
        for addr in &self.addresses {
            if let Err(e) = self.netlink.add(addr, Some(self.lifetime_s)) {
                log(&self.inst.name, &format!("cannot add {}: {e}", addr.addr));
            }
        }
    }

    fn gratuitous_arp(&self) {
        let Some(mac) = self.iface.mac else { return };
        let (index, vips, repeat, delay) = (
            self.iface.index,
            self.vips.clone(),
            self.garp_repeat,
            self.garp_delay,
        );
        let send = move || {
            for _ in 0..repeat {
                let _ = arp::announce(index, mac, &vips);
            }
        };
        send();
        // keepalived repeats the announcement once more after a delay.
        if !delay.is_zero() {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                send();
            });
        }
    }

    fn entered(&self, state: State) {
        log(&self.inst.name, &format!("Entering {} STATE", state.name()));
        let script = match state {
            State::Master => &self.inst.notify_master,
            State::Backup => &self.inst.notify_backup,
            State::Fault => &self.inst.notify_fault,
            State::Initialize => &None,
        };
        let mut commands: Vec<String> = script.iter().cloned().collect();
        if let (Some(n), State::Master | State::Backup | State::Fault) = (&self.inst.notify, state)
        {
            commands.push(format!(
                "{n} INSTANCE {} {} {}",
                self.inst.name,
                state.name(),
                self.machine.priority()
            ));
        }
        for c in commands {
            // Notify scripts run on their own; a slow one must not hold the protocol up.
            let _ = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&c)
                .spawn();
        }
    }
}

fn same_set(a: &[Ipv4Addr], b: &[Ipv4Addr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
