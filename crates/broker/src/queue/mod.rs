//! Queues: an actor per queue ([`actor`]), reached only through a [`QueueHandle`].

mod actor;
mod command;
mod handle;

pub use actor::AutoDeleteHook;
pub use command::{ConsumerSpec, GetReply, Settle};
pub use handle::{QueueHandle, QueueInfo};

use tokio::sync::mpsc;

/// Commands a queue's mailbox holds before publishers have to wait.
const MAILBOX: usize = 4096;

/// Starts a local queue actor and returns its handle.
pub fn spawn(info: QueueInfo, auto_delete_hook: Option<AutoDeleteHook>) -> QueueHandle {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let handle = QueueHandle::new(info, tx);
    tokio::spawn(actor::QueueActor::new(handle.clone(), rx, auto_delete_hook).run());
    handle
}
