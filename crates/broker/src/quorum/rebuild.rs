//! A member whose files cannot be read (a damaged log or snapshot) is rebuilt from the other
//! members rather than left dead: its directory is set aside for inspection, it starts empty,
//! and the group takes it out and back in (a learner first, a voter once it has caught up).
//! Until it is a voter again it refuses to vote: having lost what it voted for, it could
//! otherwise vote twice in one term.

use super::Replicas;
use super::group::{self, Member};
use crate::queue::state::QueueState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warren_meta::QueueId;
use warren_raft::MemberChange;

/// How long each step of bringing a member back may keep trying.
const REJOIN_FOR: Duration = Duration::from_secs(300);

/// The pause between two tries of a step.
const RETRY: Duration = Duration::from_secs(1);

/// Who a member is and whom it can rebuild from.
pub(crate) struct Peers {
    /// This member's address (`name@host:port`), as the group knows it.
    pub me: String,
    /// The other members' addresses.
    pub others: Vec<String>,
}

/// Starts `queue`'s member from its directory; if its files cannot be read and there are
/// other members to rebuild it from, sets them aside and starts it empty, to be brought back
/// (see [`rejoin`]). `state` makes the empty replica each start needs.
pub(crate) async fn start(
    (queue, me): (QueueId, u64),
    dir: PathBuf,
    state: impl Fn() -> QueueState,
    replicas: &Arc<Replicas>,
    (initial, peers): (Option<std::collections::BTreeMap<u64, String>>, Peers),
) -> Result<Member, String> {
    let links = replicas.links.clone();
    let first = group::start(
        group::config(queue)?,
        queue,
        me,
        state(),
        dir.clone(),
        links.clone(),
        initial,
    )
    .await;
    let e = match first {
        Ok(m) => return Ok(m),
        Err(e) if peers.others.is_empty() => return Err(e),
        Err(e) => e,
    };
    let aside = set_aside(&dir)?;
    tracing::error!(
        queue = %queue,
        error = %e,
        aside = %aside.display(),
        "a quorum queue member's files cannot be read: set aside, rebuilding it from the other members"
    );
    let member = group::start(group::config(queue)?, queue, me, state(), dir, links, None).await?;
    replicas.set_rebuilding(queue, true);
    tokio::spawn(rejoin(
        queue,
        me,
        member.raft.clone(),
        replicas.clone(),
        peers,
    ));
    Ok(member)
}

/// Moves a damaged directory out of the way, keeping it.
fn set_aside(dir: &Path) -> Result<PathBuf, String> {
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".damaged-{}", crate::queue::actor::now_ms()));
    let aside = PathBuf::from(aside);
    std::fs::rename(dir, &aside).map_err(|e| format!("cannot set {} aside: {e}", dir.display()))?;
    Ok(aside)
}

/// Takes the member out of its group and back in: out (whatever it was), in as a learner,
/// and a voter once it has applied the log up to its own return.
async fn rejoin(
    queue: QueueId,
    me: u64,
    raft: warren_raft::ReplicaRaft,
    replicas: Arc<Replicas>,
    peers: Peers,
) {
    let transport = group::transport(queue, replicas.links.clone());
    let ask = |change: MemberChange| {
        let (transport, others) = (transport.clone(), peers.others.clone());
        async move {
            let deadline = std::time::Instant::now() + REJOIN_FOR;
            while std::time::Instant::now() < deadline {
                match group::ask_any(&*transport, &others, &change, RETRY * 10).await {
                    Ok(index) => return Some(index),
                    Err(e) => tracing::debug!(error = %e, "rebuilding a member: retrying"),
                }
                tokio::time::sleep(RETRY).await;
            }
            None
        }
    };
    if ask(MemberChange::Remove { id: me }).await.is_none() {
        tracing::error!(queue = %queue, "could not take the damaged member out of its group");
        return;
    }
    let addr = peers.me.clone();
    let Some(index) = ask(MemberChange::Add { id: me, addr }).await else {
        tracing::error!(queue = %queue, "could not add the rebuilt member back");
        return;
    };
    let mut metrics = raft.metrics();
    let caught_up = metrics.wait_for(|m| m.last_applied.is_some_and(|l| l.index >= index));
    if tokio::time::timeout(REJOIN_FOR, caught_up).await.is_err() {
        tracing::error!(queue = %queue, "the rebuilt member did not catch up");
        return;
    }
    if ask(MemberChange::Promote { id: me }).await.is_some() {
        replicas.set_rebuilding(queue, false);
        tracing::info!(queue = %queue, "a quorum queue member was rebuilt from the other members");
    }
}
