//! `warren`: runs a broker node: the AMQP listener, and the cluster port on which other nodes
//! and warrenctl reach it once they have proven the cookie.

mod app;
mod control;
mod entities;
mod listing;
mod membership;
mod pretty;
mod quorum_verbs;
mod transport;

use clap::Parser;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use warren_broker::{ClusterSetup, Config};

#[derive(Parser, Debug)]
#[command(
    name = "warren",
    version,
    about = "A RabbitMQ-compatible AMQP 0-9-1 broker node"
)]
struct Args {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address for AMQP clients [default: 0.0.0.0:5672].
    #[arg(long)]
    amqp_listen: Option<SocketAddr>,
    /// Directory for the node's data [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The node's name, name@host [default: warren@<hostname>].
    #[arg(long)]
    node_name: Option<String>,
    /// Address for other nodes and warrenctl [default: 0.0.0.0:25672].
    #[arg(long)]
    cluster_listen: Option<SocketAddr>,
    /// The cookie file, unless WARREN_COOKIE is set [default: ~/.warren.cookie].
    #[arg(long)]
    cookie_file: Option<PathBuf>,
}

fn load_config(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(listen) = args.amqp_listen {
        config.amqp.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = dir.clone();
    }
    if let Some(name) = &args.node_name {
        config.node.name = name.clone();
    } else if config.node.name == warren_broker::config::NodeConfig::default().name {
        config.node.name = warren_cluster::name::default_node_name();
    }
    if let Some(listen) = args.cluster_listen {
        config.cluster.listen = listen;
    }
    if let Some(file) = &args.cookie_file {
        config.cluster.cookie_file = Some(file.clone());
    }
    warren_cluster::NodeAddr::parse(&config.node.name)?;
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft reports every failed call to a node that is down, several times a
                // second; the node logs links going down and leaders changing instead.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let node = config.node.name.clone();
    let _lock = match warren_broker::data_lock::DataDirLock::acquire(&config.node.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    let cookie = match warren_cluster::Cookie::find(config.cluster.cookie_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    let cluster_listen = config.cluster.listen;
    let me = match warren_cluster::NodeAddr::parse(&config.node.name) {
        Ok(me) => me,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    // The cluster port first: the metadata group starts with the broker and talks over it.
    let timing = warren_cluster::Timing::default();
    let mesh = match warren_cluster::Mesh::start(me.clone(), cluster_listen, cookie, timing).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("warren: cannot listen on {cluster_listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Taken before any link can bring a request: a frame for a channel nobody receives is
    // dropped.
    let control_requests = mesh.receive(warren_cluster::Channel::Control);
    let mut peers = Vec::new();
    for p in &config.cluster.peers {
        match warren_cluster::NodeAddr::parse(p) {
            Ok(p) if p.name == me.name => {}
            Ok(p) => peers.push((p.name.clone(), format!("{}:{}", p.name, p.port))),
            Err(e) => {
                eprintln!("warren: [cluster] peers: {e}");
                return ExitCode::from(2);
            }
        }
    }
    for (_, addr) in &peers {
        if let Ok(p) = warren_cluster::NodeAddr::parse(addr) {
            mesh.keep_connected(p);
        }
    }
    let running = Arc::new(OnceLock::new());
    let links = transport::MeshTransport::start(&mesh, running.clone());
    let setup = ClusterSetup {
        transport: links.calls(),
        address: format!("{}:{}", me.name, mesh.listen_addr().port()),
        peers,
        links: links.clone(),
        quorum: transport::quorum_transport(&mesh, running.clone()),
        starting: Default::default(),
    };
    let app = app::App::new(config, setup);
    let _ = running.set(app.clone());
    // warrenctl is answered from now on, while the broker starts too: `await_startup` is
    // meant to be run right after the node is launched.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let control = control::Control::new(app.clone(), mesh.clone(), links, stop_tx);
    tokio::spawn(control.serve(control_requests));
    let amqp = match app.start().await {
        Ok(addr) => addr,
        Err(app::StartError::Open(e)) => {
            eprintln!("warren: {e}");
            mesh.shut_down();
            return ExitCode::from(2);
        }
        Err(app::StartError::Listen(e)) => {
            eprintln!("warren: {e}");
            mesh.shut_down();
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(local_addr = %mesh.listen_addr(), "cluster listener started");
    tracing::info!(%node, addr = %amqp, "warren node running");
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = stop_rx.changed() => {}
    }
    tracing::info!("shutting down");
    app.stop().await;
    mesh.shut_down();
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the node can still be stopped by killing it.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
