//! [`RedisBackend`]: Flask-Session's Redis layout, one round trip per operation (a sliding
//! read adds an `EXPIRE` only when the key's TTL lags).

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use satchel_core::{
    Backend, BackendError, ConfigError, Operation, SessionConfig, touch_granularity,
};

use crate::config::{ConnectOptions, RedisConfig};
use crate::connections::{BACKEND, Connections};

/// The longest TTL sent to Redis (100 years). Redis refuses `EX` values whose expiry time
/// overflows, and no session needs more.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 24 * 3600;

/// Sessions in Redis, laid out as Flask-Session 0.8 lays them out: the value under the key as
/// given (`SESSION_KEY_PREFIX + id`), with `SET key value EX ttl`.
///
/// | operation | command |
/// |---|---|
/// | [`load`](Backend::load) | `GET key` |
/// | [`load_and_touch`](Backend::load_and_touch) | `GET key` and `PTTL key`, pipelined; then `EXPIRE key ttl` only when the expiry lags (see [`expiry_lags`]) |
/// | [`insert`](Backend::insert) | `SET key value NX EX ttl` |
/// | [`store`](Backend::store) | `SET key value EX ttl` |
/// | [`replace`](Backend::replace) | `SET key value XX EX ttl` |
/// | [`touch`](Backend::touch) | `EXPIRE key ttl` |
/// | [`delete`](Backend::delete) | `DEL key` |
/// | [`purge_expired`](Backend::purge_expired) | nothing: Redis expires keys itself |
///
/// TTLs are whole seconds: a fraction rounds up, and anything under one second becomes one
/// second (Redis refuses `EX 0`).
///
/// A sliding read coalesces its expiry write as the SQL and MongoDB backends do: Flask-Session
/// rewrites the TTL on every request, Satchel only when the key's TTL is more than
/// [`touch_granularity`]`(ttl)` (a hundredth of it, at most a minute) short, so with the
/// default 31-day lifetime a session's key is written at most once a minute by reads, and
/// expires at most a minute before Flask-Session would have let it.
///
/// # Connections, and where deadpool-redis fits
///
/// Each operation is one round trip (a sliding read whose TTL lags, one more for its
/// `EXPIRE`). There is no per-request pool checkout:
/// deadpool-redis recycles a connection on every checkout by sending `UNWATCH` and `PING`
/// (see its `Manager::recycle`), which would make a read-only request cost three commands and
/// an extra round trip instead of one, and a checked-out connection serves one request at a
/// time, which caps concurrency at the pool size and gives up pipelining.
///
/// Instead the backend opens a few long-lived connections at start-up
/// ([`ConnectOptions::connections`], from `SATCHEL_POOL_SIZE` capped at
/// [`MAX_SHARED_CONNECTIONS`](crate::MAX_SHARED_CONNECTIONS)) and hands each command to the
/// next one in turn. They are multiplexed: any number of requests pipeline on one socket.
/// On a current-thread runtime (each actix-web worker runs one) a command goes instead to
/// that thread's own connection, opened by its first command, so its driver task runs on the
/// same thread and no command wakes another (see `connections.rs`).
/// - standalone: redis-rs `MultiplexedConnection`s;
/// - cluster: redis-rs `ClusterConnection`s, which route each key to its slot's master and
///   follow `MOVED`/`ASK` redirections themselves;
/// - Sentinel: `MultiplexedConnection`s to the master that the sentinels name, looked up
///   again whenever a connection is reopened.
///
/// A connection found dropped (server restarted, connection reset, a demoted master answering
/// `READONLY` after a failover) is reopened and the command is sent once more; requests that
/// meet the same broken connection share one reconnect. Every command is bounded by
/// `SATCHEL_OPERATION_TIMEOUT` and every connect by `SATCHEL_CONNECT_TIMEOUT`, so a dead or
/// stalled server gives an error, never a hung worker.
///
/// deadpool-redis supplies the rest: the driver, re-exported as [`crate::redis`] with cluster,
/// Sentinel and (feature `tls`) rustls support compiled in, so an application uses the very
/// same `redis` version; and the configuration types — [`RedisConfig`] wraps deadpool-redis'
/// `Config`, `cluster::Config` and `sentinel::Config`, so an application that already builds
/// or deserializes one of those passes it to [`RedisBackend::connect_with`] as it is.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use satchel_core::{Backend, SessionConfig};
/// use satchel_redis::RedisBackend;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = SessionConfig::default();
/// config.redis = Some("redis://127.0.0.1:6379".into());
/// let backend = RedisBackend::connect(&config).await?;
/// backend.store("session:abc", b"\x81\xa1n\x01", Duration::from_secs(3600)).await?;
/// assert_eq!(backend.load("session:abc").await?, Some(b"\x81\xa1n\x01".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    connections: Arc<Connections>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("address", &self.connections.address())
            .field("options", self.connections.options())
            .finish()
    }
}

impl RedisBackend {
    /// Connects as the session configuration says: `SESSION_REDIS` (default
    /// `redis://127.0.0.1:6379`), `SATCHEL_CONNECT_TIMEOUT`, `SATCHEL_OPERATION_TIMEOUT` and
    /// `SATCHEL_POOL_SIZE`.
    ///
    /// Fails with [`ConfigError::Invalid`] naming `SESSION_REDIS` for a malformed URL, and
    /// with [`ConfigError::Backend`] naming the address (password redacted) when Redis cannot
    /// be reached within the connect timeout.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), satchel_core::ConfigError> {
    /// let config = satchel_core::SessionConfig::from_env()?;
    /// let backend = satchel_redis::RedisBackend::connect(&config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: &SessionConfig) -> Result<RedisBackend, ConfigError> {
        RedisBackend::connect_with(
            &RedisConfig::from_session_config(config)?,
            ConnectOptions::from_session_config(config),
        )
        .await
    }

    /// Connects to a `SESSION_REDIS`-style URL with explicit options.
    ///
    /// ```no_run
    /// use satchel_redis::{ConnectOptions, RedisBackend};
    /// # async fn demo() -> Result<(), satchel_core::ConfigError> {
    /// let backend = RedisBackend::from_url(
    ///     "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
    ///     ConnectOptions::default(),
    /// ).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_url(url: &str, options: ConnectOptions) -> Result<RedisBackend, ConfigError> {
        RedisBackend::connect_with(&RedisConfig::from_url(url)?, options).await
    }

    /// Connects to what `config` describes, opening `options.connections` connections now.
    pub async fn connect_with(
        config: &RedisConfig,
        options: ConnectOptions,
    ) -> Result<RedisBackend, ConfigError> {
        #[cfg(feature = "tls")]
        if config.uses_tls() {
            crate::tls::install_crypto_provider();
        }
        let connections = Connections::open(config, options).await.map_err(|e| {
            ConfigError::Backend(BackendError::driver(BACKEND, Operation::Connect, e))
        })?;
        tracing::debug!(backend = BACKEND, address = %connections.address(), connections = options.connections, "redis session backend connected");
        Ok(RedisBackend {
            connections: Arc::new(connections),
        })
    }
}

/// Whole seconds for `EX`: fractions round up, at least 1, at most [`MAX_TTL_SECS`].
///
/// ```
/// use std::time::Duration;
/// use satchel_redis::ttl_seconds;
/// assert_eq!(ttl_seconds(Duration::ZERO), 1);
/// assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
/// assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
/// assert_eq!(ttl_seconds(Duration::from_secs(2_678_400)), 2_678_400);
/// ```
pub fn ttl_seconds(ttl: Duration) -> u64 {
    let whole = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    whole.clamp(1, MAX_TTL_SECS)
}

/// Whether a key whose `PTTL` reply is `pttl` needs its expiry set to `ttl` by a sliding
/// read: it has none (`-1`), or it ends more than [`touch_granularity`]`(ttl)` before the
/// expiry `EXPIRE` would give it. An expiry further away is kept, never shortened; `-2` (the
/// key is gone) needs nothing.
///
/// ```
/// use std::time::Duration;
/// use satchel_redis::expiry_lags;
/// let day = Duration::from_secs(86_400);
/// assert!(expiry_lags(-1, day));
/// assert!(!expiry_lags(-2, day));
/// assert!(!expiry_lags(86_400_000 - 60_000, day)); // a minute short: kept
/// assert!(expiry_lags(86_400_000 - 60_001, day));
/// assert!(!expiry_lags(2 * 86_400_000, day)); // longer: kept
/// ```
pub fn expiry_lags(pttl: i64, ttl: Duration) -> bool {
    if pttl == -1 {
        return true;
    }
    let wanted = u128::from(ttl_seconds(ttl)) * 1000;
    let slack = touch_granularity(ttl).as_millis();
    // Any other negative reply (`-2`) fails the conversion: nothing to extend.
    u128::try_from(pttl).is_ok_and(|left| left + slack < wanted)
}

fn expire(key: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("EXPIRE");
    cmd.arg(key).arg(ttl_seconds(ttl));
    cmd
}

fn set(key: &str, value: &[u8], ttl: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value).arg("EX").arg(ttl_seconds(ttl));
    cmd
}

impl Backend for RedisBackend {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.connections.query(Operation::Load, &cmd).await
    }

    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        // `GET` and `PTTL` in one round trip, both reads. A `GETEX … EX` here would be a write
        // on every read: appended to the AOF (about 95 bytes per read, benches/HISTORY.md; and the
        // background rewrites and saves that growth sets off), counted toward snapshots and sent
        // to replicas. The expiry is written only when it lags.
        let mut read = redis::pipe();
        read.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (value, pttl): (Option<Vec<u8>>, i64) = self
            .connections
            .query(Operation::LoadAndTouch, &read)
            .await?;
        if value.is_some() && expiry_lags(pttl, ttl) {
            // `EXPIRE` of a key deleted since the read does nothing, so this never revives a
            // session that was logged out meanwhile.
            let _extended: bool = self
                .connections
                .query(Operation::LoadAndTouch, &expire(key, ttl))
                .await?;
        }
        Ok(value)
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let mut cmd = set(key, value, ttl);
        cmd.arg("NX");
        let reply: Value = self.connections.query(Operation::Insert, &cmd).await?;
        Ok(reply != Value::Nil)
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let _ok: Value = self
            .connections
            .query(Operation::Store, &set(key, value, ttl))
            .await?;
        Ok(())
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let mut cmd = set(key, value, ttl);
        cmd.arg("XX");
        let reply: Value = self.connections.query(Operation::Replace, &cmd).await?;
        Ok(reply != Value::Nil)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        self.connections
            .query(Operation::Touch, &expire(key, ttl))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        let _removed: u64 = self.connections.query(Operation::Delete, &cmd).await?;
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        Ok(0)
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped_and_rounded_up() {
        assert_eq!(ttl_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_seconds(Duration::MAX), MAX_TTL_SECS);
    }

    #[test]
    fn commands_match_flask_session() {
        let cmd = set("session:abc", b"\x80", Duration::from_secs(2_678_400));
        let packed = String::from_utf8_lossy(&cmd.get_packed_command()).into_owned();
        assert_eq!(
            packed,
            "*5\r\n$3\r\nSET\r\n$11\r\nsession:abc\r\n$1\r\n\u{fffd}\r\n$2\r\nEX\r\n$7\r\n2678400\r\n"
        );
    }
}
