//! Credit shared between a consumer's channel or connection and the queues that deliver to
//! it: a channel's global prefetch (`basic.qos` with `global`), and the number of deliveries a
//! connection has been sent but not yet written. A queue takes one credit per delivery; when
//! none is left it parks itself here and is woken once credit is released.

use crate::queue::QueueHandle;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
pub struct Credit {
    /// 0 means no limit.
    limit: AtomicU32,
    used: AtomicU32,
    waiters: Mutex<Vec<QueueHandle>>,
}

impl Credit {
    pub fn new(limit: u32) -> Self {
        Credit {
            limit: AtomicU32::new(limit),
            ..Default::default()
        }
    }

    pub fn set_limit(&self, limit: u32) {
        let old = self.limit.swap(limit, Ordering::AcqRel);
        // Raising or removing the limit may unblock queues that were waiting.
        if limit == 0 || (old != 0 && limit > old) {
            self.wake_all();
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        if limit == 0 {
            self.used.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < limit).then_some(u + 1)
            })
            .is_ok()
    }

    /// Takes one credit, or registers `queue` to be woken when credit comes back.
    pub fn acquire_or_wait(&self, queue: &QueueHandle) -> bool {
        if self.try_acquire() {
            return true;
        }
        if let Ok(mut w) = self.waiters.lock() {
            if !w.iter().any(|q| q.id() == queue.id()) {
                w.push(queue.clone());
            }
        }
        // Credit may have come back between the failed attempt and the registration; trying
        // again closes that gap (an extra wake-up later is harmless).
        self.try_acquire()
    }

    /// Takes a credit regardless of the limit, for deliveries that cannot wait (direct
    /// reply-to has no queue to hold the message back in).
    pub fn force_acquire(&self) {
        self.used.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives back `n` credits and wakes the waiting queues if that opened room.
    pub fn release(&self, n: u32) {
        if n == 0 {
            return;
        }
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or(0);
        let limit = self.limit.load(Ordering::Acquire);
        if limit != 0 && before >= limit {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        let waiters = match self.waiters.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => return,
        };
        for q in waiters {
            q.wake();
        }
    }
}
