//! Side-by-side throughput of the two client modes on one server, in one run.
//!
//! ```text
//! cargo run --release -p satchel-memcached --example client_modes -- [servers] [seconds] [tasks]
//! ```
//!
//! Each of `tasks` tasks repeats what a session request costs the store: a sliding read
//! (`load_and_touch`) of a small session, and every tenth time a write (`store`). The modes
//! take turns in short rounds so that load from other processes hits both alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use satchel_core::{Backend, SessionConfig};
use satchel_memcached::{ClientMode, MemcachedBackend};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let servers = args.next().unwrap_or_else(|| "127.0.0.1:11211".into());
    let seconds: u64 = args.next().map_or(10, |s| s.parse().expect("seconds"));
    let tasks: usize = args.next().map_or(64, |s| s.parse().expect("tasks"));
    let config = SessionConfig::from_lookup(|name| match name {
        "SESSION_MEMCACHED" => Some(servers.clone()),
        "SATCHEL_POOL_SIZE" => Some("16".into()),
        _ => None,
    })
    .expect("config");

    let modes = [ClientMode::Async, ClientMode::Blocking];
    let mut backends = Vec::new();
    for mode in modes {
        backends.push(Arc::new(
            MemcachedBackend::connect_with(&config, mode)
                .await
                .expect("connect"),
        ));
    }
    let mut totals = [(0u64, Duration::ZERO); 2];
    let rounds = seconds.max(2);
    for _ in 0..rounds {
        for (i, backend) in backends.iter().enumerate() {
            let (ops, took) = round(Arc::clone(backend), tasks, Duration::from_millis(500)).await;
            totals[i].0 += ops;
            totals[i].1 += took;
        }
    }
    println!("servers {servers}, {tasks} concurrent tasks, {rounds} rounds of 500 ms per mode");
    for (mode, (ops, took)) in modes.iter().zip(totals) {
        println!(
            "{mode:?}: {:.0} operations/s",
            ops as f64 / took.as_secs_f64()
        );
    }
}

async fn round(backend: Arc<MemcachedBackend>, tasks: usize, length: Duration) -> (u64, Duration) {
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (backend, ops, stop) = (Arc::clone(&backend), Arc::clone(&ops), Arc::clone(&stop));
        set.spawn(async move {
            let key = format!("satchel-bench:{t}");
            let value = vec![0x81u8; 200];
            let ttl = Duration::from_secs(3600);
            backend.store(&key, &value, ttl).await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                backend.load_and_touch(&key, ttl).await.unwrap();
                if n % 10 == 0 {
                    backend.store(&key, &value, ttl).await.unwrap();
                }
                n += 1;
                ops.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    (ops.load(Ordering::Relaxed), start.elapsed())
}
