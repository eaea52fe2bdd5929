//! Counting and timing: what was sent, confirmed and received, and how long messages took.
//!
//! Producers and consumers count with atomics and time into their own histograms, which they
//! fold into the shared ones every few hundred messages, so measuring costs no lock per
//! message. Each second the reporter takes the interval's figures; at the end the totals make
//! the summary.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latencies are kept in microseconds, from 1 µs to 60 s, to three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub received: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub received: u64,
}

impl Counts {
    pub fn minus(&self, earlier: &Counts) -> Counts {
        Counts {
            sent: self.sent - earlier.sent,
            confirmed: self.confirmed - earlier.confirmed,
            nacked: self.nacked - earlier.nacked,
            returned: self.returned - earlier.returned,
            received: self.received - earlier.received,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A shared latency record: an interval histogram for the per-second line and a total one.
pub struct Latency {
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            interval: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
        }
    }
}

impl Latency {
    /// Folds a task's local histogram in and clears it.
    pub fn merge(&self, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        if let Ok(mut i) = self.interval.lock() {
            let _ = i.add(&*local);
        }
        if let Ok(mut t) = self.total.lock() {
            let _ = t.add(&*local);
        }
        local.reset();
    }

    /// The interval's percentiles, starting a new interval.
    pub fn take_interval(&self) -> Percentiles {
        match self.interval.lock() {
            Ok(mut i) => {
                let p = Percentiles::of(&i);
                i.reset();
                p
            }
            Err(_) => Percentiles::default(),
        }
    }

    pub fn total(&self) -> Percentiles {
        self.total
            .lock()
            .map(|t| Percentiles::of(&t))
            .unwrap_or_default()
    }
}

/// A task's own latency recorder, folded into the shared one now and then.
pub struct LocalLatency<'a> {
    shared: &'a Latency,
    hist: Histogram<u64>,
}

impl<'a> LocalLatency<'a> {
    pub fn new(shared: &'a Latency) -> Self {
        LocalLatency {
            shared,
            hist: histogram(),
        }
    }

    pub fn record_nanos(&mut self, nanos: u64) {
        let _ = self.hist.record((nanos / 1000).clamp(1, 60_000_000));
        if self.hist.len() >= 512 {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        self.shared.merge(&mut self.hist);
    }
}

impl Drop for LocalLatency<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Everything a run measures.
#[derive(Default)]
pub struct Stats {
    pub counters: Counters,
    /// Publish to consumer, from the timestamp in the body.
    pub end_to_end: Latency,
    /// Publish to broker confirm.
    pub confirm: Latency,
}

/// Messages per second over an interval, rounded.
pub fn rate(count: u64, seconds: f64) -> u64 {
    if seconds <= 0.0 {
        return 0;
    }
    (count as f64 / seconds).round() as u64
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub driver: String,
    pub target: String,
    pub seconds: f64,
    pub counts: Counts,
    pub sent_rate: u64,
    pub confirmed_rate: u64,
    pub received_rate: u64,
    pub latency_us: Percentiles,
    pub confirm_latency_us: Percentiles,
    /// Set with --verify: messages never received, and received more than once.
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
}

impl Summary {
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let c = &self.confirm_latency_us;
        let mut s = format!(
            "summary ({} driver, {}): {:.1} s, sent {} msg/s, confirmed {} msg/s, received {} msg/s\n",
            self.driver,
            self.target,
            self.seconds,
            self.sent_rate,
            self.confirmed_rate,
            self.received_rate
        );
        s += &format!(
            "  totals: sent {} confirmed {} nacked {} returned {} received {}\n",
            self.counts.sent,
            self.counts.confirmed,
            self.counts.nacked,
            self.counts.returned,
            self.counts.received
        );
        s += &format!(
            "  end-to-end latency µs: p50 {} p95 {} p99 {} p99.9 {} max {}\n",
            l.p50, l.p95, l.p99, l.p999, l.max
        );
        if c.count > 0 {
            s += &format!(
                "  confirm latency µs:    p50 {} p95 {} p99 {} p99.9 {} max {}\n",
                c.p50, c.p95, c.p99, c.p999, c.max
            );
        }
        if let (Some(lost), Some(dup)) = (self.lost, self.duplicated) {
            s += &format!("  verify: lost {lost} duplicated {dup}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let shared = Latency::default();
        {
            let mut local = LocalLatency::new(&shared);
            // 1..=1000 µs, once each.
            for us in 1..=1000u64 {
                local.record_nanos(us * 1000);
            }
        }
        let p = shared.total();
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, 1);
        assert_eq!(p.max, 1000);
        assert!((499..=501).contains(&p.p50), "p50 {}", p.p50);
        assert!((949..=951).contains(&p.p95), "p95 {}", p.p95);
        assert!((989..=991).contains(&p.p99), "p99 {}", p.p99);
        assert!((998..=1000).contains(&p.p999), "p99.9 {}", p.p999);
        // Taking the interval empties it but keeps the total.
        assert_eq!(shared.take_interval().count, 1000);
        assert_eq!(shared.take_interval().count, 0);
        assert_eq!(shared.total().count, 1000);
    }

    #[test]
    fn latencies_are_clamped_not_dropped() {
        let shared = Latency::default();
        let mut local = LocalLatency::new(&shared);
        local.record_nanos(0);
        local.record_nanos(u64::MAX / 2);
        local.flush();
        let p = shared.total();
        assert_eq!(p.count, 2);
        assert_eq!(p.min, 1);
        assert!(p.max >= 60_000_000 - 60_000);
    }

    #[test]
    fn rates_and_interval_counts() {
        assert_eq!(rate(1500, 1.5), 1000);
        assert_eq!(rate(10, 0.0), 0);
        let c = Counters::default();
        c.sent.fetch_add(10, Ordering::Relaxed);
        let a = c.snapshot();
        c.sent.fetch_add(5, Ordering::Relaxed);
        c.received.fetch_add(3, Ordering::Relaxed);
        let d = c.snapshot().minus(&a);
        assert_eq!((d.sent, d.received), (5, 3));
    }
}
