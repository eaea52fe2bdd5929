//! warren-lb in front of two warren nodes, driven by lapin (a client we did not write):
//! connections alternate between the nodes, a dead node leaves the rotation and comes back,
//! a hung node's clients are disconnected at once with shutdown-sessions, the statistics
//! page, CSV and Prometheus text follow each step behind their credentials, and the runtime
//! socket takes servers in and out of service.

mod common;

use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::time::Duration;

struct Stack {
    nodes: Vec<Node>,
    lb: Lb,
    front: SocketAddr,
    stats: SocketAddr,
}

/// Two nodes behind a balancer with the seed's shape, but quick checks.
fn stack(server_options: &str, backend_options: &str) -> Stack {
    let nodes = vec![Node::start(), Node::start()];
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let stats = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = temp_dir("cfg");
    let socket = dir.join("admin.sock");
    let config = format!(
        "global
    maxconn 4000
    stats socket {socket}
defaults
    mode http
    option httplog
    option redispatch
    retries 3
    timeout connect 1s
    timeout client 1m
    timeout server 1m
    timeout check 300ms
listen rabbitmq_cluster
    bind {front}
    mode tcp
    option tcplog
    option clitcpka
    balance roundrobin
{backend_options}
    server node1 127.0.0.1:{p1} check inter 100ms rise 2 fall 3 {server_options}
    server node2 127.0.0.1:{p2} check inter 100ms rise 2 fall 3 {server_options}
listen http_front
    bind {stats}
    stats refresh 5s
    stats uri /haproxy_stats
    stats auth admin:secret
",
        socket = socket.display(),
        p1 = nodes[0].port,
        p2 = nodes[1].port,
    );
    let lb = Lb::start(&config, front);
    // The listeners are bound one after the other: the statistics one may come second.
    wait_for_port(stats);
    // The runtime socket is bound beside the listeners, not necessarily before them.
    for _ in 0..250 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::rename(&socket, lb.socket()).expect("move the socket beside the lb");
    let _ = std::fs::remove_dir_all(&dir);
    Stack {
        nodes,
        lb,
        front,
        stats,
    }
}

impl Stack {
    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.front)
    }

    fn csv(&self) -> String {
        let (code, _, body) = http_get(self.stats, "/haproxy_stats;csv", Some("admin:secret"));
        assert_eq!(code, 200);
        body
    }

    /// Sessions so far (`stot`) on `server`'s row of `csv` (a server or FRONTEND).
    fn stot(&self, csv: &str, server: &str) -> u64 {
        let header: Vec<&str> = csv
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header
            .iter()
            .position(|c| *c == "stot")
            .expect("a stot column");
        csv.lines()
            .find(|l| l.starts_with(&format!("rabbitmq_cluster,{server},")))
            .and_then(|line| line.split(',').nth(col))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no stot for {server} in {csv}"))
    }

    fn status(&self, server: &str) -> String {
        csv_status(&self.csv(), "rabbitmq_cluster", server).expect("server row")
    }
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect through the balancer")
}

/// Whether queue `name` exists on the node at `url`.
async fn has_queue(url: &str, name: &str) -> bool {
    let conn = connect(url).await;
    let ch = conn.create_channel().await.expect("channel");
    let found = ch
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok();
    let _ = conn.close(200, "bye".into()).await;
    found
}

/// Opens a connection through the balancer, declares `name` there and leaves it open.
async fn mark_via(stack: &Stack, name: &str) -> Connection {
    let conn = connect(&stack.url()).await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // Closed here rather than when dropped, so that no channel is still closing when the
    // caller closes the connection (lapin refuses that).
    ch.close(200, "done".into())
        .await
        .expect("close the channel");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_alternate_between_the_nodes_and_messages_pass() {
    let s = stack("", "");
    // The fixture's readiness probe is a session too. Under load the balancer can place it
    // after the first connection below, which would shift the alternation by one.
    eventually("the readiness probe is placed", || {
        let csv = s.csv();
        s.stot(&csv, "node1") + s.stot(&csv, "node2") >= 1
    });
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(mark_via(&s, &format!("via-lb-{i}")).await);
    }
    let on_node1: Vec<bool> = futures(&s.nodes[0].url(), 4).await;
    let on_node2: Vec<bool> = futures(&s.nodes[1].url(), 4).await;
    // Round robin: every other connection on each node (where it starts depends on the
    // connections made before, such as the fixture's own readiness probe).
    assert!(
        on_node1 == [true, false, true, false] || on_node1 == [false, true, false, true],
        "{on_node1:?}"
    );
    let other: Vec<bool> = on_node1.iter().map(|b| !b).collect();
    assert_eq!(on_node2, other, "each connection on exactly one node");

    // A real client's traffic passes through unchanged.
    let conn = connect(&s.url()).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "echo".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let body = vec![7u8; 300_000];
    ch.basic_publish(
        "".into(),
        "echo".into(),
        BasicPublishOptions::default(),
        &body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = loop {
        if let Some(m) = ch
            .basic_get("echo".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(got.delivery.data, body);

    let csv = s.csv();
    assert!(
        s.stot(&csv, "node1") >= 3 && s.stot(&csv, "node2") >= 2,
        "{csv}"
    );
    assert!(s.stot(&csv, "FRONTEND") >= 5);
    drop(held);
}

async fn futures(url: &str, n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(has_queue(url, &format!("via-lb-{i}")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_leaves_the_rotation_and_returns_after_rise_checks() {
    let mut s = stack("", "    option amqp-check");
    eventually("both servers are UP", || {
        s.status("node1") == "UP" && s.status("node2") == "UP"
    });
    s.nodes[0].kill9();
    let took = eventually("node1 is DOWN", || s.status("node1") == "DOWN");
    eprintln!("node1 marked DOWN {took:?} after kill -9 (inter 100ms, fall 3)");
    let csv = s.csv();
    assert!(
        csv.contains(",L7") || csv.contains(",L4"),
        "a check result is shown"
    );
    // Every new connection now goes to node2.
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(mark_via(&s, &format!("after-kill-{i}")).await);
    }
    for i in 0..3 {
        assert!(has_queue(&s.nodes[1].url(), &format!("after-kill-{i}")).await);
    }
    // Metrics and the page say the same.
    let (_, _, metrics) = http_get(s.stats, "/metrics", Some("admin:secret"));
    assert!(
        metrics.contains("haproxy_server_status{proxy=\"rabbitmq_cluster\",server=\"node1\"} 0")
    );
    assert!(
        metrics.contains("haproxy_server_status{proxy=\"rabbitmq_cluster\",server=\"node2\"} 1")
    );
    assert!(metrics.contains(
        "haproxy_server_check_up_down_total{proxy=\"rabbitmq_cluster\",server=\"node1\"} 1"
    ));
    let (_, _, page) = http_get(s.stats, "/haproxy_stats", Some("admin:secret"));
    assert!(
        page.contains("class=\"active_down\" data-server=\"node1\""),
        "{page}"
    );

    s.nodes[0].restart();
    eventually("node1 is UP again", || s.status("node1") == "UP");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_nodes_clients_are_disconnected_when_it_is_marked_down() {
    let s = stack("on-marked-down shutdown-sessions", "    option amqp-check");
    eventually("both servers are UP", || {
        s.status("node1") == "UP" && s.status("node2") == "UP"
    });
    let conn = mark_via(&s, "hung-client").await;
    let (i, name) = if has_queue(&s.nodes[0].url(), "hung-client").await {
        (0, "node1")
    } else {
        (1, "node2")
    };
    // A paused node still accepts TCP connections (the kernel does), but never answers:
    // only an AMQP-level check notices.
    s.nodes[i].pause();
    eventually("the node is DOWN", || s.status(name) == "DOWN");
    eventually("the client's connection is closed", || {
        !conn.status().connected()
    });
    s.nodes[i].resume();
    eventually("the node is UP again", || s.status(name) == "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statistics_page_wants_credentials() {
    let s = stack("", "");
    let (code, head, _) = http_get(s.stats, "/haproxy_stats", None);
    assert_eq!(code, 401);
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"HAProxy Statistics\"")
            || head
                .to_lowercase()
                .contains("www-authenticate: basic realm=\"haproxy statistics\""),
        "{head}"
    );
    assert_eq!(
        http_get(s.stats, "/haproxy_stats", Some("admin:wrong")).0,
        401
    );
    assert_eq!(http_get(s.stats, "/haproxy_stats;csv", None).0, 401);
    assert_eq!(http_get(s.stats, "/metrics", Some("guest:guest")).0, 401);
    let (code, _, page) = http_get(s.stats, "/haproxy_stats", Some("admin:secret"));
    assert_eq!(code, 200);
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(page.contains("data-server=\"node1\"") && page.contains("data-server=\"node2\""));
    assert_eq!(http_get(s.stats, "/elsewhere", Some("admin:secret")).0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_socket_takes_servers_out_of_service_and_back() {
    let s = stack("", "");
    let sock = s.lb.socket();
    assert_eq!(
        control(&sock, "disable server rabbitmq_cluster/node1"),
        "\n"
    );
    assert_eq!(s.status("node1"), "MAINT");
    let stat = control(&sock, "show stat");
    assert_eq!(
        csv_status(&stat, "rabbitmq_cluster", "node1").as_deref(),
        Some("MAINT")
    );
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(mark_via(&s, &format!("maint-{i}")).await);
    }
    for i in 0..2 {
        assert!(
            has_queue(&s.nodes[1].url(), &format!("maint-{i}")).await,
            "node1 is out"
        );
    }
    assert_eq!(
        control(&sock, "set server rabbitmq_cluster/node2 state drain"),
        "\n"
    );
    assert_eq!(s.status("node2"), "DRAIN");
    assert_eq!(
        control(&sock, "set server rabbitmq_cluster/node2 state ready"),
        "\n"
    );
    assert_eq!(control(&sock, "enable server rabbitmq_cluster/node1"), "\n");
    eventually("node1 back in rotation", || s.status("node1") == "UP");
    let state = control(&sock, "show servers state rabbitmq_cluster");
    assert!(
        state.lines().any(|l| l.contains(" node1 127.0.0.1 2 0 ")),
        "{state}"
    );
    assert_eq!(
        control(&sock, "disable server rabbitmq_cluster/none"),
        "No such server.\n\n"
    );
    drop(held);
}

/// One field of `show info`.
fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_socket_shows_info_on_the_process() {
    let s = stack("", "");
    let sock = s.lb.socket();
    let info = control(&sock, "show info");
    assert!(info.starts_with("Name: warren-lb\n"), "{info}");
    assert!(info.ends_with("\n\n"), "{info:?}");
    assert_eq!(
        info_field(&info, "Pid"),
        Some(s.lb.child.id().to_string()),
        "{info}"
    );
    assert_eq!(info_field(&info, "Maxconn").as_deref(), Some("4000"));
    let count = |key: &str| -> u64 {
        let info = control(&sock, "show info");
        info_field(&info, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {info}"))
    };
    // The probe that found the frontend listening was a session too; it ends on its own.
    eventually("no session is open", || count("CurrConns") == 0);
    let before = count("CumConns");
    assert!(before >= 1, "the probe counts");
    let conn = mark_via(&s, "info").await;
    assert_eq!(count("CurrConns"), 1);
    assert_eq!(count("CumConns"), before + 1);
    conn.close(200, "bye".into()).await.expect("close");
    eventually("the closed session leaves CurrConns", || {
        count("CurrConns") == 0
    });
    assert_eq!(count("CumConns"), before + 1);
}

fn reload_config(
    front: SocketAddr,
    extra_front: Option<SocketAddr>,
    stats: SocketAddr,
    server: &Node,
) -> String {
    let extra = extra_front
        .map(|a| format!("frontend more\n    bind {a}\n    mode tcp\n    timeout client 1m\n    default_backend mq\n"))
        .unwrap_or_default();
    format!(
        "defaults
    mode tcp
    timeout connect 1s
    timeout client 1m
    timeout server 1m
listen mq
    bind {front}
    server only 127.0.0.1:{port} check inter 100ms
{extra}listen http_front
    bind {stats}
    mode http
    stats uri /s
    stats auth admin:secret
",
        port = server.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_configuration_and_keeps_established_sessions() {
    let nodes = [Node::start(), Node::start()];
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let front2 = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let stats = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = Lb::start(&reload_config(front, None, stats, &nodes[0]), front);
    wait_for_port(stats);
    let url = format!("amqp://guest:guest@{front}/%2f");
    let before = connect(&url).await;
    let ch = before.create_channel().await.unwrap();

    std::fs::write(
        &lb.config,
        reload_config(front, Some(front2), stats, &nodes[1]),
    )
    .unwrap();
    signal(&lb.child, nix::sys::signal::Signal::SIGHUP);
    eventually("the new server is in the statistics", || {
        let (_, _, csv) = http_get(stats, "/s;csv", Some("admin:secret"));
        csv.contains("\nmq,only,") && csv.contains(&format!("127.0.0.1:{}", nodes[1].port))
    });
    // New sessions go to the new server, on the old address and on the new one.
    for (i, addr) in [front, front2].iter().enumerate() {
        let conn = connect(&format!("amqp://guest:guest@{addr}/%2f")).await;
        let c = conn.create_channel().await.unwrap();
        let name = format!("after-reload-{i}");
        c.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        assert!(has_queue(&nodes[1].url(), &name).await);
    }
    // The session opened before the reload still reaches the old server.
    ch.queue_declare(
        "kept".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("the established session still works");
    assert!(has_queue(&nodes[0].url(), "kept").await);

    // A broken file leaves the running configuration in place.
    std::fs::write(&lb.config, "listen broken\n    balance uri\n").unwrap();
    signal(&lb.child, nix::sys::signal::Signal::SIGHUP);
    eventually("the failed reload is reported", || {
        lb.stderr().contains("Reload failed")
    });
    assert!(lb.stderr().contains("balance 'uri' is not supported"));
    let conn = connect(&url).await;
    assert!(conn.status().connected());
}
