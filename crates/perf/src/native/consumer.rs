//! A native consumer: reads deliveries as fast as the socket gives them, times each one from
//! the stamp in its body, and acknowledges in batches (one multiple ack every `-A` messages,
//! written once per read).

use super::conn::{Conn, Error};
use crate::body;
use crate::run::Shared;
use crate::stats::LocalLatency;
use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use warren_amqp::frame::write_method;
use warren_amqp::methods::*;
use warren_amqp::{FieldTable, FieldValue, Frame, Method, parse_frame};

/// Declares what the consumer reads from: the shared queue, or a server-named one of its own
/// bound to the exchange. Returns the queue's name.
pub async fn declare(conn: &mut Conn, shared: &Shared) -> Result<String, Error> {
    let opts = &shared.opts;
    let mut args = FieldTable::new();
    for (k, v) in opts.parsed_queue_args()? {
        let v = match v {
            crate::options::ArgValue::Int(n) => FieldValue::I64(n),
            crate::options::ArgValue::Str(s) => FieldValue::from(s.as_str()),
        };
        args.insert(k, v);
    }
    let (name, exclusive) = match &opts.queue {
        Some(q) => (q.clone(), false),
        None => (String::new(), true),
    };
    let ok = conn
        .call(
            QueueDeclare {
                queue: name.as_str().into(),
                durable: opts.persistent() && !exclusive,
                exclusive,
                arguments: args,
                ..Default::default()
            }
            .into(),
            "queue.declare_ok",
            |m| matches!(m, Method::QueueDeclareOk(_)),
        )
        .await?;
    let Method::QueueDeclareOk(ok) = ok else {
        return Err("no declare-ok".to_owned());
    };
    let queue = ok.queue.as_str_lossy().into_owned();
    if !shared.exchange.is_empty() {
        conn.call(
            QueueBind {
                queue: queue.as_str().into(),
                exchange: shared.exchange.as_str().into(),
                routing_key: shared.routing_key.as_str().into(),
                ..Default::default()
            }
            .into(),
            "queue.bind_ok",
            |m| matches!(m, Method::QueueBindOk(_)),
        )
        .await?;
    }
    Ok(queue)
}

pub async fn run(shared: Arc<Shared>, ready: oneshot::Sender<()>) -> Result<(), Error> {
    let opts = &shared.opts;
    let mut conn = Conn::open(&shared.consumer_uri).await?;
    let queue = declare(&mut conn, &shared).await?;
    conn.call(
        BasicQos {
            prefetch_count: opts.prefetch,
            ..Default::default()
        }
        .into(),
        "basic.qos_ok",
        |m| matches!(m, Method::BasicQosOk(_)),
    )
    .await?;
    conn.call(
        BasicConsume {
            queue: queue.as_str().into(),
            no_ack: opts.autoack,
            ..Default::default()
        }
        .into(),
        "basic.consume_ok",
        |m| matches!(m, Method::BasicConsumeOk(_)),
    )
    .await?;
    let _ = ready.send(());

    let Conn {
        mut reader,
        mut writer,
        ..
    } = conn;
    // Never wait for more acks than prefetch lets arrive.
    let ack_every = match opts.prefetch {
        0 => opts.multi_ack_every.max(1) as u64,
        p => (opts.multi_ack_every.max(1) as u64).min((p as u64 / 2).max(1)),
    };
    let mut latency = LocalLatency::new(&shared.stats.end_to_end);
    let mut acks = BytesMut::new();
    let mut pending = 0u64;
    let mut last_tag = 0u64;
    // The delivery being assembled: body bytes still to come, whether its stamp was read yet,
    // and whether this consumer takes it (see `Shared::take_delivery`). `last_tag` is the
    // last delivery taken: acknowledging up to it leaves those not taken to the broker.
    let mut remaining: u64 = 0;
    let mut stamped = true;
    let mut taking = true;
    loop {
        loop {
            let frame = match parse_frame(&mut reader.buf, 0) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(format!("bad frame from broker: {e}")),
            };
            match frame {
                Frame::Method {
                    method: Method::BasicDeliver(d),
                    ..
                } => {
                    taking = shared.take_delivery();
                    if taking {
                        last_tag = d.delivery_tag;
                    }
                    stamped = false;
                }
                Frame::Header { header, .. } => {
                    remaining = header.body_size;
                    if remaining == 0 {
                        if taking {
                            delivered(&shared, &mut latency, None);
                            pending += 1;
                        }
                        stamped = true;
                    }
                }
                Frame::Body { payload, .. } => {
                    if !stamped {
                        if taking {
                            delivered(&shared, &mut latency, Some(&payload));
                        }
                        stamped = true;
                    }
                    remaining = remaining.saturating_sub(payload.len() as u64);
                    if remaining == 0 && taking {
                        pending += 1;
                    }
                }
                Frame::Method {
                    method: Method::ConnectionClose(c),
                    ..
                } => return Err(format!("broker closed the connection: {}", c.reply_text)),
                Frame::Method {
                    method: Method::ChannelClose(c),
                    ..
                } => return Err(format!("broker closed the channel: {}", c.reply_text)),
                _ => {}
            }
            if !opts.autoack && pending >= ack_every {
                ack_up_to(&mut acks, last_tag);
                pending = 0;
            }
        }
        let done = shared.consumers_done();
        // At the end, acknowledge everything taken, or the broker would deliver it again.
        if done && pending > 0 && !opts.autoack {
            ack_up_to(&mut acks, last_tag);
            pending = 0;
        }
        if !acks.is_empty() {
            writer.write_all(&acks).await.map_err(|e| e.to_string())?;
            acks.clear();
        }
        if done {
            break;
        }
        if reader.buf.capacity() - reader.buf.len() < 64 * 1024 {
            reader.buf.reserve(512 * 1024);
        }
        match tokio::time::timeout(
            Duration::from_millis(100),
            reader.half.read_buf(&mut reader.buf),
        )
        .await
        {
            Ok(Ok(0)) => return Err("broker closed the socket".to_owned()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                // Idle: acknowledge what is pending so prefetch cannot stall the stream.
                if pending > 0 && !opts.autoack {
                    write_method(
                        &mut acks,
                        1,
                        &BasicAck {
                            delivery_tag: last_tag,
                            multiple: true,
                        }
                        .into(),
                    );
                    pending = 0;
                }
            }
        }
    }
    let _ = writer.shutdown().await;
    Ok(())
}

/// Counts one received message and times it from the stamp at the start of its body.
fn delivered(shared: &Shared, latency: &mut LocalLatency<'_>, first_chunk: Option<&[u8]>) {
    shared
        .stats
        .counters
        .received
        .fetch_add(1, Ordering::Relaxed);
    if let Some((sent, producer, seq)) = first_chunk.and_then(body::read) {
        latency.record_nanos(body::now_nanos().saturating_sub(sent));
        shared.verify(producer, seq);
    }
}

/// Acknowledges every delivery up to `tag` on channel 1, in one `multiple` ack.
fn ack_up_to(acks: &mut BytesMut, tag: u64) {
    write_method(
        acks,
        1,
        &BasicAck {
            delivery_tag: tag,
            multiple: true,
        }
        .into(),
    );
}
