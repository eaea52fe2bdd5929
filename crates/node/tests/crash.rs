//! The crash loop: a publisher with confirms writes persistent messages while the node is
//! killed with SIGKILL at random moments and restarted. Afterwards every confirmed message is
//! consumed, byte-exact. Unconfirmed ones may or may not be there, and may be duplicated.

#[path = "../../broker/tests/common/mod.rs"]
mod common;
mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts the node and waits until it listens.
fn start(port: u16, dir: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--amqp-listen", &format!("127.0.0.1:{port}")])
        .args(["--cluster-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("WARREN_COOKIE", "crash-test")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("warren exited while starting").unwrap();
        if line.contains("AMQP listener started") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

fn body(id: u64) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((0..(200 + id % 800)).map(|i| (id.wrapping_mul(31).wrapping_add(i)) as u8));
    b
}

/// A small deterministic generator, so a failing run can be repeated.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_message_survives_repeated_kill_9() {
    let dir = common::temp_data_dir();
    let port = support::free_port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut rng = Rng(0x5eed_1234_abcd_0042 ^ std::process::id() as u64);
    let mut confirmed: HashSet<u64> = HashSet::new();
    let mut next_id = 0u64;
    for _cycle in 0..6 {
        let mut node = start(port, &dir);
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "crash".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let kill_after = Duration::from_millis(150 + rng.next(500));
        let publishing = async {
            loop {
                let mut pending = Vec::new();
                for _ in 0..50 {
                    let id = next_id;
                    next_id += 1;
                    let props = BasicProperties::default().with_delivery_mode(2);
                    match ch
                        .basic_publish(
                            "".into(),
                            "crash".into(),
                            BasicPublishOptions::default(),
                            &body(id),
                            props,
                        )
                        .await
                    {
                        Ok(c) => pending.push((id, c)),
                        Err(_) => return,
                    }
                }
                for (id, c) in pending {
                    match c.await {
                        Ok(c) if c.is_ack() => {
                            confirmed.insert(id);
                        }
                        _ => return,
                    }
                }
            }
        };
        let _ = tokio::time::timeout(kill_after, publishing).await;
        node.kill().unwrap(); // SIGKILL
        node.wait().unwrap();
        drop(conn);
    }
    assert!(
        confirmed.len() > 100,
        "the test published too little to mean anything: {}",
        confirmed.len()
    );

    let mut node = start(port, &dir);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let count = ch
        .queue_declare(
            "crash".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    let mut consumer = ch
        .basic_consume(
            "crash".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for _ in 0..count {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let id = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        assert_eq!(d.data, body(id), "message {id} is corrupted");
        seen.insert(id);
    }
    eprintln!(
        "crash loop: {} published, {} confirmed, {} recovered ({} unconfirmed extras)",
        next_id,
        confirmed.len(),
        seen.len(),
        seen.difference(&confirmed).count()
    );
    let lost: Vec<_> = confirmed.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    node.kill().unwrap();
    node.wait().unwrap();
}
