//! warrenctl against a running node, as an operator uses it: rabbitmqctl's lines, tables,
//! JSON and exit codes; the cookie decides who may ask; `stop` stops the node.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;
use support::{COOKIE, Node, lapin_channel, warrenctl_path};

#[test]
fn a_queue_deleted_and_declared_again_keeps_its_messages_across_kill_9() {
    let node = Node::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", node.amqp);
    rt.block_on(async {
        use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
        let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("again".into(), durable, Default::default())
            .await
            .unwrap();
        ch.queue_delete("again".into(), Default::default())
            .await
            .unwrap();
        ch.queue_declare("again".into(), durable, Default::default())
            .await
            .unwrap();
        for _ in 0..3 {
            support::publish_confirmed(&ch, "again", b"kept").await;
        }
    });
    let node = node.kill_and_restart();
    let (_, out, _) = node.ctl(&["-q", "list_queues"]);
    assert_eq!(
        out, "name\tmessages\nagain\t3\n",
        "replaying delete then declare left the log alone"
    );
}

#[test]
fn durable_changes_survive_kill_9_from_the_journal() {
    let node = Node::start();
    assert_eq!(node.ctl(&["add_user", "carol", "pw"]).0, 0);
    assert_eq!(node.ctl(&["add_vhost", "kept"]).0, 0);
    assert_eq!(
        node.ctl(&["set_permissions", "-p", "kept", "carol", ".*", ".*", ".*"])
            .0,
        0
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
        let (_conn, ch) = lapin_channel(node.amqp).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for q in ["d1", "d2", "gone"] {
            ch.queue_declare(q.into(), durable, Default::default())
                .await
                .unwrap();
        }
        ch.exchange_declare(
            "dx".into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "d1".into(),
            "dx".into(),
            "a.#".into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
        ch.queue_delete("gone".into(), Default::default())
            .await
            .unwrap();
        ch.queue_declare(
            "transient".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    });
    // Every change above was answered, so it is on disk, though no snapshot was taken.
    let node = node.kill_and_restart();
    let (_, out, _) = node.ctl(&["-q", "list_queues", "name"]);
    assert_eq!(out, "name\nd1\nd2\n");
    let (_, out, _) = node.ctl(&[
        "-q",
        "list_bindings",
        "source_name",
        "destination_name",
        "routing_key",
    ]);
    assert_eq!(
        out,
        "source_name\tdestination_name\trouting_key\n\td1\td1\n\td2\td2\ndx\td1\ta.#\n"
    );
    let (_, out, _) = node.ctl(&["-q", "list_permissions", "-p", "kept"]);
    assert_eq!(out, "user\tconfigure\twrite\tread\ncarol\t.*\t.*\t.*\n");
    // A second life on top of the first: the journal goes on where it was.
    assert_eq!(node.ctl(&["delete_user", "carol"]).0, 0);
    let node = node.kill_and_restart();
    let (_, out, _) = node.ctl(&["-q", "list_users"]);
    assert_eq!(out, "user\ttags\nguest\t[administrator]\n");
}

#[test]
fn users_vhosts_and_permissions_as_rabbitmqctl_shows_them() {
    let node = Node::start();
    let (code, out, _) = node.ctl(&["add_user", "bob", "secret"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Adding user \"bob\" ...\nDone. Don't forget to grant the user permissions to some virtual hosts! See 'warrenctl help set_permissions' to learn more.\n"
    );
    let (_, out, _) = node.ctl(&["list_users"]);
    assert_eq!(
        out,
        "Listing users ...\nuser\ttags\nbob\t[]\nguest\t[administrator]\n"
    );
    let (_, out, _) = node.ctl(&["list_users", "--formatter", "json"]);
    assert_eq!(
        out,
        "[\n{\"user\":\"bob\",\"tags\":[]}\n,{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n]\n"
    );
    assert_eq!(
        node.ctl(&["set_user_tags", "bob", "management", "monitoring"])
            .0,
        0
    );
    let (_, out, _) = node.ctl(&["-q", "list_users"]);
    assert_eq!(
        out,
        "user\ttags\nbob\t[management, monitoring]\nguest\t[administrator]\n"
    );

    assert_eq!(node.ctl(&["add_vhost", "v1"]).0, 0);
    let (_, out, _) = node.ctl(&["-q", "list_vhosts"]);
    assert_eq!(out, "name\n/\nv1\n");
    let (code, out, _) = node.ctl(&["set_permissions", "-p", "v1", "bob", "^a", "^b", "^c"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Setting permissions for user \"bob\" in vhost \"v1\" ...\n"
    );
    let (_, out, _) = node.ctl(&["list_permissions", "-p", "v1"]);
    assert_eq!(
        out,
        "Listing permissions for vhost \"v1\" ...\nuser\tconfigure\twrite\tread\nbob\t^a\t^b\t^c\n"
    );
    assert_eq!(node.ctl(&["clear_permissions", "-p", "v1", "bob"]).0, 0);
    assert_eq!(node.ctl(&["-q", "list_permissions", "-p", "v1"]).1, "");

    // A changed password is the one that logs in.
    assert_eq!(node.ctl(&["change_password", "guest", "newpass"]).0, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = |pw: &str| format!("amqp://guest:{pw}@{}/%2f", node.amqp);
    rt.block_on(async {
        let props = lapin::ConnectionProperties::default();
        assert!(
            lapin::Connection::connect(&url("guest"), props.clone())
                .await
                .is_err()
        );
        assert!(
            lapin::Connection::connect(&url("newpass"), props)
                .await
                .is_ok()
        );
    });

    assert_eq!(node.ctl(&["delete_vhost", "v1"]).0, 0);
    assert_eq!(node.ctl(&["delete_user", "bob"]).0, 0);
    let (_, out, _) = node.ctl(&["-q", "list_users"]);
    assert_eq!(out, "user\ttags\nguest\t[administrator]\n");
}

/// Every listing verb, with its default columns or named ones, prints with `--formatter
/// json` the rows it prints as text: an array of objects keyed by the text's header.
#[test]
fn every_listing_speaks_json() {
    let node = Node::start();
    assert_eq!(
        node.ctl(&["set_policy", "p", "^q", "{\"max-length\":5}"]).0,
        0
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _client = rt.block_on(async {
        let (conn, ch) = lapin_channel(node.amqp).await;
        ch.queue_declare("q".into(), Default::default(), Default::default())
            .await
            .unwrap();
        // Kept: a consumer dropped is cancelled.
        let consumer = ch
            .basic_consume(
                "q".into(),
                "tag".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        (conn, ch, consumer)
    });
    let listings: &[&[&str]] = &[
        &["list_queues"],
        &["list_queues", "name", "messages", "consumers"],
        &["list_exchanges"],
        &["list_exchanges", "name", "type"],
        &["list_bindings"],
        &["list_connections"],
        &["list_connections", "user", "vhost"],
        &["list_channels"],
        &["list_consumers"],
        &["list_users"],
        &["list_vhosts"],
        &["list_permissions"],
        &["list_policies"],
    ];
    for args in listings {
        let (code, text, err) = node.ctl(&[&["-q"], *args].concat());
        assert_eq!(code, 0, "{args:?}: {err}");
        let mut lines = text.lines();
        let header: std::collections::BTreeSet<&str> =
            lines.next().unwrap_or_default().split('\t').collect();
        let rows = lines.count();
        assert!(rows > 0, "{args:?} lists nothing: {text}");
        let (code, json, err) = node.ctl(&[*args, &["--formatter", "json"]].concat());
        assert_eq!(code, 0, "{args:?} json: {err}");
        let json: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {json}"));
        let array = json
            .as_array()
            .unwrap_or_else(|| panic!("{args:?}: {json}"));
        assert_eq!(array.len(), rows, "{args:?}: {json}");
        for row in array {
            let keys: std::collections::BTreeSet<&str> = row
                .as_object()
                .unwrap_or_else(|| panic!("{args:?}: {row}"))
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, header, "{args:?}");
        }
    }
}

#[test]
fn refusals_carry_rabbitmqctl_s_messages_and_exit_codes() {
    let node = Node::start();
    let (code, _, err) = node.ctl(&["delete_user", "nosuch"]);
    assert_eq!(
        (code, err.as_str()),
        (67, "Error:\nUser \"nosuch\" does not exist\n")
    );
    let (code, _, err) = node.ctl(&["add_user", "guest", "x"]);
    assert_eq!(
        (code, err.as_str()),
        (70, "Error:\nUser \"guest\" already exists\n")
    );
    let (code, _, err) = node.ctl(&["list_permissions", "-p", "nov"]);
    assert_eq!(
        (code, err.as_str()),
        (65, "Error:\nVirtual host 'nov' does not exist\n")
    );
    let (code, _, err) = node.ctl(&["add_user", "bob"]);
    assert_eq!(code, 64);
    assert!(
        err.starts_with("Error (argument validation): not enough arguments."),
        "{err}"
    );
    let (code, _, err) = node.ctl(&["frobnicate"]);
    assert_eq!(code, 64);
    assert!(err.contains("Command 'frobnicate' not found."), "{err}");
    let (code, _, err) = node.ctl(&["list_queues", "name", "bogus"]);
    assert_eq!(code, 64);
    assert!(err.contains("Unknown column: bogus"), "{err}");
}

#[test]
fn only_the_cookie_gets_an_answer() {
    let node = Node::start();
    let (code, out, err) = node.ctl_with("SOMETHING-ELSE", &["list_users"]);
    assert_eq!(code, 69);
    assert!(!out.contains("guest"), "nothing was answered: {out}");
    assert!(
        err.contains("unable to perform an operation on node 'warren@localhost'"),
        "{err}"
    );
    assert!(err.contains("cookie"), "{err}");
    assert!(
        node.logged("does not hold this cluster's cookie"),
        "the node logs the refusal"
    );
    // Nobody listening at all.
    let (code, _, err) = Command::new(warrenctl_path())
        .args(["-n", "warren@localhost:1", "status"])
        .env("WARREN_COOKIE", COOKIE)
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 69);
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn listings_cluster_status_and_stop() {
    let mut node = Node::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
        let (conn, ch) = lapin_channel(node.amqp).await;
        let mut args = lapin::types::FieldTable::default();
        args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(10));
        ch.queue_declare("work".into(), QueueDeclareOptions::default(), args)
            .await
            .unwrap();
        for _ in 0..3 {
            ch.basic_publish(
                "".into(),
                "work".into(),
                BasicPublishOptions::default(),
                b"x",
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let _ = conn.close(200, "bye".into()).await;
    });
    let (_, out, _) = node.ctl(&["list_queues"]);
    assert_eq!(
        out,
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\nwork\t3\n"
    );
    // A consumer, on a connection that stays open while it is listed.
    let consumer = rt.block_on(async {
        use lapin::options::{BasicConsumeOptions, BasicQosOptions};
        let (conn, ch) = lapin_channel(node.amqp).await;
        ch.basic_qos(7, BasicQosOptions::default()).await.unwrap();
        let c = ch
            .basic_consume(
                "work".into(),
                "ctag1".into(),
                BasicConsumeOptions::default(),
                Default::default(),
            )
            .await
            .unwrap();
        (conn, ch, c)
    });
    let (_, out, _) = node.ctl(&["list_connections"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "Listing connections ...",
            "user\tpeer_host\tpeer_port\tstate"
        ]
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[2].starts_with("guest\t127.0.0.1\t") && lines[2].ends_with("\trunning"),
        "{out}"
    );
    // Its channel: one consumer, the three messages delivered and not acknowledged.
    let want = "number\tconsumer_count\tmessages_unacknowledged\tprefetch_count\tconfirm\n1\t1\t3\t7\tfalse\n";
    let mut out = String::new();
    for _ in 0..50 {
        out = node
            .ctl(&[
                "-q",
                "list_channels",
                "number",
                "consumer_count",
                "messages_unacknowledged",
                "prefetch_count",
                "confirm",
            ])
            .1;
        if out == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(out, want);
    // As rabbitmqctl counts them: none ready, three delivered and not acknowledged; the
    // arguments as Erlang prints them, and in JSON with their types.
    let (_, out, _) = node.ctl(&[
        "-q",
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "messages",
        "state",
        "exclusive",
        "type",
        "members",
        "arguments",
    ]);
    assert_eq!(
        out,
        "name\tmessages_ready\tmessages_unacknowledged\tmessages\tstate\texclusive\ttype\tmembers\targuments\nwork\t0\t3\t3\trunning\tfalse\tclassic\t\t[{\"x-max-length\",10}]\n"
    );
    let (_, out, _) = node.ctl(&["list_queues", "name", "arguments", "--formatter", "json"]);
    assert_eq!(
        out,
        "[\n{\"name\":\"work\",\"arguments\":[[\"x-max-length\",\"signedint\",10]]}\n]\n"
    );
    let (_, out, _) = node.ctl(&[
        "-q",
        "list_exchanges",
        "name",
        "type",
        "arguments",
        "policy",
        "internal",
    ]);
    assert!(
        out.starts_with("name\ttype\targuments\tpolicy\tinternal\n")
            && out.contains("\namq.rabbitmq.trace\ttopic\t[]\t\ttrue\n"),
        "{out}"
    );
    let (_, out, _) = node.ctl(&["list_channels"]);
    assert!(
        out.starts_with(
            "Listing channels ...\npid\tuser\tconsumer_count\tmessages_unacknowledged\n"
        ),
        "{out}"
    );
    let (_, out, _) = node.ctl(&[
        "-q",
        "list_consumers",
        "queue_name",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
    ]);
    assert_eq!(
        out,
        "queue_name\tconsumer_tag\tack_required\tprefetch_count\tactive\nwork\tctag1\ttrue\t7\ttrue\n"
    );
    rt.block_on(consumer.0.close(200, "bye".into())).unwrap();
    let (_, out, _) = node.ctl(&[
        "list_queues",
        "name",
        "consumers",
        "durable",
        "--formatter",
        "json",
    ]);
    assert_eq!(
        out,
        "[\n{\"name\":\"work\",\"consumers\":0,\"durable\":false}\n]\n"
    );
    let (_, out, _) = node.ctl(&["-q", "list_bindings"]);
    assert_eq!(
        out,
        "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n\texchange\twork\tqueue\twork\t[]\n"
    );
    let (code, out, _) = node.ctl(&["cluster_status", "--formatter", "json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["running_nodes"],
        serde_json::json!(["warren@localhost"])
    );
    assert_eq!(
        status["disk_nodes"],
        serde_json::json!(["warren@localhost"])
    );
    assert_eq!(status["ram_nodes"], serde_json::json!([]));
    assert_eq!(
        status["listeners"]["warren@localhost"][1]["port"],
        serde_json::json!(node.amqp.port())
    );
    let (_, out, _) = node.ctl(&["cluster_status"]);
    assert!(
        out.starts_with("Cluster status of node warren@localhost ...\nBasics\n"),
        "{out}"
    );
    assert_eq!(node.ctl(&["await_startup"]).0, 0);
    let (code, out, _) = node.ctl(&["stop"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Stopping and halting node warren@localhost ...\n")
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}

#[test]
fn a_cookie_file_others_can_read_stops_the_node_from_starting() {
    let dir = std::env::temp_dir().join(format!("warren-cookie-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cookie = dir.join("cookie");
    std::fs::write(&cookie, "SECRET").unwrap();
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--amqp-listen",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--cookie-file")
        .arg(&cookie)
        .env_remove("WARREN_COOKIE")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be accessible by owner only"), "{err}");
}

/// Without `WARREN_COOKIE` or `--cookie-file`, the node makes `~/.warren.cookie` at its
/// first start (readable by its owner only, as `.erlang.cookie`), and warrenctl, run by the
/// same user, finds it there; a `WARREN_COOKIE` that differs comes first and is refused.
#[test]
fn the_cookie_is_made_at_first_start_and_found_in_home() {
    let home = support::scratch_dir("cookie-home");
    std::fs::create_dir_all(&home).unwrap();
    let port = support::free_port();
    let name = format!("home@localhost:{port}");
    let mut node = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--node-name",
            "home@localhost",
            "--amqp-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--cluster-listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(home.join("data"))
        .env("HOME", &home)
        .env_remove("WARREN_COOKIE")
        .stderr(std::fs::File::create(home.join("log")).unwrap())
        .spawn()
        .unwrap();
    let ctl = |cookie: Option<&str>, verb: &str| {
        let mut c = Command::new(warrenctl_path());
        c.args(["-n", &name, verb]).env("HOME", &home);
        match cookie {
            Some(v) => c.env("WARREN_COOKIE", v),
            None => c.env_remove("WARREN_COOKIE"),
        };
        c.output().unwrap()
    };
    let mut last = String::new();
    let started = support::within(Duration::from_secs(20), || {
        let out = ctl(None, "await_startup");
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success()
    });
    let refused = ctl(Some("NOT-THE-COOKIE"), "status");
    let cookie = home.join(".warren.cookie");
    let meta = std::fs::metadata(&cookie);
    let content = std::fs::read_to_string(&cookie).unwrap_or_default();
    let _ = node.kill();
    let _ = node.wait();
    let log = std::fs::read_to_string(home.join("log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&home);
    assert!(
        started,
        "warrenctl reached the node with the cookie from HOME: {last}\n{log}"
    );
    assert_eq!(meta.unwrap().permissions().mode() & 0o777, 0o400);
    assert_eq!(content.trim().len(), 20, "{content:?}");
    assert!(
        content.trim().chars().all(|c| c.is_ascii_uppercase()),
        "{content:?}"
    );
    assert_eq!(refused.status.code(), Some(69));
}

/// The node's name, its cluster listener, its data directory and its cookie file come from
/// the configuration file when no flag names them; warrenctl finds the node with the cookie
/// file it is given.
#[test]
fn the_config_file_names_the_node_its_cluster_port_and_cookie() {
    let dir = support::scratch_dir("config-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let port = support::free_port();
    let cookie = dir.join("cookie");
    std::fs::write(&cookie, "CONFIG-FILE-COOKIE").unwrap();
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
    let config = dir.join("warren.toml");
    std::fs::write(
        &config,
        format!(
            "[amqp]\nlisten = \"127.0.0.1:0\"\n[node]\nname = \"keyed@localhost\"\ndata_dir = {:?}\n[cluster]\nlisten = \"127.0.0.1:{port}\"\ncookie_file = {:?}\n",
            dir.join("data"),
            cookie
        ),
    )
    .unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--config")
        .arg(&config)
        .env_remove("WARREN_COOKIE")
        .env("HOME", &dir)
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let ctl = |verb: &str| {
        Command::new(warrenctl_path())
            .args(["-n", &format!("keyed@localhost:{port}"), "--cookie-file"])
            .arg(&cookie)
            .args([verb, "--formatter", "json"])
            .env_remove("WARREN_COOKIE")
            .env("HOME", &dir)
            .output()
            .unwrap()
    };
    let started = support::within(Duration::from_secs(20), || {
        ctl("await_startup").status.success()
    });
    let status = ctl("status");
    let made_data = dir.join("data").is_dir();
    let made_home_cookie = dir.join(".warren.cookie").exists();
    let _ = node.kill();
    let _ = node.wait();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(started, "{log}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["node"], "keyed@localhost", "{status}");
    assert_eq!(status["listeners"][0]["protocol"], "clustering", "{status}");
    assert_eq!(status["listeners"][0]["port"], port, "{status}");
    assert!(made_data, "the data directory from the file");
    assert!(
        !made_home_cookie,
        "the cookie file from the file, not HOME's"
    );
}

#[test]
fn stop_app_and_start_app_stop_the_broker_but_not_the_node() {
    let node = Node::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = |amqp: SocketAddr| {
        rt.block_on(async {
            let url = format!("amqp://guest:guest@{amqp}/%2f");
            lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
        })
    };
    assert!(connect(node.amqp).is_ok());
    assert_eq!(node.ctl(&["add_user", "kept", "pw"]).0, 0);
    let (code, out, _) = node.ctl(&["stop_app"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "Stopping warren application on node warren@localhost ...\n"
        )
    );
    assert!(
        connect(node.amqp).is_err(),
        "no AMQP while the app is stopped"
    );
    let (code, _, err) = node.ctl(&["list_users"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("this command requires the 'warren' app to be running on the target node"),
        "{err}"
    );
    assert_eq!(node.ctl(&["stop_app"]).0, 0, "stopping twice is fine");
    let (code, out, _) = node.ctl(&["start_app"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Starting node warren@localhost ...\n")
    );
    assert_eq!(node.ctl(&["await_startup"]).0, 0);
    let (_, out, _) = node.ctl(&["-q", "list_users"]);
    assert!(out.contains("kept\t[]"), "the data is the same: {out}");
    let (_, out, _) = node.ctl(&["status", "--formatter", "json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let port = status["listeners"][1]["port"].as_u64().unwrap() as u16;
    assert!(connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok());
}

/// A vhost made with `--default-queue-type quorum` gives an application that declares plain
/// durable queues quorum queues, with RabbitMQ 3.10's answers for what a quorum queue cannot
/// be; a 3.x mirroring policy is accepted with a warning that names the replacement.
#[test]
fn a_vhost_s_default_queue_type_and_mirroring_policies() {
    let node = Node::start();
    let (code, out, _) = node.ctl(&["add_vhost", "qv", "--default-queue-type", "quorum"]);
    assert_eq!((code, out.as_str()), (0, "Adding vhost \"qv\" ...\n"));
    let (code, _, err) = node.ctl(&["add_vhost", "sv", "--default-queue-type", "stream"]);
    assert_eq!((code, err.as_str()), (69, "Error:\ninvalid_queue_type\n"));
    // An existing vhost keeps what it had.
    assert_eq!(
        node.ctl(&["add_vhost", "qv", "--default-queue-type", "classic"])
            .0,
        0
    );
    let (_, out, _) = node.ctl(&["-q", "list_vhosts", "name", "default_queue_type"]);
    assert_eq!(out, "name\tdefault_queue_type\n/\tundefined\nqv\tquorum\n");
    assert_eq!(
        node.ctl(&["set_permissions", "-p", "qv", "guest", ".*", ".*", ".*"])
            .0,
        0
    );

    let url = format!("amqp://guest:guest@{}/qv", node.amqp);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use lapin::options::QueueDeclareOptions;
        use lapin::types::{AMQPValue, FieldTable};
        let (_conn, ch) = support::lapin_channel_at(&url).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("plain".into(), durable, FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare("transient".into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .unwrap();
        let mut classic = FieldTable::default();
        classic.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
        ch.queue_declare("named".into(), durable, classic)
            .await
            .unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        support::publish_confirmed(&ch, "plain", b"kept").await;
        // The default reaches the queue's arguments, so a plain redeclaration of the classic
        // queue differs in type, as in RabbitMQ.
        let err = ch
            .queue_declare("named".into(), durable, FieldTable::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inequivalent arg 'x-queue-type' for queue 'named' in vhost 'qv': received 'quorum' but current is 'classic'"),
            "{err}"
        );
        let (_conn, ch) = support::lapin_channel_at(&url).await;
        let mut priority = FieldTable::default();
        priority.insert("x-max-priority".into(), AMQPValue::LongInt(5));
        let err = ch
            .queue_declare("p1".into(), durable, priority)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid arg 'x-max-priority' for queue 'p1' in vhost 'qv' of queue type rabbit_quorum_queue"),
            "{err}"
        );
        let (_conn, ch) = support::lapin_channel_at(&url).await;
        let err = ch
            .queue_declare("".into(), durable, FieldTable::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Cannot declare a server-named queue for type rabbit_quorum_queue"),
            "{err}"
        );
    });
    let (_, out, _) = node.ctl(&["-q", "-p", "qv", "list_queues", "name", "type", "messages"]);
    assert_eq!(
        out,
        "name\ttype\tmessages\nnamed\tclassic\t0\nplain\tquorum\t1\ntransient\tclassic\t0\n"
    );

    let (code, out, err) = node.ctl(&["set_policy", "ha-all", ".*", r#"{"ha-mode":"all"}"#]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Setting policy \"ha-all\" for pattern \".*\" to \"{\"ha-mode\":\"all\"}\" with priority \"0\" for vhost \"/\" ...\n"
    );
    assert!(
        err.starts_with("Warning: policy 'ha-all' sets classic queue mirroring (ha-mode)"),
        "{err}"
    );
    assert!(err.contains("--default-queue-type quorum"), "{err}");
    assert!(node.logged("sets classic queue mirroring"));
    let (code, _, err) = node.ctl(&[
        "set_policy",
        "--priority",
        "2",
        "--apply-to",
        "queues",
        "lim",
        "^l",
        r#"{"max-length":1}"#,
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    let (_, out, _) = node.ctl(&["-q", "list_policies"]);
    assert_eq!(
        out,
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tha-all\t.*\tall\t{\"ha-mode\":\"all\"}\t0\n/\tlim\t^l\tqueues\t{\"max-length\":1}\t2\n"
    );
    assert_eq!(node.ctl(&["clear_policy", "ha-all"]).0, 0);
    let (_, out, _) = node.ctl(&["-q", "list_policies", "-p", "/"]);
    assert_eq!(out.lines().count(), 2, "{out}");
}
