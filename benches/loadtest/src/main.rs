//! Satchel's load benchmark (issue 8): every session store through the same login-style app,
//! against actix-session's own stores and a bare handler making the same raw backend calls,
//! measured in one run, interleaved, on loopback.
//!
//! ```text
//! loadtest run [--duration 5] [--warmup 1] [--rounds 3] [--connections 64] [--workers 2]
//!              [--targets redis,memcached-satchel,...] [--out benches/results/DATE.md]
//! loadtest serve --target redis-satchel --port 18000 [--workers 2] [--data-dir DIR]
//! loadtest list
//! ```
//!
//! `run` starts one `serve` process per target (a release build of this binary), checks that each
//! one keeps a session, then measures every target in turn, round after round (A B C … A B C …),
//! and prints and writes a markdown table of medians. `scripts/bench.sh` is the one command.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod raw;
mod report;
mod run;
mod server;
mod targets;

use std::process::ExitCode;
use std::time::Duration;

/// A command-line mistake, said in one line.
#[derive(Debug)]
struct Usage(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run_command(&args[1..]),
        Some("serve") => serve_command(&args[1..]),
        Some("list") => {
            for target in targets::Target::ALL {
                println!("{:<34} {}", target.name(), target.description());
            }
            Ok(())
        }
        _ => Err(Usage(
            "usage: loadtest run [options] | loadtest serve --target NAME --port N | loadtest list"
                .into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Usage(message)) => {
            eprintln!("loadtest: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs, in any order.
fn options(args: &[String]) -> Result<Vec<(String, String)>, Usage> {
    let mut pairs = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(name) = flag.strip_prefix("--") else {
            return Err(Usage(format!("unexpected argument {flag:?}")));
        };
        let Some(value) = it.next() else {
            return Err(Usage(format!("--{name} needs a value")));
        };
        pairs.push((name.to_owned(), value.clone()));
    }
    Ok(pairs)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, Usage> {
    value
        .parse()
        .map_err(|_| Usage(format!("--{name} expects a number, not {value:?}")))
}

fn seconds(name: &str, value: &str) -> Result<Duration, Usage> {
    let secs: f64 = number(name, value.trim_end_matches('s'))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Usage(format!("--{name}: {value:?} is not a duration")))
}

fn run_command(args: &[String]) -> Result<(), Usage> {
    let mut settings = run::Settings::default();
    for (name, value) in options(args)? {
        match name.as_str() {
            "duration" => settings.duration = seconds(&name, &value)?,
            "warmup" => settings.warmup = seconds(&name, &value)?,
            "rounds" => settings.rounds = number(&name, &value)?,
            "connections" => settings.connections = number(&name, &value)?,
            "workers" => settings.workers = number(&name, &value)?,
            "client-threads" => settings.client_threads = number(&name, &value)?,
            "base-port" => settings.base_port = number(&name, &value)?,
            "targets" => settings.targets = targets::select(&value).map_err(Usage)?,
            "workloads" => settings.workloads = targets::workloads(&value).map_err(Usage)?,
            "out" => settings.out = Some(value.into()),
            _ => return Err(Usage(format!("unknown option --{name}"))),
        }
    }
    if settings.rounds == 0 || settings.connections == 0 || settings.workers == 0 {
        return Err(Usage(
            "--rounds, --connections and --workers must be at least 1".into(),
        ));
    }
    // scripts/bench.sh names itself, so the report shows the command to repeat.
    let program = std::env::var("LOADTEST_COMMAND").unwrap_or_else(|_| "loadtest run".into());
    settings.command = std::iter::once(program)
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    run::run(settings).map_err(|e| Usage(format!("{e:#}")))
}

fn serve_command(args: &[String]) -> Result<(), Usage> {
    let mut target = None;
    let mut port = None;
    let mut workers = 2;
    let mut data_dir = std::env::temp_dir().join("satchel-loadtest");
    for (name, value) in options(args)? {
        match name.as_str() {
            "target" => {
                target = Some(targets::Target::from_name(&value).ok_or_else(|| {
                    Usage(format!("no target named {value:?} (see `loadtest list`)"))
                })?)
            }
            "port" => port = Some(number::<u16>(&name, &value)?),
            "workers" => workers = number(&name, &value)?,
            "data-dir" => data_dir = value.into(),
            _ => return Err(Usage(format!("unknown option --{name}"))),
        }
    }
    let (Some(target), Some(port)) = (target, port) else {
        return Err(Usage("serve needs --target and --port".into()));
    };
    server::serve(target, port, workers, &data_dir).map_err(|e| Usage(format!("{target:?}: {e:#}")))
}
