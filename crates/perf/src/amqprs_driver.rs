//! The amqprs driver: the same workload through a third-party client, so that figures can be
//! cross-checked with a client the project did not write. amqprs writes one frame set per
//! publish, so it tops out well below the native driver.

use crate::body;
use crate::native::producer::ConfirmTracker;
use crate::options::ArgValue;
use crate::run::Shared;
use crate::stats::LocalLatency;
use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::*;
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};

type Error = String;

async fn connect(u: &crate::options::Uri) -> Result<(Connection, Channel), Error> {
    let mut args = OpenConnectionArguments::new(&u.host, u.port, &u.user, &u.password);
    args.virtual_host(&u.vhost);
    let conn = Connection::open(&args).await.map_err(|e| e.to_string())?;
    conn.register_callback(DefaultConnectionCallback)
        .await
        .map_err(|e| e.to_string())?;
    let ch = conn.open_channel(None).await.map_err(|e| e.to_string())?;
    Ok((conn, ch))
}

/// Counts confirms as they arrive and gives the producer its window back.
struct Confirms {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    tracker: Mutex<ConfirmTracker>,
    sent_at: Arc<Vec<AtomicU64>>,
}

impl Confirms {
    fn settle(&self, tag: u64, multiple: bool, ok: bool) {
        let newly = match self.tracker.lock() {
            Ok(mut t) => t.settle(tag, multiple),
            Err(_) => return,
        };
        let now = body::now_nanos();
        let mask = (self.sent_at.len() - 1) as u64;
        let mut latency = LocalLatency::new(&self.shared.stats.confirm);
        for s in &newly {
            let t = self.sent_at[(*s & mask) as usize].load(Ordering::Relaxed);
            latency.record_nanos(now.saturating_sub(t));
        }
        let c = &self.shared.stats.counters;
        let counter = if ok { &c.confirmed } else { &c.nacked };
        counter.fetch_add(newly.len() as u64, Ordering::Relaxed);
        self.permits.add_permits(newly.len());
    }
}

struct Callback(Arc<Confirms>);

#[async_trait]
impl ChannelCallback for Callback {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.0.settle(ack.delivery_tag(), ack.mutiple(), true);
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.0.settle(nack.delivery_tag(), nack.multiple(), false);
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {
        self.0
            .shared
            .stats
            .counters
            .returned
            .fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn produce(shared: Arc<Shared>, id: u16) -> Result<(), Error> {
    let opts = &shared.opts;
    let (conn, ch) = connect(&shared.uri).await?;
    let window = opts.confirm as u64;
    let ring = (window.max(1)).next_power_of_two() as usize;
    let confirms = Arc::new(Confirms {
        shared: shared.clone(),
        permits: Arc::new(Semaphore::new(window as usize)),
        tracker: Mutex::new(ConfirmTracker::default()),
        sent_at: Arc::new((0..ring).map(|_| AtomicU64::new(0)).collect()),
    });
    ch.register_callback(Callback(confirms.clone()))
        .await
        .map_err(|e| e.to_string())?;
    if window > 0 {
        ch.confirm_select(ConfirmSelectArguments::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut props = BasicProperties::default();
    props.with_delivery_mode(if opts.persistent() { 2 } else { 1 });
    let props = props.finish();
    let args = BasicPublishArguments::new(&shared.exchange, &shared.routing_key);
    let mut body = vec![0u8; opts.size];
    let mask = (ring - 1) as u64;
    let started = tokio::time::Instant::now();
    let mut seq = 0u64;
    while !shared.stopping() && opts.count.is_none_or(|c| seq < c) {
        if opts.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * opts.rate as f64) as u64;
            if due <= seq {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
        }
        if window > 0 {
            match confirms.permits.clone().acquire_owned().await {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        seq += 1;
        body::stamp(&mut body, id, seq);
        confirms.sent_at[(seq & mask) as usize].store(body::now_nanos(), Ordering::Relaxed);
        ch.basic_publish(props.clone(), body.clone(), args.clone())
            .await
            .map_err(|e| e.to_string())?;
        shared.stats.counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    if window > 0 {
        let all = confirms.permits.acquire_many(window as u32);
        let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
    }
    let _ = ch.close().await;
    let _ = conn.close().await;
    Ok(())
}

pub async fn consume(shared: Arc<Shared>, ready: oneshot::Sender<()>) -> Result<(), Error> {
    let opts = &shared.opts;
    let (conn, ch) = connect(&shared.consumer_uri).await?;
    let mut qargs = FieldTable::new();
    for (k, v) in opts.parsed_queue_args()? {
        let v = match v {
            ArgValue::Int(n) => FieldValue::l(n),
            ArgValue::Str(s) => FieldValue::from(s),
        };
        qargs.insert(k.as_str().try_into().map_err(|_| "bad argument name")?, v);
    }
    let mut declare = match &opts.queue {
        Some(q) => QueueDeclareArguments::new(q),
        None => QueueDeclareArguments::exclusive_server_named(),
    };
    declare.durable(opts.persistent() && opts.queue.is_some());
    declare.arguments(qargs);
    let (queue, _, _) = ch
        .queue_declare(declare)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no declare-ok")?;
    if !shared.exchange.is_empty() {
        ch.queue_bind(QueueBindArguments::new(
            &queue,
            &shared.exchange,
            &shared.routing_key,
        ))
        .await
        .map_err(|e| e.to_string())?;
    }
    ch.basic_qos(BasicQosArguments::new(0, opts.prefetch, false))
        .await
        .map_err(|e| e.to_string())?;
    let mut args = BasicConsumeArguments::new(&queue, "");
    args.manual_ack(!opts.autoack);
    let (_, mut rx) = ch.basic_consume_rx(args).await.map_err(|e| e.to_string())?;
    let _ = ready.send(());
    let ack_every = match opts.prefetch {
        0 => opts.multi_ack_every.max(1) as u64,
        p => (opts.multi_ack_every.max(1) as u64).min((p as u64 / 2).max(1)),
    };
    let mut latency = LocalLatency::new(&shared.stats.end_to_end);
    let mut pending = 0u64;
    let mut last_tag = 0;
    while !shared.consumers_done() {
        let msg = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err("consumer closed by the broker".to_owned()),
            Err(_) => {
                if pending > 0 && !opts.autoack {
                    ch.basic_ack(BasicAckArguments::new(last_tag, true))
                        .await
                        .map_err(|e| e.to_string())?;
                    pending = 0;
                }
                continue;
            }
        };
        // Not taken (the run's -C messages were): neither counted nor acknowledged.
        if !shared.take_delivery() {
            continue;
        }
        shared
            .stats
            .counters
            .received
            .fetch_add(1, Ordering::Relaxed);
        if let Some((sent, producer, seq)) = msg.content.as_deref().and_then(body::read) {
            latency.record_nanos(body::now_nanos().saturating_sub(sent));
            shared.verify(producer, seq);
        }
        if let Some(d) = msg.deliver {
            last_tag = d.delivery_tag();
        }
        pending += 1;
        if !opts.autoack && pending >= ack_every {
            ch.basic_ack(BasicAckArguments::new(last_tag, true))
                .await
                .map_err(|e| e.to_string())?;
            pending = 0;
        }
    }
    // At the end, acknowledge everything taken, or the broker would deliver it again.
    if pending > 0 && !opts.autoack {
        ch.basic_ack(BasicAckArguments::new(last_tag, true))
            .await
            .map_err(|e| e.to_string())?;
    }
    let _ = ch.close().await;
    let _ = conn.close().await;
    Ok(())
}
