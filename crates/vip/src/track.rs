//! Tracked checks that move an instance's priority or put it in Fault: `vrrp_script` (a
//! command run every `interval`, with `rise`/`fall` and `timeout`), `track_interface` (the
//! link), and `track_warren_lb` (a local warren-lb accepting connections). Each runs as a task
//! and reports its state changes; `effective` turns the states into a priority and a fault,
//! with keepalived's rules for weights.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::mpsc;

/// One tracked thing as the instance weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighted {
    /// Positive: added while healthy. Negative: added (subtracted) while failed. Zero: a
    /// failure puts the instance in Fault.
    pub weight: i32,
    pub healthy: bool,
}

/// The priority an instance runs with, and whether it is in Fault. An address owner (255)
/// is not moved by weights, as in keepalived.
pub fn effective(base: u8, tracked: &[Weighted]) -> (u8, bool) {
    let fault = tracked.iter().any(|t| t.weight == 0 && !t.healthy);
    if base == 255 {
        return (255, fault);
    }
    let delta: i32 = tracked
        .iter()
        .map(|t| match (t.weight, t.healthy) {
            (w, true) if w > 0 => w,
            (w, false) if w < 0 => w,
            _ => 0,
        })
        .sum();
    (((base as i32) + delta).clamp(1, 254) as u8, fault)
}

/// Counts consecutive results into a state with rise and fall, as keepalived's scripts do.
#[derive(Debug, Clone)]
pub struct Debounce {
    rise: u32,
    fall: u32,
    healthy: bool,
    streak: u32,
}

impl Debounce {
    /// Starts healthy, so that an instance does not begin with a lowered priority (and lose
    /// the address for a moment) before its checks have run `fall` times.
    pub fn new(rise: u32, fall: u32) -> Debounce {
        Debounce {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: true,
            streak: 0,
        }
    }

    /// Records a result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak >= needed {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// Runs `sh -c script` every `interval`; reports (index, healthy) on changes.
pub async fn run_script(
    index: usize,
    script: String,
    interval: Duration,
    timeout: Duration,
    mut debounce: Debounce,
    tx: mpsc::UnboundedSender<(usize, bool)>,
) {
    loop {
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        let ok = matches!(tokio::time::timeout(timeout, child).await, Ok(Ok(s)) if s.success());
        if let Some(state) = debounce.record(ok) {
            if tx.send((index, state)).is_err() {
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Watches an interface's link every 100 ms.
pub async fn run_interface(index: usize, name: String, tx: mpsc::UnboundedSender<(usize, bool)>) {
    let mut last = true;
    loop {
        let up = crate::sys::iface::lookup(&name, &[])
            .map(|i| i.running)
            .unwrap_or(false);
        if up != last {
            last = up;
            if tx.send((index, up)).is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that a local warren-lb accepts connections, every 200 ms, down after 2 failures.
pub async fn run_lb(index: usize, addr: SocketAddr, tx: mpsc::UnboundedSender<(usize, bool)>) {
    let mut debounce = Debounce::new(2, 2);
    loop {
        let ok = matches!(
            tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr)
            )
            .await,
            Ok(Ok(_))
        );
        if let Some(state) = debounce.record(ok) {
            if tx.send((index, state)).is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(weight: i32, healthy: bool) -> Weighted {
        Weighted { weight, healthy }
    }

    #[test]
    fn weights_follow_keepalived() {
        assert_eq!(effective(100, &[w(-20, true)]), (100, false));
        assert_eq!(effective(100, &[w(-20, false)]), (80, false));
        assert_eq!(effective(100, &[w(10, true)]), (110, false));
        assert_eq!(effective(100, &[w(10, false)]), (100, false));
        assert_eq!(
            effective(100, &[w(0, false)]),
            (100, true),
            "no weight: fault"
        );
        assert_eq!(
            effective(250, &[w(30, true)]),
            (254, false),
            "capped below 255"
        );
        assert_eq!(effective(10, &[w(-50, false)]), (1, false));
        assert_eq!(
            effective(255, &[w(-50, false)]),
            (255, false),
            "the owner stays"
        );
    }

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let mut d = Debounce::new(2, 3);
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(true), None, "the streak is broken");
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(false), Some(false));
        assert_eq!(d.record(true), None);
        assert_eq!(d.record(true), Some(true));
    }

    #[tokio::test]
    async fn a_failing_script_is_reported_after_fall_runs() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_script(
            3,
            "exit 1".into(),
            Duration::from_millis(10),
            Duration::from_secs(5),
            Debounce::new(1, 2),
            tx,
        ));
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        task.abort();
        assert_eq!(got.expect("reported").expect("message"), (3, false));
    }

    #[tokio::test]
    async fn a_script_that_hangs_fails_by_timeout() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_script(
            0,
            "sleep 10".into(),
            Duration::from_millis(10),
            Duration::from_millis(50),
            Debounce::new(1, 1),
            tx,
        ));
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        task.abort();
        assert_eq!(got.expect("reported").expect("message"), (0, false));
    }
}
