//! `loadtest run`: start every server under test, check it, measure all of them interleaved,
//! round after round, and report medians.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client;
use crate::report::{self, Cell, Environment};
use crate::targets::{Target, Workload};

/// What `loadtest run` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) rounds: usize,
    pub(crate) connections: usize,
    pub(crate) workers: usize,
    pub(crate) client_threads: usize,
    pub(crate) base_port: u16,
    pub(crate) targets: Vec<Target>,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) out: Option<PathBuf>,
    pub(crate) command: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            rounds: 3,
            connections: 64,
            workers: 2,
            client_threads: 2,
            base_port: 18100,
            targets: Target::ALL.to_vec(),
            workloads: Workload::ALL.to_vec(),
            out: None,
            command: String::new(),
        }
    }
}

/// The server processes, killed when this is dropped (also on an error or a panic).
struct Servers {
    children: Vec<(Target, Child)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A server that is up and kept a session in the check.
struct Running {
    target: Target,
    address: SocketAddr,
}

fn log_tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n    ")
}

pub(crate) fn run(settings: Settings) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("satchel-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let exe = std::env::current_exe().context("finding the loadtest binary")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .enable_all()
        .build()?;

    let mut servers = Servers {
        children: Vec::new(),
    };
    let mut logs = Vec::new();
    for (i, target) in settings.targets.iter().enumerate() {
        let port = settings.base_port + u16::try_from(i)?;
        let log_path = data_dir.join(format!("{}.log", target.name()));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&exe)
            .args([
                "serve",
                "--target",
                target.name(),
                "--port",
                &port.to_string(),
            ])
            .args(["--workers", &settings.workers.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the {} server", target.name()))?;
        servers.children.push((*target, child));
        logs.push((port, log_path));
    }

    // Wait for each server, then check that it keeps a session; a target that fails is left
    // out of the table with the reason, the others are measured.
    let mut running = Vec::new();
    let mut unavailable = Vec::new();
    for ((target, child), (port, log_path)) in servers.children.iter_mut().zip(&logs) {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
        let ready = runtime.block_on(wait_ready(address, child));
        let checked = ready.and_then(|()| {
            let workloads: Vec<Workload> = settings
                .workloads
                .iter()
                .copied()
                .filter(|w| target.supports(*w))
                .collect();
            let raw = target.is_bare();
            runtime.block_on(client::verify(address, &workloads, raw))
        });
        match checked {
            Ok(()) => running.push(Running {
                target: *target,
                address,
            }),
            Err(error) => {
                let reason = format!("{error:#}");
                eprintln!(
                    "loadtest: {} left out: {reason}\n    {}",
                    target.name(),
                    log_tail(log_path)
                );
                unavailable.push((*target, reason));
            }
        }
    }
    if running.is_empty() {
        bail!("no server under test could be started");
    }

    let mut environment = Environment::capture(&settings);
    let mut cells: Vec<Cell> = Vec::new();
    let total = settings.rounds
        * settings
            .workloads
            .iter()
            .map(|w| running.iter().filter(|r| r.target.supports(*w)).count())
            .sum::<usize>();
    let started = Instant::now();
    let mut done = 0;
    for round in 0..settings.rounds {
        for workload in &settings.workloads {
            // Alternate the order every round, so a slow drift of the machine does not favour
            // whichever target comes first.
            let order: Vec<&Running> = if round % 2 == 0 {
                running.iter().collect()
            } else {
                running.iter().rev().collect()
            };
            for server in order {
                if !server.target.supports(*workload) {
                    continue;
                }
                environment.sample_load();
                let measured = runtime.block_on(client::measure(
                    server.address,
                    *workload,
                    settings.connections,
                    settings.warmup,
                    settings.duration,
                ));
                done += 1;
                match measured {
                    Ok(m) => {
                        eprintln!(
                            "[{done}/{total} {:>4.0}s] round {} {:<4} {:<32} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms{}",
                            started.elapsed().as_secs_f64(),
                            round + 1,
                            workload.name(),
                            server.target.name(),
                            m.rate(),
                            f64::from(m.p50_us) / 1000.0,
                            f64::from(m.p99_us) / 1000.0,
                            if m.errors > 0 {
                                format!(
                                    "  {} errors ({})",
                                    m.errors,
                                    m.first_error.as_deref().unwrap_or("?")
                                )
                            } else {
                                String::new()
                            }
                        );
                        cells.push(Cell {
                            target: server.target,
                            workload: *workload,
                            measurement: m,
                        });
                    }
                    Err(error) => {
                        eprintln!(
                            "[{done}/{total}] round {} {} {}: failed: {error:#}",
                            round + 1,
                            workload.name(),
                            server.target.name()
                        );
                    }
                }
            }
        }
    }
    environment.sample_load();
    environment.finish();
    drop(servers);

    let table = report::render(&settings, &environment, &cells, &unavailable);
    println!("{table}");
    let out = settings.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!("benches/results/{}.md", environment.file_stamp()))
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, &table).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("loadtest: wrote {}", out.display());
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Polls `GET /health` until it answers 200, the process exits, or a minute passes.
async fn wait_ready(address: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited during start-up ({status})");
        }
        if let Ok(mut connection) = client::Connection::open(address).await {
            if let Ok(response) = connection.get("/health", false).await {
                if response.status == 200 {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the server did not answer /health within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
