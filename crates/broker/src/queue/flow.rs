//! Publisher flow control. A queue whose consumers fall behind says so here, and connections
//! wait before handing it more messages until it has caught up. Without this, publishers and
//! consumers compete for the same CPUs and the faster publishers win, so the backlog (and the
//! latency) grows without bound while less gets delivered.
//!
//! Only a queue whose consumers are taking messages is ever congested; one without consumers,
//! or whose consumers have stalled, may grow (paging to disk) as queues are meant to. And the
//! wait is short (see `connection::outgoing`), so flow control paces publishers without ever
//! stopping them.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Ready messages (with consumers attached) above which publishers wait.
pub const HIGH: u64 = 10_000;
/// And below which they go on.
pub const LOW: u64 = 5_000;

#[derive(Debug, Default)]
pub struct Flow {
    congested: AtomicBool,
    relieved: Notify,
}

impl Flow {
    /// The queue reports its state after each batch of work: how many messages are ready,
    /// and whether consumers are taking them.
    pub fn update(&self, ready: u64, consuming: bool) {
        let was = self.congested.load(Ordering::Acquire);
        let now = if !consuming {
            false
        } else if was {
            ready > LOW
        } else {
            ready > HIGH
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
        flow.update(HIGH + 1, true);
        let waiter = {
            let flow = flow.clone();
            tokio::spawn(async move { flow.wait().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "must wait while congested");
        flow.update(LOW + 1, true);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "hysteresis: still above the low mark"
        );
        flow.update(LOW, true);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("released")
            .unwrap();
    }

    #[tokio::test]
    async fn a_queue_whose_consumers_take_nothing_is_never_congested() {
        let flow = Flow::default();
        flow.update(HIGH * 100, false);
        tokio::time::timeout(std::time::Duration::from_millis(100), flow.wait())
            .await
            .expect("no wait");
    }
}
