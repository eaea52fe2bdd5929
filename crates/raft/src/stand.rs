//! Moving a group's leadership to a chosen member, which openraft 0.9 cannot do itself (it has
//! no leader transfer). The member stands for election: a leader's own vote is not renewed by
//! its heartbeats, so a leader that has led for longer than its lease grants the vote of a
//! candidate of a later term whose log is as long as its own, and steps down; the candidate
//! and the old leader are a majority of three. Another follower still under the lease refuses,
//! which does not matter. A candidate whose log is shorter loses, and the group elects again.

use crate::messages::{Request, decode, encode};
use crate::network::{CallError, Transport};
use std::time::Duration;

/// Asks the member at `addr` to stand for election now; whether it did (a learner does not).
pub async fn stand_at(
    transport: &dyn Transport,
    addr: &str,
    timeout: Duration,
) -> Result<bool, CallError> {
    let raw = transport
        .call(addr, encode(&Request::<crate::Meta>::Stand), timeout)
        .await?;
    decode(&raw).map_err(CallError::Unreachable)
}
