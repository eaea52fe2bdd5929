//! A node that forms a cluster from its peers list, and is not the one that seeds it, serves
//! clients only once the seed's leader has sent it the topology: the moment its AMQP listener
//! is up, `guest` (and every user) logs in, as on a RabbitMQ node that has synced its tables.

mod support;

use support::cluster::TIMEOUT_MS;
use support::{Node, Spec, free_port, lapin_channel, scratch_dir};

#[test]
fn a_new_member_serves_logins_as_soon_as_it_listens() {
    let ports = [free_port(), free_port()];
    let names = ["f1@localhost", "f2@localhost"];
    let config = format!(
        "[cluster]\npeers = [\"{}:{}\", \"{}:{}\"]\nmetadata_timeout_ms = {TIMEOUT_MS}\n",
        names[0], ports[0], names[1], ports[1]
    );
    let start = |i: usize| {
        Node::start_as(Spec {
            name: names[i].to_owned(),
            cluster_port: ports[i],
            config: Some(config.clone()),
            dir: scratch_dir("forming"),
            netns: None,
        })
    };
    // The seed (its name sorts first) has the topology from the start; the second node gets
    // it from the group's first leader, which needs both to vote.
    let _seed = start(0);
    let second = start(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // lapin_channel fails the test if the login is refused.
        let (_c, ch) = lapin_channel(second.amqp).await;
        ch.queue_declare("q".into(), Default::default(), Default::default())
            .await
            .expect("the default vhost is there too");
    });
    assert!(second.logged("took the topology from the metadata group's leader"));
}
