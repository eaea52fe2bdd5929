//! `warren-lb`: runs an HAProxy configuration (`-f haproxy.cfg`) for AMQP traffic.
//! Command line in HAProxy's style: `-f` (repeatable), `-c` (check and exit), `-db` (stay in
//! the foreground), `-D` (daemon), `-p <pidfile>`, `-q` (quiet).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use warren_lb::config;
use warren_lb::runtime::Runtime;
use warren_lb::supervisor::{Supervisor, bind_all};

#[derive(Parser, Debug)]
#[command(
    name = "warren-lb",
    version,
    about = "A TCP load balancer for AMQP that runs HAProxy's configuration"
)]
struct Cli {
    /// Configuration file (may be given several times; read in order)
    #[arg(short = 'f', required = true)]
    files: Vec<PathBuf>,
    /// Check the configuration and exit
    #[arg(short = 'c')]
    check: bool,
    /// Stay in the foreground (HAProxy's -db)
    #[arg(long = "db")]
    foreground: bool,
    /// Go to the background (like `daemon` in `global`)
    #[arg(short = 'D')]
    daemon: bool,
    /// Write the process id here
    #[arg(short = 'p')]
    pidfile: Option<PathBuf>,
    /// Print no warnings
    #[arg(short = 'q')]
    quiet: bool,
}

fn main() -> ExitCode {
    // HAProxy spells "stay in the foreground" -db, which is not a single-dash flag to clap.
    let args = std::env::args().map(|a| if a == "-db" { "--db".to_string() } else { a });
    let cli = Cli::parse_from(args);
    let pid = std::process::id();
    let alert = |m: &str| eprintln!("[ALERT]    ({pid}) : {m}");
    let cfg = match config::parse_file(&cli.files) {
        Ok(c) => c,
        Err(e) => {
            alert(&format!("config : {e}"));
            alert("config : Fatal errors found in configuration.");
            return ExitCode::from(1);
        }
    };
    if !cli.quiet {
        for w in &cfg.warnings {
            eprintln!("[WARNING]  ({pid}) : {w}");
        }
    }
    if cli.check {
        println!("Configuration file is valid");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    raise_file_limit();
    let foreground = cli.foreground || !(cfg.global.daemon || cli.daemon);
    let rt = Runtime::new(&cfg, foreground);
    let bound = match bind_all(&rt) {
        Ok(b) => b,
        Err(e) => {
            alert(&e);
            return ExitCode::from(1);
        }
    };
    let control = match cfg.global.stats_socket.as_ref() {
        Some(path) => match bind_control(path, cfg.global.stats_socket_mode) {
            Ok(l) => Some(l),
            Err(e) => {
                alert(&format!(
                    "Starting frontend GLOBAL: cannot bind UNIX socket ({e}) [{}]",
                    path.display()
                ));
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    if !foreground {
        if let Err(e) = daemonize() {
            alert(&format!("cannot go to the background: {e}"));
            return ExitCode::from(1);
        }
    }
    if let Some(pidfile) = cli.pidfile.as_ref().or(cfg.global.pidfile.as_ref()) {
        if let Err(e) = std::fs::write(pidfile, format!("{}\n", std::process::id())) {
            alert(&format!("cannot create pidfile {}: {e}", pidfile.display()));
            return ExitCode::from(1);
        }
    }
    if let Err(e) = drop_privileges(&cfg.global) {
        alert(&e);
        return ExitCode::from(1);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.global.nbthread {
        builder.worker_threads(n as usize);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            alert(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli.files, foreground, rt, bound, control));
    ExitCode::SUCCESS
}

/// Each session holds two sockets and, when splicing, two pipes: like HAProxy, raise the
/// open-file limit to what the system allows rather than fail at a thousand.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn bind_control(
    path: &std::path::Path,
    mode: Option<u32>,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by an earlier run would make bind fail.
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.unwrap_or(0o600)))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn daemonize() -> Result<(), String> {
    use nix::unistd::{ForkResult, fork, setsid};
    // Safety: called before any thread is started (the async runtime comes later).
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(|e| e.to_string())?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| e.to_string())?;
    // Standard streams go to /dev/null, as a daemon's do.
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `chroot`, `group` and `user` from `global`, applied after every socket is bound. Without
/// root they cannot apply, and a user or group that does not exist is skipped: both with a
/// warning, so that a configuration written for a packaged HAProxy still runs.
fn drop_privileges(g: &config::Global) -> Result<(), String> {
    let pid = std::process::id();
    let warn = |m: String| eprintln!("[WARNING]  ({pid}) : {m}");
    let root = nix::unistd::geteuid().is_root();
    if g.chroot.is_none() && g.user.is_none() && g.group.is_none() {
        return Ok(());
    }
    if !root {
        warn("not started as root: 'chroot', 'user' and 'group' are not applied".into());
        return Ok(());
    }
    let user = match &g.user {
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some(u),
            _ => {
                warn(format!("user '{name}' does not exist; staying root"));
                None
            }
        },
        None => None,
    };
    let group = match &g.group {
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(gr)) => Some(gr.gid),
            _ => {
                warn(format!(
                    "group '{name}' does not exist; keeping the current group"
                ));
                None
            }
        },
        None => user.as_ref().map(|u| u.gid),
    };
    if let Some(dir) = &g.chroot {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::os::unix::fs::chroot(dir))
            .and_then(|()| std::env::set_current_dir("/"))
            .map_err(|e| format!("Cannot chroot({}): {e}", dir.display()))?;
    }
    if let Some(gid) = group {
        nix::unistd::setgroups(&[gid]).map_err(|e| format!("cannot set groups: {e}"))?;
        nix::unistd::setgid(gid).map_err(|e| format!("cannot set gid: {e}"))?;
    }
    if let Some(u) = user {
        nix::unistd::setuid(u.uid).map_err(|e| format!("cannot set uid: {e}"))?;
    }
    Ok(())
}

async fn run(
    files: Vec<PathBuf>,
    foreground: bool,
    rt: Runtime,
    bound: std::collections::HashMap<std::net::SocketAddr, std::net::TcpListener>,
    control: Option<std::os::unix::net::UnixListener>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let pid = std::process::id();
    let mut sup = Supervisor::start(files, foreground, rt, bound, control);
    let (Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("[ALERT]    ({pid}) : cannot install the reload signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = stop_signal() => break,
            _ = hup.recv() => reload(&mut sup),
            _ = usr2.recv() => reload(&mut sup),
        }
    }
    // Graceful stop: no new sessions; established ones finish on their own, unless a second
    // signal says not to wait.
    sup.stop_accepting();
    eprintln!("[WARNING]  ({pid}) : Proxies stopped; waiting for established sessions to end.");
    let rt = sup.current.load_full();
    tokio::select! {
        _ = sessions_done(&rt) => {}
        _ = stop_signal() => {}
    }
}

fn reload(sup: &mut Supervisor) {
    let pid = std::process::id();
    match sup.reload() {
        Ok(n) => eprintln!("[NOTICE]   ({pid}) : Reloaded the configuration ({n} proxies)."),
        Err(e) => {
            eprintln!("[ALERT]    ({pid}) : Reload failed, the running configuration stays: {e}")
        }
    }
}

async fn sessions_done(rt: &Runtime) {
    while rt
        .process
        .actconn
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut usr1), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = usr1.recv() => {}
        _ = int.recv() => {}
    }
}
