//! The built-in sink: the least an AMQP server can do and still serve the benchmark. It
//! answers declarations, confirms every publish at once and hands each message straight to a
//! consumer of a queue it is routed to, with no queue, no storage and no flow control. Running
//! a workload against it measures the load tool itself: a broker cannot be measured faster
//! than this.

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use warren_amqp::frame::{write_body, write_header, write_method};
use warren_amqp::methods::*;
use warren_amqp::{FieldTable, Frame, LongStr, Method, RawProperties, ShortStr, parse_frame};

pub struct Sink {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Consumer {
    out: mpsc::UnboundedSender<Bytes>,
    channel: u16,
    tag: ShortStr,
    next_tag: Arc<AtomicU64>,
}

#[derive(Default)]
struct Registry {
    consumers: Mutex<HashMap<String, (usize, Vec<Consumer>)>>,
    bindings: Mutex<HashMap<(String, String), Vec<String>>>,
    names: AtomicU64,
}

impl Registry {
    /// The queues a publish reaches: by name on the default exchange, else by binding.
    fn queues(&self, exchange: &str, key: &str) -> Vec<String> {
        if exchange.is_empty() {
            return vec![key.to_owned()];
        }
        self.bindings
            .lock()
            .ok()
            .and_then(|b| b.get(&(exchange.to_owned(), key.to_owned())).cloned())
            .unwrap_or_default()
    }

    /// The next consumer of a queue, round-robin.
    fn consumer(&self, queue: &str) -> Option<Consumer> {
        let mut all = self.consumers.lock().ok()?;
        let (next, list) = all.get_mut(queue)?;
        if list.is_empty() {
            return None;
        }
        *next = (*next + 1) % list.len();
        Some(list[*next].clone())
    }
}

pub async fn start() -> std::io::Result<Sink> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let registry = Arc::new(Registry::default());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, registry.clone()));
        }
    });
    Ok(Sink { addr, task })
}

fn frame(channel: u16, m: impl Into<Method>) -> Bytes {
    let mut b = BytesMut::new();
    write_method(&mut b, channel, &m.into());
    b.freeze()
}

async fn serve(stream: TcpStream, registry: Arc<Registry>) {
    let (mut rd, mut wr) = stream.into_split();
    let (out, mut outq) = mpsc::unbounded_channel::<Bytes>();
    // The writer coalesces whatever is queued into one write.
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(first) = outq.recv().await {
            buf.extend_from_slice(&first);
            while let Ok(more) = outq.try_recv() {
                buf.extend_from_slice(&more);
                if buf.len() > 1 << 20 {
                    break;
                }
            }
            if wr.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
        }
    });
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut header = [0u8; 8];
    if rd.read_exact(&mut header).await.is_err() {
        return;
    }
    let _ = out.send(frame(
        0,
        ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::new().with("product", "warren-perf sink"),
            mechanisms: LongStr::from("PLAIN"),
            locales: LongStr::from("en_US"),
        },
    ));
    let mut confirming: HashMap<u16, u64> = HashMap::new();
    let mut publish: Option<(u16, BasicPublish, Option<RawProperties>, u64, BytesMut)> = None;
    let mut acks: Vec<(u16, u64)> = Vec::new();
    loop {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(512 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let f = match parse_frame(&mut buf, 0) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return,
            };
            let (ch, reply): (u16, Option<Method>) = match f {
                Frame::Method { channel, method } => (
                    channel,
                    handle(
                        &registry,
                        &out,
                        channel,
                        method,
                        &mut confirming,
                        &mut publish,
                    ),
                ),
                Frame::Header { channel, header } => {
                    if let Some(p) = publish.as_mut() {
                        p.2 = Some(header.properties);
                        p.3 = header.body_size;
                    }
                    (channel, None)
                }
                Frame::Body { channel, payload } => {
                    if let Some(p) = publish.as_mut() {
                        p.4.extend_from_slice(&payload);
                    }
                    (channel, None)
                }
                Frame::Heartbeat { .. } => continue,
            };
            if let Some(m) = reply {
                let _ = out.send(frame(ch, m));
            }
            // A whole message arrived: forward it and confirm it.
            let complete =
                matches!(&publish, Some((_, _, Some(_), size, body)) if body.len() as u64 >= *size);
            if complete {
                if let Some((channel, p, Some(props), _, body)) = publish.take() {
                    forward(&registry, &p, &props, body.freeze());
                    if let Some(seq) = confirming.get_mut(&channel) {
                        *seq += 1;
                        acks.push((channel, *seq));
                    }
                }
            }
        }
        // One multiple ack per channel for everything confirmed in this read.
        acks.sort_unstable();
        acks.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = earlier.1.max(later.1);
                true
            } else {
                false
            }
        });
        for (channel, tag) in acks.drain(..) {
            let _ = out.send(frame(
                channel,
                BasicAck {
                    delivery_tag: tag,
                    multiple: true,
                },
            ));
        }
    }
}

fn handle(
    registry: &Registry,
    out: &mpsc::UnboundedSender<Bytes>,
    channel: u16,
    method: Method,
    confirming: &mut HashMap<u16, u64>,
    publish: &mut Option<(u16, BasicPublish, Option<RawProperties>, u64, BytesMut)>,
) -> Option<Method> {
    Some(match method {
        Method::ConnectionStartOk(_) => ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 0,
        }
        .into(),
        Method::ConnectionTuneOk(_) => return None,
        Method::ConnectionOpen(_) => ConnectionOpenOk::default().into(),
        Method::ConnectionClose(_) => ConnectionCloseOk {}.into(),
        Method::ChannelOpen(_) => ChannelOpenOk::default().into(),
        Method::ChannelClose(_) => ChannelCloseOk {}.into(),
        Method::ConfirmSelect(_) => {
            confirming.insert(channel, 0);
            ConfirmSelectOk {}.into()
        }
        Method::ExchangeDeclare(_) => ExchangeDeclareOk {}.into(),
        Method::QueueDeclare(q) => {
            let name = if q.queue.is_empty() {
                format!("sink-{}", registry.names.fetch_add(1, Ordering::Relaxed))
            } else {
                q.queue.as_str_lossy().into_owned()
            };
            QueueDeclareOk {
                queue: name.into(),
                message_count: 0,
                consumer_count: 0,
            }
            .into()
        }
        Method::QueueBind(b) => {
            if let Ok(mut bindings) = registry.bindings.lock() {
                bindings
                    .entry((
                        b.exchange.as_str_lossy().into_owned(),
                        b.routing_key.as_str_lossy().into_owned(),
                    ))
                    .or_default()
                    .push(b.queue.as_str_lossy().into_owned());
            }
            QueueBindOk {}.into()
        }
        Method::BasicQos(_) => BasicQosOk {}.into(),
        Method::BasicConsume(c) => {
            let tag = if c.consumer_tag.is_empty() {
                ShortStr::from(format!(
                    "sink-ctag-{}",
                    registry.names.fetch_add(1, Ordering::Relaxed)
                ))
            } else {
                c.consumer_tag.clone()
            };
            if let Ok(mut all) = registry.consumers.lock() {
                all.entry(c.queue.as_str_lossy().into_owned())
                    .or_default()
                    .1
                    .push(Consumer {
                        out: out.clone(),
                        channel,
                        tag: tag.clone(),
                        next_tag: Arc::new(AtomicU64::new(1)),
                    });
            }
            BasicConsumeOk { consumer_tag: tag }.into()
        }
        Method::BasicPublish(p) => {
            *publish = Some((channel, p, None, 0, BytesMut::new()));
            return None;
        }
        _ => return None,
    })
}

fn forward(registry: &Registry, p: &BasicPublish, props: &RawProperties, body: Bytes) {
    let exchange = p.exchange.as_str_lossy();
    let key = p.routing_key.as_str_lossy();
    for q in registry.queues(&exchange, &key) {
        let Some(c) = registry.consumer(&q) else {
            continue;
        };
        let mut b = BytesMut::with_capacity(64 + body.len());
        write_method(
            &mut b,
            c.channel,
            &BasicDeliver {
                consumer_tag: c.tag.clone(),
                delivery_tag: c.next_tag.fetch_add(1, Ordering::Relaxed),
                redelivered: false,
                exchange: p.exchange.clone(),
                routing_key: p.routing_key.clone(),
            }
            .into(),
        );
        write_header(&mut b, c.channel, body.len() as u64, props);
        for chunk in body.chunks(131_072 - 8) {
            write_body(&mut b, c.channel, chunk);
        }
        let _ = c.out.send(b.freeze());
    }
}
