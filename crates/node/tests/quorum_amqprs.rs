//! A quorum queue driven by amqprs, a Rust client we did not write, through three nodes of a
//! cluster: declared through one, published to with confirms through another, consumed from
//! through the third, with a requeue that comes back last and counted (x-delivery-count).

mod support;

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::*;
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use async_trait::async_trait;
use std::time::Duration;
use support::Node;
use support::cluster::cluster;
use tokio::sync::mpsc;

async fn channel(node: &Node) -> (Connection, Channel) {
    let args = OpenConnectionArguments::new(
        &node.amqp.ip().to_string(),
        node.amqp.port(),
        "guest",
        "guest",
    );
    let conn = Connection::open(&args).await.expect("amqprs connects");
    let ch = conn.open_channel(None).await.unwrap();
    (conn, ch)
}

/// Publisher confirms, as amqprs reports them: one true per message acked, false per nack.
/// A `multiple` ack covers every tag up to its own not confirmed before (the last tag
/// confirmed is the second field).
struct Confirms(mpsc::UnboundedSender<bool>, u64);

#[async_trait]
impl ChannelCallback for Confirms {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let tag = ack.delivery_tag();
        let n = if ack.mutiple() {
            tag.saturating_sub(self.1)
        } else {
            1
        };
        self.1 = self.1.max(tag);
        for _ in 0..n {
            let _ = self.0.send(true);
        }
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.1 = self.1.max(nack.delivery_tag());
        let _ = self.0.send(false);
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

fn delivery_count(props: &Option<BasicProperties>) -> Option<i64> {
    let headers = props.as_ref()?.headers()?;
    headers.as_ref().iter().find_map(|(k, v)| {
        (k.as_ref() == "x-delivery-count").then(|| match v {
            FieldValue::l(n) => *n,
            FieldValue::I(n) => i64::from(*n),
            other => panic!("x-delivery-count of type {other:?}"),
        })
    })
}

#[test]
fn amqprs_uses_a_quorum_queue_through_every_node() {
    let nodes = cluster(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_c1, on1) = channel(&nodes[0]).await;
        let mut args = FieldTable::new();
        args.insert(
            "x-queue-type".try_into().unwrap(),
            FieldValue::S("quorum".try_into().unwrap()),
        );
        on1.queue_declare(
            QueueDeclareArguments::durable_client_named("orders")
                .arguments(args)
                .finish(),
        )
        .await
        .unwrap();

        let (_c2, on2) = channel(&nodes[1]).await;
        let (tx, mut confirms) = mpsc::unbounded_channel();
        on2.register_callback(Confirms(tx, 0)).await.unwrap();
        on2.confirm_select(ConfirmSelectArguments::new(false))
            .await
            .unwrap();
        for body in [b"A", b"B", b"C"] {
            let props = BasicProperties::default().with_delivery_mode(2).finish();
            on2.basic_publish(
                props,
                body.to_vec(),
                BasicPublishArguments::new("", "orders"),
            )
            .await
            .unwrap();
        }
        for _ in 0..3 {
            let acked = tokio::time::timeout(Duration::from_secs(20), confirms.recv())
                .await
                .expect("a confirm in time");
            assert_eq!(acked, Some(true));
        }

        let (_c3, on3) = channel(&nodes[2]).await;
        on3.basic_qos(BasicQosArguments::new(0, 1, false))
            .await
            .unwrap();
        let (_, mut rx) = on3
            .basic_consume_rx(BasicConsumeArguments::new("orders", "amqprs"))
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("a delivery in time")
                .expect("the consumer stays");
            let deliver = m.deliver.unwrap();
            let tag = deliver.delivery_tag();
            got.push((
                m.content.unwrap(),
                deliver.redelivered(),
                delivery_count(&m.basic_properties),
            ));
            if got.len() == 1 {
                on3.basic_nack(BasicNackArguments::new(tag, false, true))
                    .await
                    .unwrap();
            } else {
                on3.basic_ack(BasicAckArguments::new(tag, false))
                    .await
                    .unwrap();
            }
        }
        // The requeued message comes back last, marked and counted.
        assert_eq!(
            got,
            vec![
                (b"A".to_vec(), false, None),
                (b"B".to_vec(), false, None),
                (b"C".to_vec(), false, None),
                (b"A".to_vec(), true, Some(1)),
            ]
        );
    });
}
