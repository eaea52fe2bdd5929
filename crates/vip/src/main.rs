//! `warren-vip`: runs the VRRP instances of a keepalived.conf (`-f`), or checks it (`-t`).
//! It stays in the foreground (as keepalived does with `--dont-fork`, the way service
//! managers run it); SIGTERM or SIGINT hands the addresses over at once (priority 0).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "warren-vip",
    version,
    about = "A VRRP daemon that reads keepalived.conf"
)]
struct Cli {
    /// Configuration file (keepalived's -f)
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    file: PathBuf,
    /// Check the configuration and exit (keepalived's -t)
    #[arg(short = 't', long = "config-test")]
    test: bool,
    /// Accepted for keepalived compatibility: warren-vip never forks
    #[arg(short = 'n', long = "dont-fork")]
    dont_fork: bool,
    /// Accepted for keepalived compatibility: messages go to stderr
    #[arg(short = 'l', long = "log-console")]
    log_console: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match warren_vip::config::parse_file(&cli.file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren-vip: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    for w in &cfg.warnings {
        eprintln!("warren-vip: warning: {w}");
    }
    if cli.test {
        println!(
            "Configuration is valid: {} vrrp_instance(s), {} vrrp_script(s)",
            cfg.instances.len(),
            cfg.scripts.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-vip: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cfg))
}

async fn run(cfg: warren_vip::config::Config) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for inst in cfg.instances.clone() {
        let name = inst.name.clone();
        match warren_vip::daemon::Runner::new(&cfg, inst) {
            Ok(r) => tasks.push(tokio::spawn(r.run(cfg.clone(), stop_rx.clone()))),
            Err(e) => {
                eprintln!("warren-vip: ({name}) cannot start: {e}");
                let _ = stop_tx.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                return ExitCode::from(1);
            }
        }
    }
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("warren-vip: cannot install signal handlers");
        return ExitCode::from(1);
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    ExitCode::SUCCESS
}
