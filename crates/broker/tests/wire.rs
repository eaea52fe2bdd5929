//! Byte-level protocol behaviour that real clients cannot be made to produce: malformed and
//! out-of-order frames, negotiation limits, heartbeats, refusals. Every case checks the exact
//! reply RabbitMQ gives (code, text, class and method).

mod common;

use bytes::BytesMut;
use common::*;
use std::time::Duration;
use warren_amqp::constants::PROTOCOL_HEADER;
use warren_amqp::frame::{write_body, write_header, write_method};
use warren_amqp::methods::*;
use warren_amqp::{BasicProperties, FieldTable, FieldValue, Frame, Method};

/// What a case expects back: connection.close or channel.close, with RabbitMQ's code, text,
/// class and method.
enum Close {
    Connection(u16, &'static str, u16, u16),
    Channel(u16, &'static str, u16, u16),
}

/// A byte-level case: what is written after the handshake (on an open channel 1 if asked)
/// and the exact close RabbitMQ answers it with.
struct Case {
    name: &'static str,
    channel: bool,
    send: fn(&mut BytesMut),
    expect: Close,
}

fn publish_to_q(out: &mut BytesMut, immediate: bool) {
    let m = BasicPublish {
        routing_key: "q".into(),
        immediate,
        ..Default::default()
    };
    write_method(out, 1, &m.into());
}

const CASES: &[Case] = &[
    Case {
        name: "a frame on a channel that was never opened",
        channel: false,
        send: |out| write_method(out, 3, &BasicQos::default().into()),
        expect: Close::Connection(504, "CHANNEL_ERROR - expected 'channel.open'", 60, 10),
    },
    Case {
        // RabbitMQ's reader takes only connection methods on channel 0.
        name: "basic.publish on channel 0",
        channel: false,
        send: |out| write_method(out, 0, &BasicPublish::default().into()),
        expect: Close::Connection(
            504,
            "CHANNEL_ERROR - unexpected method in connection state running",
            60,
            40,
        ),
    },
    Case {
        name: "queue.declare whose queue name claims 5 bytes but carries 2",
        channel: true,
        send: |out| {
            out.extend_from_slice(&[1, 0, 1, 0, 0, 0, 9, 0, 50, 0, 10, 0, 0, 5, b'a', b'b', 0xCE])
        },
        expect: Close::Connection(501, "FRAME_ERROR - cannot decode <<0,0,5,97,98>>", 50, 10),
    },
    Case {
        name: "a content header whose flags announce a content-type that is not there",
        channel: true,
        send: |out| {
            write_method(out, 1, &BasicPublish::default().into());
            out.extend_from_slice(&[
                2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 0xCE,
            ]);
        },
        expect: Close::Connection(541, "INTERNAL_ERROR", 0, 0),
    },
    Case {
        name: "a method where a content header belongs",
        channel: true,
        send: |out| {
            publish_to_q(out, false);
            write_method(out, 1, &BasicQos::default().into());
        },
        expect: Close::Connection(
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
            60,
            40,
        ),
    },
    Case {
        name: "a body frame without a publish",
        channel: true,
        send: |out| write_body(out, 1, b"stray"),
        expect: Close::Connection(
            505,
            "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
            0,
            0,
        ),
    },
    Case {
        name: "an immediate publish",
        channel: true,
        send: |out| {
            publish_to_q(out, true);
            write_header(out, 1, 0, &BasicProperties::default().encode());
        },
        expect: Close::Connection(540, "NOT_IMPLEMENTED - immediate=true", 60, 40),
    },
    Case {
        name: "a user_id that is not the login",
        channel: true,
        send: |out| {
            publish_to_q(out, false);
            let props = BasicProperties {
                user_id: Some("mallory".into()),
                ..Default::default()
            };
            write_header(out, 1, 1, &props.encode());
            write_body(out, 1, b"x");
        },
        expect: Close::Channel(
            406,
            "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'",
            60,
            40,
        ),
    },
    Case {
        name: "basic.qos with a prefetch size",
        channel: true,
        send: |out| {
            let qos = BasicQos {
                prefetch_size: 10,
                prefetch_count: 1,
                global: false,
            };
            write_method(out, 1, &qos.into());
        },
        expect: Close::Connection(540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)", 60, 10),
    },
];

#[tokio::test]
async fn protocol_errors_get_rabbitmq_s_exact_close() {
    let node = TestNode::start().await;
    for case in CASES {
        let mut c = RawClient::open(node.addr).await;
        if case.channel {
            c.open_channel(1).await;
        }
        let mut out = BytesMut::new();
        (case.send)(&mut out);
        c.send_raw(&out).await;
        let got = match c.method().await {
            Method::ConnectionClose(c) => (
                "connection",
                c.reply_code,
                c.reply_text,
                c.class_id,
                c.method_id,
            ),
            Method::ChannelClose(c) => (
                "channel",
                c.reply_code,
                c.reply_text,
                c.class_id,
                c.method_id,
            ),
            other => panic!("{}: expected a close, got {other:?}", case.name),
        };
        let want = match case.expect {
            Close::Connection(code, text, class, method) => {
                ("connection", code, text, class, method)
            }
            Close::Channel(code, text, class, method) => ("channel", code, text, class, method),
        };
        assert_eq!(
            (got.0, got.1, got.2.as_str_lossy().as_ref(), got.3, got.4),
            want,
            "{}",
            case.name
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn wrong_protocol_header_is_answered_with_ours_then_closed() {
    let node = TestNode::start().await;
    for header in [&b"AMQP\x00\x00\x08\x00"[..], b"GET / HTTP/1.1\r\n\r\n"] {
        let mut c = RawClient::connect(node.addr).await;
        c.send_raw(header).await;
        assert_eq!(c.read_to_end().await, PROTOCOL_HEADER.to_vec());
    }
    node.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_403_when_the_client_asks_to_be_told() {
    let node = TestNode::start().await;
    let mut c = RawClient::connect(node.addr).await;
    c.send_raw(PROTOCOL_HEADER).await;
    let Method::ConnectionStart(start) = c.method().await else {
        panic!("no connection.start")
    };
    assert_eq!(start.mechanisms.as_bytes(), b"PLAIN AMQPLAIN");
    c.send(0, start_ok("PLAIN", plain("guest", "wrong"))).await;
    let close = c.method().await;
    assert_connection_close(
        &close,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
        0,
        0,
    );
    assert!(c.frame().await.is_none(), "socket closed after the refusal");
    node.shutdown().await;
}

#[tokio::test]
async fn amqplain_login_works() {
    let node = TestNode::start().await;
    let table = FieldTable::new()
        .with("LOGIN", "guest")
        .with("PASSWORD", "guest");
    let mut buf = BytesMut::new();
    table.encode(&mut buf);
    let response = buf[4..].to_vec();
    let mut c = RawClient::open_with(node.addr, "AMQPLAIN", response, |t| t).await;
    c.open_channel(1).await;
    node.shutdown().await;
}

#[tokio::test]
async fn server_properties_advertise_rabbitmq_capabilities() {
    let node = TestNode::start().await;
    let mut c = RawClient::connect(node.addr).await;
    c.send_raw(PROTOCOL_HEADER).await;
    let Method::ConnectionStart(start) = c.method().await else {
        panic!("no connection.start")
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let Some(FieldValue::Table(caps)) = start.server_properties.get("capabilities") else {
        panic!("no capabilities table")
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(caps.get(cap), Some(&FieldValue::Bool(true)), "{cap}");
    }
    for key in [
        "product",
        "version",
        "platform",
        "cluster_name",
        "copyright",
        "information",
    ] {
        assert!(start.server_properties.get(key).is_some(), "{key}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn tune_limits_are_enforced() {
    let node = TestNode::start().await;
    let mut c = RawClient::connect(node.addr).await;
    c.send_raw(PROTOCOL_HEADER).await;
    c.method().await;
    c.send(0, start_ok("PLAIN", plain("guest", "guest"))).await;
    let Method::ConnectionTune(t) = c.method().await else {
        panic!("no tune")
    };
    assert_eq!(
        (t.channel_max, t.frame_max, t.heartbeat),
        (2047, 131072, 60)
    );
    c.send(
        0,
        ConnectionTuneOk {
            channel_max: 10,
            frame_max: 200_000,
            heartbeat: 0,
        }
        .into(),
    )
    .await;
    // RabbitMQ closes the socket on a failed negotiation without a connection.close.
    assert!(c.frame().await.is_none());
    node.shutdown().await;
}

#[tokio::test]
async fn frame_larger_than_frame_max_is_a_frame_error() {
    let node = TestNode::start().await;
    let mut c = RawClient::open_with(node.addr, "PLAIN", plain("guest", "guest"), |t| {
        ConnectionTuneOk {
            frame_max: 4096,
            ..t
        }
    })
    .await;
    c.open_channel(1).await;
    let mut out = BytesMut::new();
    write_body(&mut out, 1, &[0u8; 5000]);
    c.send_raw(&out).await;
    let close = c.method().await;
    let Method::ConnectionClose(close) = close else {
        panic!("expected connection.close")
    };
    assert_eq!(close.reply_code, 501);
    assert!(
        close
            .reply_text
            .as_str_lossy()
            .starts_with("FRAME_ERROR - ")
    );
    node.shutdown().await;
}

/// Tables nested more than 64 levels inside the headers table (warren's limit; RabbitMQ has
/// none) are refused as malformed properties, 541; at the limit they are accepted and
/// delivered unchanged.
#[tokio::test]
async fn header_tables_nest_up_to_the_documented_limit() {
    fn nested(depth: usize) -> FieldTable {
        let mut t = FieldTable::new().with("leaf", "v");
        for _ in 1..depth {
            t = FieldTable::new().with("n", FieldValue::Table(t));
        }
        t
    }
    let node = TestNode::start().await;
    let mut c = RawClient::open(node.addr).await;
    c.open_channel(1).await;
    c.send(
        1,
        QueueDeclare {
            queue: "deep".into(),
            ..Default::default()
        }
        .into(),
    )
    .await;
    assert!(matches!(c.method().await, Method::QueueDeclareOk(_)));
    let props = |depth| BasicProperties {
        headers: Some(nested(depth)),
        ..Default::default()
    };
    c.publish(1, "", "deep", props(65), b"ok").await;
    c.send(
        1,
        BasicGet {
            queue: "deep".into(),
            no_ack: true,
            ..Default::default()
        }
        .into(),
    )
    .await;
    assert!(
        matches!(c.method().await, Method::BasicGetOk(_)),
        "64 levels below the headers are accepted"
    );
    let Some(Frame::Header { header, .. }) = c.frame().await else {
        panic!("content header expected")
    };
    assert_eq!(header.properties.headers(), Some(Ok(nested(65))));
    c.publish(1, "", "deep", props(66), b"too deep").await;
    loop {
        match c.frame().await {
            Some(Frame::Method {
                method: m @ Method::ConnectionClose(_),
                ..
            }) => {
                assert_connection_close(&m, 541, "INTERNAL_ERROR", 0, 0);
                break;
            }
            Some(_) => continue,
            None => panic!("closed without connection.close"),
        }
    }
    node.shutdown().await;
}

#[tokio::test]
async fn channel_count_is_limited_by_channel_max() {
    let node = TestNode::start().await;
    let mut c = RawClient::open_with(node.addr, "PLAIN", plain("guest", "guest"), |t| {
        ConnectionTuneOk {
            channel_max: 2,
            ..t
        }
    })
    .await;
    c.open_channel(1).await;
    c.open_channel(7).await;
    c.send(9, ChannelOpen::default().into()).await;
    assert_connection_close(
        &c.method().await,
        530,
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)",
        0,
        0,
    );
    node.shutdown().await;
}

#[tokio::test]
async fn reusing_a_consumer_tag_is_not_allowed() {
    let node = TestNode::start().await;
    let mut c = RawClient::open(node.addr).await;
    c.open_channel(1).await;
    c.send(
        1,
        QueueDeclare {
            queue: "q".into(),
            ..Default::default()
        }
        .into(),
    )
    .await;
    c.method().await;
    let consume = BasicConsume {
        queue: "q".into(),
        consumer_tag: "same".into(),
        ..Default::default()
    };
    c.send(1, consume.clone().into()).await;
    assert!(matches!(c.method().await, Method::BasicConsumeOk(_)));
    c.send(1, consume.into()).await;
    assert_connection_close(
        &c.method().await,
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'same'",
        60,
        20,
    );
    node.shutdown().await;
}

#[tokio::test]
async fn heartbeats_are_sent_and_a_silent_client_is_dropped() {
    let node = TestNode::start().await;
    let mut c = RawClient::open_with(node.addr, "PLAIN", plain("guest", "guest"), |t| {
        ConnectionTuneOk { heartbeat: 1, ..t }
    })
    .await;
    // The server sends heartbeats while we say nothing, then gives up on us.
    let mut heartbeats = 0;
    loop {
        match c.frame().await {
            Some(Frame::Heartbeat { channel: 0 }) => heartbeats += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert!(heartbeats >= 1, "no heartbeat before the server closed");
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_320() {
    let node = TestNode::start().await;
    let mut c = RawClient::open(node.addr).await;
    c.open_channel(1).await;
    let server_stopped = tokio::spawn(async move {
        // The real shutdown path, waited for in full.
        node.shutdown_and_wait().await
    });
    assert_connection_close(
        &c.method().await,
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        0,
        0,
    );
    c.send(0, ConnectionCloseOk {}.into()).await;
    assert!(c.frame().await.is_none(), "server closes after close-ok");
    drop(c);
    tokio::time::timeout(Duration::from_secs(5), server_stopped)
        .await
        .expect("shutdown finishes")
        .unwrap();
}

#[tokio::test]
async fn malformed_input_never_disturbs_other_clients() {
    let node = TestNode::start().await;
    let mut good = RawClient::open(node.addr).await;
    good.open_channel(1).await;
    // A few hundred connections each send a different kind of garbage.
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for i in 0..200 {
        let mut bad = RawClient::open(node.addr).await;
        let mut junk = vec![0u8; 16 + i % 200];
        for b in junk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        // Keep the frame type valid half the time so the payload parsers see the junk.
        if i % 2 == 0 {
            junk[0] = 1 + (i % 3) as u8;
            junk[1] = 0;
            junk[2] = 1;
            let len = (junk.len() - 8) as u32;
            junk[3..7].copy_from_slice(&len.to_be_bytes());
            let last = junk.len() - 1;
            junk[last] = 0xCE;
        }
        bad.send_raw(&junk).await;
        drop(bad);
    }
    good.send(
        1,
        QueueDeclare {
            queue: "survivor".into(),
            ..Default::default()
        }
        .into(),
    )
    .await;
    assert!(matches!(good.method().await, Method::QueueDeclareOk(_)));
    node.shutdown().await;
}

#[tokio::test]
async fn frames_sent_after_connection_close_do_not_reset_the_socket() {
    // amqplib can write a channel's last ack after its connection.close; RabbitMQ reads and
    // drops it. Closing the socket with those bytes unread would make the kernel send a reset
    // that can destroy the close-ok before the client reads it.
    let node = TestNode::start().await;
    let mut c = RawClient::open(node.addr).await;
    c.open_channel(1).await;
    let mut out = BytesMut::new();
    write_method(&mut out, 0, &ConnectionClose::default().into());
    for tag in 1..50 {
        write_method(
            &mut out,
            1,
            &BasicAck {
                delivery_tag: tag,
                multiple: false,
            }
            .into(),
        );
    }
    c.send_raw(&out).await;
    assert!(matches!(c.method().await, Method::ConnectionCloseOk(_)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send_raw(&out[..20]).await;
    assert!(
        c.frame().await.is_none(),
        "clean end of stream after close-ok"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn an_alarm_stops_reading_a_publisher_until_it_clears() {
    let node = TestNode::start().await;
    let mut c = RawClient::open(node.addr).await;
    c.open_channel(1).await;
    c.send(
        1,
        QueueDeclare {
            queue: "held".into(),
            ..Default::default()
        }
        .into(),
    )
    .await;
    assert!(matches!(c.method().await, Method::QueueDeclareOk(_)));
    c.publish(1, "", "held", BasicProperties::default(), b"before")
        .await;
    node.broker.alarms.set_memory_limit(1);
    match c.method().await {
        Method::ConnectionBlocked(b) => assert_eq!(b.reason, "low on memory"),
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    // This client ignores the notice and keeps sending; the broker does not read it.
    c.publish(1, "", "held", BasicProperties::default(), b"during")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = node
        .broker
        .vhost("/")
        .unwrap()
        .queue(&"held".into())
        .unwrap();
    assert_eq!(
        q.counts().await.unwrap().0,
        1,
        "the publish made during the alarm is not read"
    );
    node.broker.alarms.set_memory_limit(u64::MAX);
    assert!(matches!(c.method().await, Method::ConnectionUnblocked(_)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while q.counts().await.unwrap().0 < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
}
