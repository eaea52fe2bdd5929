//! A native producer: publishes in batches (one write for many messages) and, with confirms,
//! keeps up to the window in flight while a reader task takes the acks as they come.

use super::conn::{Conn, Error, put_content_header};
use crate::body;
use crate::run::Shared;
use crate::stats::LocalLatency;
use bytes::{BufMut, BytesMut};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use warren_amqp::frame::write_method;
use warren_amqp::methods::*;
use warren_amqp::{BasicProperties, Frame, Method};

/// Messages per write when nothing else limits the batch.
const BATCH: u64 = 128;

/// Which sequence numbers the broker has confirmed, from acks that may be `multiple` and may
/// arrive out of order.
#[derive(Default)]
pub struct ConfirmTracker {
    /// Every sequence up to here is settled.
    floor: u64,
    /// Settled sequences above the floor.
    above: BTreeSet<u64>,
}

impl ConfirmTracker {
    /// Records an ack or nack; returns the sequences it newly settles.
    pub fn settle(&mut self, tag: u64, multiple: bool) -> Vec<u64> {
        let mut newly = Vec::new();
        if multiple {
            for s in self.floor + 1..=tag {
                if !self.above.remove(&s) {
                    newly.push(s);
                }
            }
            self.floor = self.floor.max(tag);
        } else if tag > self.floor && self.above.insert(tag) {
            newly.push(tag);
        }
        while self.above.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
        newly
    }
}

pub async fn run(shared: Arc<Shared>, id: u16) -> Result<(), Error> {
    let opts = &shared.opts;
    let mut conn = Conn::open(&shared.uri).await?;
    let window = opts.confirm as u64;
    if window > 0 {
        conn.call(
            ConfirmSelect { nowait: false }.into(),
            "confirm.select_ok",
            |m| matches!(m, Method::ConfirmSelectOk(_)),
        )
        .await?;
    }
    let Conn {
        mut reader,
        mut writer,
        frame_max,
    } = conn;

    // Send times by sequence, for confirm latency; a ring as large as the window.
    let ring_len = (window.max(1)).next_power_of_two() as usize;
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..ring_len).map(|_| AtomicU64::new(0)).collect());
    let permits = Arc::new(Semaphore::new(window as usize));
    let confirms = {
        let shared = shared.clone();
        let sent_at = sent_at.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut tracker = ConfirmTracker::default();
            let mut latency = LocalLatency::new(&shared.stats.confirm);
            let mask = (sent_at.len() - 1) as u64;
            loop {
                let Ok(frame) = reader.frame().await else {
                    // The connection ended: no more confirms will come, so the publish loop
                    // must not wait for window.
                    permits.close();
                    return;
                };
                let (tag, multiple, ok) = match frame {
                    Frame::Method {
                        method: Method::BasicAck(a),
                        ..
                    } => (a.delivery_tag, a.multiple, true),
                    Frame::Method {
                        method: Method::BasicNack(n),
                        ..
                    } => (n.delivery_tag, n.multiple, false),
                    Frame::Method {
                        method: Method::BasicReturn(_),
                        ..
                    } => {
                        shared
                            .stats
                            .counters
                            .returned
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Frame::Method {
                        method: Method::ConnectionCloseOk(_),
                        ..
                    } => return,
                    _ => continue,
                };
                let now = body::now_nanos();
                let newly = tracker.settle(tag, multiple);
                for s in &newly {
                    let t = sent_at[(*s & mask) as usize].load(Ordering::Relaxed);
                    latency.record_nanos(now.saturating_sub(t));
                }
                let n = newly.len() as u64;
                let counter = if ok {
                    &shared.stats.counters.confirmed
                } else {
                    &shared.stats.counters.nacked
                };
                counter.fetch_add(n, Ordering::Relaxed);
                permits.add_permits(n as usize);
            }
        })
    };

    let props = BasicProperties {
        delivery_mode: Some(if opts.persistent() { 2 } else { 1 }),
        ..Default::default()
    }
    .encode();
    let mut method = BytesMut::new();
    write_method(
        &mut method,
        1,
        &BasicPublish {
            exchange: shared.exchange.as_str().into(),
            routing_key: shared.routing_key.as_str().into(),
            ..Default::default()
        }
        .into(),
    );
    let mut body = vec![0u8; opts.size];
    let max_payload = (frame_max as usize).saturating_sub(8).max(1);
    let per_message =
        method.len() + 20 + props.as_bytes().len() + opts.size + 8 * (opts.size / max_payload + 1);
    let mut out = BytesMut::with_capacity(per_message * BATCH as usize);
    let limit = opts.count;
    let mut seq: u64 = 0;
    let mask = (ring_len - 1) as u64;
    let started = tokio::time::Instant::now();

    while !shared.stopping() && limit.is_none_or(|l| seq < l) {
        let mut n = BATCH;
        if let Some(l) = limit {
            n = n.min(l - seq);
        }
        if opts.rate > 0 {
            // Send what the rate allows by now, waiting a little when nothing is due yet.
            let due = (started.elapsed().as_secs_f64() * opts.rate as f64) as u64;
            if due <= seq {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            n = n.min(due - seq);
        }
        if window > 0 {
            n = n.min(window);
            match permits.clone().acquire_many_owned(n as u32).await {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        for _ in 0..n {
            seq += 1;
            out.extend_from_slice(&method);
            put_content_header(&mut out, 1, body.len(), props.as_bytes());
            body::stamp(&mut body, id, seq);
            sent_at[(seq & mask) as usize].store(body::now_nanos(), Ordering::Relaxed);
            for chunk in body.chunks(max_payload) {
                out.put_u8(warren_amqp::constants::FRAME_BODY);
                out.put_u16(1);
                out.put_u32(chunk.len() as u32);
                out.put_slice(chunk);
                out.put_u8(warren_amqp::constants::FRAME_END);
            }
        }
        writer.write_all(&out).await.map_err(|e| e.to_string())?;
        out.clear();
        shared.stats.counters.sent.fetch_add(n, Ordering::Relaxed);
    }

    if window > 0 {
        // Wait (a while) for the last confirms.
        let all = permits.acquire_many(window as u32);
        let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
    }
    // Close with connection.close and wait for close-ok: a broker handles everything sent
    // before it, where a bare socket close could drop what it had not read yet.
    let mut close = BytesMut::new();
    write_method(
        &mut close,
        0,
        &ConnectionClose {
            reply_code: 200,
            reply_text: "done".into(),
            ..Default::default()
        }
        .into(),
    );
    if writer.write_all(&close).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(60), confirms).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_each_sequence_once() {
        let mut t = ConfirmTracker::default();
        assert_eq!(t.settle(2, false), vec![2]);
        assert_eq!(t.settle(3, true), vec![1, 3]);
        assert_eq!(t.settle(3, true), Vec::<u64>::new());
        assert_eq!(t.settle(5, false), vec![5]);
        assert_eq!(t.settle(4, false), vec![4]);
        assert_eq!(t.settle(6, true), vec![6]);
        assert_eq!(t.settle(1, false), Vec::<u64>::new());
    }
}
