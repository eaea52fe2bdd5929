//! Queues: an actor per queue ([`actor`]) that owns its ready messages ([`ready`]) and its
//! disk ([`storage`]), reached only through a [`QueueHandle`].

mod actor;
mod command;
mod handle;
mod ready;
mod storage;

pub use actor::{AutoDeleteHook, Start};
pub use command::{ConsumerSpec, GetReply, Settle};
pub use handle::{QueueHandle, QueueInfo};
pub use ready::Ready;
pub use storage::{Storage, StoreConfig, Ticket};

use tokio::sync::mpsc;

/// Commands a queue's mailbox holds before publishers have to wait.
const MAILBOX: usize = 4096;

/// Starts a local queue actor and returns its handle.
pub fn spawn(
    info: QueueInfo,
    auto_delete_hook: Option<AutoDeleteHook>,
    start: Start,
) -> QueueHandle {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let handle = QueueHandle::new(info, tx);
    tokio::spawn(actor::QueueActor::new(handle.clone(), rx, auto_delete_hook, start).run());
    handle
}

/// What a new, empty queue starts with.
pub fn empty(store: StoreConfig) -> Start {
    Start {
        store,
        storage: None,
        ready: Ready::default(),
        next_seq: 1,
    }
}

/// What a durable queue starts with: its log, and the messages the log held.
pub fn recover(store: StoreConfig) -> std::io::Result<(Start, Vec<String>)> {
    let (log, rec) = warren_store::QueueLog::open(&store.dir, store.segment_bytes)?;
    Ok((
        Start {
            ready: Ready::recovered(rec.runs, rec.delivered),
            next_seq: rec.next_seq,
            storage: Some(Storage::new(log)),
            store,
        },
        rec.repairs,
    ))
}
