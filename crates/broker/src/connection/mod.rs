//! A client connection: one task that reads frames, runs every channel's state, takes
//! deliveries from queues, and writes its output in batches.
//!
//! The task waits on four things at once: the socket becoming readable, the mailbox (queues
//! sending deliveries), the socket becoming writable while output is pending, and a timer for
//! heartbeats. Each readable chunk is parsed into as many frames as it holds and all of them are
//! handled before anything is written, so replies, confirms and deliveries produced by one read
//! leave in one write.

pub mod credit;
pub mod handshake;
pub mod mail;
pub mod outbuf;
pub mod outgoing;

use crate::alarms::AlarmState;
use crate::broker::Broker;
use crate::channel::{Channel, Ctx, QuickMethod};
use crate::connection::credit::Credit;
use crate::connection::mail::{ConnHandle, ConnMsg};
use bytes::BytesMut;
use foldhash::HashMap;
use handshake::{ClientCaps, Opened, Refused};
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
use warren_amqp::amqp_error::erlang_binary;
use warren_amqp::frame::FrameError;
use warren_amqp::methods::*;
use warren_amqp::{Frame, Method, ShortStr, parse_frame, reply};

/// Deliveries a connection may have in its mailbox before queues hold back.
const BACKLOG: u32 = 2048;
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
/// What became of a frame offered to the quick path.
enum Quick {
    Done,
    /// Not a message-path frame: handle it the general way.
    Slow(Frame),
    /// The channel refused the frame: close the channel (or the connection).
    ChannelFailed(u16, AmqpError),
}

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
    tracing::info!(%peer, user = %opened.user.name, vhost = %opened.vhost.name, "connection opened");
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
        handle: ConnHandle {
            id,
            tx,
            backlog: Arc::new(Credit::new(BACKLOG)),
        },
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
    conn.run(shutdown).await;
    conn.cleanup().await;
}

/// Tells a client whose handshake failed why, the way RabbitMQ does, and closes.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, peer: SocketAddr, refused: Refused) {
    let close = match refused {
        Refused::Gone | Refused::BadHeader => None,
        Refused::Silent(reason) => {
            tracing::warn!(%peer, %reason, "connection refused");
            None
        }
        Refused::Error(e) => {
            tracing::warn!(%peer, error = %e, "connection refused");
            Some(e)
        }
        Refused::Login {
            error,
            mechanism,
            tell_client,
        } => {
            tracing::warn!(%peer, %error, "login refused");
            tell_client.then(|| {
                AmqpError::access_refused(format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                ))
            })
        }
    };
    if let Some(e) = close {
        let mut out = BytesMut::new();
        warren_amqp::frame::write_method(&mut out, 0, &close_method(&e));
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

fn close_method(e: &AmqpError) -> Method {
    Method::ConnectionClose(ConnectionClose {
        reply_code: e.code,
        reply_text: ShortStr::from(e.reply_text()),
        class_id: e.class_id,
        method_id: e.method_id,
    })
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
                self.outgoing.flush().await;
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
                    self.outgoing.flush().await;
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
                    self.flush().await;
                    self.cleanup().await;
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

    /// After the close handshake, RabbitMQ leaves the socket to the client to close (up to a
    /// timeout). Dropping it at once, with client bytes still unread, would make the kernel
    /// answer with a reset, which can destroy our close-ok before the client reads it.
    async fn linger(&mut self) {
        let _ = self.writer.shutdown().await;
        let limit = if self.shutting_down {
            // The node is stopping: give the client a moment, not the full timeout.
            Duration::from_secs(1)
        } else if !self.heartbeat.is_zero() && self.heartbeat < CLOSING_TIMEOUT {
            self.heartbeat
        } else {
            CLOSING_TIMEOUT
        };
        let drain = async {
            loop {
                self.rbuf.clear();
                match self.reader.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// Writes what is pending, best effort, before the socket is dropped.
    async fn flush(&mut self) {
        while !self.out.is_empty() {
            match self.writer.write_vectored(&self.out.io_slices()).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.out.advance(n),
            }
        }
        let _ = self.writer.flush().await;
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

    /// Handles every whole frame in the read buffer.
    async fn handle_input(&mut self) -> Result<(), Stop> {
        let result = loop {
            match parse_frame(&mut self.rbuf, self.frame_max) {
                Ok(Some(frame)) => {
                    // The message path is handled in place; the rest, rarer, goes through
                    // a boxed future so that this loop's own future stays small (it is
                    // moved on every poll).
                    let r = match self.handle_frame_quick(frame) {
                        Quick::Done => Ok(()),
                        Quick::Slow(frame) => Box::pin(self.handle_frame(frame)).await,
                        Quick::ChannelFailed(channel, e) => {
                            Box::pin(self.after_channel_call(channel, Err(e))).await
                        }
                    };
                    if let Err(stop) = r {
                        break Err(stop);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    // The stream cannot be parsed past a bad frame: nothing after it is read.
                    self.rbuf.clear();
                    tracing::warn!(peer = %self.peer, error = %e, "unparseable frame");
                    break Err(frame_error(&e).map_or(Stop::Done, Stop::Error));
                }
            }
        };
        // Queues get this chunk's publishes before any confirm for them is written.
        self.outgoing.flush().await;
        self.flush_confirms();
        result
    }

    fn flush_confirms(&mut self) {
        let ids = std::mem::take(&mut self.confirm_channels);
        let (mut ctx, channels) = self.parts();
        for id in ids {
            if let Some(Slot::Open(ch)) = channels.get_mut(&id) {
                ch.flush_confirms(&mut ctx);
            }
        }
    }

    /// Publishes, their content and acknowledgements on open channels, without waiting.
    fn handle_frame_quick(&mut self, frame: Frame) -> Quick {
        if self.closing_since.is_some() {
            return Quick::Slow(frame);
        }
        let (channel, r) = match frame {
            Frame::Heartbeat { .. } => return Quick::Done,
            Frame::Header { channel, header } if channel != 0 => {
                let (mut ctx, channels) = self.parts();
                match channels.get_mut(&channel) {
                    Some(Slot::Open(ch)) => (channel, ch.handle_header(&mut ctx, header)),
                    _ => return Quick::Slow(Frame::Header { channel, header }),
                }
            }
            Frame::Body { channel, payload } if channel != 0 => {
                let (mut ctx, channels) = self.parts();
                match channels.get_mut(&channel) {
                    Some(Slot::Open(ch)) => (channel, ch.handle_body(&mut ctx, payload)),
                    _ => return Quick::Slow(Frame::Body { channel, payload }),
                }
            }
            Frame::Method { channel, method } if channel != 0 => {
                let is_publish = matches!(method, Method::BasicPublish(_));
                let (mut ctx, channels) = self.parts();
                let r = match channels.get_mut(&channel) {
                    Some(Slot::Open(ch)) => match ch.handle_quick(&mut ctx, method) {
                        QuickMethod::Handled(r) => r,
                        QuickMethod::Other(method) => {
                            return Quick::Slow(Frame::Method { channel, method });
                        }
                    },
                    _ => return Quick::Slow(Frame::Method { channel, method }),
                };
                if is_publish {
                    self.has_published = true;
                }
                (channel, r)
            }
            other => return Quick::Slow(other),
        };
        match r {
            Ok(()) => {
                self.note_confirms(channel);
                Quick::Done
            }
            Err(e) => Quick::ChannelFailed(channel, e),
        }
    }

    async fn handle_frame(&mut self, frame: Frame) -> Result<(), Stop> {
        if self.closing_since.is_some() {
            // After connection.close only close-ok (or the client's own close) matters.
            return match frame {
                Frame::Method {
                    channel: 0,
                    method: Method::ConnectionCloseOk(_),
                } => Err(Stop::Closed),
                Frame::Method {
                    channel: 0,
                    method: Method::ConnectionClose(_),
                } => {
                    self.out.method(0, &ConnectionCloseOk {}.into());
                    Err(Stop::Closed)
                }
                _ => Ok(()),
            };
        }
        match frame {
            Frame::Heartbeat { .. } => Ok(()),
            Frame::Method { channel: 0, method } => self.connection_method(method).await,
            Frame::Header { channel: 0, header } => Err(Stop::Error(content_on_channel_zero(
                warren_amqp::constants::FRAME_HEADER,
                &header_payload(&header),
            ))),
            Frame::Body {
                channel: 0,
                payload,
            } => Err(Stop::Error(content_on_channel_zero(
                warren_amqp::constants::FRAME_BODY,
                &payload,
            ))),
            Frame::Method { channel, method } => self.channel_method(channel, method).await,
            // Content on an open channel took the quick path: what comes here is for a
            // channel that is closing (dropped) or not open.
            Frame::Header { channel, .. } | Frame::Body { channel, .. } => {
                match self.channels.get(&channel) {
                    Some(_) => Ok(()),
                    None => {
                        self.after_channel_call(channel, Err(not_open(channel)))
                            .await
                    }
                }
            }
        }
    }

    async fn connection_method(&mut self, method: Method) -> Result<(), Stop> {
        match method {
            Method::ConnectionClose(_) => {
                self.out.method(0, &ConnectionCloseOk {}.into());
                Err(Stop::Closed)
            }
            Method::ConnectionCloseOk(_) => Ok(()),
            Method::ConnectionUpdateSecret(_) => {
                self.out.method(0, &ConnectionUpdateSecretOk {}.into());
                Ok(())
            }
            Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_) => Ok(()),
            // RabbitMQ's reader: anything but connection.* on channel 0 is a channel error
            // (504), naming the method.
            other => Err(Stop::Error(
                AmqpError::channel_error("unexpected method in connection state running")
                    .in_method(other.class_id(), other.method_id()),
            )),
        }
    }

    async fn channel_method(&mut self, channel: u16, method: Method) -> Result<(), Stop> {
        match self.channels.get_mut(&channel) {
            None => match method {
                Method::ChannelOpen(_) => {
                    let open = self.channels.len();
                    if self.channel_max != 0 && open >= self.channel_max as usize {
                        return Err(Stop::Error(AmqpError::not_allowed(format!(
                            "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                            self.channel_max
                        ))));
                    }
                    let key = self.next_channel_key;
                    self.next_channel_key += 1;
                    self.channels
                        .insert(channel, Slot::Open(Box::new(Channel::new(channel, key))));
                    self.out.method(
                        channel,
                        &ChannelOpenOk {
                            channel_id: Default::default(),
                        }
                        .into(),
                    );
                    Ok(())
                }
                other => Err(Stop::Error(
                    not_open(channel).in_method(other.class_id(), other.method_id()),
                )),
            },
            Some(Slot::Closing) => {
                match method {
                    Method::ChannelCloseOk(_) => {
                        self.channels.remove(&channel);
                    }
                    Method::ChannelClose(_) => {
                        self.channels.remove(&channel);
                        self.out.method(channel, &ChannelCloseOk {}.into());
                    }
                    _ => {}
                }
                Ok(())
            }
            Some(Slot::Open(_)) => match method {
                Method::ChannelOpen(_) => Err(Stop::Error(
                    AmqpError::channel_error("second 'channel.open' seen")
                        .in_method(ChannelOpen::CLASS_ID, ChannelOpen::METHOD_ID),
                )),
                Method::ChannelClose(_) => {
                    if let Some(Slot::Open(mut ch)) = self.channels.remove(&channel) {
                        ch.close(&self.broker, self.handle.id).await;
                    }
                    self.out.method(channel, &ChannelCloseOk {}.into());
                    Ok(())
                }
                Method::ChannelCloseOk(_) => Ok(()),
                method => {
                    // Publishes and acknowledgements took the quick path; anything else may look
                    // at queues, which must hold what was published before it.
                    self.outgoing.flush().await;
                    let r = {
                        let (mut ctx, channels) = self.parts();
                        match channels.get_mut(&channel) {
                            Some(Slot::Open(ch)) => ch.handle_method(&mut ctx, method).await,
                            _ => Ok(()),
                        }
                    };
                    self.after_channel_call(channel, r).await
                }
            },
        }
    }

    /// Remembers a channel in confirm mode, whose confirms are written after this chunk.
    fn note_confirms(&mut self, channel: u16) {
        if let Some(Slot::Open(ch)) = self.channels.get(&channel) {
            if ch.has_confirms() && !self.confirm_channels.contains(&channel) {
                self.confirm_channels.push(channel);
            }
        }
    }

    /// Turns a channel's error into a channel.close (soft) or a connection error (hard).
    async fn after_channel_call(
        &mut self,
        channel: u16,
        r: Result<(), AmqpError>,
    ) -> Result<(), Stop> {
        self.note_confirms(channel);
        let e = match r {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if e.is_hard() {
            return Err(Stop::Error(e));
        }
        tracing::debug!(peer = %self.peer, channel, error = %e, "closing channel");
        if let Some(Slot::Open(mut ch)) = self.channels.insert(channel, Slot::Closing) {
            // Confirms already earned on this channel are still owed to the client.
            {
                let (mut ctx, _) = self.parts();
                ch.flush_confirms(&mut ctx);
            }
            ch.close(&self.broker, self.handle.id).await;
        }
        self.out.method(
            channel,
            &Method::ChannelClose(ChannelClose {
                reply_code: e.code,
                reply_text: ShortStr::from(e.reply_text()),
                class_id: e.class_id,
                method_id: e.method_id,
            }),
        );
        Ok(())
    }

    async fn handle_mail(&mut self, m: ConnMsg) {
        match m {
            ConnMsg::Deliver(batch) => {
                self.handle.backlog.release(batch.len() as u32);
                let (mut ctx, channels) = self.parts();
                for d in batch {
                    if let Some(Slot::Open(ch)) = channels.get_mut(&d.channel) {
                        if ch.key == d.channel_key {
                            ch.deliver(&mut ctx, d);
                        }
                    }
                    // Otherwise the channel closed; the queue takes the message back when it
                    // learns of the close.
                }
            }
            ConnMsg::ConsumerGone {
                channel,
                channel_key,
                consumer_tag,
            } => {
                let (mut ctx, channels) = self.parts();
                if let Some(Slot::Open(ch)) = channels.get_mut(&channel) {
                    if ch.key == channel_key {
                        ch.consumer_gone(&mut ctx, consumer_tag);
                    }
                }
            }
            ConnMsg::Confirmed {
                channel,
                channel_key,
                seqs,
                ok,
            } => {
                if let Some(Slot::Open(ch)) = self.channels.get_mut(&channel) {
                    if ch.key == channel_key {
                        ch.written(&seqs, ok);
                        if !self.confirm_channels.contains(&channel) {
                            self.confirm_channels.push(channel);
                        }
                    }
                }
            }
            ConnMsg::Close { code, text } => {
                if self.closing_since.is_none() {
                    self.out
                        .method(0, &close_method(&AmqpError::new(code, text)));
                    self.closing_since = Some(Instant::now());
                    self.close_channels().await;
                }
            }
        }
    }

    async fn close_channels(&mut self) {
        self.outgoing.flush().await;
        let channels: Vec<Slot> = self.channels.drain().map(|(_, s)| s).collect();
        for slot in channels {
            if let Slot::Open(mut ch) = slot {
                ch.close(&self.broker, self.handle.id).await;
            }
        }
    }

    /// Releases what the connection holds (its channels' deliveries, its exclusive queues).
    /// Runs once, when the close handshake ends or the socket goes.
    async fn cleanup(&mut self) {
        if self.cleaned_up {
            return;
        }
        self.cleaned_up = true;
        self.broker.connection_closed();
        self.close_channels().await;
        self.vhost.connection_closed(self.handle.id).await;
        tracing::info!(peer = %self.peer, "connection closed");
    }
}

fn not_open(_channel: u16) -> AmqpError {
    AmqpError::channel_error("expected 'channel.open'")
}

fn content_on_channel_zero(frame_type: u8, payload: &[u8]) -> AmqpError {
    AmqpError::unexpected_frame(format!(
        "type {frame_type}, all octets = {}",
        erlang_binary(payload)
    ))
}

/// A content header's payload as it was on the wire, for error texts.
fn header_payload(h: &warren_amqp::ContentHeader) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + h.properties.as_bytes().len());
    v.extend_from_slice(&h.class_id.to_be_bytes());
    v.extend_from_slice(&h.weight.to_be_bytes());
    v.extend_from_slice(&h.body_size.to_be_bytes());
    v.extend_from_slice(h.properties.as_bytes());
    v
}

/// What RabbitMQ does with a frame that could not be parsed: the reply it closes with, or
/// `None` where it closes the socket without one (an unknown method).
fn frame_error(e: &FrameError) -> Option<AmqpError> {
    use warren_amqp::DecodeError;
    let octets = erlang_binary(&e.octets);
    let t = e.frame_type;
    Some(match &e.error {
        DecodeError::FrameTooLarge { size, max } => AmqpError::frame_error(format!(
            "type {t}, all octets = <<>>: {{frame_too_large,{size},{}}}",
            max.saturating_sub(warren_amqp::constants::FRAME_OVERHEAD as u32)
        )),
        DecodeError::UnknownFrameType(_) => {
            AmqpError::frame_error(format!("type {t}, all octets = {octets}: unknown_frame"))
        }
        DecodeError::BadFrameEnd(b) => AmqpError::frame_error(format!(
            "type {t}, all octets = {octets}: {{invalid_frame_end_marker,{b}}}"
        )),
        DecodeError::UnknownMethod { .. } => return None,
        // A content header whose properties do not parse crashes RabbitMQ's channel, which
        // closes the connection with a bare INTERNAL_ERROR.
        _ if t == warren_amqp::constants::FRAME_HEADER => AmqpError::internal_error(""),
        _ => AmqpError::frame_error(format!("cannot decode {octets}"))
            .in_method(e.class_id, e.method_id),
    })
}
