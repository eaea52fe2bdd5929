//! Reading haproxy.cfg: the seed configuration as written, HAProxy's inheritance of
//! `defaults`, its warnings for HTTP settings in a TCP proxy, and an error with file and line
//! for everything warren-lb cannot run.

use std::path::Path;
use std::time::Duration;
use warren_lb::config::{Balance, LogTarget, Mode, ProxyKind, parse_file, parse_str};

fn seed() -> &'static Path {
    // A copy of the article's haproxy.cfg (servers on loopback ports), kept unchanged.
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/seed/haproxy.cfg"
    ))
}

#[test]
fn the_seed_configuration_reads_as_written() {
    let cfg = parse_file(&[seed()]).expect("the seed configuration is valid");
    let g = &cfg.global;
    assert_eq!(g.maxconn, Some(4000));
    assert!(g.daemon);
    assert_eq!(g.user.as_deref(), Some("haproxy"));
    assert_eq!(g.chroot.as_deref(), Some(Path::new("/var/lib/haproxy")));
    assert_eq!(
        g.stats_socket.as_deref(),
        Some(Path::new("/var/lib/haproxy/stats"))
    );
    assert!(matches!(g.log[..], [LogTarget::Udp { facility: 18, .. }]));

    let mq = cfg.proxy("rabbitmq_cluster").expect("the AMQP listener");
    assert_eq!(mq.kind, ProxyKind::Listen);
    assert_eq!(mq.mode, Mode::Tcp);
    assert_eq!(mq.binds, ["127.0.0.1:5672".parse().unwrap()]);
    assert_eq!(mq.balance, Balance::RoundRobin);
    // Its own timeouts override the defaults; the rest is inherited.
    assert_eq!(mq.timeouts.connect, Some(Duration::from_secs(1)));
    assert_eq!(mq.timeouts.client, Some(Duration::from_secs(10)));
    assert_eq!(mq.timeouts.check, Some(Duration::from_secs(10)));
    assert_eq!(mq.timeouts.queue, Some(Duration::from_secs(60)));
    assert_eq!(mq.retries, 3);
    assert_eq!(mq.maxconn, Some(3000));
    assert!(mq.options.redispatch && mq.options.clitcpka && mq.options.tcplog);
    assert!(!mq.log.is_empty(), "'log global' brings the global target");
    let names: Vec<&str> = mq.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2"]);
    let node1 = &mq.servers[0].params;
    assert!(node1.check);
    assert_eq!(node1.inter, Duration::from_secs(5));
    assert_eq!((node1.rise, node1.fall), (2, 3));

    let stats = cfg.proxy("http_front").expect("the stats listener");
    assert_eq!(stats.mode, Mode::Http, "inherited from defaults");
    let page = stats.stats.as_ref().expect("stats settings");
    assert_eq!(page.uri, "/haproxy_stats");
    assert_eq!(page.auth, [("admin".to_string(), "admin".to_string())]);
    assert_eq!(page.refresh, Some(Duration::from_secs(30)));
}

#[test]
fn http_settings_inherited_by_a_tcp_proxy_get_haproxys_warnings() {
    let cfg = parse_file(&[seed()]).unwrap();
    let w = cfg.warnings.join("\n");
    assert!(
        w.contains(
            "'option forwardfor' ignored for proxy 'rabbitmq_cluster' as it requires HTTP mode."
        ),
        "{w}"
    );
    assert!(w.contains("'option http-server-close' ignored for proxy 'rabbitmq_cluster'"));
    assert!(w.contains("'timeout http-request' ignored for proxy 'rabbitmq_cluster'"));
    assert!(!w.contains("httplog"), "the listener sets tcplog itself");
    assert!(
        !w.contains("'http_front'"),
        "the stats listener is an HTTP proxy"
    );

    let cfg = parse_str(
        "t.cfg",
        "defaults\n    mode http\n    option httplog\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nlisten mq\n    mode tcp\n    bind 127.0.0.1:0\n    server a 127.0.0.1:1\n",
    )
    .unwrap();
    assert_eq!(
        cfg.warnings,
        [
            "config : 'option httplog' not usable with proxy 'mq' (needs 'mode http'). Falling back to 'option tcplog'."
        ]
    );
}

#[test]
fn a_later_defaults_section_starts_from_scratch() {
    let cfg = parse_str(
        "t.cfg",
        "defaults\n    timeout connect 7s\n    balance leastconn\nbackend one\n    server a 127.0.0.1:1\ndefaults\n    timeout server 3s\nbackend two\n    server a 127.0.0.1:1\n",
    )
    .unwrap();
    let one = cfg.proxy("one").unwrap();
    let two = cfg.proxy("two").unwrap();
    assert_eq!(one.balance, Balance::LeastConn);
    assert_eq!(one.timeouts.connect, Some(Duration::from_secs(7)));
    assert_eq!(two.balance, Balance::RoundRobin);
    assert_eq!(two.timeouts.connect, None);
    assert_eq!(two.timeouts.server, Some(Duration::from_secs(3)));
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("missing timeouts for backend 'two'")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn frontends_reach_backends_and_default_server_applies() {
    let cfg = parse_str(
        "t.cfg",
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n    default-server inter 200ms fall 2\nfrontend amqp\n    bind 127.0.0.1:0,127.0.0.1:0\n    default_backend nodes\nbackend nodes\n    option amqp-check\n    server a 127.0.0.1:1 check rise 1\n    server b 127.0.0.1:2 check backup weight 10 maxconn 5 on-marked-down shutdown-sessions\n",
    )
    .unwrap();
    let fe = cfg.proxy("amqp").unwrap();
    assert_eq!(fe.binds.len(), 2);
    assert_eq!(fe.target_backend(), Some("nodes"));
    let be = cfg.proxy("nodes").unwrap();
    assert!(be.options.amqp_check);
    assert!(
        be.options.splice_request && be.options.splice_response,
        "warren-lb splices unless told not to"
    );
    let (a, b) = (&be.servers[0].params, &be.servers[1].params);
    assert_eq!(a.inter, Duration::from_millis(200));
    assert_eq!((a.rise, a.fall), (1, 2));
    assert!(b.backup && b.shutdown_sessions);
    assert_eq!((b.weight, b.maxconn), (10, Some(5)));
}

#[test]
fn splice_options_are_haproxys() {
    let text = |opts: &str| {
        format!(
            "listen x\n    bind 127.0.0.1:0\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n{opts}    server a 127.0.0.1:1\n"
        )
    };
    let opts = |o: &str| {
        let cfg = parse_str("t.cfg", &text(o)).unwrap();
        let p = cfg.proxy("x").unwrap();
        (p.options.splice_request, p.options.splice_response)
    };
    assert_eq!(opts(""), (true, true), "on by default");
    assert_eq!(opts("    no option splice-auto\n"), (false, false));
    assert_eq!(
        opts("    no option splice-auto\n    option splice-request\n"),
        (true, false)
    );
    assert_eq!(opts("    no option splice-response\n"), (true, false));
    assert_eq!(opts("    option splice-auto\n"), (true, true));
}

/// Each bad line and the start of the error it must give, with its line number.
#[test]
fn what_cannot_run_is_an_error_with_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "listen x\n    bind 127.0.0.1:0\n    balance uri\n",
            3,
            "balance 'uri' is not supported",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    option httpchk\n",
            3,
            "'option httpchk' is not supported",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    server a 127.0.0.1\n",
            3,
            "missing port",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    server a 127.0.0.1:1 check inter soon\n",
            3,
            "'inter'",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    server a 127.0.0.1:1 send-proxy\n",
            3,
            "server option 'send-proxy' is not supported",
        ),
        (
            "listen x\n    bind 127.0.0.1:0 ssl crt /x.pem\n",
            2,
            "bind option 'ssl' is not supported",
        ),
        (
            "global\n    nbproc 4\n",
            2,
            "unknown keyword 'nbproc' in 'global' section",
        ),
        (
            "backend b\n    bind 127.0.0.1:0\n",
            2,
            "'bind' is not allowed in a 'backend' section",
        ),
        (
            "frontend f\n    bind 127.0.0.1:0\n    use_backend b if { src 10.0.0.1 }\n",
            3,
            "ACL conditions",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    timeout client-fin 1s\n",
            3,
            "'timeout client-fin' is not supported",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    stats realm \"open\n",
            3,
            "unmatched quote",
        ),
        (
            "userlist admins\n",
            1,
            "section 'userlist' is not supported",
        ),
        ("    maxconn 10\n", 1, "out of section"),
        (
            "listen x\n    bind 127.0.0.1:0\n    frobnicate\n",
            3,
            "unknown keyword 'frobnicate' in 'listen' section",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\nlisten x\n    bind 127.0.0.1:0\n",
            3,
            "proxy 'x' is declared twice",
        ),
        (
            "listen x\n    bind 127.0.0.1:0\n    server a 127.0.0.1:1\n    server a 127.0.0.1:2\n",
            4,
            "server 'a' is declared twice",
        ),
    ];
    for (text, line, message) in cases {
        let e = parse_str("bad.cfg", text).expect_err(text);
        let at =
            e.at.as_ref()
                .unwrap_or_else(|| panic!("no location for {text:?}"));
        assert_eq!(
            (at.file.as_str(), at.line),
            ("bad.cfg", *line),
            "{text:?}: {e}"
        );
        assert!(e.message.contains(message), "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("parsing [bad.cfg:{line}] : "))
        );
    }
}

#[test]
fn whole_proxy_problems_name_the_proxy() {
    let e = parse_str("t.cfg", "frontend f\n    timeout client 1s\n    default_backend b\nbackend b\n    server a 127.0.0.1:1\n").unwrap_err();
    assert!(e.message.contains("has no 'bind' directive"), "{e}");
    assert_eq!(e.at.unwrap().line, 1);
    let e = parse_str(
        "t.cfg",
        "frontend f\n    bind 127.0.0.1:0\n    default_backend nowhere\n",
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("unable to find required backend 'nowhere'"),
        "{e}"
    );
    let e = parse_str(
        "t.cfg",
        "listen web\n    mode http\n    bind 127.0.0.1:0\n    server a 127.0.0.1:80\n",
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("'mode http' is supported only for the statistics page"),
        "{e}"
    );
    let e = parse_str(
        "t.cfg",
        "listen stats\n    mode http\n    bind 127.0.0.1:0\n    stats uri /s\n",
    )
    .unwrap_err();
    assert!(e.message.contains("needs 'stats auth"), "{e}");
}
