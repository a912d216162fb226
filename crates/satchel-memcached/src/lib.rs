//! memcached backend for Satchel (`SESSION_TYPE=memcached`), on the [`memcache`] crate,
//! byte-compatible with Flask-Session 0.8.
//!
//! - **Layout**, as Flask-Session (with pymemcache) writes it: key `SESSION_KEY_PREFIX + id`,
//!   value the codec's bytes, client flags 0 (`VALUE session:… 0 31`). The expiry is the TTL in
//!   seconds up to 30 days and an absolute unix time beyond, as memcached requires: Flask's
//!   default 31-day lifetime sent as seconds would expire at once. TTLs are rounded up to whole
//!   seconds, at least 1.
//! - **Servers**: `SESSION_MEMCACHED` lists them, separated by commas or spaces, each
//!   `host:port`, `host` or `memcache://host:port` (default `127.0.0.1:11211`); keys are spread
//!   by the client's rendezvous hashing. A Flask app sharing several servers with Satchel must
//!   place keys the same way, which Python clients do not: share one server, or one list in
//!   the same order behind a proxy such as mcrouter.
//! - **Keys and values**: a key over 250 bytes or with whitespace or control characters is
//!   refused with [`BackendError::InvalidKey`](satchel_core::BackendError::InvalidKey) before
//!   it reaches the server, and a `SESSION_KEY_PREFIX` that makes every key too long is a
//!   start-up error. A value larger than the servers' `item_size_max` (read with
//!   `stats settings` at start-up) is
//!   [`BackendError::ValueTooLarge`](satchel_core::BackendError::ValueTooLarge).
//! - **Round trips**: each operation is one meta-protocol command: `mg` (load), `mg … T` (the
//!   sliding read, memcached's get-and-touch), `ms … MS/ME/MR` (store, insert with `add`
//!   semantics, replace), `mg … T` without value (touch), `md` (delete).
//! - **Threads**: the `memcache` crate's classic `Client` blocks. Satchel uses the crate's
//!   meta-protocol clients from `memcache::exp` instead: by default the tokio one
//!   ([`ClientMode::Async`]), which never blocks; [`ClientMode::Blocking`] runs the blocking
//!   one on tokio's blocking pool, for comparison. Either way a pool of
//!   `SATCHEL_POOL_SIZE` connections per server.
//! - **Faults**: a server down at start-up is a [`ConfigError`](satchel_core::ConfigError)
//!   naming it; a server that stops later makes operations fail within
//!   `SATCHEL_CONNECT_TIMEOUT + SATCHEL_OPERATION_TIMEOUT`, and once it is back they succeed
//!   again on the same backend. An evicted session reads as no session.
//!
//! Why not the classic `memcache::Client`: it has no get-and-touch, its r2d2 pool checks every
//! connection out with an extra `version` round trip, and a connection whose read timed out
//! goes back to the pool with the late answer still unread, so a later request could read
//! another request's value. The meta clients drop such connections, and say whether a request
//! that failed may still have been applied.
//!
//! The cargo feature `tls` enables `memcache/tls` (OpenSSL) for the re-exported classic
//! client; the meta-protocol clients Satchel uses speak plain TCP only in `memcache` 0.21, so
//! `memcache+tls://` servers are refused at start-up.
//!
//! ```no_run
//! # async fn run() -> Result<(), satchel_core::ConfigError> {
//! let config = satchel_core::SessionConfig::from_env()?;
//! let backend = satchel_memcached::MemcachedBackend::connect(&config).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod client;
pub mod config;
mod error;
pub mod wire;

pub use backend::MemcachedBackend;
pub use client::ClientMode;
pub use error::MemcachedError;
pub use memcache;

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "memcached";
