//! The queue actor: the tokio shell around a queue's state machine (`state`), one task per
//! queue.
//!
//! Commands arrive on a bounded mailbox (publishers wait when it is full, which is how a fast
//! producer is slowed to the pace of the queue); settlements and credit arrive on a control
//! channel that jumps that queue. After each batch of commands the state expires and delivers
//! what it can, and the shell carries out its effects: mail to connections (looked up by id in
//! the node's directory), dead-lettered messages to the vhost, an fsync on a blocking thread
//! whose end comes back as a command, and the queue's flow state for its publishers. Between
//! batches it sleeps until a command arrives or the state's next deadline.

use super::command::ticket_mail;
use super::deadletter::DeadLetterSink;
use super::flow::{DrainRate, Flow};
use super::state::{Command, Effect, End, QueueState, Reply};
use crate::mail::{ConnMsg, MailCache, Mailboxes};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warren_amqp::ShortStr;
use warren_meta::{ConnId, QueueId};

/// Commands handled before the queue looks at its consumers again.
const BATCH: usize = 256;

/// Called when the queue removes itself (auto-delete, or x-expires), to take it out of its
/// vhost.
pub type OnRemove = Arc<dyn Fn(&ShortStr, QueueId) + Send + Sync>;

/// What a queue's shell needs from the node around it.
#[derive(Clone)]
pub struct Surroundings {
    pub on_remove: OnRemove,
    pub dead_letters: DeadLetterSink,
    /// Where the node's connections are reached.
    pub post: Arc<Mailboxes>,
    /// The queue's own address, where the queues it dead-letters to at least once confirm
    /// them (see `quorum::dlx`).
    pub confirms_to: ConnId,
}

/// What the local queue's mailbox carries.
#[derive(Debug)]
pub(crate) enum QueueCmd {
    /// A command whose answer nobody waits for.
    Tell(Command),
    /// A command and where its answer goes (once its effects are carried out).
    Ask(Command, oneshot::Sender<Reply>),
    /// The node is stopping: the queue stops and keeps its log.
    Shutdown(oneshot::Sender<()>),
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) struct QueueActor {
    state: QueueState,
    id: QueueId,
    name: ShortStr,
    flow: Arc<Flow>,
    rx: mpsc::Receiver<QueueCmd>,
    control: mpsc::UnboundedReceiver<Command>,
    control_open: bool,
    /// The fsync in flight, if one is.
    fsync: Option<JoinHandle<bool>>,
    mail: MailCache,
    /// How fast consumers take messages, for flow control.
    drain: DrainRate,
    around: Surroundings,
}

impl QueueActor {
    pub fn new(
        state: QueueState,
        id: QueueId,
        flow: Arc<Flow>,
        rx: mpsc::Receiver<QueueCmd>,
        control: mpsc::UnboundedReceiver<Command>,
        around: Surroundings,
    ) -> Self {
        QueueActor {
            name: state.name().clone(),
            state,
            id,
            flow,
            rx,
            control,
            control_open: true,
            fsync: None,
            mail: MailCache::new(around.post.clone()),
            drain: DrainRate::new(std::time::Instant::now()),
            around,
        }
    }

    pub async fn run(mut self) {
        loop {
            let deadline = self
                .state
                .next_deadline()
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            let first = tokio::select! {
                biased;
                c = self.control.recv(), if self.control_open => {
                    match c {
                        Some(c) => { self.state.apply(c, now_ms()); }
                        None => self.control_open = false,
                    }
                    None
                }
                ok = fsync_done(&mut self.fsync), if self.fsync.is_some() => {
                    self.fsync = None;
                    self.state.apply(Command::Synced(ok), now_ms());
                    None
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    // Nobody can reach the queue any more: it stops, and keeps its log.
                    None => return self.end(End::ShutDown, None),
                },
                _ = sleep_until(deadline) => None,
            };
            self.take_control();
            if let Some(cmd) = first {
                if let Some(stop) = self.handle(cmd) {
                    return stop.finish(self);
                }
                for _ in 0..BATCH {
                    // A command sent after an acknowledgement must see it done.
                    self.take_control();
                    match self.rx.try_recv() {
                        Ok(cmd) => {
                            if let Some(stop) = self.handle(cmd) {
                                return stop.finish(self);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            let now = now_ms();
            self.state.run(now);
            if let Some(files) = self.state.start_sync() {
                self.fsync = Some(tokio::task::spawn_blocking(move || {
                    files.iter().all(|f| f.sync_all().is_ok())
                }));
            }
            self.carry_out();
            let consuming =
                self.state.has_consumers() && self.drain.fast(std::time::Instant::now());
            self.flow
                .update(self.state.ready_len(), self.state.ready_bytes(), consuming);
            if self.state.should_remove(now) {
                (self.around.on_remove)(&self.name, self.id);
                return self.end(End::Deleted, None);
            }
        }
    }

    fn take_control(&mut self) {
        while let Ok(c) = self.control.try_recv() {
            self.state.apply(c, now_ms());
        }
    }

    /// Handles one command; says so when the queue must stop.
    fn handle(&mut self, cmd: QueueCmd) -> Option<Stop> {
        match cmd {
            QueueCmd::Tell(c) => {
                self.state.apply(c, now_ms());
            }
            QueueCmd::Ask(c, reply) => {
                let r = self.state.apply(c, now_ms());
                // Whoever asked sees the effects first: consumers of a deleted queue are
                // cancelled before delete-ok.
                self.carry_out();
                let _ = reply.send(r);
            }
            QueueCmd::Shutdown(done) => return Some(Stop(End::ShutDown, Some(done))),
        }
        self.state.is_deleted().then_some(Stop(End::Deleted, None))
    }

    /// Carries out what the state asks for, until it asks for nothing more.
    fn carry_out(&mut self) {
        loop {
            let effects = self.state.take_effects();
            if effects.is_empty() {
                return;
            }
            let now = std::time::Instant::now();
            for e in &effects {
                if let Effect::Deliver { deliveries, .. } = e {
                    let bytes = deliveries.iter().map(|d| d.message.body_size()).sum();
                    self.drain.delivered(deliveries.len() as u64, bytes, now);
                }
            }
            for conn in carry_out(effects, &mut self.mail, &self.around.dead_letters) {
                // The connection is gone without telling us: take back what it never
                // acknowledged and serve the others.
                let now = now_ms();
                self.state.apply(Command::ConnectionGone { conn }, now);
                self.state.run(now);
            }
        }
    }

    /// The actor's last act (see `QueueState::stop`); `done` is told once the log is written.
    fn end(&mut self, end: End, done: Option<oneshot::Sender<()>>) {
        self.state.stop(end);
        self.carry_out();
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Why the actor stops, and who waits for it.
struct Stop(End, Option<oneshot::Sender<()>>);

impl Stop {
    fn finish(self, mut actor: QueueActor) {
        actor.end(self.0, self.1);
    }
}

async fn fsync_done(job: &mut Option<JoinHandle<bool>>) -> bool {
    match job {
        Some(j) => j.await.unwrap_or(false),
        None => std::future::pending().await,
    }
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Carries out a queue's effects: mail to connections (here or on other nodes), dead letters
/// to the vhost. Returns the connections found gone, whose deliveries the queue must take
/// back.
pub(crate) fn carry_out(
    effects: Vec<Effect>,
    mail: &mut MailCache,
    dead_letters: &DeadLetterSink,
) -> Vec<ConnId> {
    let mut gone = Vec::new();
    for e in effects {
        match e {
            Effect::Deliver { conn, deliveries } => {
                if mail.send(conn, ConnMsg::Deliver(deliveries)).is_err() {
                    gone.push(conn);
                }
            }
            Effect::Settled { tickets, ok } => {
                for (conn, msg) in ticket_mail(tickets, ok) {
                    let _ = mail.send(conn, msg);
                }
            }
            Effect::ConsumerGone {
                conn,
                channel,
                channel_key,
                tag,
            } => {
                let _ = mail.send(
                    conn,
                    ConnMsg::ConsumerGone {
                        channel,
                        channel_key,
                        consumer_tag: tag,
                    },
                );
            }
            Effect::DeadLetter { message, .. } => dead_letters.send(message),
        }
    }
    gone
}
