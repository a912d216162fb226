#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod config;
mod connections;
mod error;
#[cfg(feature = "testing")]
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub mod testing;
#[cfg(feature = "tls")]
mod tls;

pub use backend::{MAX_TTL_SECS, RedisBackend, expiry_lags, ttl_seconds};
pub use config::{
    ConnectOptions, DEFAULT_URL, MAX_SHARED_CONNECTIONS, RedisConfig, SETTING, redact_url,
};
pub use error::{ConnectError, ConnectFailure};

/// The pool crate this backend is built on, re-exported so applications use the same version.
pub use deadpool_redis;
/// The Redis driver, re-exported (through deadpool-redis) so applications use the same version.
pub use deadpool_redis::redis;
