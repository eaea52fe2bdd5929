//! Opening a connection: protocol header, connection.start / start-ok (authentication),
//! tune / tune-ok (negotiation) and open / open-ok (vhost), as RabbitMQ's `rabbit_reader`
//! does them, with its limits and its refusal texts.

use crate::auth::{self, LoginError};
use warren_meta::User;

use crate::broker::Broker;
use crate::vhost::VHost;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warren_amqp::AmqpError;
use warren_amqp::constants::{FRAME_MIN_SIZE, PROTOCOL_HEADER};
use warren_amqp::methods::*;
use warren_amqp::{FieldTable, FieldValue, Frame, LongStr, Method, ShortStr, parse_frame};

/// What the client asked for that matters after the handshake.
#[derive(Debug, Clone, Default)]
pub struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    pub authentication_failure_close: bool,
}

impl ClientCaps {
    fn from_properties(props: &FieldTable) -> Self {
        let caps = match props.get("capabilities") {
            Some(FieldValue::Table(t)) => t.clone(),
            _ => FieldTable::new(),
        };
        let flag = |k: &str| caps.get(k).and_then(FieldValue::as_bool).unwrap_or(false);
        ClientCaps {
            consumer_cancel_notify: flag("consumer_cancel_notify"),
            connection_blocked: flag("connection.blocked"),
            authentication_failure_close: flag("authentication_failure_close"),
        }
    }
}

pub struct Opened {
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub user: User,
    pub vhost: Arc<VHost>,
    pub caps: ClientCaps,
    pub client_properties: FieldTable,
}

/// How a handshake that did not open the connection ended.
#[derive(Debug)]
pub enum Refused {
    /// The socket closed or failed, or the client took too long; nothing more to send.
    Gone,
    /// A protocol error: send connection.close with it, then close.
    Error(AmqpError),
    /// Refused without a word to the client, as RabbitMQ refuses failed negotiations and
    /// unusable SASL responses; the reason goes to the log.
    Silent(String),
    /// Authentication failed (with the mechanism used); RabbitMQ tells the client why only
    /// if it announced the `authentication_failure_close` capability.
    Login {
        error: LoginError,
        mechanism: String,
        tell_client: bool,
    },
    /// The client did not speak AMQP 0-9-1; the header has been answered.
    BadHeader,
}

pub fn server_properties(broker: &Broker) -> FieldTable {
    let caps = FieldTable(
        [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "consumer_priorities",
            "authentication_failure_close",
            "per_consumer_qos",
            "direct_reply_to",
        ]
        .iter()
        .map(|k| (ShortStr::from(*k), FieldValue::Bool(true)))
        .collect(),
    );
    FieldTable::new()
        .with("capabilities", FieldValue::Table(caps))
        .with("cluster_name", broker.meta.cluster_name().as_str())
        .with("copyright", "Copyright (c) the warren authors")
        .with(
            "information",
            "Licensed under the MIT or Apache-2.0 license. A RabbitMQ-compatible broker.",
        )
        .with("platform", "Rust")
        .with("product", "warren")
        .with("version", env!("CARGO_PKG_VERSION"))
}

struct Io<'a, S> {
    stream: &'a mut S,
    rbuf: &'a mut BytesMut,
    frame_max: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<'_, S> {
    async fn send(&mut self, method: Method) -> Result<(), Refused> {
        let mut out = BytesMut::new();
        warren_amqp::frame::write_method(&mut out, 0, &method);
        self.stream.write_all(&out).await.map_err(|_| Refused::Gone)
    }

    /// The next method on channel 0, skipping heartbeats.
    async fn next_method(&mut self) -> Result<Method, Refused> {
        loop {
            match parse_frame(self.rbuf, self.frame_max) {
                Ok(Some(Frame::Method { channel: 0, method })) => return Ok(method),
                Ok(Some(Frame::Heartbeat { .. })) => continue,
                Ok(Some(other)) => {
                    return Err(Refused::Error(AmqpError::command_invalid(format!(
                        "unexpected frame on channel {} during connection opening",
                        other.channel()
                    ))));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Refused::Error(
                        AmqpError::new(e.error.reply_code(), e.error.to_string())
                            .in_method(e.class_id, e.method_id),
                    ));
                }
            }
            let n = self
                .stream
                .read_buf(self.rbuf)
                .await
                .map_err(|_| Refused::Gone)?;
            if n == 0 {
                return Err(Refused::Gone);
            }
        }
    }
}

fn expected(name: &str, got: &Method) -> Refused {
    Refused::Error(
        AmqpError::command_invalid(format!("expected '{name}', got '{}'", got.name()))
            .in_method(got.class_id(), got.method_id()),
    )
}

/// Runs the handshake within the configured time limit.
pub async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    broker: &Broker,
    peer: SocketAddr,
) -> Result<Opened, Refused> {
    let limit = Duration::from_secs(broker.config.amqp.handshake_timeout.max(1));
    match tokio::time::timeout(limit, open_inner(stream, rbuf, broker, peer)).await {
        Ok(r) => r,
        Err(_) => Err(Refused::Gone),
    }
}

async fn open_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    broker: &Broker,
    peer: SocketAddr,
) -> Result<Opened, Refused> {
    while rbuf.len() < PROTOCOL_HEADER.len() {
        let n = stream.read_buf(rbuf).await.map_err(|_| Refused::Gone)?;
        if n == 0 {
            return Err(Refused::Gone);
        }
    }
    let header = rbuf.split_to(PROTOCOL_HEADER.len());
    if header[..] != PROTOCOL_HEADER[..] {
        let _ = stream.write_all(PROTOCOL_HEADER).await;
        let _ = stream.shutdown().await;
        return Err(Refused::BadHeader);
    }
    let cfg = &broker.config.amqp;
    let mut io = Io {
        stream,
        rbuf,
        frame_max: cfg.frame_max.max(FRAME_MIN_SIZE),
    };
    io.send(Method::ConnectionStart(ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(broker),
        mechanisms: LongStr::from(auth::MECHANISMS),
        locales: LongStr::from("en_US"),
    }))
    .await?;

    let start_ok = match io.next_method().await? {
        Method::ConnectionStartOk(m) => m,
        other => return Err(expected("connection.start_ok", &other)),
    };
    let caps = ClientCaps::from_properties(&start_ok.client_properties);
    let mechanism = start_ok.mechanism.as_str_lossy().into_owned();
    if !auth::MECHANISMS.split(' ').any(|m| m == mechanism) {
        return Err(Refused::Silent(format!(
            "unknown authentication mechanism '{mechanism}'"
        )));
    }
    let Some((username, password)) = auth::credentials(&mechanism, &start_ok.response.0) else {
        return Err(Refused::Silent(format!("malformed {mechanism} response")));
    };
    let from_loopback = match peer.ip() {
        std::net::IpAddr::V4(a) => a.is_loopback(),
        std::net::IpAddr::V6(a) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    let user = broker
        .meta
        .login(&username, &password, from_loopback)
        .map_err(|error| Refused::Login {
            error,
            mechanism: mechanism.clone(),
            tell_client: caps.authentication_failure_close,
        })?;

    io.send(Method::ConnectionTune(ConnectionTune {
        channel_max: cfg.channel_max,
        frame_max: cfg.frame_max,
        heartbeat: cfg.heartbeat,
    }))
    .await?;
    let tune_ok = match io.next_method().await? {
        Method::ConnectionTuneOk(m) => m,
        other => return Err(expected("connection.tune_ok", &other)),
    };
    negotiate(
        "frame_max",
        tune_ok.frame_max,
        FRAME_MIN_SIZE,
        cfg.frame_max,
    )?;
    negotiate(
        "channel_max",
        tune_ok.channel_max as u32,
        1,
        cfg.channel_max as u32,
    )?;
    let frame_max = if tune_ok.frame_max == 0 {
        cfg.frame_max
    } else {
        tune_ok.frame_max
    };
    let channel_max = if tune_ok.channel_max == 0 {
        cfg.channel_max
    } else {
        tune_ok.channel_max
    };
    io.frame_max = if frame_max == 0 {
        0
    } else {
        frame_max.max(FRAME_MIN_SIZE)
    };

    let open = match io.next_method().await? {
        Method::ConnectionOpen(m) => m,
        other => return Err(expected("connection.open", &other)),
    };
    let vhost_name = open.virtual_host.as_str_lossy().into_owned();
    let vhost = broker.vhost(&vhost_name).ok_or_else(|| {
        Refused::Error(
            AmqpError::not_allowed(format!("vhost {vhost_name} not found"))
                .in_method(ConnectionOpen::CLASS_ID, ConnectionOpen::METHOD_ID),
        )
    })?;
    io.send(Method::ConnectionOpenOk(ConnectionOpenOk {
        known_hosts: ShortStr::empty(),
    }))
    .await?;
    Ok(Opened {
        frame_max,
        channel_max,
        heartbeat: tune_ok.heartbeat,
        user,
        vhost,
        caps,
        client_properties: start_ok.client_properties,
    })
}

/// RabbitMQ's `validate_negotiated_integer_value`: the client may lower a limit, not raise
/// it, and 0 (no limit) counts as raising it when the server has one. Like RabbitMQ, a failed
/// negotiation closes the socket without a connection.close.
fn negotiate(field: &str, client: u32, min: u32, server: u32) -> Result<(), Refused> {
    let fail = |text: String| Err(Refused::Silent(text));
    if client != 0 && client < min {
        return fail(format!(
            "negotiated {field} = {client} is lower than the minimum allowed value ({min})"
        ));
    }
    if server != 0 && (client == 0 || client > server) {
        let detail = if field == "channel_max" && client == 0 {
            " (no limit)"
        } else {
            ""
        };
        return fail(format!(
            "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
        ));
    }
    Ok(())
}
