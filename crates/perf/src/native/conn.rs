//! The native driver's connection: a TCP socket that has done the AMQP handshake, with a read
//! buffer for frames. Writes are the caller's: it builds whole batches of frames and writes
//! them at once.

use crate::options::Uri;
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use warren_amqp::constants::PROTOCOL_HEADER;
use warren_amqp::frame::write_method;
use warren_amqp::methods::*;
use warren_amqp::{FieldTable, Frame, LongStr, Method, parse_frame};

pub type Error = String;

pub struct Reader {
    pub half: OwnedReadHalf,
    pub buf: BytesMut,
}

impl Reader {
    /// The next frame; Err when the socket closed or the broker closed the connection.
    pub async fn frame(&mut self) -> Result<Frame, Error> {
        loop {
            match parse_frame(&mut self.buf, 0) {
                Ok(Some(Frame::Method {
                    method: Method::ConnectionClose(c),
                    ..
                })) => {
                    return Err(format!(
                        "broker closed the connection: {} {}",
                        c.reply_code, c.reply_text
                    ));
                }
                Ok(Some(Frame::Method {
                    method: Method::ChannelClose(c),
                    ..
                })) => {
                    return Err(format!(
                        "broker closed the channel: {} {}",
                        c.reply_code, c.reply_text
                    ));
                }
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(format!("bad frame from broker: {e}")),
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let n = self
                .half
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("broker closed the socket".to_owned());
            }
        }
    }

    /// The next method frame, skipping anything else.
    pub async fn method(&mut self) -> Result<Method, Error> {
        loop {
            if let Frame::Method { method, .. } = self.frame().await? {
                return Ok(method);
            }
        }
    }
}

pub struct Conn {
    pub reader: Reader,
    pub writer: OwnedWriteHalf,
    pub frame_max: u32,
}

impl Conn {
    /// Connects, logs in with PLAIN, and opens the vhost and channel 1.
    pub async fn open(uri: &Uri) -> Result<Conn, Error> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port))
            .await
            .map_err(|e| format!("connect {}:{}: {e}", uri.host, uri.port))?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let mut c = Conn {
            reader: Reader {
                half: r,
                buf: BytesMut::with_capacity(256 * 1024),
            },
            writer: w,
            frame_max: 131_072,
        };
        c.writer
            .write_all(PROTOCOL_HEADER)
            .await
            .map_err(|e| e.to_string())?;
        match c.reader.method().await? {
            Method::ConnectionStart(_) => {}
            other => return Err(format!("expected connection.start, got {}", other.name())),
        }
        let mut response = vec![0u8];
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        c.send(
            0,
            ConnectionStartOk {
                client_properties: FieldTable::new().with("product", "warren-perf"),
                mechanism: "PLAIN".into(),
                response: LongStr::from(bytes::Bytes::from(response)),
                locale: "en_US".into(),
            }
            .into(),
        )
        .await?;
        let tune = match c.reader.method().await? {
            Method::ConnectionTune(t) => t,
            other => return Err(format!("login refused ({})", other.name())),
        };
        c.frame_max = if tune.frame_max == 0 {
            131_072
        } else {
            tune.frame_max
        };
        c.send(
            0,
            ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: c.frame_max,
                heartbeat: 0,
            }
            .into(),
        )
        .await?;
        c.send(
            0,
            ConnectionOpen {
                virtual_host: uri.vhost.as_str().into(),
                ..Default::default()
            }
            .into(),
        )
        .await?;
        c.expect("connection.open_ok", |m| {
            matches!(m, Method::ConnectionOpenOk(_))
        })
        .await?;
        c.send(1, ChannelOpen::default().into()).await?;
        c.expect("channel.open_ok", |m| matches!(m, Method::ChannelOpenOk(_)))
            .await?;
        Ok(c)
    }

    pub async fn send(&mut self, channel: u16, m: Method) -> Result<(), Error> {
        let mut out = BytesMut::new();
        write_method(&mut out, channel, &m);
        self.writer.write_all(&out).await.map_err(|e| e.to_string())
    }

    /// Sends a method and waits for its reply.
    pub async fn call(
        &mut self,
        m: Method,
        reply: &str,
        is: impl Fn(&Method) -> bool,
    ) -> Result<Method, Error> {
        self.send(1, m).await?;
        self.expect(reply, is).await
    }

    async fn expect(&mut self, what: &str, is: impl Fn(&Method) -> bool) -> Result<Method, Error> {
        let m = self.reader.method().await?;
        if is(&m) {
            Ok(m)
        } else {
            Err(format!("expected {what}, got {}", m.name()))
        }
    }

    /// Closes politely, best effort.
    pub async fn close(mut self) {
        let _ = self
            .send(
                0,
                ConnectionClose {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    ..Default::default()
                }
                .into(),
            )
            .await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.reader.method()).await;
    }
}

/// Appends a header frame for a basic message with the given raw properties.
pub fn put_content_header(out: &mut BytesMut, channel: u16, body_len: usize, props: &[u8]) {
    out.put_u8(warren_amqp::constants::FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32((12 + props.len()) as u32);
    out.put_u16(60);
    out.put_u16(0);
    out.put_u64(body_len as u64);
    out.put_slice(props);
    out.put_u8(warren_amqp::constants::FRAME_END);
}
