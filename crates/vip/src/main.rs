//! `warren-vip`: checks a keepalived.conf (`-t`). Running the VRRP instances (raw sockets,
//! netlink and gratuitous ARP) is the next step of this binary.

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
    eprintln!(
        "warren-vip: running VRRP instances is not available yet; use -t to check a configuration"
    );
    ExitCode::from(2)
}
