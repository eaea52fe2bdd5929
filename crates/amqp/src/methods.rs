//! Every method of AMQP 0-9-1 and RabbitMQ's extensions (basic.nack, confirm.*,
//! exchange.bind/unbind, connection.blocked/unblocked, connection.update-secret).
//!
//! One table below declares each method once; the macro derives its struct, its place in the
//! `Method` enum, and its encoding and decoding, so the field order on the wire is written in
//! exactly one place.

use crate::codec::{Decoder, Encoder, Field};
use crate::error::DecodeError;
use crate::table::FieldTable;
use crate::types::{LongStr, ShortStr};
use bytes::Bytes;

macro_rules! methods {
    ($(
        $class_id:literal $class_name:literal {
            $( $method_id:literal $method_name:literal $ty:ident { $( $field:ident : $fty:ty ),* $(,)? } )*
        }
    )*) => {
        $( $(
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct $ty { $( pub $field: $fty, )* }

            impl $ty {
                pub const CLASS_ID: u16 = $class_id;
                pub const METHOD_ID: u16 = $method_id;
                pub const NAME: &'static str = concat!($class_name, ".", $method_name);
            }

            impl From<$ty> for Method {
                fn from(m: $ty) -> Method {
                    Method::$ty(m)
                }
            }
        )* )*

        /// A decoded method frame's payload.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Method {
            $( $( $ty($ty), )* )*
        }

        impl Method {
            /// Decodes a method's arguments. The whole payload must be used.
            pub fn decode(class_id: u16, method_id: u16, args: Bytes) -> Result<Method, DecodeError> {
                #[allow(unused_mut)]
                let mut d = Decoder::new(args);
                let m = match (class_id, method_id) {
                    $( $( ($class_id, $method_id) => Method::$ty($ty {
                        $( $field: <$fty as Field>::decode(&mut d)?, )*
                    }), )* )*
                    _ => return Err(DecodeError::UnknownMethod { class_id, method_id }),
                };
                d.finish()?;
                Ok(m)
            }

            /// Writes the method's arguments (not its class and method ids).
            #[allow(unused_variables)]
            pub fn encode_args(&self, e: &mut Encoder<'_>) {
                match self {
                    $( $( Method::$ty(m) => { $( Field::encode(&m.$field, e); )* } )* )*
                }
            }

            pub fn class_id(&self) -> u16 {
                match self {
                    $( $( Method::$ty(_) => $class_id, )* )*
                }
            }

            pub fn method_id(&self) -> u16 {
                match self {
                    $( $( Method::$ty(_) => $method_id, )* )*
                }
            }

            /// The method's name as RabbitMQ writes it, e.g. `basic.publish`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( $( Method::$ty(_) => $ty::NAME, )* )*
                }
            }
        }

        /// The name of a method from its ids, for error texts about methods we could not decode.
        pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {
            match (class_id, method_id) {
                $( $( ($class_id, $method_id) => Some($ty::NAME), )* )*
                _ => None,
            }
        }
    };
}

methods! {
    10 "connection" {
        10 "start" ConnectionStart {
            version_major: u8, version_minor: u8, server_properties: FieldTable,
            mechanisms: LongStr, locales: LongStr,
        }
        11 "start_ok" ConnectionStartOk {
            client_properties: FieldTable, mechanism: ShortStr, response: LongStr, locale: ShortStr,
        }
        20 "secure" ConnectionSecure { challenge: LongStr }
        21 "secure_ok" ConnectionSecureOk { response: LongStr }
        30 "tune" ConnectionTune { channel_max: u16, frame_max: u32, heartbeat: u16 }
        31 "tune_ok" ConnectionTuneOk { channel_max: u16, frame_max: u32, heartbeat: u16 }
        40 "open" ConnectionOpen { virtual_host: ShortStr, capabilities: ShortStr, insist: bool }
        41 "open_ok" ConnectionOpenOk { known_hosts: ShortStr }
        50 "close" ConnectionClose { reply_code: u16, reply_text: ShortStr, class_id: u16, method_id: u16 }
        51 "close_ok" ConnectionCloseOk {}
        60 "blocked" ConnectionBlocked { reason: ShortStr }
        61 "unblocked" ConnectionUnblocked {}
        70 "update_secret" ConnectionUpdateSecret { new_secret: LongStr, reason: ShortStr }
        71 "update_secret_ok" ConnectionUpdateSecretOk {}
    }
    20 "channel" {
        10 "open" ChannelOpen { out_of_band: ShortStr }
        11 "open_ok" ChannelOpenOk { channel_id: LongStr }
        20 "flow" ChannelFlow { active: bool }
        21 "flow_ok" ChannelFlowOk { active: bool }
        40 "close" ChannelClose { reply_code: u16, reply_text: ShortStr, class_id: u16, method_id: u16 }
        41 "close_ok" ChannelCloseOk {}
    }
    30 "access" {
        10 "request" AccessRequest {
            realm: ShortStr, exclusive: bool, passive: bool, active: bool, write: bool, read: bool,
        }
        11 "request_ok" AccessRequestOk { ticket: u16 }
    }
    40 "exchange" {
        10 "declare" ExchangeDeclare {
            ticket: u16, exchange: ShortStr, kind: ShortStr, passive: bool, durable: bool,
            auto_delete: bool, internal: bool, nowait: bool, arguments: FieldTable,
        }
        11 "declare_ok" ExchangeDeclareOk {}
        20 "delete" ExchangeDelete { ticket: u16, exchange: ShortStr, if_unused: bool, nowait: bool }
        21 "delete_ok" ExchangeDeleteOk {}
        30 "bind" ExchangeBind {
            ticket: u16, destination: ShortStr, source: ShortStr, routing_key: ShortStr,
            nowait: bool, arguments: FieldTable,
        }
        31 "bind_ok" ExchangeBindOk {}
        40 "unbind" ExchangeUnbind {
            ticket: u16, destination: ShortStr, source: ShortStr, routing_key: ShortStr,
            nowait: bool, arguments: FieldTable,
        }
        51 "unbind_ok" ExchangeUnbindOk {}
    }
    50 "queue" {
        10 "declare" QueueDeclare {
            ticket: u16, queue: ShortStr, passive: bool, durable: bool, exclusive: bool,
            auto_delete: bool, nowait: bool, arguments: FieldTable,
        }
        11 "declare_ok" QueueDeclareOk { queue: ShortStr, message_count: u32, consumer_count: u32 }
        20 "bind" QueueBind {
            ticket: u16, queue: ShortStr, exchange: ShortStr, routing_key: ShortStr,
            nowait: bool, arguments: FieldTable,
        }
        21 "bind_ok" QueueBindOk {}
        30 "purge" QueuePurge { ticket: u16, queue: ShortStr, nowait: bool }
        31 "purge_ok" QueuePurgeOk { message_count: u32 }
        40 "delete" QueueDelete {
            ticket: u16, queue: ShortStr, if_unused: bool, if_empty: bool, nowait: bool,
        }
        41 "delete_ok" QueueDeleteOk { message_count: u32 }
        50 "unbind" QueueUnbind {
            ticket: u16, queue: ShortStr, exchange: ShortStr, routing_key: ShortStr,
            arguments: FieldTable,
        }
        51 "unbind_ok" QueueUnbindOk {}
    }
    60 "basic" {
        10 "qos" BasicQos { prefetch_size: u32, prefetch_count: u16, global: bool }
        11 "qos_ok" BasicQosOk {}
        20 "consume" BasicConsume {
            ticket: u16, queue: ShortStr, consumer_tag: ShortStr, no_local: bool, no_ack: bool,
            exclusive: bool, nowait: bool, arguments: FieldTable,
        }
        21 "consume_ok" BasicConsumeOk { consumer_tag: ShortStr }
        30 "cancel" BasicCancel { consumer_tag: ShortStr, nowait: bool }
        31 "cancel_ok" BasicCancelOk { consumer_tag: ShortStr }
        40 "publish" BasicPublish {
            ticket: u16, exchange: ShortStr, routing_key: ShortStr, mandatory: bool, immediate: bool,
        }
        50 "return" BasicReturn {
            reply_code: u16, reply_text: ShortStr, exchange: ShortStr, routing_key: ShortStr,
        }
        60 "deliver" BasicDeliver {
            consumer_tag: ShortStr, delivery_tag: u64, redelivered: bool, exchange: ShortStr,
            routing_key: ShortStr,
        }
        70 "get" BasicGet { ticket: u16, queue: ShortStr, no_ack: bool }
        71 "get_ok" BasicGetOk {
            delivery_tag: u64, redelivered: bool, exchange: ShortStr, routing_key: ShortStr,
            message_count: u32,
        }
        72 "get_empty" BasicGetEmpty { cluster_id: ShortStr }
        80 "ack" BasicAck { delivery_tag: u64, multiple: bool }
        90 "reject" BasicReject { delivery_tag: u64, requeue: bool }
        100 "recover_async" BasicRecoverAsync { requeue: bool }
        110 "recover" BasicRecover { requeue: bool }
        111 "recover_ok" BasicRecoverOk {}
        120 "nack" BasicNack { delivery_tag: u64, multiple: bool, requeue: bool }
    }
    85 "confirm" {
        10 "select" ConfirmSelect { nowait: bool }
        11 "select_ok" ConfirmSelectOk {}
    }
    90 "tx" {
        10 "select" TxSelect {}
        11 "select_ok" TxSelectOk {}
        20 "commit" TxCommit {}
        21 "commit_ok" TxCommitOk {}
        30 "rollback" TxRollback {}
        31 "rollback_ok" TxRollbackOk {}
    }
}

impl Method {
    /// Whether a content header and body frames follow this method.
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Method::BasicPublish(_)
                | Method::BasicReturn(_)
                | Method::BasicDeliver(_)
                | Method::BasicGetOk(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn roundtrip(m: Method) {
        let mut buf = BytesMut::new();
        m.encode_args(&mut Encoder::new(&mut buf));
        let back = Method::decode(m.class_id(), m.method_id(), buf.freeze()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn names_follow_rabbitmq() {
        assert_eq!(BasicPublish::NAME, "basic.publish");
        assert_eq!(method_name(10, 11), Some("connection.start_ok"));
        assert_eq!(method_name(40, 51), Some("exchange.unbind_ok"));
        assert_eq!(method_name(99, 1), None);
    }

    #[test]
    fn publish_bits_pack_after_strings() {
        let m = Method::BasicPublish(BasicPublish {
            ticket: 0,
            exchange: "ex".into(),
            routing_key: "rk".into(),
            mandatory: true,
            immediate: false,
        });
        let mut buf = BytesMut::new();
        m.encode_args(&mut Encoder::new(&mut buf));
        assert_eq!(&buf[..], b"\x00\x00\x02ex\x02rk\x01");
        roundtrip(m);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let r = Method::decode(90, 10, Bytes::from_static(b"x"));
        assert_eq!(r, Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn unknown_method_is_rejected() {
        let r = Method::decode(60, 99, Bytes::new());
        assert_eq!(
            r,
            Err(DecodeError::UnknownMethod {
                class_id: 60,
                method_id: 99
            })
        );
    }
}
