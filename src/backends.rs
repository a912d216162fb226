//! The backend chosen by `SESSION_TYPE`, as one type.
//!
//! An enum rather than `Box<dyn …>`: every call is a direct, inlinable match with no allocation
//! per request, and each variant exists only when its cargo feature is on.

use std::time::Duration;

use satchel_core::{Backend, BackendError, ConfigError, MemoryBackend, SessionConfig, SessionType};

/// Whichever backend the configuration chose.
#[non_exhaustive]
pub enum AnyBackend {
    /// `SESSION_TYPE=memory`.
    Memory(MemoryBackend),
    /// `SESSION_TYPE=sqlalchemy`, and the default.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    Sql(satchel_sql::SqlBackend),
    /// `SESSION_TYPE=redis`.
    #[cfg(feature = "redis")]
    Redis(satchel_redis::RedisBackend),
    /// `SESSION_TYPE=memcached`.
    #[cfg(feature = "memcached")]
    Memcached(satchel_memcached::MemcachedBackend),
    /// `SESSION_TYPE=mongodb`.
    #[cfg(feature = "mongodb")]
    Mongodb(satchel_mongodb::MongoBackend),
}

impl AnyBackend {
    /// Connects the backend that `config.session_type` names, checking that it is reachable
    /// and set up.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut config = satchel::SessionConfig::default();
    /// config.session_type = satchel::SessionType::Memory;
    /// let backend = satchel::AnyBackend::connect(&config).await.unwrap();
    /// # });
    /// ```
    pub async fn connect(config: &SessionConfig) -> Result<AnyBackend, ConfigError> {
        match config.session_type {
            SessionType::Memory => Ok(AnyBackend::Memory(MemoryBackend::new())),
            #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
            SessionType::Sqlalchemy => Ok(AnyBackend::Sql(
                satchel_sql::SqlBackend::connect(config).await?,
            )),
            #[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
            SessionType::Sqlalchemy => Err(not_built("sqlalchemy", "sql")),
            #[cfg(feature = "redis")]
            SessionType::Redis => Ok(AnyBackend::Redis(
                satchel_redis::RedisBackend::connect(config).await?,
            )),
            #[cfg(not(feature = "redis"))]
            SessionType::Redis => Err(not_built("redis", "redis")),
            #[cfg(feature = "memcached")]
            SessionType::Memcached => Ok(AnyBackend::Memcached(
                satchel_memcached::MemcachedBackend::connect(config).await?,
            )),
            #[cfg(not(feature = "memcached"))]
            SessionType::Memcached => Err(not_built("memcached", "memcached")),
            #[cfg(feature = "mongodb")]
            SessionType::Mongodb => Ok(AnyBackend::Mongodb(
                satchel_mongodb::MongoBackend::connect(config).await?,
            )),
            #[cfg(not(feature = "mongodb"))]
            SessionType::Mongodb => Err(not_built("mongodb", "mongodb")),
            SessionType::Cookie => Err(ConfigError::BackendUnavailable {
                session_type: "cookie",
                feature: "cookie",
                reason: "keeps the whole session in the signed cookie, so there is no server-side \
                         backend or Store: use satchel::Satchel (or satchel::CookieStore)",
            }),
        }
    }
}

#[allow(dead_code)]
fn not_built(session_type: &'static str, feature: &'static str) -> ConfigError {
    ConfigError::BackendUnavailable {
        session_type,
        feature,
        reason: "is not in this build: enable the cargo feature of that name",
    }
}

macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            AnyBackend::Memory($backend) => $call,
            #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
            AnyBackend::Sql($backend) => $call,
            #[cfg(feature = "redis")]
            AnyBackend::Redis($backend) => $call,
            #[cfg(feature = "memcached")]
            AnyBackend::Memcached($backend) => $call,
            #[cfg(feature = "mongodb")]
            AnyBackend::Mongodb($backend) => $call,
        }
    };
}

impl Backend for AnyBackend {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        dispatch!(self, b => b.load(key).await)
    }

    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        dispatch!(self, b => b.load_and_touch(key, ttl).await)
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        dispatch!(self, b => b.insert(key, value, ttl).await)
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        dispatch!(self, b => b.store(key, value, ttl).await)
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        dispatch!(self, b => b.replace(key, value, ttl).await)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        dispatch!(self, b => b.touch(key, ttl).await)
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        dispatch!(self, b => b.delete(key).await)
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        dispatch!(self, b => b.purge_expired().await)
    }

    fn name(&self) -> &'static str {
        dispatch!(self, b => b.name())
    }
}
