//! Transactions: on a tx channel, publishes and acknowledgements wait for tx.commit, and
//! tx.rollback forgets the publishes and puts the acknowledged deliveries back as unacked.

use super::consume::Unacked;
use super::{Channel, Ctx};
use crate::mail::ConnMsg;
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
    /// Commits so far, which number the next one's answers from queues.
    commits: u64,
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
        let tx = self.tx.as_mut().ok_or_else(not_transactional)?;
        tx.commits += 1;
        let commit = tx.commits;
        let buffer = TxBuffer {
            commits: commit,
            ..std::mem::take(tx)
        };
        let mut waits = 0;
        for (message, mandatory) in buffer.publishes {
            waits += self.route_later(ctx, message, mandatory, commit);
        }
        for (done, how) in buffer.settles {
            self.settle(ctx, done, how);
        }
        if let Some(tx) = &mut self.tx {
            tx.commits = commit;
        }
        ctx.outgoing.flush(ctx.conn).await;
        // Persistent messages in durable queues must be on disk before commit-ok.
        if !self.committed(ctx, commit, waits).await {
            return Err(AmqpError::internal_error(
                "cannot write the transaction's messages to disk",
            ));
        }
        ctx.out.method(self.id, &TxCommitOk {}.into());
        Ok(())
    }

    /// Waits for the answers of the `waits` queues that keep commit `commit`'s messages on
    /// disk; other mail is set aside for the connection. True if all of them wrote.
    async fn committed(&mut self, ctx: &mut Ctx<'_>, commit: u64, mut waits: u32) -> bool {
        let mut ok = true;
        while waits > 0 {
            match ctx.mailbox.recv().await {
                Some(ConnMsg::Committed {
                    channel_key,
                    seqs,
                    ok: written,
                    ..
                }) if channel_key == self.key => {
                    let mine = seqs.iter().filter(|s| **s == commit).count() as u32;
                    waits = waits.saturating_sub(mine);
                    ok &= written || mine == 0;
                }
                Some(other) => ctx.stash.push_back(other),
                None => return false,
            }
        }
        ok
    }

    pub(super) async fn tx_rollback(&mut self, ctx: &mut Ctx<'_>) -> AmqpResult<()> {
        let tx = self.tx.as_mut().ok_or_else(not_transactional)?;
        let buffer = TxBuffer {
            commits: tx.commits,
            ..std::mem::take(tx)
        };
        tx.commits = buffer.commits;
        let mut back: Vec<Unacked> = buffer.settles.into_iter().flat_map(|(d, _)| d).collect();
        back.extend(self.unacked.drain(..));
        back.sort_by_key(|u| u.tag);
        self.unacked = back.into();
        ctx.out.method(self.id, &TxRollbackOk {}.into());
        Ok(())
    }
}
