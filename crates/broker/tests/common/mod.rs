//! Shared test fixtures: an in-process node on a loopback port, and a raw AMQP client (on the
//! project's codec) for the byte-level cases real clients cannot produce.
#![allow(dead_code)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_amqp::constants::PROTOCOL_HEADER;
use warren_amqp::frame::{write_body, write_header, write_method};
use warren_amqp::methods::*;
use warren_amqp::{BasicProperties, FieldTable, FieldValue, Frame, LongStr, Method, parse_frame};
use warren_broker::{Broker, Config, Server};

pub struct TestNode {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    pub data_dir: std::path::PathBuf,
    server: Option<Server>,
    /// The data directory, when the node made its own (removed with the node).
    _own_dir: Option<TempDir>,
}

/// A directory under the system's temporary folder that is removed when dropped, so that a
/// test run leaves nothing behind, even when a test fails.
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory for one node's data (removed when the returned guard is dropped).
pub fn temp_data_dir() -> TempDir {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warren-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TempDir(dir)
}

impl TestNode {
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestNode {
        let mut config = Config::default();
        config.amqp.listen = "127.0.0.1:0".parse().unwrap();
        let own = temp_data_dir();
        config.node.data_dir = own.to_path_buf();
        f(&mut config);
        let data_dir = config.node.data_dir.clone();
        let broker = Broker::open(config).await.expect("open the node");
        let server = Server::start(broker.clone()).await.expect("listen");
        TestNode {
            addr: server.local_addr,
            broker,
            _own_dir: (data_dir == own.to_path_buf()).then_some(own),
            data_dir,
            server: Some(server),
        }
    }

    /// A node over an existing data directory, as after a restart.
    pub async fn start_in(dir: &std::path::Path) -> TestNode {
        let dir = dir.to_path_buf();
        Self::start_with(move |c| c.node.data_dir = dir).await
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Stops the node the way SIGTERM does and waits until every connection has closed.
    pub async fn shutdown_and_wait(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Stops the node. Clients a test still holds would each keep it waiting for their
    /// close-ok; the test's runtime ends soon anyway, so do not wait long for them.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), s.shutdown()).await;
        }
    }
}

/// A client that speaks frames directly.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    pub frame_max: u32,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient {
            stream,
            buf: BytesMut::new(),
            frame_max: 0,
        }
    }

    /// Connects, logs in as guest with PLAIN, tunes to the server's values and opens `/`.
    pub async fn open(addr: SocketAddr) -> RawClient {
        Self::open_with(addr, "PLAIN", plain("guest", "guest"), |t| t).await
    }

    pub async fn open_with(
        addr: SocketAddr,
        mechanism: &str,
        response: Vec<u8>,
        tune: impl FnOnce(ConnectionTuneOk) -> ConnectionTuneOk,
    ) -> RawClient {
        let mut c = Self::connect(addr).await;
        c.send_raw(PROTOCOL_HEADER).await;
        let Method::ConnectionStart(_) = c.method().await else {
            panic!("expected connection.start")
        };
        c.send(0, start_ok(mechanism, response)).await;
        let t = match c.method().await {
            Method::ConnectionTune(t) => t,
            other => panic!("expected tune, got {other:?}"),
        };
        let ok = tune(ConnectionTuneOk {
            channel_max: t.channel_max,
            frame_max: t.frame_max,
            heartbeat: t.heartbeat,
        });
        c.frame_max = ok.frame_max;
        c.send(0, ok.into()).await;
        c.send(
            0,
            ConnectionOpen {
                virtual_host: "/".into(),
                ..Default::default()
            }
            .into(),
        )
        .await;
        match c.method().await {
            Method::ConnectionOpenOk(_) => {}
            other => panic!("expected open-ok, got {other:?}"),
        }
        c
    }

    pub async fn open_channel(&mut self, ch: u16) {
        self.send(ch, ChannelOpen::default().into()).await;
        match self.method().await {
            Method::ChannelOpenOk(_) => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }

    pub async fn send_raw(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write");
    }

    pub async fn send(&mut self, channel: u16, m: Method) {
        let mut out = BytesMut::new();
        write_method(&mut out, channel, &m);
        self.send_raw(&out).await;
    }

    pub async fn publish(
        &mut self,
        channel: u16,
        exchange: &str,
        key: &str,
        props: BasicProperties,
        body: &[u8],
    ) {
        let mut out = BytesMut::new();
        write_method(
            &mut out,
            channel,
            &BasicPublish {
                exchange: exchange.into(),
                routing_key: key.into(),
                ..Default::default()
            }
            .into(),
        );
        write_header(&mut out, channel, body.len() as u64, &props.encode());
        if !body.is_empty() {
            write_body(&mut out, channel, body);
        }
        self.send_raw(&out).await;
    }

    /// The next frame, or None if the server closed the socket.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = parse_frame(&mut self.buf, 0).expect("server sent a bad frame") {
                return Some(f);
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("timed out waiting for the server")
                .expect("read");
            if n == 0 {
                return None;
            }
        }
    }

    /// The next method frame, skipping heartbeats.
    pub async fn method(&mut self) -> Method {
        loop {
            match self.frame().await {
                Some(Frame::Method { method, .. }) => return method,
                Some(Frame::Heartbeat { .. }) => continue,
                Some(other) => panic!("expected a method, got {other:?}"),
                None => panic!("connection closed while waiting for a method"),
            }
        }
    }

    /// Reads until the server closes the socket, returning every byte it sent.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = self.buf.split().to_vec();
        let _ = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut all))
            .await
            .expect("server did not close the socket");
        all
    }
}

pub fn plain(user: &str, pass: &str) -> Vec<u8> {
    format!("\0{user}\0{pass}").into_bytes()
}

pub fn start_ok(mechanism: &str, response: Vec<u8>) -> Method {
    let caps = FieldTable::new()
        .with("authentication_failure_close", true)
        .with("consumer_cancel_notify", true)
        .with("connection.blocked", true);
    ConnectionStartOk {
        client_properties: FieldTable::new()
            .with("product", "warren-tests")
            .with("capabilities", FieldValue::Table(caps)),
        mechanism: mechanism.into(),
        response: LongStr::from(bytes::Bytes::from(response)),
        locale: "en_US".into(),
    }
    .into()
}

/// Asserts the method is a connection.close with this code, text and culprit.
pub fn assert_connection_close(m: &Method, code: u16, text: &str, class_id: u16, method_id: u16) {
    let Method::ConnectionClose(c) = m else {
        panic!("expected connection.close, got {m:?}")
    };
    let got = (
        c.reply_code,
        c.reply_text.as_str_lossy(),
        c.class_id,
        c.method_id,
    );
    assert_eq!(got, (code, text.into(), class_id, method_id));
}

/// Asserts the method is a channel.close with this code, text and culprit.
pub fn assert_channel_close(m: &Method, code: u16, text: &str, class_id: u16, method_id: u16) {
    let Method::ChannelClose(c) = m else {
        panic!("expected channel.close, got {m:?}")
    };
    let got = (
        c.reply_code,
        c.reply_text.as_str_lossy(),
        c.class_id,
        c.method_id,
    );
    assert_eq!(got, (code, text.into(), class_id, method_id));
}

/// A lapin connection to the node and a channel on it.
pub async fn lapin_channel(node: &TestNode) -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(&node.url(), lapin::ConnectionProperties::default())
        .await
        .expect("lapin connects");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// A passive queue.declare: the queue's counts, or the error if it does not exist.
pub async fn passive_declare(ch: &lapin::Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        queue.into(),
        lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
}
