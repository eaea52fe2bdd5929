//! A run: set up the exchange, start the consumers and wait until they are ready, start the
//! producers, print a line each second, stop, and summarise.

use crate::options::{Driver, Options, Uri};
use crate::stats::{Counts, Percentiles, Stats, Summary, rate};
use crate::{amqprs_driver, native, sink};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// What every producer and consumer task shares.
pub struct Shared {
    pub opts: Options,
    pub uri: Uri,
    /// Where consumers connect (`--consumer-uri`, else `uri`).
    pub consumer_uri: Uri,
    pub exchange: String,
    pub routing_key: String,
    pub stats: Stats,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    /// A consumers-only run with `-C N`: the consumers, together, take N messages and leave
    /// the rest in the queue. `taken` counts the deliveries they claimed.
    consumer_limit: Option<u64>,
    taken: AtomicU64,
    /// With --verify: per producer, a bit per sequence number received.
    seen: Option<Mutex<Vec<Vec<u64>>>>,
    duplicates: AtomicU64,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stop_producers.load(Ordering::Relaxed)
    }

    pub fn consumers_done(&self) -> bool {
        self.stop_consumers.load(Ordering::Relaxed)
    }

    /// Whether a consumer may take the delivery that just arrived: always, unless the run's
    /// consumers already took their `-C` messages. A consumer neither counts nor acknowledges
    /// a delivery it may not take, so the broker keeps it (with `-a` it is gone all the same).
    pub fn take_delivery(&self) -> bool {
        match self.consumer_limit {
            None => true,
            Some(n) => self.taken.fetch_add(1, Ordering::Relaxed) < n,
        }
    }

    /// Notes that a message arrived; counts it as a duplicate if it arrived before.
    pub fn verify(&self, producer: u16, seq: u64) {
        let Some(seen) = &self.seen else { return };
        let Ok(mut seen) = seen.lock() else { return };
        let p = producer as usize;
        if seen.len() <= p {
            seen.resize(p + 1, Vec::new());
        }
        let bits = &mut seen[p];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            bits[word] |= 1 << bit;
        }
    }

    fn distinct_received(&self) -> Option<u64> {
        let seen = self.seen.as_ref()?.lock().ok()?;
        Some(seen.iter().flatten().map(|w| w.count_ones() as u64).sum())
    }
}

fn random_key() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("perf-{}", u64::from_le_bytes(b))
}

pub async fn run(mut opts: Options) -> Result<Summary, String> {
    opts.validate()?;
    let _sink = if opts.sink {
        let s = sink::start().await.map_err(|e| format!("sink: {e}"))?;
        opts.uri = format!("amqp://guest:guest@{}/%2f", s.addr);
        Some(s)
    } else {
        None
    };
    let uri = Uri::parse(&opts.uri)?;
    let consumer_uri = match &opts.consumer_uri {
        Some(u) if !opts.sink => Uri::parse(u)?,
        _ => uri.clone(),
    };
    let routing_key = match (&opts.routing_key, &opts.queue) {
        (Some(k), _) => k.clone(),
        (None, Some(q)) if opts.exchange.is_empty() => q.clone(),
        _ => random_key(),
    };
    let shared = Arc::new(Shared {
        exchange: opts.exchange.clone(),
        routing_key,
        uri,
        consumer_uri,
        stats: Stats::default(),
        stop_producers: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        consumer_limit: opts
            .count
            .filter(|&n| opts.producers == 0 && opts.consumers > 0 && n > 0),
        taken: AtomicU64::new(0),
        seen: opts.verify.then(|| Mutex::new(Vec::new())),
        duplicates: AtomicU64::new(0),
        opts,
    });
    let opts = &shared.opts;
    let target = if opts.sink {
        "built-in sink".to_owned()
    } else {
        format!("{}:{}", shared.uri.host, shared.uri.port)
    };

    declare_topology(&shared).await?;
    let idle = open_idle(&shared).await?;

    let mut consumers = JoinSet::new();
    let mut ready = Vec::new();
    for _ in 0..opts.consumers {
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        let s = shared.clone();
        consumers.spawn(async move {
            match s.opts.driver {
                Driver::Native => native::consumer::run(s, tx).await,
                Driver::Amqprs => amqprs_driver::consume(s, tx).await,
            }
        });
    }
    for r in ready {
        if r.await.is_err() {
            // The consumer failed before it was ready; its error is reported below.
            break;
        }
    }
    if let Some(Ok(Err(e))) = consumers.try_join_next() {
        return Err(format!("consumer: {e}"));
    }

    let start = Instant::now();
    let mut producers = JoinSet::new();
    for id in 0..opts.producers {
        let s = shared.clone();
        producers.spawn(async move {
            match s.opts.driver {
                Driver::Native => native::producer::run(s, id as u16).await,
                Driver::Amqprs => amqprs_driver::produce(s, id as u16).await,
            }
        });
    }

    let reporter = tokio::spawn(report(shared.clone(), start));
    let deadline = opts.duration.map(|d| start + Duration::from_secs(d));
    let limit = shared.consumer_limit;
    let received_all =
        || limit.is_some_and(|n| shared.stats.counters.received.load(Ordering::Relaxed) >= n);
    let mut producer_error = None;
    let mut consumer_error = None;
    loop {
        if received_all() || (producers.is_empty() && deadline.is_none() && limit.is_none()) {
            break;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let wait = match (left, limit) {
            // Consumers alone with -C: look again every so often for that many received.
            (Some(l), Some(_)) => l.min(Duration::from_millis(50)),
            (None, Some(_)) => Duration::from_millis(50),
            (Some(l), None) => l,
            (None, None) => Duration::from_secs(3600),
        };
        tokio::select! {
            r = producers.join_next(), if !producers.is_empty() => {
                if let Some(Ok(Err(e))) = r {
                    producer_error = Some(e);
                }
            }
            // A consumer ends before the stop only when it fails; waiting for -C received
            // would then never end.
            r = consumers.join_next(), if limit.is_some() && !consumers.is_empty() => {
                if let Some(Ok(Err(e))) = r {
                    consumer_error = Some(e);
                }
                break;
            }
            _ = tokio::time::sleep(wait) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    shared.stop_producers.store(true, Ordering::Relaxed);
                }
            }
        }
        // Without producers the run is consumers (or idle connections) for the duration, or
        // until the consumers took -C messages, whichever comes first.
        let before_deadline = deadline.is_none_or(|d| Instant::now() < d);
        let waiting_out_duration = opts.producers == 0 && deadline.is_some() && before_deadline;
        let waiting_for_count = limit.is_some() && before_deadline;
        if producers.is_empty() && !waiting_out_duration && !waiting_for_count {
            break;
        }
    }
    shared.stop_producers.store(true, Ordering::Relaxed);
    let producing = start.elapsed().as_secs_f64();

    // Let the consumers catch up with what was sent, while they make progress.
    let fanout = if opts.queue.is_some() {
        1
    } else {
        opts.consumers as u64
    };
    let mut receiving = producing;
    if opts.consumers > 0 {
        let expected = shared.stats.counters.sent.load(Ordering::Relaxed) * fanout;
        let mut last = u64::MAX;
        let mut still_since = Instant::now();
        loop {
            let got = shared.stats.counters.received.load(Ordering::Relaxed);
            if got >= expected || still_since.elapsed() > Duration::from_secs(5) {
                break;
            }
            if got != last {
                last = got;
                still_since = Instant::now();
                receiving = start.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    shared.stop_consumers.store(true, Ordering::Relaxed);
    while let Some(r) = consumers.join_next().await {
        if let Ok(Err(e)) = r {
            consumer_error = Some(e);
        }
    }
    reporter.abort();
    drop(idle);
    if let Some(e) = producer_error {
        return Err(format!("producer: {e}"));
    }
    if let Some(e) = consumer_error {
        return Err(format!("consumer: {e}"));
    }

    let counts = shared.stats.counters.snapshot();
    let seconds = if opts.producers > 0 {
        producing
    } else {
        start.elapsed().as_secs_f64()
    };
    let (lost, duplicated) = match shared.distinct_received() {
        Some(distinct) => (
            Some(counts.sent.saturating_sub(distinct)),
            Some(shared.duplicates.load(Ordering::Relaxed)),
        ),
        None => (None, None),
    };
    Ok(Summary {
        driver: opts.driver.name().to_owned(),
        target,
        seconds,
        counts,
        sent_rate: rate(counts.sent, seconds),
        confirmed_rate: rate(counts.confirmed, seconds),
        // Messages can pile up in socket buffers and the broker while producers run, so the
        // received rate counts until the last message arrived.
        received_rate: rate(counts.received, receiving.max(seconds)),
        latency_us: shared.stats.end_to_end.total(),
        confirm_latency_us: shared.stats.confirm.total(),
        lost,
        duplicated,
    })
}

/// Declares the exchange and, with `-u`, the shared queue and its binding, before anyone
/// publishes: without consumers nobody else would, and the messages would go nowhere.
async fn declare_topology(shared: &Shared) -> Result<(), String> {
    let x = &shared.exchange;
    let declare_exchange = !x.is_empty() && !x.starts_with("amq.");
    if !declare_exchange && shared.opts.queue.is_none() {
        return Ok(());
    }
    let mut conn = native::conn::Conn::open(&shared.uri).await?;
    if declare_exchange {
        conn.call(
            warren_amqp::methods::ExchangeDeclare {
                exchange: x.as_str().into(),
                kind: shared.opts.exchange_type.as_str().into(),
                durable: shared.opts.persistent(),
                ..Default::default()
            }
            .into(),
            "exchange.declare_ok",
            |m| matches!(m, warren_amqp::Method::ExchangeDeclareOk(_)),
        )
        .await?;
    }
    if shared.opts.queue.is_some() {
        native::consumer::declare(&mut conn, shared).await?;
    }
    conn.close().await;
    Ok(())
}

/// Opens `--connections` idle connections and keeps them open until dropped.
async fn open_idle(shared: &Shared) -> Result<Vec<native::conn::Conn>, String> {
    let mut conns = Vec::with_capacity(shared.opts.connections as usize);
    for _ in 0..shared.opts.connections {
        conns.push(native::conn::Conn::open(&shared.uri).await?);
    }
    if shared.opts.connections > 0 && !shared.opts.quiet {
        println!("opened {} idle connections", shared.opts.connections);
    }
    Ok(conns)
}

async fn report(shared: Arc<Shared>, start: Instant) {
    let mut last = Counts::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = shared.stats.counters.snapshot();
        let d = now.minus(&last);
        last = now;
        let e2e: Percentiles = shared.stats.end_to_end.take_interval();
        let conf: Percentiles = shared.stats.confirm.take_interval();
        if shared.opts.quiet {
            continue;
        }
        let mut line = format!(
            "time {:>5.1}s  sent {:>9} msg/s  confirmed {:>9} msg/s  received {:>9} msg/s  latency p50/p99 {}/{} µs",
            start.elapsed().as_secs_f64(),
            d.sent,
            d.confirmed,
            d.received,
            e2e.p50,
            e2e.p99
        );
        if conf.count > 0 {
            line += &format!("  confirm p50/p99 {}/{} µs", conf.p50, conf.p99);
        }
        println!("{line}");
    }
}
