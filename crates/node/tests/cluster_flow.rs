//! A consumer on another node that stops reading: the queue's deliveries to it stop once the
//! credit its connection grants runs out (the queue keeps the rest; no buffer between the two
//! nodes takes them), and the link between the nodes goes on carrying other queues' traffic.

#[path = "../../broker/tests/common/mod.rs"]
mod common;
mod support;

use common::RawClient;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;
use support::cluster::{ok, pair};
use support::{Node, lapin_channel, within};
use warren_amqp::methods::{BasicConsume, QueueDeclare};
use warren_amqp::{FieldTable as WireTable, Method};

const MESSAGES: u32 = 20_000;
const BODY: usize = 4096;

/// `messages_ready` of `queue`, through warrenctl.
fn ready(node: &Node, queue: &str) -> u32 {
    let out = ok(node, &["-q", "list_queues", "name", "messages_ready"]);
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{queue} not listed: {out}"))
}

#[test]
fn a_remote_consumer_that_stops_reading_holds_up_neither_its_queue_s_node_nor_the_link() {
    let (a, b) = pair();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c, on_a) = lapin_channel(a.amqp).await;
        for q in ["big", "other"] {
            on_a.queue_declare(q.into(), Default::default(), FieldTable::default())
                .await
                .unwrap();
        }
        on_a.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let body = vec![7u8; BODY];
        let mut confirms = Vec::new();
        for _ in 0..MESSAGES {
            confirms.push(
                on_a.basic_publish(
                    "".into(),
                    "big".into(),
                    BasicPublishOptions::default(),
                    &body,
                    Default::default(),
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
    });
    assert_eq!(ready(&a, "big"), MESSAGES);

    // A client of b consumes without acknowledgements or prefetch, then never reads again.
    let stalled = rt.block_on(async {
        let mut c = RawClient::open_with(b.amqp, "PLAIN", common::plain("guest", "guest"), |t| {
            warren_amqp::methods::ConnectionTuneOk { heartbeat: 0, ..t }
        })
        .await;
        c.open_channel(1).await;
        c.send(
            1,
            QueueDeclare {
                queue: "big".into(),
                passive: true,
                arguments: WireTable::default(),
                ..Default::default()
            }
            .into(),
        )
        .await;
        assert!(matches!(c.method().await, Method::QueueDeclareOk(_)));
        c.send(
            1,
            BasicConsume {
                queue: "big".into(),
                consumer_tag: "stalled".into(),
                no_ack: true,
                ..Default::default()
            }
            .into(),
        )
        .await;
        c
    });
    // Deliveries go out until the socket and the credit are full, then stop: the queue
    // keeps what the consumer could not take.
    let mut last = MESSAGES;
    let settled = within(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = ready(&a, "big");
        let same = now == last && now < MESSAGES;
        last = now;
        same
    });
    assert!(settled, "deliveries never stopped: {last} ready");
    assert!(
        last >= MESSAGES / 2,
        "{} of {MESSAGES} left the queue for a consumer that reads nothing",
        MESSAGES - last
    );

    // The link is not held up: another queue of a's still reaches a consumer on b.
    rt.block_on(async {
        let (_c, on_b) = lapin_channel(b.amqp).await;
        let mut consumer = on_b
            .basic_consume(
                "other".into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let (_p, on_a) = lapin_channel(a.amqp).await;
        for i in 0..100u32 {
            on_a.basic_publish(
                "".into(),
                "other".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                Default::default(),
            )
            .await
            .unwrap();
        }
        for i in 0..100u32 {
            let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .expect("a delivery of the other queue in time")
                .unwrap()
                .unwrap();
            assert_eq!(d.data, i.to_be_bytes());
        }
    });
    drop(stalled);
}
