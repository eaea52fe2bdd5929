//! One authenticated connection to a peer, run by its own task: frames from the other side go
//! to the receiver of their channel, frames to send come from a bounded queue, a heartbeat goes
//! out whenever the link has been quiet for a tick, and a peer silent for longer than the
//! dead-after time is dropped (a stopped or cut-off node, which TCP alone can take minutes to
//! notice).

use crate::codec::Outgoing;
use crate::handshake;
use crate::wire::{Channel, Frame, PeerKind};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Frames waiting to be written to one peer before senders have to wait.
pub(crate) const SEND_QUEUE: usize = 1024;

/// How often a quiet link says it is alive, and when a silent one is given up.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: Duration,
    pub dead_after: Duration,
    /// How long a handshake may take.
    pub handshake: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
        }
    }
}

/// A frame that arrived from a peer on one channel.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub from: String,
    pub kind: PeerKind,
    pub payload: Bytes,
    /// The link from `from` is down (its payload is empty): it comes after everything that
    /// link delivered, so a receiver knows nothing more of what the peer sent will arrive.
    pub ended: bool,
}

/// Where links hand what they receive, one receiver per channel (none: dropped). Shared by
/// every link and looked up per frame, so that a receiver set after a link came up (a node
/// dialled while it was still starting) gets that link's frames too.
pub(crate) type Receivers =
    std::sync::Arc<std::sync::RwLock<[Option<mpsc::Sender<Inbound>>; Channel::ALL.len()]>>;

/// How the rest of the node reaches a running link.
#[derive(Debug, Clone)]
pub(crate) struct LinkHandle {
    /// Tells apart two links to the same peer over time.
    pub id: u64,
    pub kind: PeerKind,
    /// The name of the side that dialled (which of two simultaneous links survives).
    pub dialler: String,
    pub tx: mpsc::Sender<Outgoing>,
    pub close: watch::Sender<bool>,
    /// Becomes true once the link's task has stopped delivering what it read.
    pub finished: watch::Receiver<bool>,
}

/// Runs a link until it fails, goes silent, or is told to close. Reading and writing are
/// separate halves polled side by side, so that a side blocked writing (the peer not reading,
/// a full socket) still reads, and two nodes sending each other much at once cannot wait on
/// each other; silence is measured on the reading half alone.
pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    framed: handshake::Link<S>,
    peer: String,
    kind: PeerKind,
    timing: Timing,
    receivers: Receivers,
    mut outgoing: mpsc::Receiver<Outgoing>,
    mut close: watch::Receiver<bool>,
) -> String {
    let (mut sink, mut stream) = StreamExt::split::<Outgoing>(framed);
    let writing = async {
        let mut last_sent = Instant::now();
        let mut tick = tokio::time::interval(timing.heartbeat / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = outgoing.recv() => {
                    let Some(out) = out else { return "closed".to_owned() };
                    if let Err(e) = sink.feed(out).await {
                        return format!("write failed: {e}");
                    }
                    // Everything already queued goes in the same write.
                    while let Ok(more) = outgoing.try_recv() {
                        if let Err(e) = sink.feed(more).await {
                            return format!("write failed: {e}");
                        }
                    }
                    if let Err(e) = SinkExt::<Outgoing>::flush(&mut sink).await {
                        return format!("write failed: {e}");
                    }
                    last_sent = Instant::now();
                }
                _ = tick.tick() => {
                    if last_sent.elapsed() >= timing.heartbeat {
                        if let Err(e) = sink.send(Outgoing::record(Frame::Heartbeat.encode())).await {
                            return format!("write failed: {e}");
                        }
                        last_sent = Instant::now();
                    }
                }
            }
        }
    };
    let reading = async {
        loop {
            let raw = match tokio::time::timeout(timing.dead_after, stream.next()).await {
                Err(_) => return format!("no heartbeat for {:?}", timing.dead_after),
                Ok(Some(Ok(raw))) => raw.freeze(),
                Ok(Some(Err(e))) => return format!("read failed: {e}"),
                Ok(None) => return "the peer closed the connection".to_owned(),
            };
            match Frame::decode(raw) {
                Ok(Frame::Heartbeat) => {}
                Ok(Frame::Data(channel, payload)) => {
                    let msg = Inbound {
                        from: peer.clone(),
                        kind,
                        payload,
                        ended: false,
                    };
                    deliver(&receivers, channel, msg).await;
                }
                Ok(other) => return format!("unexpected frame {other:?}"),
                Err(e) => return e,
            }
        }
    };
    tokio::select! {
        _ = close.changed() => "closed".to_owned(),
        why = writing => why,
        why = reading => why,
    }
}

pub(crate) async fn deliver(receivers: &Receivers, channel: Channel, msg: Inbound) {
    let tx = receivers
        .read()
        .ok()
        .and_then(|r| r[channel.index()].clone());
    if let Some(tx) = tx {
        // A receiver that is behind holds the link back (TCP then slows the peer): nothing
        // piles up without bound.
        let _ = tx.send(msg).await;
    }
}
