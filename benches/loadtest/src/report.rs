//! The markdown report: the machine, the settings, a table of medians with ratios to the
//! references measured in the same run, and the targets of issue 8 checked against it.

use std::fmt::Write as _;
use std::process::Command;

use time::OffsetDateTime;

use crate::client::Measurement;
use crate::run::Settings;
use crate::targets::{Group, Target, Workload};

/// One measured cell.
pub(crate) struct Cell {
    pub(crate) target: Target,
    pub(crate) workload: Workload,
    pub(crate) measurement: Measurement,
}

/// Where and when the run happened.
pub(crate) struct Environment {
    started: OffsetDateTime,
    finished: Option<OffsetDateTime>,
    load_at_start: String,
    load_at_end: String,
    /// The 1-minute load average before each cell.
    load_samples: Vec<f64>,
    machine: String,
    commit: String,
}

fn read_loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.1} GiB", kb as f64 / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!("{cpu}, {cores} cores available, {memory} RAM, Linux {kernel}")
}

fn stamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Environment {
    pub(crate) fn capture(_settings: &Settings) -> Environment {
        let commit = command_output("git", &["rev-parse", "--short", "HEAD"]).map_or_else(
            || "unknown commit".into(),
            |rev| {
                let dirty =
                    command_output("git", &["status", "--porcelain", "--untracked-files=no"])
                        .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{rev} with uncommitted changes")
                } else {
                    rev
                }
            },
        );
        Environment {
            started: OffsetDateTime::now_utc(),
            finished: None,
            load_at_start: read_loadavg(),
            load_at_end: String::new(),
            load_samples: Vec::new(),
            machine: machine(),
            commit,
        }
    }

    pub(crate) fn sample_load(&mut self) {
        if let Some(one) = read_loadavg()
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
        {
            self.load_samples.push(one);
        }
    }

    pub(crate) fn finish(&mut self) {
        self.finished = Some(OffsetDateTime::now_utc());
        self.load_at_end = read_loadavg();
    }

    /// `2026-11-26-1620`, for the file name.
    pub(crate) fn file_stamp(&self) -> String {
        let t = self.started;
        format!(
            "{:04}-{:02}-{:02}-{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Medians over the rounds of one target and workload.
#[derive(Clone, Copy)]
struct Summary {
    rate: f64,
    /// (max - min) / median of the rate, over the rounds.
    spread: f64,
    p50_ms: f64,
    p99_ms: f64,
    rounds: usize,
    errors: u64,
}

fn summarize(cells: &[Cell], target: Target, workload: Workload) -> Option<Summary> {
    let mine: Vec<&Measurement> = cells
        .iter()
        .filter(|c| c.target == target && c.workload == workload)
        .map(|c| &c.measurement)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut rates: Vec<f64> = mine.iter().map(|m| m.rate()).collect();
    let rate = median(&mut rates);
    let spread = (rates[rates.len() - 1] - rates[0]) / rate;
    let mut p50: Vec<f64> = mine.iter().map(|m| f64::from(m.p50_us) / 1000.0).collect();
    let mut p99: Vec<f64> = mine.iter().map(|m| f64::from(m.p99_us) / 1000.0).collect();
    Some(Summary {
        rate,
        spread,
        p50_ms: median(&mut p50),
        p99_ms: median(&mut p99),
        rounds: mine.len(),
        errors: mine.iter().map(|m| m.errors).sum(),
    })
}

fn rate_text(rate: f64) -> String {
    if rate >= 10_000.0 {
        format!("{:.1}k", rate / 1000.0)
    } else {
        format!("{rate:.0}")
    }
}

/// Satchel rows and the actix-session row that does the same work per request.
const LIKE_FOR_LIKE: [(Target, Target, &str); 4] = [
    (
        Target::RedisSatchel,
        Target::RedisActixSessionRefresh,
        "both renew cookie and expiry on every request",
    ),
    (
        Target::RedisSatchelNoRefresh,
        Target::RedisActixSession,
        "neither renews",
    ),
    (
        Target::CookieSatchel,
        Target::CookieActixSessionRefresh,
        "both send a fresh cookie with every response",
    ),
    (
        Target::CookieSatchelNoRefresh,
        Target::CookieActixSession,
        "neither does",
    ),
];

pub(crate) fn render(
    settings: &Settings,
    environment: &Environment,
    cells: &[Cell],
    unavailable: &[(Target, String)],
) -> String {
    let mut out = String::new();
    let targets: Vec<Target> = settings
        .targets
        .iter()
        .copied()
        .filter(|t| !unavailable.iter().any(|(u, _)| u == t))
        .collect();
    let summary = |t: Target, w: Workload| summarize(cells, t, w);

    let _ = writeln!(
        out,
        "# Satchel load benchmark, {}\n",
        stamp(environment.started)
    );
    let _ = writeln!(out, "- Machine: {}", environment.machine);
    let mut samples = environment.load_samples.clone();
    let (low, high) = samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let _ = writeln!(
        out,
        "- Load average (1/5/15 min): {} at the start, {} at the end; the 1-minute figure before each cell: median {:.2}, range {:.2}–{:.2}",
        environment.load_at_start,
        environment.load_at_end,
        median(&mut samples),
        low,
        high
    );
    let _ = writeln!(
        out,
        "- Ran {} to {}, commit {}",
        stamp(environment.started),
        environment.finished.map(stamp).unwrap_or_default(),
        environment.commit
    );
    let _ = writeln!(out, "- Command: `{}`", settings.command);
    let _ = writeln!(
        out,
        "- Each cell: {} keep-alive connections, each logged in once (its own session), then one request after another for {:.1} s warm-up + {:.1} s measured; {} client threads; every server has {} actix workers; client, servers and backends share the machine on loopback. {} rounds, interleaved (every target in turn, the order reversed every other round); figures are medians over the rounds, `±` the spread (max − min) / median of the rate.",
        settings.connections,
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64(),
        settings.client_threads,
        settings.workers,
        settings.rounds
    );
    let _ = writeln!(
        out,
        "- `read` = `GET /read/` (reads the user name from the session); `rmw` = `GET /rmw/` (reads it, increments a counter, saves the session). Satchel runs with its defaults (permanent sessions, `SESSION_REFRESH_EACH_REQUEST=true`: a read also extends the expiry, in the same round trip where the backend can)."
    );
    let _ = writeln!(
        out,
        "- `× ref`: the rate divided by the group's reference measured in the same run (raw calls; for `cookie`, actix-session's `CookieSessionStore`); redis rows also divided by actix-session's `RedisSessionStore` built as its docs show (`a-s`).\n"
    );

    let _ = writeln!(
        out,
        "| group | server | read req/s | read p50 / p99 ms | read × ref | rmw req/s | rmw p50 / p99 ms | rmw × ref |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for target in &targets {
        let group = target.group();
        let mut row = format!("| {} | `{}` ", group.name(), target.name());
        for workload in Workload::ALL {
            let Some(s) =
                summary(*target, workload).filter(|_| settings.workloads.contains(&workload))
            else {
                row.push_str("| — | — | — ");
                continue;
            };
            let errors = if s.errors > 0 {
                format!(" ({} errors)", s.errors)
            } else {
                String::new()
            };
            let _ = write!(
                row,
                "| {} ±{:.0}%{errors} | {:.2} / {:.2} ",
                rate_text(s.rate),
                s.spread * 100.0,
                s.p50_ms,
                s.p99_ms
            );
            let reference = group.reference().and_then(|r| summary(r, workload));
            let ratio = match reference {
                Some(_) if group.reference() == Some(*target) => "1.00 (ref)".to_owned(),
                Some(r) => format!("{:.2}", s.rate / r.rate),
                None => "—".to_owned(),
            };
            let vs_actix_session = match (group, summary(Target::RedisActixSession, workload)) {
                (Group::Redis, Some(a))
                    if *target != Target::RedisActixSession && *target != Target::RedisRaw =>
                {
                    format!(" · {:.2} a-s", s.rate / a.rate)
                }
                _ => String::new(),
            };
            let _ = write!(row, "| {ratio}{vs_actix_session} ");
            let _ = s.rounds;
        }
        row.push('|');
        let _ = writeln!(out, "{row}");
    }

    let _ = writeln!(out, "\n## Targets of issue 8, in this run\n");
    let mut checks: Vec<(String, Option<f64>, f64)> = Vec::new();
    let ratio = |t: Target, r: Target, w: Workload| -> Option<f64> {
        Some(summary(t, w)?.rate / summary(r, w)?.rate)
    };
    for satchel in [Target::RedisSatchel, Target::RedisSatchelActix] {
        for (w, raw_min, as_min) in [
            (Workload::Read, 0.90, 1.2),
            (Workload::ReadModifyWrite, 0.85, 1.4),
        ] {
            if !targets.contains(&satchel) || !settings.workloads.contains(&w) {
                continue;
            }
            checks.push((
                format!(
                    "`{}` {} ≥ {raw_min:.2} × `redis-raw`",
                    satchel.name(),
                    w.name()
                ),
                ratio(satchel, Target::RedisRaw, w),
                raw_min,
            ));
            checks.push((
                format!(
                    "`{}` {} ≥ {as_min:.2} × `redis-actix-session`",
                    satchel.name(),
                    w.name()
                ),
                ratio(satchel, Target::RedisActixSession, w),
                as_min,
            ));
        }
    }
    for satchel in targets.iter().copied().filter(|t| t.is_satchel()) {
        let group = satchel.group();
        if matches!(group, Group::Redis | Group::Floor) {
            continue;
        }
        let Some(reference) = group.reference() else {
            continue;
        };
        let minimum = if group == Group::Cookie { 0.90 } else { 0.85 };
        for w in settings.workloads.iter().copied() {
            checks.push((
                format!(
                    "`{}` {} ≥ {minimum:.2} × `{}`",
                    satchel.name(),
                    w.name(),
                    reference.name()
                ),
                ratio(satchel, reference, w),
                minimum,
            ));
        }
    }
    for (what, measured, minimum) in &checks {
        let verdict = match measured {
            Some(r) if *r >= *minimum => format!("{r:.2} — met"),
            Some(r) => format!("{r:.2} — **missed**"),
            None => "not measured".to_owned(),
        };
        let _ = writeln!(out, "- {what}: {verdict}");
    }

    let like_for_like: Vec<String> = LIKE_FOR_LIKE
        .iter()
        .filter(|(satchel, reference, _)| targets.contains(satchel) && targets.contains(reference))
        .flat_map(|&(satchel, reference, what)| {
            settings.workloads.iter().filter_map(move |&w| {
                let r = ratio(satchel, reference, w)?;
                Some(format!(
                    "- `{}` {} ÷ `{}` ({what}): {r:.2}",
                    satchel.name(),
                    w.name(),
                    reference.name()
                ))
            })
        })
        .collect();
    if !like_for_like.is_empty() {
        let _ = writeln!(
            out,
            "\n## Like for like, in this run (not targets of issue 8)\n\nSatchel's defaults do what Flask does for a permanent session: the cookie is sent again with every response and the stored expiry is renewed. actix-session as its docs build it does neither, so each Satchel row is also divided by the actix-session row that does the same work.\n"
        );
        for line in like_for_like {
            let _ = writeln!(out, "{line}");
        }
    }

    let failed: Vec<&Cell> = cells.iter().filter(|c| c.measurement.errors > 0).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\n## Errors\n");
        for cell in failed {
            let _ = writeln!(
                out,
                "- `{}` {}: {} errors, first: {}",
                cell.target.name(),
                cell.workload.name(),
                cell.measurement.errors,
                cell.measurement.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    if !unavailable.is_empty() {
        let _ = writeln!(out, "\n## Left out\n");
        for (target, reason) in unavailable {
            let _ = writeln!(out, "- `{}`: {reason}", target.name());
        }
    }

    let _ = writeln!(out, "\n## Servers\n");
    for target in &settings.targets {
        let _ = writeln!(out, "- `{}`: {}", target.name(), target.description());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_for_like_pairs_a_satchel_row_with_actix_session_doing_the_same_work() {
        for (satchel, actix_session, _) in LIKE_FOR_LIKE {
            assert!(satchel.is_satchel() && !actix_session.is_satchel());
            assert!(!actix_session.is_bare(), "a raw handler renews nothing");
            assert_eq!(satchel.group(), actix_session.group());
            // Satchel renews on every read unless it is a `-norefresh` row, and the actix-session
            // row beside it must renew exactly when Satchel does.
            assert_eq!(
                !satchel.no_refresh(),
                actix_session.name().ends_with("-refresh"),
                "{} against {}",
                satchel.name(),
                actix_session.name()
            );
        }
    }
}
