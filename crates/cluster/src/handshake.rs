//! Proving the cookie before anything else, both ways, without sending it.
//!
//! The dialling side says hello with a fresh random nonce. The answering side replies with its
//! own nonce and an HMAC-SHA256, keyed by the cookie, over both nonces, both names, the kind of
//! peer and its role. The dialling side checks it, and that the answer came from the node it
//! meant to reach, before it sends anything of its own: then its HMAC over the same with the
//! other role. The answering side checks that and welcomes it. A proof is good for one
//! handshake only, so none can be replayed, reflected or relayed to another node, and proofs
//! are compared in constant time. A dialler that finds the other's proof wrong says so (the
//! cookies differ), and both sides log it; the cookie itself never crosses.

use crate::cookie::Cookie;
use crate::wire::{Challenge, Frame, Hello, PeerKind, VERSION};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

pub type Link<S> = Framed<S, crate::codec::Codec>;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The other side does not hold this cluster's cookie (or we do not hold its).
    Cookie,
    /// It speaks another version of this protocol.
    Version(u16),
    /// It is not the node we meant to reach.
    WrongNode { expected: String, found: String },
    /// It hung up, timed out or sent something that is not this protocol.
    Broken(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Cookie => f.write_str("the cookies differ"),
            Refused::Version(v) => {
                write!(f, "it speaks cluster protocol version {v}, not {VERSION}")
            }
            Refused::WrongNode { expected, found } => {
                write!(f, "expected node {expected}, found {found}")
            }
            Refused::Broken(why) => f.write_str(why),
        }
    }
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    // Without randomness there is no safe handshake; a zero nonce still cannot forge a proof
    // without the cookie, it only loses replay protection, and the OS source does not fail in
    // practice.
    let _ = getrandom::fill(&mut n);
    n
}

/// Who a handshake is between: each proof covers all of it, so a proof is good for this
/// handshake only (these two fresh nonces, these two names, this kind of peer, this role).
#[derive(Clone, Copy)]
struct Parties<'a> {
    dialler: &'a str,
    answerer: &'a str,
    kind: PeerKind,
    dialler_nonce: &'a [u8; 32],
    answerer_nonce: &'a [u8; 32],
}

fn proof(cookie: &Cookie, role: &[u8], p: &Parties<'_>) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(cookie.secret()) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return [0; 32],
    };
    mac.update(b"warren-cluster-1");
    mac.update(role);
    mac.update(p.dialler_nonce);
    mac.update(p.answerer_nonce);
    for name in [p.dialler, p.answerer] {
        mac.update(&(name.len() as u32).to_be_bytes());
        mac.update(name.as_bytes());
    }
    mac.update(&[p.kind as u8]);
    mac.finalize().into_bytes().into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

async fn next<S: AsyncRead + AsyncWrite + Unpin>(link: &mut Link<S>) -> Result<Frame, Refused> {
    match link.next().await {
        Some(Ok(raw)) => Frame::decode(raw.freeze()).map_err(Refused::Broken),
        Some(Err(e)) => Err(Refused::Broken(e.to_string())),
        None => Err(Refused::Broken("the connection closed".to_owned())),
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    f: Frame,
) -> Result<(), Refused> {
    link.send(f.encode())
        .await
        .map_err(|e| Refused::Broken(e.to_string()))
}

/// The dialling side: checks the answering side's proof of the cookie (and that it is
/// `expected`, if named), then proves its own. Returns the other node's name.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    cookie: &Cookie,
    me: &str,
    kind: PeerKind,
    expected: Option<&str>,
) -> Result<String, Refused> {
    let mine = nonce();
    let hello = Hello {
        version: VERSION,
        name: me.to_owned(),
        kind,
        nonce: mine,
    };
    send(link, Frame::Hello(hello)).await?;
    let c = match next(link).await? {
        Frame::Challenge(c) => c,
        other => {
            return Err(Refused::Broken(format!(
                "expected a challenge, got {other:?}"
            )));
        }
    };
    if c.version != VERSION {
        return Err(Refused::Version(c.version));
    }
    let parties = Parties {
        dialler: me,
        answerer: &c.name,
        kind,
        dialler_nonce: &mine,
        answerer_nonce: &c.nonce,
    };
    // Nothing of ours goes out before the other side has proven the cookie and is who we
    // meant to reach: a proof is never handed to a stranger who could relay it.
    if !same(&c.proof, &proof(cookie, b"answer", &parties)) {
        // Say so, so that the other side can log a cookie mismatch rather than a hang-up.
        let _ = send(link, Frame::Mismatch).await;
        return Err(Refused::Cookie);
    }
    if let Some(expected) = expected {
        if expected != c.name {
            return Err(Refused::WrongNode {
                expected: expected.to_owned(),
                found: c.name,
            });
        }
    }
    send(link, Frame::Proof(proof(cookie, b"dial", &parties))).await?;
    match next(link).await {
        Ok(Frame::Welcome) => Ok(c.name),
        Err(_) => Err(Refused::Broken(
            "the node hung up after our proof".to_owned(),
        )),
        Ok(other) => Err(Refused::Broken(format!("expected welcome, got {other:?}"))),
    }
}

/// The answering side: proves the cookie first, then checks the dialling side's proof.
/// Returns its name and what it is.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    cookie: &Cookie,
    me: &str,
) -> Result<(String, PeerKind), Refused> {
    let hello = match next(link).await? {
        Frame::Hello(h) => h,
        other => return Err(Refused::Broken(format!("expected hello, got {other:?}"))),
    };
    if hello.version != VERSION {
        return Err(Refused::Version(hello.version));
    }
    let mine = nonce();
    let parties = Parties {
        dialler: &hello.name,
        answerer: me,
        kind: hello.kind,
        dialler_nonce: &hello.nonce,
        answerer_nonce: &mine,
    };
    let challenge = Challenge {
        version: VERSION,
        name: me.to_owned(),
        nonce: mine,
        proof: proof(cookie, b"answer", &parties),
    };
    send(link, Frame::Challenge(challenge)).await?;
    let theirs = match next(link).await? {
        Frame::Proof(p) => p,
        // Our proof failed on the other side: it holds another cookie.
        Frame::Mismatch => return Err(Refused::Cookie),
        other => return Err(Refused::Broken(format!("expected a proof, got {other:?}"))),
    };
    if !same(&theirs, &proof(cookie, b"dial", &parties)) {
        return Err(Refused::Cookie);
    }
    send(link, Frame::Welcome).await?;
    Ok((hello.name, hello.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;

    async fn pair(
        a: &Cookie,
        b: &Cookie,
    ) -> (Result<String, Refused>, Result<(String, PeerKind), Refused>) {
        let (x, y) = tokio::io::duplex(4096);
        let (mut x, mut y) = (Framed::new(x, Codec::new()), Framed::new(y, Codec::new()));
        let (a, b) = (a.clone(), b.clone());
        let answering = tokio::spawn(async move { answer(&mut y, &b, "warren@b").await });
        let dialled = dial(&mut x, &a, "warren@a", PeerKind::Node, Some("warren@b")).await;
        drop(x);
        (dialled, answering.await.unwrap())
    }

    #[tokio::test]
    async fn the_same_cookie_lets_both_sides_in() {
        let c = Cookie::new("SECRET").unwrap();
        let (d, a) = pair(&c, &c).await;
        assert_eq!(d.unwrap(), "warren@b");
        assert_eq!(a.unwrap(), ("warren@a".to_owned(), PeerKind::Node));
    }

    #[tokio::test]
    async fn different_cookies_are_refused_on_both_sides() {
        let (d, a) = pair(
            &Cookie::new("SECRET").unwrap(),
            &Cookie::new("OTHER").unwrap(),
        )
        .await;
        assert_eq!(d.unwrap_err(), Refused::Cookie);
        assert_eq!(a.unwrap_err(), Refused::Cookie);
    }

    #[test]
    fn proofs_are_bound_to_role_nonces_names_and_kind() {
        let c = Cookie::new("SECRET").unwrap();
        let (n1, n2) = ([1; 32], [2; 32]);
        let base = Parties {
            dialler: "warren@a",
            answerer: "warren@b",
            kind: PeerKind::Node,
            dialler_nonce: &n1,
            answerer_nonce: &n2,
        };
        let p = proof(&c, b"dial", &base);
        assert_eq!(p, proof(&c, b"dial", &Parties { ..base }));
        let others = [
            proof(&c, b"answer", &Parties { ..base }),
            proof(
                &c,
                b"dial",
                &Parties {
                    dialler_nonce: &n2,
                    answerer_nonce: &n1,
                    ..base
                },
            ),
            proof(
                &c,
                b"dial",
                &Parties {
                    dialler: "warren@x",
                    ..base
                },
            ),
            proof(
                &c,
                b"dial",
                &Parties {
                    answerer: "warren@x",
                    ..base
                },
            ),
            proof(
                &c,
                b"dial",
                &Parties {
                    kind: PeerKind::Tool,
                    ..base
                },
            ),
            proof(&Cookie::new("OTHER").unwrap(), b"dial", &Parties { ..base }),
        ];
        for o in others {
            assert_ne!(p, o);
        }
    }
}
