//! Faults against a quorum queue in the article's setup, as Jepsen would test it: three nodes,
//! each on a host of its own (a network namespace), warren-lb in front of them, a producer
//! publishing with confirms and a consumer acknowledging, both through the balancer and both
//! connecting again whenever they are dropped. The nemesis kills the queue leader's node with
//! SIGKILL (and starts it again), pauses the next leader's node with SIGSTOP, and cuts the
//! next one's cable. After each fault the workload must make progress again; after healing,
//! every confirmed message must come out with its checksum intact. Duplicates and the longest
//! pause the producer saw are reported; zero confirmed messages lost is the only pass.
//!
//! This is the short form (a few hundred messages around each fault). Needs root and
//! iproute2, which the test command installs.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::net::Net;
use support::{Node, Spec, eventually, free_port, scratch_dir};

const CLUSTER_PORT: u16 = 25672;
const USER: &str = "app";
const PASSWORD: &str = "app-secret";
const QUEUE: &str = "jepsen";

fn name(i: usize) -> String {
    format!("f{i}@10.201.0.{i}")
}

/// What the workload saw.
#[derive(Default)]
struct Seen {
    confirmed: BTreeSet<u64>,
    nacked: u64,
    /// The longest time between two confirms.
    longest_pause: Duration,
    /// Times a received message arrived, by id.
    received: BTreeMap<u64, u32>,
    corrupt: u64,
    reconnects: u64,
    /// Deliveries flagged `redelivered`.
    redelivered: u64,
}

fn checksum(id: u64) -> u64 {
    // FNV-1a over the id's bytes: any stable spread will do.
    id.to_be_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A message's body: its id, its checksum, and some padding derived from both.
fn body(id: u64) -> Vec<u8> {
    let sum = checksum(id);
    let mut b = format!("{id}:{sum:016x}:").into_bytes();
    b.extend((0..200u64).map(|i| (sum.rotate_left(i as u32) & 0x3f) as u8 + b'0'));
    b
}

/// The id of a body whose checksum and padding are intact.
fn check(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    let id: u64 = text.split(':').next()?.parse().ok()?;
    (body(id) == data).then_some(id)
}

/// warren-lb in front of the three hosts: quick checks, and a node marked down has its
/// sessions cut, so that clients of a paused node connect again elsewhere.
struct Balancer {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Balancer {
    fn start() -> Balancer {
        let front = free_port();
        let dir = scratch_dir("faults-lb");
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = (1..=3)
            .map(|i| {
                format!(
                    "    server n{i} 10.201.0.{i}:5672 check inter 200ms rise 2 fall 2 on-marked-down shutdown-sessions\n"
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 4000\ndefaults\n    mode tcp\n    option redispatch\n    retries 3\n    timeout connect 1s\n    timeout client 1m\n    timeout server 1m\n    timeout check 300ms\nlisten rabbitmq_cluster\n    bind 127.0.0.1:{front}\n    balance roundrobin\n    option amqp-check\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_warren")).with_file_name("warren-lb");
        assert!(bin.exists(), "build warren-lb first (cargo build --bins)");
        let child = Command::new(bin)
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start warren-lb");
        eventually("the balancer listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
        });
        Balancer {
            child,
            dir,
            url: format!("amqp://{USER}:{PASSWORD}@127.0.0.1:{front}/%2f"),
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(node: &Node, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &node.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} our own node");
}

async fn connect(url: &str) -> Option<(lapin::Connection, lapin::Channel)> {
    let connecting = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .ok()?
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    Some((conn, ch))
}

/// Publishes one message at a time, waiting for its confirm, until `stop`; connects again
/// whenever the connection fails. A message whose confirm never came is not counted.
async fn produce(url: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let mut next = 0u64;
    let mut last_confirm = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some((conn, ch)) = connect(&url).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if ch
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .is_err()
        {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            let id = next;
            next += 1;
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            let published = ch
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    &body(id),
                    props,
                )
                .await;
            let Ok(confirm) = published else { break };
            match tokio::time::timeout(Duration::from_secs(10), confirm).await {
                Ok(Ok(c)) if c.is_ack() => {
                    let now = Instant::now();
                    let mut s = seen.lock().unwrap();
                    s.longest_pause = s.longest_pause.max(now - last_confirm);
                    last_confirm = now;
                    s.confirmed.insert(id);
                }
                Ok(Ok(_)) => seen.lock().unwrap().nacked += 1,
                _ => break,
            }
        }
        seen.lock().unwrap().reconnects += 1;
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    }
}

/// Consumes and acknowledges until `stop`, connecting again whenever it is dropped.
async fn consume(url: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::Relaxed) {
        let Some((conn, ch)) = connect(&url).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = ch.basic_qos(50, BasicQosOptions::default()).await;
        let Ok(mut consumer) = ch
            .basic_consume(
                QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        else {
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(300), consumer.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(d))) => {
                    {
                        let mut s = seen.lock().unwrap();
                        if d.redelivered {
                            s.redelivered += 1;
                        }
                        match check(&d.data) {
                            Some(id) => {
                                let n = s.received.entry(id).or_default();
                                *n += 1;
                                if *n == 2 && std::env::var_os("WARREN_FAULT_DEBUG").is_some() {
                                    eprintln!(
                                        "duplicate {id} redelivered={} tag={}",
                                        d.redelivered, d.delivery_tag
                                    );
                                }
                            }
                            None => s.corrupt += 1,
                        }
                    }
                    if d.ack(BasicAckOptions::default()).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    }
}

/// The longest pause since the last call, reported under `phase`; the longest of all is
/// kept in `worst`.
fn pause_during(seen: &Mutex<Seen>, phase: &str, worst: &mut Duration) {
    let mut s = seen.lock().unwrap();
    let pause = std::mem::take(&mut s.longest_pause);
    let dups: u32 = s.received.values().map(|n| n - 1).sum();
    eprintln!(
        "longest pause {phase}: {pause:?} (duplicates so far {dups}, redelivered {})",
        s.redelivered
    );
    *worst = (*worst).max(pause);
}

/// Waits until `n` more messages than now are confirmed (the queue serves again).
fn progress(seen: &Mutex<Seen>, n: usize, what: &str) {
    let from = seen.lock().unwrap().confirmed.len();
    eventually(what, Duration::from_secs(60), || {
        seen.lock().unwrap().confirmed.len() >= from + n
    });
}

/// The node whose member leads the queue, asked of `asked` (none: no leader yet).
fn queue_leader(nodes: &[Option<Node>], asked: usize) -> Option<usize> {
    let node = nodes[asked].as_ref()?;
    let (code, out, _) = node.ctl(&["-q", "quorum_status", QUEUE]);
    if code != 0 {
        return None;
    }
    // A leader cut off or paused a moment ago may still call itself one: the leader is the
    // one of the highest term.
    out.lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|cells| cells.get(1) == Some(&"leader"))
        .max_by_key(|cells| cells.get(5).and_then(|t| t.parse::<u64>().ok()))
        .and_then(|cells| (1..=3).find(|i| name(*i) == cells[0]))
        .map(|i| i - 1)
}

/// Asks each running node in turn until one names the leader.
fn find_leader(nodes: &[Option<Node>]) -> usize {
    let mut found = None;
    eventually("a leader of the queue", Duration::from_secs(30), || {
        found = (0..3).find_map(|i| queue_leader(nodes, i));
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn no_confirmed_message_is_lost_to_kill_pause_or_partition() {
    let net = Net::new();
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("\"{}:{CLUSTER_PORT}\"", name(i)))
        .collect();
    let config = format!(
        "[cluster]\npeers = [{}]\nmetadata_timeout_ms = 5000\n",
        peers.join(", ")
    );
    let spec = |i: usize| Spec {
        name: name(i),
        cluster_port: CLUSTER_PORT,
        config: Some(config.clone()),
        dir: scratch_dir("faults"),
        netns: Some((net.space(&format!("n{i}")), format!("10.201.0.{i}"))),
    };
    let mut nodes: Vec<Option<Node>> = (1..=3).map(|i| Some(Node::start_as(spec(i)))).collect();
    for node in nodes.iter().flatten() {
        eventually("the cluster to form", Duration::from_secs(30), || {
            let (code, out, _) = node.ctl(&["cluster_status", "--formatter", "json"]);
            code == 0
                && serde_json::from_str::<serde_json::Value>(&out)
                    .is_ok_and(|s| s["running_nodes"].as_array().is_some_and(|r| r.len() == 3))
        });
    }
    let first = nodes[0].as_ref().unwrap();
    // guest may only log in over loopback; the balancer's connections come over the switch.
    for args in [
        vec!["add_user", USER, PASSWORD],
        vec!["set_permissions", USER, ".*", ".*", ".*"],
    ] {
        let (code, out, err) = first.ctl(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let lb = Balancer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, ch) = connect(&lb.url).await.expect("through the balancer");
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(QUEUE.into(), durable, args).await.unwrap();
    });

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = rt.spawn(produce(lb.url.clone(), stop.clone(), seen.clone()));
    let consumer = rt.spawn(consume(lb.url.clone(), stop.clone(), seen.clone()));
    progress(&seen, 200, "the workload to start");
    let mut worst = Duration::ZERO;
    pause_during(&seen, "while starting", &mut worst);
    // The long form (bench/faults) runs more rounds.
    let rounds: usize = std::env::var("WARREN_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    for round in 1..=rounds {
        // SIGKILL the leader's node, and start it again once the others serve.
        let victim = find_leader(&nodes);
        eprintln!("round {round}: kill -9 {}", name(victim + 1));
        let stopped = nodes[victim].take().unwrap().kill();
        progress(&seen, 200, "progress after the leader's node was killed");
        pause_during(&seen, "after kill -9 of the leader's node", &mut worst);
        nodes[victim] = Some(stopped.start());
        progress(&seen, 200, "progress after the killed node came back");
        pause_during(&seen, "while the killed node came back", &mut worst);

        // SIGSTOP the (new) leader's node: the others must elect another and serve.
        let paused = find_leader(&nodes);
        eprintln!("round {round}: kill -STOP {}", name(paused + 1));
        signal(nodes[paused].as_ref().unwrap(), "-STOP");
        progress(&seen, 200, "progress while the leader's node is paused");
        pause_during(&seen, "after SIGSTOP of the leader's node", &mut worst);
        signal(nodes[paused].as_ref().unwrap(), "-CONT");
        progress(&seen, 200, "progress after the paused node resumed");
        pause_during(&seen, "while the paused node resumed", &mut worst);

        // Cut the leader's node off: the majority side serves.
        let cut = find_leader(&nodes);
        eprintln!("round {round}: cut {} off", name(cut + 1));
        net.set_cable(cut + 1, false);
        progress(&seen, 200, "progress while the leader's node is cut off");
        pause_during(&seen, "after the leader's node was cut off", &mut worst);
        net.set_cable(cut + 1, true);
        progress(&seen, 200, "progress after the partition healed");
        pause_during(&seen, "while the partition healed", &mut worst);
    }

    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        let _ = producer.await;
        let _ = consumer.await;
    });
    // Whatever is left, drained by a consumer that is not stopped.
    let drained = Arc::new(AtomicBool::new(false));
    let drainer = rt.spawn(consume(lb.url.clone(), drained.clone(), seen.clone()));
    let lost = |s: &Seen| -> Vec<u64> {
        s.confirmed
            .iter()
            .copied()
            .filter(|id| !s.received.contains_key(id))
            .collect()
    };
    let complete = support::within(Duration::from_secs(60), || {
        lost(&seen.lock().unwrap()).is_empty()
    });
    drained.store(true, Ordering::Relaxed);
    rt.block_on(async {
        let _ = drainer.await;
    });

    let s = seen.lock().unwrap();
    let duplicates: u32 = s.received.values().map(|n| n - 1).sum();
    let unconfirmed_received = s
        .received
        .keys()
        .filter(|id| !s.confirmed.contains(id))
        .count();
    eprintln!(
        "confirmed {}, received {} distinct ({duplicates} duplicates, {} redelivered, {unconfirmed_received} never confirmed), nacked {}, reconnects {}, longest pause {worst:?}",
        s.confirmed.len(),
        s.received.len(),
        s.redelivered,
        s.nacked,
        s.reconnects,
    );
    assert_eq!(s.corrupt, 0, "every message's checksum matches");
    let lost = lost(&s);
    assert!(
        complete && lost.is_empty(),
        "{} confirmed messages never came out: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
}
