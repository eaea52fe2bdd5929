//! What a connection does with the frames it reads: the message path (publish, content,
//! acknowledgements) handled in place without waiting, everything else through the channel's
//! or the connection's method handlers, and channel errors turned into `channel.close` (soft)
//! or `connection.close` (hard), as RabbitMQ's reader and channel processes do.

use super::{Connection, Slot, Stop};
use crate::channel::{Channel, QuickMethod};
use tokio::io::{AsyncRead, AsyncWrite};
use warren_amqp::amqp_error::erlang_binary;
use warren_amqp::frame::FrameError;
use warren_amqp::methods::*;
use warren_amqp::{AmqpError, Frame, Method, ShortStr, parse_frame};

/// What became of a frame offered to the quick path.
enum Quick {
    Done,
    /// Not a message-path frame: handle it the general way.
    Slow(Frame),
    /// The channel refused the frame: close the channel (or the connection).
    ChannelFailed(u16, AmqpError),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Handles every whole frame in the read buffer.
    pub(super) async fn handle_input(&mut self) -> Result<(), Stop> {
        let result = loop {
            match parse_frame(&mut self.rbuf, self.frame_max) {
                Ok(Some(frame)) => {
                    // The message path is handled in place; the rest, rarer, goes through
                    // a boxed future so that this loop's own future stays small (it is
                    // moved on every poll).
                    let r = match self.handle_frame_quick(frame) {
                        Quick::Done => Ok(()),
                        Quick::Slow(frame) => Box::pin(self.handle_frame(frame)).await,
                        Quick::ChannelFailed(channel, e) => {
                            Box::pin(self.after_channel_call(channel, Err(e))).await
                        }
                    };
                    if let Err(stop) = r {
                        break Err(stop);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    // The stream cannot be parsed past a bad frame: nothing after it is read.
                    self.rbuf.clear();
                    tracing::warn!(peer = %self.peer, error = %e, "unparseable frame");
                    break Err(frame_error(&e).map_or(Stop::Done, Stop::Error));
                }
            }
        };
        // Queues get this chunk's publishes before any confirm for them is written.
        self.outgoing.flush(&self.handle).await;
        self.flush_confirms();
        result
    }

    pub(super) fn flush_confirms(&mut self) {
        let ids = std::mem::take(&mut self.confirm_channels);
        let (mut ctx, channels) = self.parts();
        for id in ids {
            if let Some(Slot::Open(ch)) = channels.get_mut(&id) {
                ch.flush_confirms(&mut ctx);
            }
        }
    }

    /// Publishes, their content and acknowledgements on open channels, without waiting.
    fn handle_frame_quick(&mut self, frame: Frame) -> Quick {
        if self.closing_since.is_some() {
            return Quick::Slow(frame);
        }
        let (channel, r) = match frame {
            Frame::Heartbeat { .. } => return Quick::Done,
            Frame::Header { channel, header } if channel != 0 => {
                let (mut ctx, channels) = self.parts();
                match channels.get_mut(&channel) {
                    Some(Slot::Open(ch)) => (channel, ch.handle_header(&mut ctx, header)),
                    _ => return Quick::Slow(Frame::Header { channel, header }),
                }
            }
            Frame::Body { channel, payload } if channel != 0 => {
                let (mut ctx, channels) = self.parts();
                match channels.get_mut(&channel) {
                    Some(Slot::Open(ch)) => (channel, ch.handle_body(&mut ctx, payload)),
                    _ => return Quick::Slow(Frame::Body { channel, payload }),
                }
            }
            Frame::Method { channel, method } if channel != 0 => {
                let is_publish = matches!(method, Method::BasicPublish(_));
                let (mut ctx, channels) = self.parts();
                let r = match channels.get_mut(&channel) {
                    Some(Slot::Open(ch)) => match ch.handle_quick(&mut ctx, method) {
                        QuickMethod::Handled(r) => r,
                        QuickMethod::Other(method) => {
                            return Quick::Slow(Frame::Method { channel, method });
                        }
                    },
                    _ => return Quick::Slow(Frame::Method { channel, method }),
                };
                if is_publish {
                    self.has_published = true;
                }
                (channel, r)
            }
            other => return Quick::Slow(other),
        };
        match r {
            Ok(()) => {
                self.note_confirms(channel);
                Quick::Done
            }
            Err(e) => Quick::ChannelFailed(channel, e),
        }
    }

    async fn handle_frame(&mut self, frame: Frame) -> Result<(), Stop> {
        if self.closing_since.is_some() {
            // After connection.close only close-ok (or the client's own close) matters.
            return match frame {
                Frame::Method {
                    channel: 0,
                    method: Method::ConnectionCloseOk(_),
                } => Err(Stop::Closed),
                Frame::Method {
                    channel: 0,
                    method: Method::ConnectionClose(_),
                } => {
                    self.out.method(0, &ConnectionCloseOk {}.into());
                    Err(Stop::Closed)
                }
                _ => Ok(()),
            };
        }
        match frame {
            Frame::Heartbeat { .. } => Ok(()),
            Frame::Method { channel: 0, method } => self.connection_method(method).await,
            Frame::Header { channel: 0, header } => Err(Stop::Error(content_on_channel_zero(
                warren_amqp::constants::FRAME_HEADER,
                &header_payload(&header),
            ))),
            Frame::Body {
                channel: 0,
                payload,
            } => Err(Stop::Error(content_on_channel_zero(
                warren_amqp::constants::FRAME_BODY,
                &payload,
            ))),
            Frame::Method { channel, method } => self.channel_method(channel, method).await,
            // Content on an open channel took the quick path: what comes here is for a
            // channel that is closing (dropped) or not open.
            Frame::Header { channel, .. } | Frame::Body { channel, .. } => {
                match self.channels.get(&channel) {
                    Some(_) => Ok(()),
                    None => {
                        self.after_channel_call(channel, Err(not_open(channel)))
                            .await
                    }
                }
            }
        }
    }

    async fn connection_method(&mut self, method: Method) -> Result<(), Stop> {
        match method {
            Method::ConnectionClose(_) => {
                self.out.method(0, &ConnectionCloseOk {}.into());
                Err(Stop::Closed)
            }
            Method::ConnectionCloseOk(_) => Ok(()),
            Method::ConnectionUpdateSecret(_) => {
                self.out.method(0, &ConnectionUpdateSecretOk {}.into());
                Ok(())
            }
            Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_) => Ok(()),
            // RabbitMQ's reader: anything but connection.* on channel 0 is a channel error
            // (504), naming the method.
            other => Err(Stop::Error(
                AmqpError::channel_error("unexpected method in connection state running")
                    .in_method(other.class_id(), other.method_id()),
            )),
        }
    }

    async fn channel_method(&mut self, channel: u16, method: Method) -> Result<(), Stop> {
        match self.channels.get_mut(&channel) {
            None => match method {
                Method::ChannelOpen(_) => {
                    let open = self.channels.len();
                    if self.channel_max != 0 && open >= self.channel_max as usize {
                        return Err(Stop::Error(AmqpError::not_allowed(format!(
                            "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                            self.channel_max
                        ))));
                    }
                    let key = self.next_channel_key;
                    self.next_channel_key += 1;
                    self.channels
                        .insert(channel, Slot::Open(Box::new(Channel::new(channel, key))));
                    self.out.method(
                        channel,
                        &ChannelOpenOk {
                            channel_id: Default::default(),
                        }
                        .into(),
                    );
                    Ok(())
                }
                other => Err(Stop::Error(
                    not_open(channel).in_method(other.class_id(), other.method_id()),
                )),
            },
            Some(Slot::Closing) => {
                match method {
                    Method::ChannelCloseOk(_) => {
                        self.channels.remove(&channel);
                    }
                    Method::ChannelClose(_) => {
                        self.channels.remove(&channel);
                        self.out.method(channel, &ChannelCloseOk {}.into());
                    }
                    _ => {}
                }
                Ok(())
            }
            Some(Slot::Open(_)) => match method {
                Method::ChannelOpen(_) => Err(Stop::Error(
                    AmqpError::channel_error("second 'channel.open' seen")
                        .in_method(ChannelOpen::CLASS_ID, ChannelOpen::METHOD_ID),
                )),
                Method::ChannelClose(_) => {
                    if let Some(Slot::Open(mut ch)) = self.channels.remove(&channel) {
                        ch.close(&self.broker, self.handle.id).await;
                    }
                    self.out.method(channel, &ChannelCloseOk {}.into());
                    Ok(())
                }
                Method::ChannelCloseOk(_) => Ok(()),
                method => {
                    // Publishes and acknowledgements took the quick path; anything else may look
                    // at queues, which must hold what was published before it.
                    self.outgoing.flush(&self.handle).await;
                    let r = {
                        let (mut ctx, channels) = self.parts();
                        match channels.get_mut(&channel) {
                            Some(Slot::Open(ch)) => ch.handle_method(&mut ctx, method).await,
                            _ => Ok(()),
                        }
                    };
                    self.after_channel_call(channel, r).await
                }
            },
        }
    }

    /// Remembers a channel in confirm mode, whose confirms are written after this chunk.
    fn note_confirms(&mut self, channel: u16) {
        if let Some(Slot::Open(ch)) = self.channels.get(&channel) {
            if ch.has_confirms() && !self.confirm_channels.contains(&channel) {
                self.confirm_channels.push(channel);
            }
        }
    }

    /// Turns a channel's error into a channel.close (soft) or a connection error (hard).
    async fn after_channel_call(
        &mut self,
        channel: u16,
        r: Result<(), AmqpError>,
    ) -> Result<(), Stop> {
        self.note_confirms(channel);
        let e = match r {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if e.is_hard() {
            return Err(Stop::Error(e));
        }
        tracing::debug!(peer = %self.peer, channel, error = %e, "closing channel");
        if let Some(Slot::Open(mut ch)) = self.channels.insert(channel, Slot::Closing) {
            // Confirms already earned on this channel are still owed to the client.
            {
                let (mut ctx, _) = self.parts();
                ch.flush_confirms(&mut ctx);
            }
            ch.close(&self.broker, self.handle.id).await;
        }
        self.out.method(
            channel,
            &Method::ChannelClose(ChannelClose {
                reply_code: e.code,
                reply_text: ShortStr::from(e.reply_text()),
                class_id: e.class_id,
                method_id: e.method_id,
            }),
        );
        Ok(())
    }
}

fn not_open(_channel: u16) -> AmqpError {
    AmqpError::channel_error("expected 'channel.open'")
}

fn content_on_channel_zero(frame_type: u8, payload: &[u8]) -> AmqpError {
    AmqpError::unexpected_frame(format!(
        "type {frame_type}, all octets = {}",
        erlang_binary(payload)
    ))
}

/// A content header's payload as it was on the wire, for error texts.
fn header_payload(h: &warren_amqp::ContentHeader) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + h.properties.as_bytes().len());
    v.extend_from_slice(&h.class_id.to_be_bytes());
    v.extend_from_slice(&h.weight.to_be_bytes());
    v.extend_from_slice(&h.body_size.to_be_bytes());
    v.extend_from_slice(h.properties.as_bytes());
    v
}

/// What RabbitMQ does with a frame that could not be parsed: the reply it closes with, or
/// `None` where it closes the socket without one (an unknown method).
fn frame_error(e: &FrameError) -> Option<AmqpError> {
    use warren_amqp::DecodeError;
    let octets = erlang_binary(&e.octets);
    let t = e.frame_type;
    Some(match &e.error {
        DecodeError::FrameTooLarge { size, max } => AmqpError::frame_error(format!(
            "type {t}, all octets = <<>>: {{frame_too_large,{size},{}}}",
            max.saturating_sub(warren_amqp::constants::FRAME_OVERHEAD as u32)
        )),
        DecodeError::UnknownFrameType(_) => {
            AmqpError::frame_error(format!("type {t}, all octets = {octets}: unknown_frame"))
        }
        DecodeError::BadFrameEnd(b) => AmqpError::frame_error(format!(
            "type {t}, all octets = {octets}: {{invalid_frame_end_marker,{b}}}"
        )),
        DecodeError::UnknownMethod { .. } => return None,
        // A content header whose properties do not parse crashes RabbitMQ's channel, which
        // closes the connection with a bare INTERNAL_ERROR.
        _ if t == warren_amqp::constants::FRAME_HEADER => AmqpError::internal_error(""),
        _ => AmqpError::frame_error(format!("cannot decode {octets}"))
            .in_method(e.class_id, e.method_id),
    })
}
