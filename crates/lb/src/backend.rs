//! A backend's servers and how a new session picks one: round robin (smooth, by weight),
//! least connections, source-address hash, or first with room. Backup servers serve only
//! while no active server can, and then only the first usable one, as in HAProxy.

use crate::config::{Balance, Proxy, Timeouts};
use crate::server::ServerState;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub balance: Balance,
    pub servers: Vec<Arc<ServerState>>,
    pub timeouts: Timeouts,
    pub retries: u32,
    pub redispatch: bool,
    pub srvtcpka: bool,
    pub amqp_check: bool,
    pub splice: crate::pump::Splice,
    /// Smooth weighted round robin: each server's current weight.
    rr: Mutex<Vec<i64>>,
    /// Rotates the starting point of leastconn ties.
    ties: AtomicU32,
    /// Woken when a session ends, for sessions queued on full servers.
    pub room: Notify,
    pub cur: AtomicU32,
    pub max: AtomicU32,
    pub total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub queued: AtomicU32,
    pub queued_max: AtomicU32,
}

/// Why no server was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// Every server is down or out of service.
    NoneUsable,
    /// Servers are up but all at their maxconn: wait for room.
    AllFull,
}

impl Backend {
    pub fn new(p: &Proxy) -> Self {
        let servers: Vec<Arc<ServerState>> = p
            .servers
            .iter()
            .map(|s| Arc::new(ServerState::new(&p.name, s)))
            .collect();
        let n = servers.len();
        Backend {
            name: p.name.clone(),
            balance: p.balance,
            servers,
            timeouts: p.timeouts.clone(),
            retries: p.retries,
            redispatch: p.options.redispatch,
            srvtcpka: p.options.srvtcpka,
            amqp_check: p.options.amqp_check,
            splice: crate::pump::Splice {
                request: p.options.splice_request,
                response: p.options.splice_response,
            },
            rr: Mutex::new(vec![0; n]),
            ties: AtomicU32::new(0),
            room: Notify::new(),
            cur: AtomicU32::new(0),
            max: AtomicU32::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            queued: AtomicU32::new(0),
            queued_max: AtomicU32::new(0),
        }
    }

    pub fn server(&self, name: &str) -> Option<&Arc<ServerState>> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Servers that can take sessions now: the usable active ones, or failing those the
    /// first usable backup.
    fn candidates(&self, exclude: Option<usize>) -> Vec<usize> {
        let usable = |i: &usize| Some(*i) != exclude && self.servers[*i].usable();
        let active: Vec<usize> = (0..self.servers.len())
            .filter(|i| !self.servers[*i].params.backup)
            .filter(usable)
            .collect();
        if !active.is_empty() {
            return active;
        }
        (0..self.servers.len())
            .filter(|i| self.servers[*i].params.backup)
            .find(usable)
            .into_iter()
            .collect()
    }

    pub fn active_up(&self) -> (usize, usize) {
        let up = |backup: bool| {
            self.servers
                .iter()
                .filter(|s| s.params.backup == backup && s.is_up())
                .count()
        };
        (up(false), up(true))
    }

    /// Picks a server for a session from `client`, never `exclude` (the one that just failed,
    /// when redispatching).
    pub fn pick(&self, client: IpAddr, exclude: Option<usize>) -> Result<usize, NoServer> {
        let all = self.candidates(exclude);
        if all.is_empty() {
            return Err(NoServer::NoneUsable);
        }
        let with_room: Vec<usize> = all
            .iter()
            .copied()
            .filter(|i| self.servers[*i].has_room())
            .collect();
        if with_room.is_empty() {
            return Err(NoServer::AllFull);
        }
        let weight = |i: usize| self.servers[i].weight.load(Ordering::Relaxed).max(1);
        Ok(match self.balance {
            Balance::RoundRobin => self.round_robin(&with_room),
            Balance::LeastConn => {
                let start = self.ties.fetch_add(1, Ordering::Relaxed) as usize;
                let n = with_room.len();
                (0..n)
                    .map(|k| with_room[(start + k) % n])
                    .min_by(|a, b| {
                        // cur/weight compared without division.
                        let ca = self.servers[*a].cur.load(Ordering::Relaxed) as u64;
                        let cb = self.servers[*b].cur.load(Ordering::Relaxed) as u64;
                        (ca * weight(*b) as u64).cmp(&(cb * weight(*a) as u64))
                    })
                    .unwrap_or(with_room[0])
            }
            Balance::Source => {
                // A static map over the usable servers by weight: the same client reaches the
                // same server while the set of servers stays the same.
                let total: u64 = all.iter().map(|i| weight(*i) as u64).sum();
                let mut slot = source_hash(client) % total.max(1);
                let mut chosen = all[0];
                for i in &all {
                    let w = weight(*i) as u64;
                    if slot < w {
                        chosen = *i;
                        break;
                    }
                    slot -= w;
                }
                if self.servers[chosen].has_room() {
                    chosen
                } else {
                    with_room[0]
                }
            }
            Balance::First => with_room[0],
        })
    }

    fn round_robin(&self, among: &[usize]) -> usize {
        let mut current = self.rr.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best = among[0];
        for &i in among {
            let w = self.servers[i].weight.load(Ordering::Relaxed).max(1) as i64;
            current[i] += w;
            total += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }

    pub fn session_started(&self) {
        let cur = self.cur.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(cur, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_ended(&self) {
        self.cur.fetch_sub(1, Ordering::Relaxed);
        self.room.notify_waiters();
    }
}

/// HAProxy hashes the source address; any stable hash does, as long as it spreads.
fn source_hash(ip: IpAddr) -> u64 {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    // FNV-1a.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::server::Admin;

    fn backend(lines: &str) -> Backend {
        let text = format!(
            "backend be\n    timeout connect 1s\n    timeout server 1s\n{lines}\nfrontend fe\n    bind 127.0.0.1:0\n    timeout client 1s\n    default_backend be\n"
        );
        let cfg = parse_str("test.cfg", &text).expect("valid");
        Backend::new(cfg.proxy("be").expect("be"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_robin_alternates_and_follows_weights() {
        let b = backend("    server a 127.0.0.1:1\n    server b 127.0.0.1:2");
        let picks: Vec<usize> = (0..4)
            .map(|_| b.pick(ip("10.0.0.1"), None).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        let b = backend("    server a 127.0.0.1:1 weight 3\n    server b 127.0.0.1:2 weight 1");
        let picks: Vec<usize> = (0..8)
            .map(|_| b.pick(ip("10.0.0.1"), None).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 6);
        assert_eq!(
            picks[0..4],
            [0, 0, 1, 0],
            "smooth: the light server is interleaved"
        );
    }

    #[test]
    fn down_and_maintenance_servers_are_skipped() {
        let b = backend("    server a 127.0.0.1:1\n    server b 127.0.0.1:2");
        b.servers[0].set_admin(Admin::Maint);
        for _ in 0..3 {
            assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(1));
        }
        b.servers[1].set_admin(Admin::Drain);
        assert_eq!(b.pick(ip("10.0.0.1"), None), Err(NoServer::NoneUsable));
    }

    #[test]
    fn backups_serve_only_when_no_active_server_can() {
        let b = backend(
            "    server a 127.0.0.1:1\n    server spare1 127.0.0.1:2 backup\n    server spare2 127.0.0.1:3 backup",
        );
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(0));
        b.servers[0].set_admin(Admin::Maint);
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(1));
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(1), "only the first backup");
    }

    #[test]
    fn leastconn_prefers_the_idlest_server() {
        let b =
            backend("    balance leastconn\n    server a 127.0.0.1:1\n    server b 127.0.0.1:2");
        b.servers[0].session_started();
        b.servers[0].session_started();
        b.servers[1].session_started();
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(1));
        b.servers[1].session_started();
        b.servers[1].session_started();
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(0));
    }

    #[test]
    fn source_keeps_a_client_on_one_server() {
        let b = backend("    balance source\n    server a 127.0.0.1:1\n    server b 127.0.0.1:2");
        let first = b.pick(ip("192.0.2.7"), None).unwrap();
        for _ in 0..5 {
            assert_eq!(b.pick(ip("192.0.2.7"), None), Ok(first));
        }
        let spread: std::collections::HashSet<usize> = (0..64)
            .map(|i| b.pick(ip(&format!("192.0.2.{i}")), None).unwrap())
            .collect();
        assert_eq!(spread.len(), 2, "different clients spread over both");
    }

    #[test]
    fn first_fills_servers_in_order_and_maxconn_queues() {
        let b = backend(
            "    balance first\n    server a 127.0.0.1:1 maxconn 2\n    server b 127.0.0.1:2 maxconn 1",
        );
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(0));
        b.servers[0].session_started();
        b.servers[0].session_started();
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(1));
        b.servers[1].session_started();
        assert_eq!(b.pick(ip("10.0.0.1"), None), Err(NoServer::AllFull));
        b.servers[0].session_ended();
        assert_eq!(b.pick(ip("10.0.0.1"), None), Ok(0));
    }

    #[test]
    fn redispatch_never_picks_the_failed_server() {
        let b = backend("    server a 127.0.0.1:1\n    server b 127.0.0.1:2");
        for _ in 0..4 {
            assert_eq!(b.pick(ip("10.0.0.1"), Some(0)), Ok(1));
        }
    }
}
