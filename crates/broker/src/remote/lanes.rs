//! Commands from other nodes for a queue here run in that queue's lane: a task that takes them
//! in the order they arrived, so that a queue slow to take its commands (its mailbox full
//! behind slow consumers) holds up only its own traffic, never another queue's, nor mail for
//! this node's connections. What piles up in a lane is bounded by the senders: publishes by
//! their window (`Peers::publish`), everything else by clients waiting for answers. A lane ends
//! once it has been idle for a while.

use crate::mail::Mailboxes;
use crate::queue::remote::Peers;
use crate::queue::state::{Command, Reply};
use crate::queue::wire::{Answer, Cmd, Frame, encode};
use crate::queue::{QueueHandle, Ticket, ticket_mail};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use warren_meta::{NodeId, QueueId};

/// How long a lane waits for more before it ends.
const IDLE: Duration = Duration::from_secs(5);

/// A command from node `from`; `ask` numbers one that wants an answer.
pub(super) struct Job {
    pub from: NodeId,
    pub ask: Option<u64>,
    pub cmd: Cmd,
}

/// What running a command from another node needs: the links to answer on, and the mailboxes
/// of this node's connections (for refusals of their own publishes).
#[derive(Clone)]
pub(super) struct Replier {
    pub peers: Arc<Peers>,
    pub post: Arc<Mailboxes>,
}

impl Replier {
    pub(super) async fn reply(&self, to: NodeId, frame: Frame) {
        self.peers.links().send(to, encode(&frame)).await;
    }

    /// Answers publishers whose messages could not be enqueued.
    pub(super) fn refuse(&self, tickets: Vec<Ticket>) {
        for (conn, mail) in ticket_mail(tickets, false) {
            if let Some(mb) = self.post.get(conn) {
                let _ = mb.send(mail);
            }
        }
    }

    /// Runs one job for queue `queue` (its local handle, none if it is not here), answers it
    /// if it asks, and gives a publish's window back.
    pub(super) async fn handle(&self, h: Option<&QueueHandle>, queue: QueueId, job: Job) {
        let Job { from, ask, cmd } = job;
        let publish = matches!(cmd, Cmd::Publish(_));
        let answer = match h {
            Some(h) => self.run(h, cmd, ask.is_some()).await,
            None => {
                if let Cmd::Publish(batch) = cmd {
                    self.refuse(batch.into_iter().filter_map(|(_, t)| t).collect());
                }
                Answer::Gone
            }
        };
        if publish {
            self.reply(from, Frame::Credit { queue, n: 1 }).await;
        }
        if let Some(ask) = ask {
            self.reply(from, Frame::Answer { ask, answer }).await;
        }
    }

    async fn run(&self, h: &QueueHandle, cmd: Cmd, ask: bool) -> Answer {
        match cmd.into_command() {
            Command::Publish(batch) => {
                if let Err(back) = h.publish_batch(batch).await {
                    self.refuse(back.into_iter().filter_map(|(_, t)| t).collect());
                }
                Answer::Other(Reply::Done)
            }
            cmd => h
                .run_for_peer(cmd, ask)
                .await
                .map_or(Answer::Gone, Answer::of),
        }
    }
}

type Open = Arc<Mutex<HashMap<QueueId, mpsc::UnboundedSender<Job>>>>;

/// The lanes running now, by queue.
#[derive(Default)]
pub(super) struct Lanes(Open);

impl Lanes {
    /// Hands a job to queue `h`'s lane, starting one if there is none.
    pub(super) fn push(&self, h: QueueHandle, job: Job, replier: &Replier) {
        let Ok(mut open) = self.0.lock() else {
            return;
        };
        let id = h.id();
        let job = match open.get(&id) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(job);
        open.insert(id, tx);
        tokio::spawn(run(self.0.clone(), h, rx, replier.clone()));
    }

    /// How many lanes run now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().map_or(0, |l| l.len())
    }
}

async fn run(open: Open, h: QueueHandle, mut jobs: mpsc::UnboundedReceiver<Job>, replier: Replier) {
    loop {
        match tokio::time::timeout(IDLE, jobs.recv()).await {
            Ok(Some(job)) => replier.handle(Some(&h), h.id(), job).await,
            Ok(None) => return,
            Err(_) => {
                // Jobs are pushed under the same lock: none can slip in between this look and
                // the lane's removal.
                let Ok(mut open) = open.lock() else {
                    return;
                };
                if jobs.is_empty() {
                    open.remove(&h.id());
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueCmd;
    use crate::queue::flow::Flow;
    use crate::queue::remote::Sink;
    use crate::queue::wire::WireMessage;
    use warren_meta::{Queue, Uid};

    /// A local queue handle whose mailbox (of `room` commands) the test reads, or not.
    fn queue(n: u64, room: usize) -> (QueueHandle, mpsc::Receiver<QueueCmd>) {
        let (tx, rx) = mpsc::channel(room);
        let (control, _) = mpsc::unbounded_channel();
        let q = Queue {
            name: format!("q{n}").into(),
            id: Uid { node: NodeId(1), n },
            durable: false,
            auto_delete: false,
            exclusive_owner: None,
            arguments: Default::default(),
            args: Default::default(),
            kind: Default::default(),
            home: NodeId(1),
            members: Vec::new(),
        };
        let h = QueueHandle::local("/".into(), q, tx, control, Arc::new(Flow::default()));
        (h, rx)
    }

    fn publish() -> Job {
        Job {
            from: NodeId(2),
            ask: None,
            cmd: Cmd::Publish(vec![(WireMessage::sample(), None)]),
        }
    }

    /// A queue that takes nothing (its mailbox full) holds up its own lane only: another
    /// queue's commands from the same node still arrive.
    #[tokio::test]
    async fn a_stuck_queue_holds_up_only_its_own_lane() {
        let replier = Replier {
            peers: Peers::new(Arc::new(Sink)),
            post: Arc::new(Mailboxes::default()),
        };
        let lanes = Lanes::default();
        let (stuck, _never_read) = queue(1, 1);
        let (free, mut read) = queue(2, 1);
        for _ in 0..3 {
            lanes.push(stuck.clone(), publish(), &replier);
        }
        lanes.push(
            free.clone(),
            Job {
                from: NodeId(2),
                ask: Some(1),
                cmd: Cmd::Other(Command::Counts),
            },
            &replier,
        );
        let got = tokio::time::timeout(Duration::from_secs(5), read.recv())
            .await
            .expect("the free queue's command is not held up")
            .expect("a command");
        assert!(matches!(got, QueueCmd::Ask(Command::Counts, _)));
        assert_eq!(lanes.len(), 2);
    }
}
