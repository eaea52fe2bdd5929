//! Queues. What a queue does is a deterministic state machine ([`state`]): its ready
//! messages ([`ready`]), deliveries, consumers, limits and dead-lettering ([`deadletter`]).
//! A local queue runs it inside a tokio task ([`actor`]) that owns its disk ([`storage`]).
//! The rest of the broker reaches any queue only through a [`QueueHandle`], across which only
//! data ([`command`]) passes. What a queue is (its arguments, validated) comes from the
//! topology: `warren_meta::Queue`.

pub(crate) mod actor;
pub mod command;
mod cycle;
pub mod deadletter;
pub mod flow;
mod handle;
mod ready;
pub(crate) mod remote;
pub(crate) mod state;
mod storage;
pub(crate) mod wire;

#[cfg(test)]
pub(crate) use actor::QueueCmd;
pub use actor::{OnRemove, Surroundings};
pub use command::{ConsumerSpec, Settle, Ticket, credit_cost, ticket_mail};
pub use deadletter::DeadLetterSink;
pub use handle::{QueueHandle, QueueStats};
pub use ready::Ready;
pub use state::{ConsumerRow, Start};
pub use storage::{QueueDisk, Storage};

use std::sync::Arc;
use tokio::sync::mpsc;

/// Commands a queue's mailbox holds before publishers have to wait. A publish command is a
/// whole read's worth of messages for this queue (see `connection::outgoing`), and its bodies
/// keep that read's buffer (64 kB) alive until the queue takes them, so this bounds what
/// publishers can pile up in front of a busy queue to a few megabytes.
pub(crate) const MAILBOX: usize = 256;

/// Starts a local queue actor and returns its handle.
pub fn spawn(
    vhost: &str,
    queue: warren_meta::Queue,
    start: Start,
    around: Surroundings,
) -> QueueHandle {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let (control_tx, control) = mpsc::unbounded_channel();
    let flow = Arc::new(flow::Flow::default());
    let id = queue.id;
    let state = state::QueueState::new(vhost, queue.clone(), start, actor::now_ms());
    let handle = QueueHandle::local(vhost.to_owned(), queue, tx, control_tx, flow.clone());
    tokio::spawn(actor::QueueActor::new(state, id, flow, rx, control, around).run());
    handle
}

/// What a new, empty queue starts with.
pub fn empty(store: QueueDisk) -> Start {
    Start {
        store,
        storage: None,
        levels: Vec::new(),
        next_seq: 1,
    }
}

/// What a durable queue starts with: its log, and the messages the log held, each back at its
/// priority level (`levels`: 1 for a queue without priorities).
pub fn recover(store: QueueDisk, levels: u16) -> std::io::Result<(Start, Vec<String>)> {
    let (log, rec) = warren_store::QueueLog::open(&store.dir, store.segment_bytes, levels)?;
    let mut by_level: Vec<Vec<warren_store::Run>> =
        (0..levels.max(1)).map(|_| Vec::new()).collect();
    for run in rec.runs {
        let at = (run.level as usize).min(by_level.len() - 1);
        by_level[at].push(run);
    }
    Ok((
        Start {
            levels: by_level
                .into_iter()
                .map(|runs| Ready::recovered(runs, rec.delivered.clone()))
                .collect(),
            next_seq: rec.next_seq,
            storage: Some(Storage::new(log)),
            store,
        },
        rec.repairs,
    ))
}
