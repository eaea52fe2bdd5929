//! What a node whose broker does not run (after `stop_app`) answers on the queue channel, and
//! how a node tells the others whether its broker runs.

use crate::queue::ticket_mail;
use crate::queue::wire::{Answer, Cmd, Frame, Mail, decode, encode};

/// The frame that tells other nodes whether this node's broker runs.
pub fn broker_frame(running: bool) -> bytes::Bytes {
    encode(&Frame::Broker { running })
}

/// What a node whose broker does not run (after `stop_app`) answers a frame on the queue
/// channel: a command that asks is told the queue is gone, publishers waiting on tickets are
/// refused (and the publish window given back), and mail for a connection is answered with
/// "no such connection".
pub fn answer_while_stopped(raw: &[u8]) -> Vec<bytes::Bytes> {
    let Ok(frame) = decode(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match frame {
        Frame::Queue { queue, ask, cmd } => {
            if let Cmd::Publish(batch) = cmd {
                out.push(Frame::Credit {
                    queue: queue.id,
                    n: 1,
                });
                let tickets = batch.into_iter().filter_map(|(_, t)| t).collect();
                for (conn, msg) in ticket_mail(tickets, false) {
                    out.push(Frame::Mail {
                        conn,
                        mail: Mail::of(msg),
                    });
                }
            }
            if let Some(ask) = ask {
                out.push(Frame::Answer {
                    ask,
                    answer: Answer::Gone,
                });
            }
        }
        Frame::Mail { conn, .. } => out.push(Frame::NoConnection { conn }),
        // A node whose broker just started hears that this one's is stopped (it would count
        // it as running otherwise); only the stopped side answers, so nothing bounces.
        Frame::Broker { running: true } => out.push(Frame::Broker { running: false }),
        Frame::Answer { .. }
        | Frame::NoConnection { .. }
        | Frame::Broker { running: false }
        | Frame::Credit { .. }
        | Frame::Reply { .. } => {}
    }
    out.iter().map(encode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::ConnMsg;
    use crate::queue::Ticket;
    use crate::queue::wire::{QueueRef, WireMessage};
    use warren_meta::{NodeId, Uid};

    /// A node whose broker is stopped answers at once: an ask with "gone", a publish's
    /// tickets with a refusal, mail with "no such connection".
    #[test]
    fn a_stopped_broker_answers_what_waits_for_it() {
        let conn = Uid {
            node: NodeId(1),
            n: 2,
        };
        let ticket = Ticket {
            conn,
            channel: 1,
            channel_key: 3,
            seq: 7,
            commit: false,
        };
        let message = WireMessage::sample();
        let queue = QueueRef {
            vhost: "/".into(),
            name: "q".into(),
            id: conn,
        };
        let publish = Frame::Queue {
            queue,
            ask: Some(4),
            cmd: Cmd::Publish(vec![(message, Some(ticket))]),
        };
        let replies: Vec<String> = answer_while_stopped(&encode(&publish))
            .iter()
            .map(|r| format!("{:?}", decode(r).unwrap()))
            .collect();
        assert_eq!(replies.len(), 3, "{replies:?}");
        assert!(replies[0].starts_with("Credit") && replies[0].contains("n: 1"));
        assert!(replies[1].contains("Confirmed") && replies[1].contains("seqs: [7], ok: false"));
        assert!(replies[2].contains("Answer { ask: 4, answer: Gone }"));
        let mail = Frame::Mail {
            conn,
            mail: Mail::of(ConnMsg::Close {
                code: 320,
                text: "bye".into(),
            }),
        };
        let replies = answer_while_stopped(&encode(&mail));
        assert!(matches!(
            decode(&replies[0]),
            Ok(Frame::NoConnection { conn: c }) if c == conn
        ));
        assert!(answer_while_stopped(b"\xff\xff").is_empty(), "garbage");
        let replies = answer_while_stopped(&broker_frame(true));
        assert!(matches!(
            decode(&replies[0]),
            Ok(Frame::Broker { running: false })
        ));
        assert!(answer_while_stopped(&broker_frame(false)).is_empty());
    }
}
