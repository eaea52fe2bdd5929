//! Property tests: anything the encoder writes, the decoder reads back unchanged, and no
//! byte sequence makes the parser panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use warren_amqp::frame::{parse_frame, write_header, write_method};
use warren_amqp::methods::*;
use warren_amqp::{BasicProperties, FieldTable, FieldValue, Frame, Method, ShortStr};

fn short_str() -> impl Strategy<Value = ShortStr> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| ShortStr::from_bytes(Bytes::from(v)))
}

fn leaf_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        (-1e30f32..1e30f32).prop_map(FieldValue::F32),
        (-1e300f64..1e300f64).prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(|v| FieldValue::LongStr(v.into())),
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(|v| FieldValue::ByteArray(v.into())),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
}

fn value() -> impl Strategy<Value = FieldValue> {
    leaf_value().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(FieldValue::Array),
            proptest::collection::vec((short_str(), inner), 0..5)
                .prop_map(|v| FieldValue::Table(FieldTable(v))),
        ]
    })
}

fn table() -> impl Strategy<Value = FieldTable> {
    proptest::collection::vec((short_str(), value()), 0..6).prop_map(FieldTable)
}

fn properties() -> impl Strategy<Value = BasicProperties> {
    (
        (
            proptest::option::of(short_str()),
            proptest::option::of(short_str()),
            proptest::option::of(table()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(short_str()),
            proptest::option::of(short_str()),
        ),
        (
            proptest::option::of(short_str()),
            proptest::option::of(short_str()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(short_str()),
            proptest::option::of(short_str()),
            proptest::option::of(short_str()),
            proptest::option::of(short_str()),
        ),
    )
        .prop_map(|(a, b)| BasicProperties {
            content_type: a.0,
            content_encoding: a.1,
            headers: a.2,
            delivery_mode: a.3,
            priority: a.4,
            correlation_id: a.5,
            reply_to: a.6,
            expiration: b.0,
            message_id: b.1,
            timestamp: b.2,
            kind: b.3,
            user_id: b.4,
            app_id: b.5,
            cluster_id: b.6,
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        (
            any::<u16>(),
            short_str(),
            short_str(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(ticket, exchange, routing_key, mandatory, immediate)| {
                Method::BasicPublish(BasicPublish {
                    ticket,
                    exchange,
                    routing_key,
                    mandatory,
                    immediate,
                })
            }),
        (
            short_str(),
            any::<u64>(),
            any::<bool>(),
            short_str(),
            short_str()
        )
            .prop_map(
                |(consumer_tag, delivery_tag, redelivered, exchange, routing_key)| {
                    Method::BasicDeliver(BasicDeliver {
                        consumer_tag,
                        delivery_tag,
                        redelivered,
                        exchange,
                        routing_key,
                    })
                }
            ),
        (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
            |(delivery_tag, multiple, requeue)| {
                Method::BasicNack(BasicNack {
                    delivery_tag,
                    multiple,
                    requeue,
                })
            }
        ),
        (short_str(), short_str(), any::<[bool; 5]>(), table()).prop_map(
            |(exchange, kind, b, arguments)| {
                Method::ExchangeDeclare(ExchangeDeclare {
                    ticket: 0,
                    exchange,
                    kind,
                    passive: b[0],
                    durable: b[1],
                    auto_delete: b[2],
                    internal: b[3],
                    nowait: b[4],
                    arguments,
                })
            }
        ),
        (short_str(), any::<[bool; 5]>(), table()).prop_map(|(queue, b, arguments)| {
            Method::QueueDeclare(QueueDeclare {
                ticket: 0,
                queue,
                passive: b[0],
                durable: b[1],
                exclusive: b[2],
                auto_delete: b[3],
                nowait: b[4],
                arguments,
            })
        }),
        (
            table(),
            short_str(),
            proptest::collection::vec(any::<u8>(), 0..50),
            short_str()
        )
            .prop_map(|(client_properties, mechanism, response, locale)| {
                Method::ConnectionStartOk(ConnectionStartOk {
                    client_properties,
                    mechanism,
                    response: Bytes::from(response).into(),
                    locale,
                })
            }),
        (any::<u16>(), short_str(), any::<u16>(), any::<u16>()).prop_map(
            |(reply_code, reply_text, class_id, method_id)| {
                Method::ChannelClose(ChannelClose {
                    reply_code,
                    reply_text,
                    class_id,
                    method_id,
                })
            }
        ),
        (any::<u32>(), any::<u16>(), any::<bool>()).prop_map(
            |(prefetch_size, prefetch_count, global)| {
                Method::BasicQos(BasicQos {
                    prefetch_size,
                    prefetch_count,
                    global,
                })
            }
        ),
        Just(Method::TxCommit(TxCommit {})),
        any::<bool>().prop_map(|nowait| Method::ConfirmSelect(ConfirmSelect { nowait })),
    ]
}

proptest! {
    #[test]
    fn tables_roundtrip(t in table()) {
        let mut buf = BytesMut::new();
        t.encode(&mut buf);
        let decoded = FieldTable::decode(buf.freeze().slice(4..)).unwrap();
        prop_assert_eq!(decoded, t);
    }

    #[test]
    fn methods_roundtrip_through_frames(m in method(), channel in any::<u16>()) {
        let mut buf = BytesMut::new();
        write_method(&mut buf, channel, &m);
        let f = parse_frame(&mut buf, 0).unwrap().unwrap();
        prop_assert_eq!(f, Frame::Method { channel, method: m });
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn properties_roundtrip_through_header_frames(p in properties(), size in any::<u64>()) {
        let raw = p.encode();
        let mut buf = BytesMut::new();
        write_header(&mut buf, 1, size, &raw);
        match parse_frame(&mut buf, 0).unwrap().unwrap() {
            Frame::Header { header, .. } => {
                prop_assert_eq!(header.body_size, size);
                prop_assert_eq!(BasicProperties::decode(&header.properties).unwrap(), p);
            }
            other => prop_assert!(false, "not a header: {:?}", other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = parse_frame(&mut buf, 4096) {}
    }

    #[test]
    fn arbitrary_method_payloads_never_panic(
        class in prop_oneof![Just(10u16), Just(20), Just(40), Just(50), Just(60), Just(85), Just(90)],
        method in 0u16..130,
        args in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let _ = Method::decode(class, method, Bytes::from(args));
    }
}
