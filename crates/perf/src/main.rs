//! `warren-perf`: see `warren-perf --help`.

use clap::Parser;
use std::process::ExitCode;
use warren_perf::options::Options;

fn main() -> ExitCode {
    let opts = Options::parse();
    let json = opts.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-perf: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(warren_perf::run::run(opts)) {
        Ok(summary) => {
            if json {
                match serde_json::to_string(&summary) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("warren-perf: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", summary.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
