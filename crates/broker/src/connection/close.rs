//! How a connection ends: a refused handshake answered as RabbitMQ answers it, the close
//! handshake's lingering, and the release of what the connection held (its channels'
//! deliveries, its exclusive queues).

use super::handshake::Refused;
use super::{CLOSING_TIMEOUT, Connection, Slot};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warren_amqp::methods::*;
use warren_amqp::{AmqpError, Method, ShortStr};

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// After the close handshake, RabbitMQ leaves the socket to the client to close (up to a
    /// timeout). Dropping it at once, with client bytes still unread, would make the kernel
    /// answer with a reset, which can destroy our close-ok before the client reads it.
    pub(super) async fn linger(&mut self) {
        let _ = self.writer.shutdown().await;
        let limit = if self.shutting_down {
            // The node is stopping: give the client a moment, not the full timeout.
            Duration::from_secs(1)
        } else if !self.heartbeat.is_zero() && self.heartbeat < CLOSING_TIMEOUT {
            self.heartbeat
        } else {
            CLOSING_TIMEOUT
        };
        let drain = async {
            loop {
                self.rbuf.clear();
                match self.reader.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// Writes what is pending, best effort, before the socket is dropped.
    pub(super) async fn flush(&mut self) {
        while !self.out.is_empty() {
            match self.writer.write_vectored(&self.out.io_slices()).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.out.advance(n),
            }
        }
        let _ = self.writer.flush().await;
    }

    pub(super) async fn close_channels(&mut self) {
        self.outgoing.flush(&self.handle).await;
        let channels: Vec<Slot> = self.channels.drain().map(|(_, s)| s).collect();
        for slot in channels {
            if let Slot::Open(mut ch) = slot {
                ch.close(&self.broker, self.handle.id).await;
            }
        }
    }

    /// Releases what the connection holds (its channels' deliveries, its exclusive queues).
    /// Runs once, when the close handshake ends or the socket goes.
    pub(super) async fn cleanup(&mut self) {
        if self.cleaned_up {
            return;
        }
        self.cleaned_up = true;
        self.broker.connection_closed();
        self.close_channels().await;
        self.vhost.connection_closed(self.handle.id).await;
        tracing::info!(peer = %self.peer, "connection closed");
    }
}

/// Tells a client whose handshake failed why, the way RabbitMQ does, and closes.
pub(super) async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    refused: Refused,
) {
    let close = match refused {
        Refused::Gone | Refused::BadHeader => None,
        Refused::Silent(reason) => {
            tracing::warn!(%peer, %reason, "connection refused");
            None
        }
        Refused::Error(e) => {
            tracing::warn!(%peer, error = %e, "connection refused");
            Some(e)
        }
        Refused::Login {
            error,
            mechanism,
            tell_client,
        } => {
            tracing::warn!(%peer, %error, "login refused");
            tell_client.then(|| {
                AmqpError::access_refused(format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                ))
            })
        }
    };
    if let Some(e) = close {
        let mut out = BytesMut::new();
        warren_amqp::frame::write_method(&mut out, 0, &close_method(&e));
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

pub(super) fn close_method(e: &AmqpError) -> Method {
    Method::ConnectionClose(ConnectionClose {
        reply_code: e.code,
        reply_text: ShortStr::from(e.reply_text()),
        class_id: e.class_id,
        method_id: e.method_id,
    })
}
