//! Transactions: on a tx channel, publishes and acknowledgements wait for tx.commit, and
//! tx.rollback forgets the publishes and puts the acknowledged deliveries back as unacked.

use super::consume::Unacked;
use super::{Channel, Ctx};
use crate::message::Message;
use crate::queue::Settle;
use std::sync::Arc;
use warren_amqp::methods::{TxCommitOk, TxRollbackOk, TxSelectOk};
use warren_amqp::{AmqpError, AmqpResult};

#[derive(Debug, Default)]
pub struct TxBuffer {
    /// Messages and their mandatory flag, in publish order.
    pub publishes: Vec<(Arc<Message>, bool)>,
    pub settles: Vec<(Vec<Unacked>, Settle)>,
}

fn not_transactional() -> AmqpError {
    AmqpError::precondition_failed("channel is not transactional")
}

impl Channel {
    pub(super) fn tx_select(&mut self, ctx: &mut Ctx<'_>) -> AmqpResult<()> {
        if self.confirms.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from confirm to tx mode",
            ));
        }
        if self.tx.is_none() {
            self.tx = Some(TxBuffer::default());
        }
        ctx.out.method(self.id, &TxSelectOk {}.into());
        Ok(())
    }

    pub(super) async fn tx_commit(&mut self, ctx: &mut Ctx<'_>) -> AmqpResult<()> {
        let buffer = std::mem::take(self.tx.as_mut().ok_or_else(not_transactional)?);
        let mut waits = Vec::new();
        for (message, mandatory) in buffer.publishes {
            self.route_later(ctx, message, mandatory, &mut waits);
        }
        for (done, how) in buffer.settles {
            self.settle(ctx, done, how);
        }
        ctx.outgoing.flush().await;
        // Persistent messages in durable queues must be on disk before commit-ok.
        for w in waits {
            if w.await != Ok(true) {
                return Err(AmqpError::internal_error(
                    "cannot write the transaction's messages to disk",
                ));
            }
        }
        ctx.out.method(self.id, &TxCommitOk {}.into());
        Ok(())
    }

    pub(super) async fn tx_rollback(&mut self, ctx: &mut Ctx<'_>) -> AmqpResult<()> {
        let buffer = std::mem::take(self.tx.as_mut().ok_or_else(not_transactional)?);
        let mut back: Vec<Unacked> = buffer.settles.into_iter().flat_map(|(d, _)| d).collect();
        back.extend(self.unacked.drain(..));
        back.sort_by_key(|u| u.tag);
        self.unacked = back.into();
        ctx.out.method(self.id, &TxRollbackOk {}.into());
        Ok(())
    }
}
