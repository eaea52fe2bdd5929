//! A client connection: one task that reads frames, runs every channel's state, takes
//! deliveries from queues, and writes its output in batches.
//!
//! The task waits on four things at once: the socket becoming readable, the mailbox (queues
//! sending deliveries), the socket becoming writable while output is pending, and a timer for
//! heartbeats. Each readable chunk is parsed into as many frames as it holds and all of them are
//! handled before anything is written, so replies, confirms and deliveries produced by one read
//! leave in one write.

mod close;
mod frames;
pub mod handshake;
mod inbox;
pub mod outbuf;
pub mod outgoing;

use crate::alarms::AlarmState;
use crate::broker::Broker;
use crate::channel::{Channel, Ctx};
use crate::mail::{ConnHandle, ConnMsg};
use bytes::BytesMut;
use close::{close_method, refuse};
use foldhash::HashMap;
use handshake::{ClientCaps, Opened};
use outbuf::OutBuf;
use outgoing::Outgoing;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};
use warren_amqp::AmqpError;
use warren_amqp::methods::*;
use warren_amqp::{ShortStr, reply};

/// Stop taking deliveries while this much output waits for the socket.
const OUT_PAUSE_MAIL: usize = 1 << 20;
/// Stop reading the socket while this much output waits (a client that does not read).
const OUT_PAUSE_READ: usize = 8 << 20;
/// How long to wait for connection.close-ok after sending connection.close.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long a closed connection waits for the client to close its socket (RabbitMQ's
/// CLOSING_TIMEOUT, shortened to the heartbeat interval when that is shorter).
const CLOSING_TIMEOUT: Duration = Duration::from_secs(30);

enum Slot {
    Open(Box<Channel>),
    /// We sent channel.close and wait for close-ok; everything else is dropped.
    Closing,
}

/// Why the connection's loop ends.
enum Stop {
    /// The socket closed or failed.
    Done,
    /// The close handshake finished: the client may still be writing what it sent before it
    /// saw our close-ok, so the socket is not dropped at once (see `linger`).
    Closed,
    /// A hard protocol error: send connection.close and wait for close-ok.
    Error(AmqpError),
}

enum Event {
    Shutdown,
    Alarm,
    Read(std::io::Result<usize>),
    Mail(Option<ConnMsg>),
    Wrote(std::io::Result<usize>),
    Tick,
}

/// Serves one client from its first byte to its last.
pub async fn serve<S>(
    mut stream: S,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let opened = match handshake::open(&mut stream, &mut rbuf, &broker, peer).await {
        Ok(o) => o,
        Err(refused) => {
            refuse(&mut stream, peer, refused).await;
            return;
        }
    };
    // A client may name its connection (`connection_name`), which RabbitMQ logs too.
    let name = opened
        .client_properties
        .get("connection_name")
        .and_then(|v| v.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    tracing::info!(%peer, user = %opened.user.name, vhost = %opened.vhost.name, name, "connection opened");
    let id = broker.next_connection_id();
    broker.connection_opened();
    let (tx, mailbox) = mpsc::unbounded_channel();
    let (reader, writer) = tokio::io::split(stream);
    let broker_alarms = broker.alarms.subscribe();
    let now = Instant::now();
    let mut conn = Connection {
        broker,
        vhost: opened.vhost.clone(),
        caps: opened.caps.clone(),
        handle: ConnHandle { id, tx },
        mailbox,
        stash: VecDeque::new(),
        reader,
        writer,
        rbuf,
        out: OutBuf::new(),
        frame_max: opened.frame_max,
        channel_max: opened.channel_max,
        heartbeat: Duration::from_secs(opened.heartbeat as u64),
        channels: HashMap::default(),
        next_channel_key: 1,
        closing_since: None,
        last_read: now,
        last_write: now,
        confirm_channels: Vec::new(),
        outgoing: Outgoing::default(),
        timer: Box::pin(tokio::time::sleep_until(now)),
        timer_at: now,
        timer_spent: true,
        alarms: broker_alarms,
        has_published: false,
        blocked: false,
        blocked_sent: false,
        cleaned_up: false,
        shutting_down: false,
        opened,
        peer,
    };
    conn.broker.post.register(&conn.handle);
    conn.broker.post.describe(crate::mail::ConnInfo {
        id,
        user: conn.opened.user.name.clone(),
        vhost: conn.vhost.name.clone(),
        peer,
        name,
    });
    conn.run(shutdown).await;
    conn.cleanup().await;
    conn.broker.post.unregister(id);
}

struct Connection<S> {
    broker: Arc<Broker>,
    vhost: Arc<crate::vhost::VHost>,
    opened: Opened,
    caps: ClientCaps,
    peer: SocketAddr,
    handle: ConnHandle,
    mailbox: mpsc::UnboundedReceiver<ConnMsg>,
    /// Mail taken out of the mailbox early (see `Channel::cancel`), handled first.
    stash: VecDeque<ConnMsg>,
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    rbuf: BytesMut,
    out: OutBuf,
    frame_max: u32,
    channel_max: u16,
    heartbeat: Duration,
    channels: HashMap<u16, Slot>,
    next_channel_key: u64,
    /// Set once we have sent connection.close.
    closing_since: Option<Instant>,
    last_read: Instant,
    last_write: Instant,
    /// Channels in confirm mode that published during the current batch.
    confirm_channels: Vec<u16>,
    /// Publishes routed in this batch and not yet handed to their queues.
    outgoing: Outgoing,
    /// Heartbeats and the close grace period: fires at `timer_at`, or is `timer_spent`.
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    timer_spent: bool,
    cleaned_up: bool,
    shutting_down: bool,
    /// Resource alarms: while one is raised, a connection that publishes is not read.
    alarms: watch::Receiver<AlarmState>,
    has_published: bool,
    blocked: bool,
    /// Whether the client was told with connection.blocked (it asked to be, in its
    /// capabilities).
    blocked_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Borrows what a channel needs, next to the channel table.
    fn parts(&mut self) -> (Ctx<'_>, &mut HashMap<u16, Slot>) {
        let Connection {
            broker,
            vhost,
            opened,
            caps,
            handle,
            mailbox,
            stash,
            out,
            frame_max,
            channels,
            outgoing,
            ..
        } = self;
        (
            Ctx {
                broker,
                vhost,
                user: &opened.user,
                conn: handle,
                out,
                frame_max: *frame_max,
                consumer_cancel_notify: caps.consumer_cancel_notify,
                mailbox,
                stash,
                outgoing,
            },
            channels,
        )
    }

    fn next_deadline(&self) -> Instant {
        if let Some(since) = self.closing_since {
            return since + CLOSE_GRACE;
        }
        if self.heartbeat.is_zero() {
            return Instant::now() + Duration::from_secs(3600);
        }
        let send_at = self.last_write + self.heartbeat / 2;
        if self.blocked {
            return send_at;
        }
        let dead_at = self.last_read + self.heartbeat * 2;
        send_at.min(dead_at)
    }

    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            while let Some(m) = self.stash.pop_front() {
                self.handle_mail(m).await;
            }
            if !self.outgoing.is_empty() {
                self.outgoing.flush(&self.handle).await;
            }
            let closing = self.closing_since.is_some();
            let want_read = self.out.len() < OUT_PAUSE_READ && !self.blocked;
            let want_mail = !closing && self.out.len() < OUT_PAUSE_MAIL;
            // One timer for the connection's life, moved only when it must fire earlier or
            // has fired: re-arming it for every event costs more than the event.
            let deadline = self.next_deadline();
            if self.timer_spent || deadline < self.timer_at {
                self.timer.as_mut().reset(deadline);
                self.timer_at = deadline;
                self.timer_spent = false;
            }
            let event = {
                let Connection {
                    reader,
                    writer,
                    rbuf,
                    out,
                    mailbox,
                    alarms,
                    timer,
                    ..
                } = self;
                if rbuf.capacity() - rbuf.len() < 8 * 1024 {
                    rbuf.reserve(64 * 1024);
                }
                tokio::select! {
                    _ = shutdown.changed(), if !closing => Event::Shutdown,
                    _ = alarms.changed(), if !closing => Event::Alarm,
                    r = reader.read_buf(rbuf), if want_read => Event::Read(r),
                    m = mailbox.recv(), if want_mail => Event::Mail(m),
                    r = async { writer.write_vectored(&out.io_slices()).await }, if !out.is_empty() => Event::Wrote(r),
                    _ = timer.as_mut() => Event::Tick,
                }
            };
            let step = match event {
                Event::Shutdown => {
                    self.shutting_down = true;
                    Err(Stop::Error(AmqpError::new(
                        reply::CONNECTION_FORCED,
                        "broker forced connection closure with reason 'shutdown'",
                    )))
                }
                Event::Read(Ok(0)) | Event::Read(Err(_)) => Err(Stop::Done),
                Event::Alarm => {
                    self.apply_alarms();
                    Ok(())
                }
                Event::Read(Ok(_)) => {
                    self.last_read = Instant::now();
                    let r = self.handle_input().await;
                    self.apply_alarms();
                    r
                }
                Event::Mail(Some(m)) => {
                    self.handle_mail(m).await;
                    self.outgoing.flush(&self.handle).await;
                    self.flush_confirms();
                    Ok(())
                }
                Event::Mail(None) => Err(Stop::Done),
                Event::Wrote(Ok(0)) | Event::Wrote(Err(_)) => Err(Stop::Done),
                Event::Wrote(Ok(n)) => {
                    self.out.advance(n);
                    self.last_write = Instant::now();
                    Ok(())
                }
                Event::Tick => {
                    self.timer_spent = true;
                    self.tick()
                }
            };
            match step {
                Ok(()) => {}
                Err(Stop::Done) => {
                    self.flush().await;
                    return;
                }
                Err(Stop::Closed) => {
                    // The connection's exclusive queues are gone before the client hears
                    // close-ok, so that it can declare them again at once.
                    self.cleanup().await;
                    self.flush().await;
                    self.linger().await;
                    return;
                }
                Err(Stop::Error(e)) => {
                    if self.closing_since.is_some() {
                        continue;
                    }
                    tracing::warn!(peer = %self.peer, error = %e, "closing connection");
                    self.out.method(0, &close_method(&e));
                    self.closing_since = Some(Instant::now());
                    self.close_channels().await;
                }
            }
        }
    }

    /// Blocks a publishing connection while an alarm is raised, and unblocks it after.
    fn apply_alarms(&mut self) {
        let state = *self.alarms.borrow_and_update();
        if state.any() && self.has_published && !self.blocked {
            self.blocked = true;
            tracing::info!(peer = %self.peer, reason = %state.reason(), "blocking publishing connection");
            if self.caps.connection_blocked {
                self.out.method(
                    0,
                    &ConnectionBlocked {
                        reason: ShortStr::from(state.reason()),
                    }
                    .into(),
                );
                self.blocked_sent = true;
            }
        } else if !state.any() && self.blocked {
            self.blocked = false;
            // Heartbeats were not read while blocked: start counting afresh.
            self.last_read = Instant::now();
            tracing::info!(peer = %self.peer, "unblocking connection");
            if std::mem::take(&mut self.blocked_sent) {
                self.out.method(0, &ConnectionUnblocked {}.into());
            }
        }
    }

    fn tick(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        if let Some(since) = self.closing_since {
            if now >= since + CLOSE_GRACE {
                return Err(Stop::Done);
            }
            return Ok(());
        }
        if self.heartbeat.is_zero() {
            return Ok(());
        }
        // A blocked connection is not read, so its heartbeats are not either.
        if !self.blocked && now >= self.last_read + self.heartbeat * 2 {
            tracing::warn!(peer = %self.peer, timeout = ?self.heartbeat, "missed heartbeats from client");
            return Err(Stop::Done);
        }
        if now >= self.last_write + self.heartbeat / 2 && self.out.is_empty() {
            self.out.heartbeat();
            // Counts as written for the next interval, so one heartbeat goes per interval.
            self.last_write = now;
        }
        Ok(())
    }
}
