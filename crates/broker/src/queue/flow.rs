//! Publisher flow control. A queue whose consumers fall behind says so here, and connections
//! wait before handing it more messages until it has caught up. Without this, publishers and
//! consumers compete for the same CPUs and the faster publishers win, so the backlog (and the
//! latency) grows without bound while less gets delivered.
//!
//! Only a queue whose consumers are taking messages fast (`DrainRate`) is ever congested: that
//! is the case where publishers and consumers compete for CPU. A queue without consumers, or
//! whose consumers are slow or stalled, may grow (paging to disk) as queues are meant to, and
//! its publishers are not slowed. And the wait is short (see `connection::outgoing`), so flow
//! control paces publishers without ever stopping them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Ready messages (with consumers attached) above which publishers wait.
pub const HIGH: u64 = 10_000;
/// And below which they go on.
pub const LOW: u64 = 5_000;
/// The same in body bytes, for large messages: past this a queue starts paging to disk
/// (its memory allowance), which only slows consumers further.
pub const HIGH_BYTES: u64 = 8 << 20;
pub const LOW_BYTES: u64 = 4 << 20;

/// Deliveries per window above which consumers count as fast (10,000 a second) ...
const FAST: u64 = 1_000;
/// ... or body bytes (80 MB a second).
const FAST_BYTES: u64 = 8_000_000;
const WINDOW: Duration = Duration::from_millis(100);

/// How fast a queue's consumers take messages, over the last full window and the current one.
#[derive(Debug)]
pub struct DrainRate {
    window_start: Instant,
    /// Deliveries and their body bytes, in the current and the last full window.
    current: (u64, u64),
    previous: (u64, u64),
}

impl DrainRate {
    pub fn new(now: Instant) -> Self {
        DrainRate {
            window_start: now,
            current: (0, 0),
            previous: (0, 0),
        }
    }

    pub fn delivered(&mut self, n: u64, bytes: u64, now: Instant) {
        self.roll(now);
        self.current.0 += n;
        self.current.1 += bytes;
    }

    /// Whether consumers are draining the queue fast.
    pub fn fast(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.current.0.max(self.previous.0) >= FAST
            || self.current.1.max(self.previous.1) >= FAST_BYTES
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            // A gap of more than one window means nothing was delivered in between.
            self.previous = if elapsed >= WINDOW * 2 {
                (0, 0)
            } else {
                self.current
            };
            self.current = (0, 0);
            self.window_start = now;
        }
    }
}

#[derive(Debug, Default)]
pub struct Flow {
    congested: AtomicBool,
    relieved: Notify,
}

impl Flow {
    /// The queue reports its state after each batch of work: how many messages are ready
    /// (and their bytes), and whether consumers are taking them.
    pub fn update(&self, ready: u64, bytes: u64, consuming: bool) {
        let was = self.congested.load(Ordering::Acquire);
        let now = if !consuming {
            false
        } else if was {
            ready > LOW || bytes > LOW_BYTES
        } else {
            ready > HIGH || bytes > HIGH_BYTES
        };
        if now != was {
            self.congested.store(now, Ordering::Release);
            if !now {
                self.relieved.notify_waiters();
            }
        }
    }

    pub fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// Waits until the queue is not congested.
    pub async fn wait(&self) {
        loop {
            let relieved = self.relieved.notified();
            tokio::pin!(relieved);
            relieved.as_mut().enable();
            if !self.congested.load(Ordering::Acquire) {
                return;
            }
            relieved.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn publishers_wait_while_congested_and_go_on_after() {
        let flow = Arc::new(Flow::default());
        flow.update(HIGH + 1, 0, true);
        let waiter = {
            let flow = flow.clone();
            tokio::spawn(async move { flow.wait().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "must wait while congested");
        flow.update(LOW + 1, 0, true);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "hysteresis: still above the low mark"
        );
        flow.update(LOW, 0, true);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("released")
            .unwrap();
    }

    #[test]
    fn only_fast_consumers_count_as_draining() {
        let t0 = Instant::now();
        let mut r = DrainRate::new(t0);
        assert!(!r.fast(t0));
        // A slow consumer: 100 a second.
        for i in 0..20 {
            r.delivered(1, 16, t0 + Duration::from_millis(10 * i));
        }
        assert!(!r.fast(t0 + Duration::from_millis(200)));
        // A fast one: 2,000 within a window.
        let t1 = t0 + Duration::from_secs(1);
        r.delivered(2_000, 32_000, t1);
        assert!(r.fast(t1));
        assert!(
            r.fast(t1 + Duration::from_millis(150)),
            "still, over the last window"
        );
        assert!(
            !r.fast(t1 + Duration::from_millis(500)),
            "a stall empties the windows"
        );
        // A few large messages count as fast too: 20 MB within a window.
        let t2 = t1 + Duration::from_secs(1);
        r.delivered(20, 20_000_000, t2);
        assert!(r.fast(t2));
    }

    #[test]
    fn a_backlog_of_large_messages_congests_by_bytes() {
        let flow = Flow::default();
        flow.update(10, HIGH_BYTES + 1, true);
        assert!(flow.is_congested());
        flow.update(10, LOW_BYTES + 1, true);
        assert!(flow.is_congested(), "hysteresis");
        flow.update(10, LOW_BYTES, true);
        assert!(!flow.is_congested());
    }

    #[tokio::test]
    async fn a_queue_whose_consumers_take_nothing_is_never_congested() {
        let flow = Flow::default();
        flow.update(HIGH * 100, HIGH_BYTES * 100, false);
        tokio::time::timeout(std::time::Duration::from_millis(100), flow.wait())
            .await
            .expect("no wait");
    }
}
