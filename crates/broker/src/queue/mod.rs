//! Queues: an actor per queue ([`actor`]) that owns its ready messages ([`ready`]) and its
//! disk ([`storage`]), reached only through a [`QueueHandle`]. [`deadletter`] builds the
//! messages a queue dead-letters. What a queue is (its arguments, validated) comes from the
//! topology: `warren_meta::Queue`.

mod actor;
mod command;
pub mod deadletter;
pub mod flow;
mod handle;
mod ready;
mod storage;

pub use actor::{OnRemove, Start};
pub use command::{ConsumerSpec, GetReply, Settle};
pub use deadletter::DeadLetterSink;
pub use handle::QueueHandle;
pub use ready::Ready;
pub use storage::{Storage, StoreConfig, Ticket, settle};

use tokio::sync::mpsc;

/// Commands a queue's mailbox holds before publishers have to wait. A publish command is a
/// whole read's worth of messages for this queue (see `connection::outgoing`), and its bodies
/// keep that read's buffer (64 kB) alive until the queue takes them, so this bounds what
/// publishers can pile up in front of a busy queue to a few megabytes.
const MAILBOX: usize = 256;

/// Starts a local queue actor and returns its handle.
pub fn spawn(vhost: &str, queue: warren_meta::Queue, start: Start) -> QueueHandle {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let (settles_tx, settles) = mpsc::unbounded_channel();
    let handle = QueueHandle::new(vhost.to_owned(), queue, tx, settles_tx);
    tokio::spawn(actor::QueueActor::new(handle.clone(), rx, settles, start).run());
    handle
}

/// What a new, empty queue starts with.
pub fn empty(store: StoreConfig, on_remove: OnRemove, dead_letters: DeadLetterSink) -> Start {
    Start {
        store,
        storage: None,
        levels: Vec::new(),
        next_seq: 1,
        on_remove,
        dead_letters,
    }
}

/// What a durable queue starts with: its log, and the messages the log held, each back at its
/// priority level (`levels`: 1 for a queue without priorities).
pub fn recover(
    store: StoreConfig,
    levels: u16,
    on_remove: OnRemove,
    dead_letters: DeadLetterSink,
) -> std::io::Result<(Start, Vec<String>)> {
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
            on_remove,
            dead_letters,
        },
        rec.repairs,
    ))
}
