//! Shared by the test binaries: server URLs from the environment, and options for tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use satchel_redis::{ConnectOptions, RedisBackend};

pub const LONG: Duration = Duration::from_secs(300);

pub fn url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn standalone_url() -> String {
    url("SATCHEL_REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn cluster_url() -> String {
    url(
        "SATCHEL_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
    )
}

pub fn sentinel_url() -> String {
    url(
        "SATCHEL_REDIS_SENTINEL_URL",
        "redis+sentinel://127.0.0.1:26379/satchel-master",
    )
}

/// `SATCHEL_SKIP_REDIS` skips every Redis test; `SATCHEL_SKIP_REDIS_<MODE>` one mode.
pub fn skipped(mode: Option<&str>) -> bool {
    satchel_core::testkit::skipped("REDIS") || mode.is_some_and(satchel_core::testkit::skipped)
}

/// Short timeouts, so fault tests finish quickly; generous enough for a loaded CI machine.
pub fn options(connections: usize, timeout: Duration) -> ConnectOptions {
    ConnectOptions::default()
        .with_connections(connections)
        .with_connect_timeout(timeout)
        .with_operation_timeout(timeout)
}

pub async fn connect(url: &str) -> RedisBackend {
    RedisBackend::from_url(url, ConnectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}
