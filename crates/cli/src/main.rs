//! `warrenctl`: rabbitmqctl's verbs for warren. It reaches a node on its cluster port, proves
//! the cookie as a node would (it is a tool, not a member), sends one verb and prints the
//! answer the way rabbitmqctl prints it, with rabbitmqctl's exit codes.
//!
//! ```text
//! warrenctl [-n NAME@HOST[:PORT]] [-q] [--formatter json] [-p VHOST] VERB [ARGS]
//! ```

mod verbs;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;
use verbs::{Shape, Verb};
use warren_cluster::ctl::{Answer, Request, decode, encode, exit};
use warren_cluster::{Channel, Cookie, NodeAddr, ToolLink};

const USAGE: &str = "Usage: warrenctl [-n <node>] [-q] [--formatter json] [-p <vhost>] [--cookie-file <path>] <verb> [<args>]";

/// What the command line says.
struct Invocation {
    node: String,
    quiet: bool,
    json: bool,
    cookie_file: Option<std::path::PathBuf>,
    timeout: Duration,
    verb: String,
    args: Vec<String>,
    options: BTreeMap<String, String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Invocation, String> {
    let mut inv = Invocation {
        node: warren_cluster::name::default_node_name(),
        quiet: false,
        json: false,
        cookie_file: None,
        timeout: Duration::from_secs(60),
        verb: String::new(),
        args: Vec::new(),
        options: BTreeMap::new(),
    };
    let mut positional = Vec::new();
    while let Some(a) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "-n" | "--node" => inv.node = value(&a)?,
            "-q" | "--quiet" | "-s" | "--silent" => inv.quiet = true,
            "-p" | "--vhost" => {
                let v = value(&a)?;
                inv.options.insert("vhost".into(), v);
            }
            "--formatter" => match value(&a)?.as_str() {
                "json" => inv.json = true,
                "table" | "pretty_table" => inv.json = false,
                other => return Err(format!("unknown formatter '{other}'")),
            },
            "--cookie-file" => inv.cookie_file = Some(value(&a)?.into()),
            "--default-queue-type" | "--priority" | "--apply-to" => {
                let v = value(&a)?;
                inv.options.insert(a.trim_start_matches('-').into(), v);
            }
            "-t" | "--timeout" => {
                let secs: u64 = value(&a)?
                    .parse()
                    .map_err(|_| "the timeout is a number of seconds".to_owned())?;
                inv.timeout = Duration::from_secs(secs);
            }
            "--ram" | "--disc" | "--offline" | "--errors-only" => {
                inv.options
                    .insert(a.trim_start_matches('-').into(), "true".into());
            }
            _ => positional.push(a),
        }
    }
    let mut positional = positional.into_iter();
    inv.verb = positional.next().ok_or("no verb given")?;
    inv.args = positional.collect();
    Ok(inv)
}

fn unreachable(node: &str, why: &str) -> ExitCode {
    eprintln!(
        "Error: unable to perform an operation on node '{node}'. Please see diagnostics information and suggestions below.\n\n\
         Most common reasons for this are:\n\n \
         * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)\n \
         * CLI tool fails to authenticate with the server (e.g. due to CLI tool's cookie not matching that of the server)\n \
         * Target node is not running\n\n\
         DIAGNOSTICS\n===========\n\nattempted to contact: [{node}]\n\n{node}:\n  * {why}"
    );
    ExitCode::from(exit::UNAVAILABLE as u8)
}

fn main() -> ExitCode {
    let inv = match parse(std::env::args().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("Error (argument validation): {e}\n{USAGE}");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    let Some(verb) = verbs::find(&inv.verb) else {
        eprintln!("\nCommand '{}' not found. \n\n{USAGE}", inv.verb);
        return ExitCode::from(exit::USAGE as u8);
    };
    if let Err(e) = verb.check(&inv.args) {
        eprintln!("Error (argument validation): {e}\n{USAGE}");
        return ExitCode::from(exit::USAGE as u8);
    }
    let node = match NodeAddr::parse(&inv.node) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("Error (argument validation): {e}");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    let cookie = match Cookie::find(inv.cookie_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return unreachable(&node.name, &e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start: {e}");
            return ExitCode::from(exit::SOFTWARE as u8);
        }
    };
    runtime.block_on(run(inv, verb, node, cookie))
}

async fn run(inv: Invocation, verb: &Verb, node: NodeAddr, cookie: Cookie) -> ExitCode {
    let vhost = inv
        .options
        .get("vhost")
        .cloned()
        .unwrap_or_else(|| "/".to_owned());
    if !inv.quiet && !inv.json {
        if let Some(line) = verb.announce(&inv.args, &vhost, &node.name) {
            let priority = inv.options.get("priority").map_or("0", String::as_str);
            println!("{}", line.replace("{priority}", priority));
        }
    }
    let me = format!(
        "warrenctl-{}@{}",
        std::process::id(),
        warren_cluster::name::host_name()
    );
    let mut link = match ToolLink::connect(&node, &cookie, &me, Duration::from_secs(10)).await {
        Ok(l) => l,
        Err(warren_cluster::handshake::Refused::Cookie) => {
            return unreachable(
                &node.name,
                "the node refused this tool's cookie (check that the cookies are identical)",
            );
        }
        Err(e) => return unreachable(&node.name, &e.to_string()),
    };
    let request = Request {
        verb: inv.verb.clone(),
        args: inv.args.clone(),
        options: inv.options.clone(),
    };
    if let Err(e) = link.send(Channel::Control, encode(&request)).await {
        return unreachable(&node.name, &e.to_string());
    }
    let answer = loop {
        match tokio::time::timeout(inv.timeout, link.recv()).await {
            Err(_) => {
                eprintln!(
                    "Error: operation {} on node {} timed out. Timeout value used: {:?}",
                    inv.verb, node.name, inv.timeout
                );
                return ExitCode::from(exit::TEMP_FAIL as u8);
            }
            // A node told to stop may hang up before it answers.
            Ok(None) if inv.verb == "stop" => break Answer::Done,
            Ok(None) => return unreachable(&node.name, "the node closed the connection"),
            Ok(Some((Channel::Control, payload))) => match decode::<Answer>(&payload) {
                Ok(a) => break a,
                Err(e) => return unreachable(&node.name, &e),
            },
            Ok(Some(_)) => {}
        }
    };
    print_answer(&inv, verb, answer)
}

fn print_answer(inv: &Invocation, verb: &Verb, answer: Answer) -> ExitCode {
    match answer {
        Answer::Done => {
            if !inv.quiet && !inv.json {
                if let Some(after) = verb.after {
                    println!("{after}");
                }
            }
        }
        Answer::Warned(warning) => {
            eprintln!("Warning: {warning}");
            if !inv.quiet && !inv.json {
                if let Some(after) = verb.after {
                    println!("{after}");
                }
            }
        }
        Answer::Failed { code, message } => {
            eprintln!("Error:\n{message}");
            return ExitCode::from(code.clamp(1, 255) as u8);
        }
        Answer::Report { json, text } => {
            if inv.json {
                println!("{json}");
            } else {
                println!("{text}");
            }
        }
        Answer::Table { columns, rows } => {
            let wanted: Vec<String> = match (verb.shape, inv.args.is_empty()) {
                (Shape::Columns(_), false) => inv.args.clone(),
                (Shape::Columns(default), true) => {
                    default.iter().map(|c| (*c).to_owned()).collect()
                }
                _ => columns.clone(),
            };
            let mut at = Vec::new();
            for w in &wanted {
                match columns.iter().position(|c| c == w) {
                    Some(i) => at.push(i),
                    None => {
                        eprintln!(
                            "Error (argument validation): Unknown column: {w}. Valid columns are: {}",
                            columns.join(", ")
                        );
                        return ExitCode::from(exit::USAGE as u8);
                    }
                }
            }
            print_table(inv.json, &wanted, &at, &rows);
        }
    }
    ExitCode::SUCCESS
}

/// A cell as rabbitmqctl's table shows it: lists in brackets, strings bare, arguments
/// (`[key, type, value]` each) as Erlang tuples, `[{"x-max-length",10}]`.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if !items.is_empty() && items.iter().all(is_argument) => {
            let tuples: Vec<String> = items
                .iter()
                .filter_map(|a| a.as_array())
                .map(|t| format!("{{{},{}}}", erlang(&t[0]), erlang(&t[2])))
                .collect();
            format!("[{}]", tuples.join(","))
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(cell).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// Whether `v` is one argument as listings write them: `[key, type, value]`.
fn is_argument(v: &serde_json::Value) -> bool {
    matches!(v.as_array(), Some(t) if t.len() == 3 && t[0].is_string() && t[1].is_string())
}

/// A value as Erlang prints it: strings quoted, lists in brackets without spaces.
fn erlang(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(erlang).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

fn print_table(json: bool, names: &[String], at: &[usize], rows: &[Vec<serde_json::Value>]) {
    if json {
        // One object per line, the comma leading, as rabbitmqctl writes it.
        println!("[");
        for (n, row) in rows.iter().enumerate() {
            // Keys in column order, which a JSON map would not keep.
            let fields: Vec<String> = names
                .iter()
                .zip(at)
                .map(|(name, i)| {
                    let value = row.get(*i).cloned().unwrap_or_default();
                    format!("{}:{value}", serde_json::Value::from(name.as_str()))
                })
                .collect();
            let sep = if n == 0 { "" } else { "," };
            println!("{sep}{{{}}}", fields.join(","));
        }
        println!("]");
        return;
    }
    if rows.is_empty() {
        return;
    }
    println!("{}", names.join("\t"));
    for row in rows {
        let cells: Vec<String> = at
            .iter()
            .map(|i| row.get(*i).map(cell).unwrap_or_default())
            .collect();
        println!("{}", cells.join("\t"));
    }
}
