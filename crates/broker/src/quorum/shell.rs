//! A quorum queue as a member node serves it: the tokio shell around its group. It takes the
//! same commands as a classic queue's actor (so the queue's handle, channels and routing do
//! not know the difference), gathers those that arrive while an entry is being committed into
//! the next entry, and hands each asker the answer the replicated state machine gave. When
//! this member leads, it carries out the effects applying the log left (deliveries, confirms,
//! dead letters); the other members' replicas make the same decisions and discard them.

use super::Replicas;
use super::dlx::DeadLetterWorker;
use super::group::Member;
use super::machine::{Applied, Op, Outcome};
use crate::mail::MailCache;
use crate::queue::actor::{QueueCmd, carry_out, now_ms, sleep_until};
use crate::queue::state::{Command, Effect, QueueState, Reply};
use crate::queue::{QueueDisk, QueueHandle, Surroundings, flow::Flow};
use crate::queue::{Ticket, ticket_mail};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use warren_meta::{Queue, QueueId};
use warren_raft::ReplicaRaft;

/// Commands gathered into one entry at most.
const BATCH: usize = 512;

/// Message bytes gathered into one entry at most (one larger message goes alone): entries
/// stay small enough that the few a member keeps after a snapshot, and the log between two,
/// cost little memory however large the messages are.
const BATCH_BYTES: u64 = 1 << 20;

/// The message bytes a command carries.
fn carried(c: &Command) -> u64 {
    match c {
        Command::Publish(messages) => messages.iter().map(|(m, _)| m.body_size()).sum(),
        _ => 0,
    }
}

/// How long one proposal may wait for its answer before it is made again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an entry is proposed again before its askers are told the queue is gone and its
/// publishers are refused (they may then publish again: at least once).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The pause between two proposals of the same entry.
const RETRY: Duration = Duration::from_millis(50);

/// Entries of acknowledgements and credit a member has in flight at once (see [`pipelined`]).
/// A consumer's acknowledgements wait for no earlier entry, only for a free slot: with a
/// prefetch of 1,000, the time they take to commit is what bounds the queue's rate, and a
/// slot to wait for adds to it (see `docs/quorum.md`: 3 slots gave 34k msg/s, 10 gave 39k,
/// 16 no more).
const IN_FLIGHT: usize = 10;

/// An entry still in flight holds back any entry this many ahead of it (in this member's
/// numbering): what the replicas remember of each member (`machine::REMEMBERED`). Fewer than
/// that many newer entries can then be answered while it is retried, so the replicas still
/// remember one of the member's entries older than it, and do not take it for one applied
/// long ago.
pub(super) const WINDOW: u64 = super::machine::REMEMBERED as u64;

/// Whether the next entry (number `next`) must wait for one in flight to be answered first:
/// all slots are taken, or the oldest still in flight is a [`WINDOW`] behind.
fn must_wait(in_flight: usize, oldest: Option<u64>, next: u64) -> bool {
    in_flight >= IN_FLIGHT || oldest.is_some_and(|low| next.saturating_sub(low) >= WINDOW)
}

/// Whether an entry may be proposed while earlier ones are still in flight: one that only
/// settles deliveries and grants credit, which no one waits on. Such commands give the same
/// state in whatever order they are applied (each settles its own deliveries; credit adds
/// up), and a consumer's acknowledgements must not wait for the entry before them to commit:
/// with a prefetch of 1,000, the round trip of an acknowledgement bounds the queue's rate.
/// Anything else waits for every entry before it, so that a channel's publishes keep their
/// order and nothing overtakes a settle it follows (a closed channel, a cancelled consumer).
fn pipelined(batch: &[(Command, Option<oneshot::Sender<Reply>>)]) -> bool {
    batch.iter().all(|(c, asker)| {
        asker.is_none() && matches!(c, Command::Settle(..) | Command::Credit { .. })
    })
}

/// Where this node's member of a group lives and whom it starts with.
pub(crate) struct Placement {
    /// This node's raft id.
    pub me: u64,
    /// The group's directory on this node.
    pub dir: PathBuf,
    /// The first voters (raft id → address), given to the member that sets the group up.
    pub initial: Option<BTreeMap<u64, String>>,
    /// Where this member and the others are, to rebuild it from them if its files are damaged.
    pub peers: super::rebuild::Peers,
    /// How the replica pages messages out (its directory is the group's `pages`).
    pub pages: QueueDisk,
}

/// Starts this node's member of `queue`'s group; returns the queue's handle.
pub(crate) fn spawn(
    vhost: &str,
    queue: Queue,
    placement: Placement,
    replicas: Arc<Replicas>,
    around: Surroundings,
) -> QueueHandle {
    let (tx, rx) = mpsc::channel(crate::queue::MAILBOX);
    let (control_tx, control) = mpsc::unbounded_channel();
    let flow = Arc::new(Flow::default());
    let handle = QueueHandle::local(
        vhost.to_owned(),
        queue.clone(),
        tx,
        control_tx.clone(),
        flow,
    );
    tokio::spawn(run(
        (vhost.to_owned(), queue),
        placement,
        replicas,
        around,
        rx,
        control,
        control_tx,
    ));
    handle
}

/// An empty replica of `queue`, paging messages out to `dir` past what `pages` allows in
/// memory.
fn replica(vhost: &str, queue: &Queue, dir: &std::path::Path, pages: &QueueDisk) -> QueueState {
    QueueState::new(
        vhost,
        queue.clone(),
        crate::queue::empty(QueueDisk {
            dir: dir.join(super::snapshot::PAGES),
            ..pages.clone()
        }),
        now_ms(),
    )
}

async fn run(
    (vhost, queue): (String, Queue),
    placement: Placement,
    replicas: Arc<Replicas>,
    around: Surroundings,
    mut rx: mpsc::Receiver<QueueCmd>,
    mut control: mpsc::UnboundedReceiver<Command>,
    control_tx: mpsc::UnboundedSender<Command>,
) {
    let (id, name) = (queue.id, queue.name.clone());
    if let Some(w) = super::dlx::fallback_warning(&vhost, &queue) {
        tracing::warn!("{w}");
    }
    let incarnation = match next_incarnation(&placement.dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(queue = %name, error = %e, "cannot record the quorum queue member's incarnation: not started");
            return;
        }
    };
    let member = super::rebuild::start(
        (id, placement.me),
        placement.dir.clone(),
        || replica(&vhost, &queue, &placement.dir, &placement.pages),
        &replicas,
        (placement.initial, placement.peers),
    )
    .await;
    let Member {
        raft,
        proposer,
        applied,
        started_at,
        led,
    } = match member {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(queue = %name, error = %e, "cannot start the quorum queue's member");
            return;
        }
    };
    // A member rebuilt from the others starts in a new directory (the damaged one is set
    // aside with the incarnation recorded in it): recorded again, so that its next start
    // numbers its entries above this one's.
    if let Err(e) = keep_incarnation(&placement.dir, incarnation) {
        tracing::error!(queue = %name, error = %e, "cannot record the quorum queue member's incarnation: stopped");
        let _ = raft.shutdown().await;
        return;
    }
    replicas.insert(id, raft.clone());
    let post = around.post.clone();
    let mut mail = MailCache::new(post.clone());
    let mut in_flight = tokio::task::JoinSet::new();
    // The number of the entry each task in flight commits.
    let mut pending: HashMap<tokio::task::Id, u64> = HashMap::new();
    tokio::spawn(lead(
        (raft.clone(), name.clone(), id),
        (placement.me, started_at, led),
        applied,
        around,
        control_tx,
    ));
    let mut control_open = true;
    // This member's entries are numbered after its incarnation, so that numbers grow across
    // restarts too.
    let mut seq = incarnation << 40;
    loop {
        let mut batch: Vec<(Command, Option<oneshot::Sender<Reply>>)> = Vec::new();
        let mut stop: Option<oneshot::Sender<()>> = None;
        tokio::select! {
            biased;
            c = control.recv(), if control_open => match c {
                Some(c) => batch.push((c, None)),
                None => control_open = false,
            },
            c = rx.recv() => match c {
                Some(QueueCmd::Tell(c)) => batch.push((c, None)),
                Some(QueueCmd::Ask(c, reply)) => batch.push((c, Some(reply))),
                Some(QueueCmd::Shutdown(done)) => stop = Some(done),
                None => break,
            },
        }
        // Whatever else is waiting goes in the same entry, settlements first (they let the
        // queue deliver again).
        let mut bytes: u64 = batch.iter().map(|(c, _)| carried(c)).sum();
        while stop.is_none() && batch.len() < BATCH && bytes < BATCH_BYTES {
            if let Ok(c) = control.try_recv() {
                batch.push((c, None));
                continue;
            }
            match rx.try_recv() {
                Ok(QueueCmd::Tell(c)) => {
                    bytes += carried(&c);
                    batch.push((c, None));
                }
                Ok(QueueCmd::Ask(c, reply)) => {
                    bytes += carried(&c);
                    batch.push((c, Some(reply)));
                }
                Ok(QueueCmd::Shutdown(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            seq += 1;
            let id = (placement.me, seq);
            if pipelined(&batch) {
                while let Some(done) = in_flight.try_join_next_with_id() {
                    answered(&mut pending, done);
                }
                while must_wait(in_flight.len(), pending.values().min().copied(), seq) {
                    match in_flight.join_next_with_id().await {
                        Some(done) => answered(&mut pending, done),
                        None => break,
                    }
                }
                let (proposer, raft, name) = (proposer.clone(), raft.clone(), name.clone());
                let mut mail = MailCache::new(post.clone());
                let task = in_flight.spawn(async move {
                    commit((&proposer, &raft), &name, id, batch, &mut mail).await;
                });
                pending.insert(task.id(), seq);
            } else {
                while in_flight.join_next().await.is_some() {}
                pending.clear();
                let (raft, mail) = (&raft, &mut mail);
                commit((&proposer, raft), &name, id, batch, mail).await;
            }
        }
        if let Some(done) = stop {
            let _ = raft.shutdown().await;
            replicas.remove(id);
            let _ = done.send(());
            return;
        }
    }
    // No handle is left: the queue was taken out of the topology, or its vhost went.
    let _ = raft.shutdown().await;
    replicas.remove(id);
}

/// The task of an entry in flight ended (answered, or given up, or panicked): the entry no
/// longer holds others back.
fn answered(
    pending: &mut HashMap<tokio::task::Id, u64>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => e.id(),
    };
    pending.remove(&id);
}

/// Commits one entry, numbered `id` (this member's raft id and the entry's number), answers
/// its askers and mails its publishers their confirms. A proposal that gets no answer (its
/// leader died, or no majority answered in time, or the node it went to has no group running)
/// may or may not have been committed: the same entry is proposed again, and the replicas
/// apply it once and give the same outcome.
async fn commit(
    (proposer, raft): (&warren_raft::Proposer<warren_raft::Replica>, &ReplicaRaft),
    name: &warren_amqp::ShortStr,
    id: (u64, u64),
    batch: Vec<(Command, Option<oneshot::Sender<Reply>>)>,
    mail: &mut MailCache,
) {
    let (cmds, askers): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .filter(|(c, _)| !matches!(c, Command::Synced(_)))
        .unzip();
    let tickets: Vec<Ticket> = cmds
        .iter()
        .flat_map(|c| match c {
            Command::Publish(batch) => batch.iter().filter_map(|(_, t)| t.clone()).collect(),
            _ => Vec::new(),
        })
        .collect();
    let entry = Op::of(now_ms(), id, cmds).encode();
    let started = std::time::Instant::now();
    let raw = loop {
        let mut metrics = raft.metrics();
        let (running, leader) = {
            let m = metrics.borrow_and_update();
            (m.running_state.is_ok(), m.current_leader)
        };
        // A leader that hangs (SIGSTOP, a cut cable) keeps its link open, so a proposal sent
        // to it would wait out its whole timeout. Once this member hears of another leader,
        // the entry goes there at once: proposing it again is safe, it is applied once.
        let elsewhere =
            metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != leader);
        let attempt = tokio::select! {
            r = proposer.propose(entry.clone(), COMMIT_TIMEOUT) => r,
            _ = elsewhere => Err(warren_raft::ProposeError::TimedOut),
        };
        match attempt {
            Ok((_, raw)) => break raw,
            Err(e) if running && started.elapsed() < GIVE_UP_AFTER => {
                tracing::debug!(queue = %name, error = %e, "a quorum queue's entry is proposed again");
                tokio::time::sleep(RETRY).await;
            }
            // Its askers hear that the queue is gone, and its publishers are refused: the
            // only answer they get, since confirms come from here.
            Err(e) => {
                tracing::warn!(queue = %name, error = %e, "a quorum queue's commands were not committed");
                for (conn, msg) in ticket_mail(tickets, false) {
                    let _ = mail.send(conn, msg);
                }
                return;
            }
        }
    };
    let outcome: Outcome = postcard::from_bytes(&raw).unwrap_or_default();
    for (tickets, ok) in outcome.settled {
        for (conn, msg) in ticket_mail(tickets, ok) {
            let _ = mail.send(conn, msg);
        }
    }
    for (asker, answer) in askers.into_iter().zip(outcome.answers) {
        if let (Some(asker), Some(reply)) = (asker, answer.into_reply()) {
            let _ = asker.send(reply);
        }
    }
}

/// This member's incarnation: one more than the last start's, kept in its directory. Its
/// entries are numbered after it, and the replicas take a number below those they remember
/// of the member for one applied long ago: a member that cannot record it does not start,
/// since a number used again would make its entries vanish.
fn next_incarnation(dir: &std::path::Path) -> std::io::Result<u64> {
    let last: u64 = std::fs::read_to_string(dir.join(INCARNATION))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let next = last + 1;
    keep_incarnation(dir, next)?;
    Ok(next)
}

/// The file in a member's directory that holds its incarnation.
const INCARNATION: &str = "incarnation";

fn keep_incarnation(dir: &std::path::Path, n: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::persist::write_atomically(&dir.join(INCARNATION), n.to_string().as_bytes())
}

/// Carries out the effects of applied entries while this member leads. Connections found
/// gone are told to the group, so that every replica takes their deliveries back.
async fn lead(
    (raft, name, id): (ReplicaRaft, warren_amqp::ShortStr, QueueId),
    (me, started_at, led): (u64, u64, bool),
    mut applied: mpsc::UnboundedReceiver<Applied>,
    around: Surroundings,
    tell: mpsc::UnboundedSender<Command>,
) {
    let mut mail = MailCache::new(around.post.clone());
    let (mut worker, mut confirms) = DeadLetterWorker::new(
        around.confirms_to,
        around.post.clone(),
        around.dead_letters.clone(),
    );
    let mut metrics = raft.metrics();
    // Leading is being elected in this term: after a restart, a member's stored vote can
    // name itself before any election.
    let leads = |m: &warren_raft::openraft::RaftMetrics<u64, warren_raft::openraft::BasicNode>| {
        m.state == warren_raft::openraft::ServerState::Leader && m.current_leader == Some(me)
    };
    // Replaying what the log held when the member started (up to `started_at`) must not
    // count as taking over, or a member would carry out again what it carried out before it
    // restarted. A member that led when it stopped gets its leadership back from openraft
    // without an election, and so without a first entry of its own: it asks for one, so that
    // it takes over (below) like any new leader, or learns that the others have moved on.
    if led {
        // Once the replay is applied, if it still leads: takes over with an entry of its own.
        let replayed = metrics.wait_for(|m| m.last_applied.is_some_and(|l| l.index >= started_at));
        if tokio::time::timeout(Duration::from_secs(30), replayed)
            .await
            .is_ok()
            && leads(&metrics.borrow_and_update())
        {
            let _ = tell.send(Command::Resend);
        }
    }
    let mut leading = leads(&metrics.borrow_and_update());
    if leading {
        tracing::info!(queue = %name, "leads quorum queue");
    }
    // The term whose first entry this run applied: a leader acts only once it has taken over.
    let mut took_over: Option<u64> = None;
    // When the replicas must next look at themselves (TTLs, x-expires): the leader proposes a
    // tick then, so that every replica expires the same messages at the same entry.
    let mut deadline: Option<u64> = None;
    let mut removed = false;
    loop {
        let due = async {
            match deadline {
                Some(at) => {
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // A change of leader is seen before the effects applied after it.
            biased;
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = leads(&metrics.borrow_and_update());
                if now && !leading {
                    tracing::info!(queue = %name, term = metrics.borrow().current_term, "leads quorum queue");
                }
                if leading && !now {
                    worker.forget();
                }
                leading = now;
            }
            Some(msg) = confirms.recv() => worker.mail(msg),
            _ = sleep_until(worker.again_at()), if leading => worker.publish_again(),
            _ = due, if leading && took_over == Some(metrics.borrow().current_term) => {
                // The tick's entry brings the next deadline.
                deadline = None;
                let _ = tell.send(Command::Tick);
            }
            a = applied.recv() => {
                let Some(a) = a else { return };
                if a.snapshot {
                    let _ = raft.trigger().snapshot().await;
                }
                deadline = a.deadline;
                if a.takeover && a.index > started_at {
                    took_over = Some(a.term);
                }
                let (leading, term) = {
                    let m = metrics.borrow();
                    (leads(&m), m.current_term)
                };
                if !leading || took_over != Some(term) {
                    continue;
                }
                if a.remove && !removed {
                    // x-expires: the queue goes from the topology, and with it every member.
                    removed = true;
                    (around.on_remove)(&name, id);
                }
                // Publishers are answered by whoever proposed their entry (see `commit`).
                // Deliveries decided under an earlier leader are left to this leader's
                // takeover, which sends again whatever is still out when it starts: so a
                // member that replays its log does not send again what was acknowledged long
                // ago, and one whose predecessor died before sending still sends.
                let old = !a.takeover && a.term < term;
                let mut effects = Vec::new();
                for e in a.effects {
                    match e {
                        Effect::Settled { .. } => {}
                        Effect::Deliver { .. } if old => {}
                        Effect::DeadLetter { message, held: Some(id) } => worker.take(id, message),
                        e => effects.push(e),
                    }
                }
                for conn in carry_out(effects, &mut mail, &around.dead_letters) {
                    let _ = tell.send(Command::ConnectionGone { conn });
                }
            }
        }
        let ids = worker.take_confirmed();
        if !ids.is_empty() {
            let _ = tell.send(Command::DeadLettered { ids });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Settle;

    #[test]
    fn an_entry_waits_for_a_slot_and_for_one_left_too_far_behind() {
        assert!(!must_wait(0, None, 1));
        assert!(!must_wait(IN_FLIGHT - 1, Some(100), 101));
        assert!(must_wait(IN_FLIGHT, Some(100), 101), "every slot taken");
        // One entry proposed again and again while the others are answered.
        assert!(!must_wait(1, Some(100), 100 + WINDOW - 1));
        assert!(
            must_wait(1, Some(100), 100 + WINDOW),
            "the oldest is a window behind"
        );
    }

    #[test]
    fn only_settlements_and_credit_go_while_others_are_in_flight() {
        let settle = || (Command::Settle(vec![1], Settle::Ack), None);
        let credit = || (Command::Credit { consumer: 1, n: 5 }, None);
        assert!(pipelined(&[settle(), credit(), settle()]));
        assert!(!pipelined(&[settle(), (Command::Purge, None)]));
        let (tx, _rx) = oneshot::channel();
        assert!(!pipelined(&[(
            Command::Settle(vec![1], Settle::Ack),
            Some(tx)
        )]));
        assert!(!pipelined(&[(
            Command::Prefetch {
                consumer: 1,
                prefetch: 10
            },
            None
        )]));
    }
}
