//! warren-perf against a real warren node: every message sent is confirmed and received once,
//! whichever driver runs the load.

use clap::Parser;
use warren_broker::{Broker, Config, Server};
use warren_perf::options::Options;

/// A node for one test, whose data directory goes when the test ends.
struct Node {
    server: Option<Server>,
    dir: std::path::PathBuf,
}

impl Node {
    async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn node() -> (Node, String) {
    let mut config = Config::default();
    config.amqp.listen = "127.0.0.1:0".parse().unwrap();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warren-perf-test-{}-{n}", std::process::id()));
    config.node.data_dir = dir.clone();
    let broker = Broker::open(config).await.unwrap();
    let server = Server::start(broker).await.unwrap();
    let uri = format!("amqp://guest:guest@{}/%2f", server.local_addr);
    (
        Node {
            server: Some(server),
            dir,
        },
        uri,
    )
}

fn opts(uri: &str, extra: &[&str]) -> Options {
    let mut args = vec!["warren-perf", "--uri", uri, "--quiet", "--verify"];
    args.extend_from_slice(extra);
    Options::parse_from(args)
}

async fn check(extra: &[&str], producers: u64, per_producer: u64) {
    let (server, uri) = node().await;
    let s = warren_perf::run::run(opts(&uri, extra))
        .await
        .expect("run succeeds");
    let total = producers * per_producer;
    assert_eq!(s.counts.sent, total, "sent");
    if extra.contains(&"-c") {
        assert_eq!(s.counts.confirmed, total, "confirmed");
        assert!(s.confirm_latency_us.count == total, "every confirm timed");
    }
    assert_eq!(s.counts.received, total, "received");
    assert_eq!(s.lost, Some(0));
    assert_eq!(s.duplicated, Some(0));
    assert_eq!(s.latency_us.count, total, "every delivery timed");
    assert_eq!(s.counts.nacked, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn native_driver_counts_add_up_with_confirms() {
    check(
        &[
            "-x", "2", "-y", "2", "-u", "perf-q", "-c", "100", "-C", "5000", "-s", "100",
        ],
        2,
        5000,
    )
    .await;
}

#[tokio::test]
async fn native_driver_counts_add_up_with_large_bodies_and_multi_ack() {
    check(
        &[
            "-x", "1", "-y", "1", "-u", "perf-big", "-C", "300", "-s", "300000", "-A", "10", "-q",
            "50",
        ],
        1,
        300,
    )
    .await;
}

#[tokio::test]
async fn amqprs_driver_counts_add_up() {
    check(
        &[
            "--driver",
            "amqprs",
            "-x",
            "1",
            "-y",
            "1",
            "-u",
            "perf-amqprs",
            "-c",
            "50",
            "-C",
            "2000",
        ],
        1,
        2000,
    )
    .await;
}

#[tokio::test]
async fn fanout_delivers_a_copy_to_every_consumer() {
    let (server, uri) = node().await;
    let o = Options::parse_from([
        "warren-perf",
        "--uri",
        &uri,
        "--quiet",
        "-x",
        "1",
        "-y",
        "4",
        "-C",
        "1000",
        "-e",
        "amq.fanout",
    ]);
    let s = warren_perf::run::run(o).await.unwrap();
    assert_eq!(s.counts.sent, 1000);
    assert_eq!(s.counts.received, 4000);
    server.shutdown().await;
}

#[tokio::test]
async fn a_named_queue_is_declared_even_without_consumers() {
    let (server, uri) = node().await;
    let o = Options::parse_from([
        "warren-perf",
        "--uri",
        &uri,
        "--quiet",
        "-x",
        "1",
        "-y",
        "0",
        "-e",
        "",
        "-u",
        "backlog",
        "-c",
        "100",
        "-C",
        "500",
    ]);
    let s = warren_perf::run::run(o).await.unwrap();
    assert_eq!(s.counts.confirmed, 500);
    let o = Options::parse_from([
        "warren-perf",
        "--uri",
        &uri,
        "--quiet",
        "-x",
        "0",
        "-y",
        "1",
        "-e",
        "",
        "-u",
        "backlog",
        "-C",
        "0",
        "-z",
        "1",
    ]);
    let s = warren_perf::run::run(o).await.unwrap();
    assert_eq!(
        s.counts.received, 500,
        "the backlog was kept and then consumed"
    );
    server.shutdown().await;
}

/// `-x 0 -C N`: the consumers take N messages and the run ends, long before `-z`; what they
/// did not take stays in the queue for the next run.
#[tokio::test]
async fn consumers_alone_stop_after_the_count() {
    let (server, uri) = node().await;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "warren-perf",
            "--uri",
            &uri,
            "--quiet",
            "-e",
            "",
            "-u",
            "counted",
        ];
        args.extend_from_slice(extra);
        warren_perf::run::run(Options::parse_from(args))
    };
    let s = run(&["-x", "1", "-y", "0", "-c", "100", "-C", "500"])
        .await
        .unwrap();
    assert_eq!(s.counts.confirmed, 500);

    let started = std::time::Instant::now();
    let s = run(&["-x", "0", "-y", "2", "-C", "200", "-z", "60", "-A", "7"])
        .await
        .unwrap();
    assert_eq!(s.counts.received, 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "stopped at the count, not at -z: {:?}",
        started.elapsed()
    );
    // The other driver, and no -z at all.
    let s = run(&["--driver", "amqprs", "-x", "0", "-y", "1", "-C", "250"])
        .await
        .unwrap();
    assert_eq!(s.counts.received, 250);
    // 50 left: every message taken was acknowledged, every other one kept.
    let s = run(&["-x", "0", "-y", "1", "-C", "0", "-z", "1"])
        .await
        .unwrap();
    assert_eq!(s.counts.received, 50);
    server.shutdown().await;
}

#[tokio::test]
async fn the_sink_measures_the_tool_alone() {
    let o = Options::parse_from([
        "warren-perf",
        "--sink",
        "--quiet",
        "--verify",
        "-x",
        "1",
        "-y",
        "1",
        "-c",
        "100",
        "-C",
        "3000",
    ]);
    let s = warren_perf::run::run(o).await.unwrap();
    assert_eq!(s.target, "built-in sink");
    assert_eq!(
        (s.counts.sent, s.counts.confirmed, s.counts.received),
        (3000, 3000, 3000)
    );
    assert_eq!((s.lost, s.duplicated), (Some(0), Some(0)));
}

#[tokio::test]
async fn idle_connections_are_opened_and_held() {
    let (server, uri) = node().await;
    let o = Options::parse_from([
        "warren-perf",
        "--uri",
        &uri,
        "--quiet",
        "-x",
        "0",
        "-y",
        "0",
        "--connections",
        "50",
        "-z",
        "1",
    ]);
    let s = warren_perf::run::run(o).await.unwrap();
    assert_eq!(s.counts.sent, 0);
    server.shutdown().await;
}
