//! [`MemcachedBackend`]: Flask-Session's memcached layout behind [`satchel_core::Backend`].

use std::time::Duration;

use memcache::exp::{Delete, Get, Operation as ClientOperation, Set};
use satchel_core::{Backend, BackendError, ConfigError, Operation, SessionConfig};

use crate::BACKEND;
use crate::client::{self, Client, ClientMode, PoolSettings};
use crate::config;
use crate::error::{Failure, MemcachedError, Timeouts};
use crate::wire::{check_key, check_value, expiry, value_limit};

/// Sessions in memcached, laid out as Flask-Session lays them out: key `prefix + id`, value the
/// codec's bytes, flags 0, expiry in seconds (a unix time past 30 days).
///
/// Several servers in `SESSION_MEMCACHED` share the keys by the client's rendezvous hashing.
/// Every operation is one round trip (a sliding read is the meta protocol's get-and-touch), runs
/// off the actix worker threads (see [`ClientMode`]) and takes at most
/// `SATCHEL_CONNECT_TIMEOUT + SATCHEL_OPERATION_TIMEOUT`.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use satchel_core::{Backend, SessionConfig};
/// use satchel_memcached::MemcachedBackend;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = SessionConfig::from_lookup(|name| match name {
///     "SESSION_TYPE" => Some("memcached".into()),
///     "SESSION_MEMCACHED" => Some("127.0.0.1:11211,127.0.0.1:11212".into()),
///     _ => None,
/// })?;
/// let backend = MemcachedBackend::connect(&config).await?;
/// backend.store("session:abc", b"\x80", Duration::from_secs(3600)).await?;
/// assert_eq!(backend.load("session:abc").await?, Some(b"\x80".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemcachedBackend {
    client: Client,
    servers: Vec<String>,
    mode: ClientMode,
    item_size_max: usize,
    timeouts: Timeouts,
    /// The bound on one whole operation: waiting for a connection, dialing, the exchange.
    deadline: Duration,
}

impl std::fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("servers", &self.servers)
            .field("mode", &self.mode)
            .field("item_size_max", &self.item_size_max)
            .finish_non_exhaustive()
    }
}

impl MemcachedBackend {
    /// Connects to the servers in `SESSION_MEMCACHED` (default `127.0.0.1:11211`) with the
    /// default [`ClientMode`].
    ///
    /// Fails with a [`ConfigError`] naming the setting when `SESSION_MEMCACHED` is malformed,
    /// when `SESSION_KEY_PREFIX` would make every key unusable in memcached (over 250 bytes
    /// with the id, or containing whitespace), and when a server does not answer within
    /// `SATCHEL_CONNECT_TIMEOUT` and `SATCHEL_OPERATION_TIMEOUT`. Each server's item size
    /// limit is read here (`stats settings`), so oversized values are refused before sending.
    pub async fn connect(config: &SessionConfig) -> Result<MemcachedBackend, ConfigError> {
        MemcachedBackend::connect_with(config, ClientMode::default()).await
    }

    /// [`connect`](Self::connect) with a chosen [`ClientMode`], to compare the two.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), satchel_core::ConfigError> {
    /// use satchel_memcached::{ClientMode, MemcachedBackend};
    /// let config = satchel_core::SessionConfig::from_env()?;
    /// let blocking = MemcachedBackend::connect_with(&config, ClientMode::Blocking).await?;
    /// assert_eq!(blocking.mode(), ClientMode::Blocking);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with(
        config: &SessionConfig,
        mode: ClientMode,
    ) -> Result<MemcachedBackend, ConfigError> {
        config::check_prefix(config)?;
        let servers = config::servers(config)?;
        let timeouts = Timeouts {
            connect: config.connect_timeout,
            operation: config.operation_timeout,
        };
        let mut item_size_max = usize::MAX;
        for server in &servers {
            let size = client::item_size_max(server, timeouts.connect, timeouts.operation)
                .await
                .map_err(|source| {
                    let error = MemcachedError::Unreachable {
                        server: server.clone(),
                        source,
                    };
                    BackendError::driver(BACKEND, Operation::Connect, error)
                })?;
            item_size_max = item_size_max.min(size);
        }
        let settings = PoolSettings {
            connections_per_server: usize::try_from(config.pool_size).unwrap_or(usize::MAX),
            connect_timeout: timeouts.connect,
            operation_timeout: timeouts.operation,
        };
        let client = Client::connect(mode, &servers, settings)
            .await
            .map_err(|failure| failure.into_backend_error(Operation::Connect, timeouts, None))?;
        tracing::info!(
            backend = BACKEND,
            servers = ?servers,
            mode = ?mode,
            item_size_max,
            "connected to memcached"
        );
        Ok(MemcachedBackend {
            client,
            servers,
            mode,
            item_size_max,
            timeouts,
            deadline: timeouts.connect.saturating_add(timeouts.operation),
        })
    }

    /// The servers keys are spread over, as `host:port`.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// How the client is driven.
    pub fn mode(&self) -> ClientMode {
        self.mode
    }

    /// The smallest `item_size_max` among the servers, read at start-up: the largest item,
    /// key and overhead included, that every server accepts.
    pub fn item_size_max(&self) -> usize {
        self.item_size_max
    }

    /// Runs one operation under the whole-operation deadline, mapping failures to
    /// [`BackendError`]s without the key. `size` is the value's size and limit, for writes.
    async fn run<O>(
        &self,
        operation: Operation,
        request: O,
        size: Option<(usize, usize)>,
    ) -> Result<O::Output, BackendError>
    where
        O: ClientOperation + Send + 'static,
        O::Output: Send + 'static,
    {
        let error = match tokio::time::timeout(self.deadline, self.client.run(request)).await {
            Ok(Ok(output)) => return Ok(output),
            Ok(Err(failure)) => failure.into_backend_error(operation, self.timeouts, size),
            Err(_) => BackendError::Timeout {
                backend: BACKEND,
                operation,
                timeout: self.deadline,
            },
        };
        tracing::debug!(backend = BACKEND, %operation, %error, "memcached operation failed");
        Err(error)
    }

    /// Writes `value` under `key` in `mode` (plain set, add, replace); whether it was stored.
    async fn write(
        &self,
        operation: Operation,
        request: fn(Set) -> Set,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        check_key(key)?;
        check_value(self.item_size_max, key, value)?;
        let size = (value.len(), value_limit(self.item_size_max, key));
        let set = request(Set::new(key, value).ttl_raw(expiry(ttl)));
        Ok(self.run(operation, set, Some(size)).await?.applied())
    }
}

impl Backend for MemcachedBackend {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(key)?;
        let found = self.run(Operation::Load, Get::new(key), None).await?;
        // An evicted or expired item is a miss like any other: no session, not an error.
        Ok(if found.hit() { found.value } else { None })
    }

    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(key)?;
        // `mg <key> v T<ttl>`: memcached's get-and-touch, one round trip.
        let request = Get::new(key).touch_raw(expiry(ttl));
        let found = self.run(Operation::LoadAndTouch, request, None).await?;
        Ok(if found.hit() { found.value } else { None })
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.write(Operation::Insert, Set::add, key, value, ttl)
            .await
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        if self
            .write(Operation::Store, |set| set, key, value, ttl)
            .await?
        {
            Ok(())
        } else {
            // A plain set has no condition to fail; NOT_STORED here means the server refused.
            Err(Failure::NotStored.into_backend_error(Operation::Store, self.timeouts, None))
        }
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.write(Operation::Replace, Set::replace, key, value, ttl)
            .await
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        check_key(key)?;
        // `mg <key> T<ttl>` without `v`: memcached's touch, answering hit or miss.
        let request = Get::new(key).touch_raw(expiry(ttl)).without_value();
        Ok(self.run(Operation::Touch, request, None).await?.hit())
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        check_key(key)?;
        // Deleting a missing key answers NOT_FOUND, which is fine here.
        self.run(Operation::Delete, Delete::new(key), None).await?;
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        // memcached expires and evicts items itself.
        Ok(0)
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}
