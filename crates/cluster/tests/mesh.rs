//! Links between nodes on loopback: the cookie decides who is let in, frames reach the right
//! channel, a silent peer is dropped, a lost peer is redialled, and two nodes dialling each
//! other at once end up with one link.

use bytes::Bytes;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use warren_cluster::codec::Codec;
use warren_cluster::handshake::{self, Refused};
use warren_cluster::{Channel, Cookie, Mesh, NodeAddr, PeerEvent, PeerKind, Timing, ToolLink};

fn fast() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(100),
        dead_after: Duration::from_millis(600),
        handshake: Duration::from_secs(2),
    }
}

fn cookie(s: &str) -> Cookie {
    Cookie::new(s).unwrap()
}

async fn node(name: &str, c: &Cookie) -> Mesh {
    let me = NodeAddr {
        name: format!("{name}@127.0.0.1"),
        host: "127.0.0.1".into(),
        port: 0,
    };
    Mesh::start(me, "127.0.0.1:0".parse().unwrap(), c.clone(), fast())
        .await
        .unwrap()
}

/// Where to dial `m`.
fn addr(m: &Mesh) -> NodeAddr {
    NodeAddr {
        port: m.listen_addr().port(),
        ..m.me().clone()
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn nodes_with_the_same_cookie_link_and_exchange_frames_by_channel() {
    let c = cookie("SECRET");
    let (a, b) = (node("a", &c).await, node("b", &c).await);
    let mut b_queue = b.receive(Channel::Queue);
    let mut b_meta = b.receive(Channel::Meta);
    let mut a_queue = a.receive(Channel::Queue);
    a.keep_connected(addr(&b));
    until("a and b linked", || {
        a.connected() == ["b@127.0.0.1"] && b.connected() == ["a@127.0.0.1"]
    })
    .await;
    a.send("b@127.0.0.1", Channel::Queue, Bytes::from_static(b"to b"))
        .await
        .unwrap();
    a.send("b@127.0.0.1", Channel::Meta, Bytes::from_static(b"raft"))
        .await
        .unwrap();
    let got = b_queue.recv().await.unwrap();
    assert_eq!(
        (got.from.as_str(), got.kind),
        ("a@127.0.0.1", PeerKind::Node)
    );
    assert_eq!(got.payload, Bytes::from_static(b"to b"));
    assert_eq!(
        b_meta.recv().await.unwrap().payload,
        Bytes::from_static(b"raft")
    );
    b.send("a@127.0.0.1", Channel::Queue, Bytes::from_static(b"to a"))
        .await
        .unwrap();
    assert_eq!(
        a_queue.recv().await.unwrap().payload,
        Bytes::from_static(b"to a")
    );
    assert!(
        a.send("c@127.0.0.1", Channel::Queue, Bytes::new())
            .await
            .is_err()
    );
    a.shut_down();
    b.shut_down();
}

#[tokio::test]
async fn a_node_or_tool_with_another_cookie_is_refused() {
    let b = node("b", &cookie("SECRET")).await;
    let intruder = node("x", &cookie("WRONG")).await;
    intruder.keep_connected(addr(&b));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.connected().is_empty());
    assert!(intruder.connected().is_empty());
    let tool = ToolLink::connect(
        &addr(&b),
        &cookie("WRONG"),
        "ctl@127.0.0.1",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(tool.err(), Some(Refused::Cookie));
    let tool = ToolLink::connect(
        &addr(&b),
        &cookie("SECRET"),
        "ctl@127.0.0.1",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(tool.unwrap().node, "b@127.0.0.1");
    intruder.shut_down();
    b.shut_down();
}

#[tokio::test]
async fn the_cookie_never_crosses_the_wire() {
    let secret = "THE-SECRET-COOKIE";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut all)).await;
        all
    });
    let fake = NodeAddr {
        name: "b@127.0.0.1".into(),
        host: "127.0.0.1".into(),
        port,
    };
    let _ = ToolLink::connect(
        &fake,
        &cookie(secret),
        "ctl@127.0.0.1",
        Duration::from_millis(500),
    )
    .await;
    let bytes = seen.await.unwrap();
    assert!(!bytes.is_empty(), "the hello was sent");
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the cookie appeared on the wire"
    );
}

#[tokio::test]
async fn a_silent_peer_is_dropped_and_a_lost_one_redialled() {
    let c = cookie("SECRET");
    let a = node("a", &c).await;
    let mut events = a.events();
    // A "node" that proves the cookie and then says nothing, as a stopped process would.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent_cookie = c.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let mut framed = tokio_util::codec::Framed::new(s, Codec::new());
            if handshake::answer(&mut framed, &silent_cookie, "s@127.0.0.1")
                .await
                .is_ok()
            {
                held.push(framed);
            }
        }
    });
    a.keep_connected(NodeAddr {
        name: "s@127.0.0.1".into(),
        host: "127.0.0.1".into(),
        port,
    });
    let mut ups = 0;
    let mut downs = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ups < 2 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(PeerEvent::Up(n, _))) if n == "s@127.0.0.1" => ups += 1,
            Ok(Ok(PeerEvent::Down(n, _))) if n == "s@127.0.0.1" => downs += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!((ups, downs), (2, 1), "up, dropped for silence, redialled");
    silent.abort();
    a.shut_down();
}

#[tokio::test]
async fn two_nodes_dialling_each_other_keep_one_link() {
    let c = cookie("SECRET");
    let (a, b) = (node("a", &c).await, node("b", &c).await);
    let mut b_queue = b.receive(Channel::Queue);
    let mut a_queue = a.receive(Channel::Queue);
    a.keep_connected(addr(&b));
    b.keep_connected(addr(&a));
    until("linked", || {
        a.is_connected("b@127.0.0.1") && b.is_connected("a@127.0.0.1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..20u8 {
        a.send("b@127.0.0.1", Channel::Queue, Bytes::from(vec![i]))
            .await
            .unwrap();
    }
    // The link that lost was replaced: its end may come first, never after frames of the link
    // that survived.
    for i in 0..20u8 {
        let got = next_frame(&mut b_queue).await;
        assert_eq!(got.payload, Bytes::from(vec![i]));
    }
    assert!(b_queue.try_recv().is_err(), "nothing more");
    // Had each side kept a different link, what one sends would go down a link the other
    // closed: both ways must work.
    b.send("a@127.0.0.1", Channel::Queue, Bytes::from_static(b"back"))
        .await
        .unwrap();
    let got = next_frame(&mut a_queue).await;
    assert_eq!(got.payload, Bytes::from_static(b"back"));
    a.shut_down();
    b.shut_down();
}

/// The next frame on a channel, past the ends of links replaced before it.
async fn next_frame(
    rx: &mut tokio::sync::mpsc::Receiver<warren_cluster::Inbound>,
) -> warren_cluster::Inbound {
    loop {
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("a frame")
            .unwrap();
        if !got.ended {
            return got;
        }
    }
}

/// A peer that dials again while its old link still looks alive (it restarted before the
/// silence showed) replaces that link; the old link's end is heard after everything it
/// delivered and before anything from the new one.
#[tokio::test]
async fn a_peer_that_dials_again_ends_its_old_link() {
    let c = cookie("SECRET");
    let a = node("a", &c).await;
    let mut a_queue = a.receive(Channel::Queue);
    let old_b = node("b", &c).await;
    old_b.keep_connected(addr(&a));
    until("linked", || a.is_connected("b@127.0.0.1")).await;
    old_b
        .send("a@127.0.0.1", Channel::Queue, Bytes::from_static(b"old"))
        .await
        .unwrap();
    // As a crashed process would: it dials no more, and its link looks alive for a while.
    old_b.stop_redialling("a@127.0.0.1");
    let new_b = node("b", &c).await;
    new_b.keep_connected(addr(&a));
    until("the new link", || new_b.is_connected("a@127.0.0.1")).await;
    new_b
        .send("a@127.0.0.1", Channel::Queue, Bytes::from_static(b"new"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let got = tokio::time::timeout(Duration::from_secs(10), a_queue.recv())
            .await
            .expect("old frame, end, new frame")
            .unwrap();
        seen.push(if got.ended {
            "end".to_owned()
        } else {
            String::from_utf8_lossy(&got.payload).into_owned()
        });
    }
    assert_eq!(seen, ["old", "end", "new"]);
    old_b.shut_down();
    new_b.shut_down();
    a.shut_down();
}

/// When a link goes down, each channel's receiver hears of it once, after everything that link
/// delivered, so that it can give up on the peer knowing nothing more will arrive.
#[tokio::test]
async fn a_lost_link_ends_after_all_it_delivered() {
    let c = cookie("SECRET");
    let (a, b) = (node("a", &c).await, node("b", &c).await);
    let mut b_queue = b.receive(Channel::Queue);
    let mut b_meta = b.receive(Channel::Meta);
    a.keep_connected(addr(&b));
    until("linked", || b.is_connected("a@127.0.0.1")).await;
    for i in 0..50u8 {
        a.send("b@127.0.0.1", Channel::Queue, Bytes::from(vec![i]))
            .await
            .unwrap();
    }
    a.shut_down();
    // Whatever the link delivered (a prefix of what was sent: a shut-down drops the rest)
    // comes first, in order, then the end, then nothing.
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), b_queue.recv())
            .await
            .expect("the queue channel hears the link end")
            .unwrap();
        if msg.ended {
            assert!(msg.payload.is_empty() && msg.from == "a@127.0.0.1");
            break;
        }
        got.push(msg.payload[0]);
    }
    let prefix: Vec<u8> = (0..got.len() as u8).collect();
    assert_eq!(got, prefix);
    let end = tokio::time::timeout(Duration::from_secs(5), b_meta.recv())
        .await
        .expect("the meta channel hears it too")
        .unwrap();
    assert!(end.ended);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b_queue.try_recv().is_err(), "nothing after the end");
    b.shut_down();
}

/// Calls between nodes: answers find their callers while several calls are outstanding; a
/// node with no link answers NotConnected at once, and one that never answers, TimedOut.
#[tokio::test]
async fn calls_between_nodes_get_their_own_answers() {
    use std::sync::Arc;
    use warren_cluster::Rpc;
    use warren_cluster::rpc::{CallError, Handler};
    let c = cookie("SECRET");
    let (a, b) = (node("a", &c).await, node("b", &c).await);
    let echo: Handler = Arc::new(|from: String, body: Bytes| {
        Box::pin(async move {
            // The later the request, the sooner its answer: answers overtake each other.
            let n = body.first().copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(200 - 20 * u64::from(n))).await;
            let mut out = from.into_bytes();
            out.extend_from_slice(&body);
            Bytes::from(out)
        })
    });
    let silent: Handler = Arc::new(|_, _| Box::pin(std::future::pending()));
    let on_a = Rpc::start(&a, Channel::Meta, echo.clone());
    let on_b = Rpc::start(&b, Channel::Meta, echo);
    a.keep_connected(addr(&b));
    until("a and b linked", || b.connected() == ["a@127.0.0.1"]).await;
    let t = Duration::from_secs(5);
    let calls = (0u8..5).map(|n| {
        let on_a = on_a.clone();
        tokio::spawn(async move { on_a.call("b@127.0.0.1", &[n], t).await })
    });
    for (n, call) in calls.enumerate() {
        let mut want = b"a@127.0.0.1".to_vec();
        want.push(n as u8);
        assert_eq!(call.await.unwrap().unwrap(), Bytes::from(want));
    }
    let back = on_b.call("a@127.0.0.1", &[9], t).await.unwrap();
    assert_eq!(back, Bytes::from(b"b@127.0.0.1\x09".to_vec()));
    assert_eq!(
        on_a.call("c@127.0.0.1", b"x", t).await,
        Err(CallError::NotConnected)
    );
    drop(on_b);
    let _quiet_b = Rpc::start(&b, Channel::Meta, silent);
    assert_eq!(
        on_a.call("b@127.0.0.1", b"x", Duration::from_millis(300))
            .await,
        Err(CallError::TimedOut)
    );
    a.shut_down();
    b.shut_down();
}

/// Nodes a and b, linked, each answering no call.
async fn silent_pair() -> (
    Mesh,
    Mesh,
    std::sync::Arc<warren_cluster::Rpc>,
    std::sync::Arc<warren_cluster::Rpc>,
) {
    use std::sync::Arc;
    use warren_cluster::Rpc;
    use warren_cluster::rpc::Handler;
    let c = cookie("SECRET");
    let (a, b) = (node("a", &c).await, node("b", &c).await);
    let silent: Handler = Arc::new(|_, _| Box::pin(std::future::pending()));
    let on_a = Rpc::start(&a, Channel::Meta, silent.clone());
    let on_b = Rpc::start(&b, Channel::Meta, silent);
    a.keep_connected(addr(&b));
    until("a and b linked", || a.connected() == ["b@127.0.0.1"]).await;
    (a, b, on_a, on_b)
}

/// A call to a node whose link ends while it waits hears so at once (its answer cannot come),
/// not when its time is up: a caller that must try elsewhere does not wait for nothing.
#[tokio::test]
async fn a_call_fails_as_soon_as_its_link_ends() {
    use warren_cluster::rpc::CallError;
    let (a, b, on_a, _on_b) = silent_pair().await;
    let waiting = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let r = on_a
            .call("b@127.0.0.1", b"x", Duration::from_secs(60))
            .await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.shut_down();
    let (r, took) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the call ended before its time")
        .unwrap();
    assert_eq!(
        r,
        Err(CallError::TimedOut),
        "sent, so its effect is unknown"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    a.shut_down();
}

/// A caller that stops waiting for an answer (it had it another way) leaves no call behind,
/// however long the other node takes to answer, or if it never does.
#[tokio::test]
async fn a_call_given_up_by_its_caller_is_forgotten() {
    let (a, b, on_a, _on_b) = silent_pair().await;
    let call = {
        let on_a = on_a.clone();
        tokio::spawn(async move {
            on_a.call("b@127.0.0.1", b"x", Duration::from_secs(60))
                .await
        })
    };
    until("the call waits for its answer", || on_a.waiting() == 1).await;
    call.abort();
    until("the call is forgotten", || on_a.waiting() == 0).await;
    a.shut_down();
    b.shut_down();
}

/// A node dialled while it is still starting sets its receivers after the link is up: what
/// arrives on that link from then on still reaches them.
#[tokio::test]
async fn a_receiver_set_after_the_link_came_up_gets_its_frames() {
    let c = cookie("SECRET");
    let (a, b) = (node("a", &c).await, node("b", &c).await);
    a.keep_connected(addr(&b));
    until("a and b linked", || b.connected() == ["a@127.0.0.1"]).await;
    let mut late = b.receive(Channel::Meta);
    a.send("b@127.0.0.1", Channel::Meta, Bytes::from_static(b"late"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), late.recv())
        .await
        .expect("the frame arrives")
        .unwrap();
    assert_eq!(got.payload, Bytes::from_static(b"late"));
    a.shut_down();
    b.shut_down();
}
