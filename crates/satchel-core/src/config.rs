//! Configuration with Flask-Session's setting names.
//!
//! [`SessionConfig`] derives `Deserialize` with the same names Flask uses (`SESSION_TYPE`,
//! `PERMANENT_SESSION_LIFETIME`, …), so a Flask config can be copied as it is, and
//! [`SessionConfig::from_env`] reads the same names from the environment.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::SerializationFormat;
use crate::error::ConfigError;
use crate::session_id::{DEFAULT_ID_BYTES, MAX_ID_BYTES, MIN_ID_BYTES};

/// Where sessions are kept (`SESSION_TYPE`).
///
/// ```
/// use satchel_core::SessionType;
/// assert_eq!("SQL".parse::<SessionType>().unwrap(), SessionType::Sqlalchemy);
/// let err = "dynamo".parse::<SessionType>().unwrap_err().to_string();
/// assert!(err.contains("redis, memcached, mongodb, sqlalchemy (or sql), cookie, memory"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SessionType {
    /// Redis (`SESSION_REDIS`).
    Redis,
    /// memcached (`SESSION_MEMCACHED`).
    Memcached,
    /// MongoDB (`SESSION_MONGODB`).
    Mongodb,
    /// A SQL database: PostgreSQL, MySQL/MariaDB or SQLite (`SESSION_SQLALCHEMY`).
    Sqlalchemy,
    /// Flask's own signed client-side cookie; no server.
    Cookie,
    /// In this process's memory; for tests and development.
    Memory,
}

const ACCEPTED_TYPES: &str = "redis, memcached, mongodb, sqlalchemy (or sql), cookie, memory";

impl SessionType {
    /// The canonical `SESSION_TYPE` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Redis => "redis",
            SessionType::Memcached => "memcached",
            SessionType::Mongodb => "mongodb",
            SessionType::Sqlalchemy => "sqlalchemy",
            SessionType::Cookie => "cookie",
            SessionType::Memory => "memory",
        }
    }
}

impl FromStr for SessionType {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        // Flask-Session lower-cases the value before matching; so do we.
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "redis" => SessionType::Redis,
            "memcached" | "memcache" => SessionType::Memcached,
            "mongodb" | "mongo" => SessionType::Mongodb,
            "sqlalchemy" | "sql" => SessionType::Sqlalchemy,
            "cookie" => SessionType::Cookie,
            "memory" => SessionType::Memory,
            "filesystem" | "cachelib" | "dynamodb" => {
                return Err(invalid(
                    "SESSION_TYPE",
                    value,
                    format!(
                        "Satchel does not support Flask-Session's {value} backend; \
                         move those sessions to one of: {ACCEPTED_TYPES}"
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    "SESSION_TYPE",
                    value,
                    format!("one of {ACCEPTED_TYPES}"),
                ));
            }
        })
    }
}

impl TryFrom<String> for SessionType {
    type Error = ConfigError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// The cookie's `SameSite` attribute (`SESSION_COOKIE_SAMESITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers then require `Secure`).
    None,
}

impl FromStr for SameSite {
    type Err = ConfigError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(SameSite::Strict),
            "lax" => Ok(SameSite::Lax),
            "none" => Ok(SameSite::None),
            _ => Err(invalid(
                "SESSION_COOKIE_SAMESITE",
                value,
                "Strict, Lax or None".into(),
            )),
        }
    }
}

impl TryFrom<String> for SameSite {
    type Error = ConfigError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// What a request does when its session cannot be loaded because the backend failed
/// (`SATCHEL_ON_LOAD_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum LoadErrorPolicy {
    /// Fail the request with a 500 (`fail`, the default): a user is never silently logged out.
    #[default]
    Fail,
    /// Log the error and continue with an empty session (`fresh`): the site stays up while the
    /// session store is down, at the price of users appearing logged out.
    Fresh,
}

impl FromStr for LoadErrorPolicy {
    type Err = ConfigError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(LoadErrorPolicy::Fail),
            "fresh" => Ok(LoadErrorPolicy::Fresh),
            _ => Err(invalid(
                "SATCHEL_ON_LOAD_ERROR",
                value,
                "fail or fresh".into(),
            )),
        }
    }
}

impl TryFrom<String> for LoadErrorPolicy {
    type Error = ConfigError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// Flask-Session has no limit; Satchel refuses sessions larger than this by default.
pub const DEFAULT_MAX_SESSION_SIZE: usize = 1024 * 1024;

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's bytes, for key derivation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The database file used when nothing is configured: SQLite in the working directory.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://satchel-sessions.sqlite3";

/// Flask's default `PERMANENT_SESSION_LIFETIME`: 31 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);

/// Every setting Satchel reads, with Flask-Session's names and defaults.
///
/// Unset fields take Flask's defaults, except `SESSION_TYPE`, which defaults to an SQLite file
/// in the working directory so an app runs with no server at all.
///
/// # Example
///
/// ```
/// use satchel_core::{SessionConfig, SessionType};
///
/// let config: SessionConfig = serde_json::from_str(
///     r#"{"SESSION_TYPE": "redis", "SESSION_REDIS": "redis://127.0.0.1:6379",
///         "PERMANENT_SESSION_LIFETIME": 3600, "DEBUG": true}"#,
/// ).unwrap();
/// assert_eq!(config.session_type, SessionType::Redis);
/// assert_eq!(config.permanent_session_lifetime.as_secs(), 3600);
/// assert_eq!(config.key_prefix, "session:");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SessionConfig {
    /// `SESSION_TYPE`: which backend keeps the sessions.
    #[serde(rename = "SESSION_TYPE")]
    pub session_type: SessionType,
    /// `SESSION_PERMANENT`: new sessions are permanent (cookie with `Expires`). Default true.
    #[serde(rename = "SESSION_PERMANENT")]
    pub permanent: bool,
    /// `SESSION_USE_SIGNER`: sign the id in the cookie with `SECRET_KEY`. Default false.
    #[serde(rename = "SESSION_USE_SIGNER")]
    pub use_signer: bool,
    /// `SESSION_KEY_PREFIX`: prepended to the id to make the store key. Default `session:`.
    #[serde(rename = "SESSION_KEY_PREFIX")]
    pub key_prefix: String,
    /// `SESSION_ID_LENGTH`: random bytes in a new id. Default 32 (43 characters).
    #[serde(rename = "SESSION_ID_LENGTH")]
    pub id_length: usize,
    /// `SESSION_SERIALIZATION_FORMAT`: `msgpack` (default) or `json`.
    #[serde(rename = "SESSION_SERIALIZATION_FORMAT")]
    pub serialization_format: SerializationFormat,
    /// `SESSION_PICKLE_FALLBACK` (Satchel's own): read values pickled by Flask-Session 0.4–0.6
    /// (plain data only; anything needing a class is refused) and rewrite them in
    /// `SESSION_SERIALIZATION_FORMAT` on the next write. Default true, as Flask-Session 0.7+.
    #[serde(rename = "SESSION_PICKLE_FALLBACK")]
    pub pickle_fallback: bool,
    /// `SESSION_REDIS`: a Redis URL (cluster and sentinel forms are described in the README).
    #[serde(rename = "SESSION_REDIS")]
    pub redis: Option<String>,
    /// `SESSION_MEMCACHED`: memcached servers, comma separated.
    #[serde(rename = "SESSION_MEMCACHED")]
    pub memcached: Option<String>,
    /// `SESSION_MONGODB`: a MongoDB URI.
    #[serde(rename = "SESSION_MONGODB")]
    pub mongodb: Option<String>,
    /// `SESSION_MONGODB_DB`: database name. Default `flask_session`.
    #[serde(rename = "SESSION_MONGODB_DB")]
    pub mongodb_db: String,
    /// `SESSION_MONGODB_COLLECT`: collection name. Default `sessions`.
    #[serde(rename = "SESSION_MONGODB_COLLECT")]
    pub mongodb_collect: String,
    /// `SESSION_SQLALCHEMY`: a database URL, `postgres://`, `mysql://` or `sqlite://`.
    #[serde(rename = "SESSION_SQLALCHEMY")]
    pub sqlalchemy: Option<String>,
    /// `SESSION_SQLALCHEMY_TABLE`: the sessions table. Default `sessions`.
    #[serde(rename = "SESSION_SQLALCHEMY_TABLE")]
    pub sqlalchemy_table: String,
    /// `SESSION_SQLALCHEMY_SCHEMA`: the table's schema, if not the default one.
    #[serde(rename = "SESSION_SQLALCHEMY_SCHEMA")]
    pub sqlalchemy_schema: Option<String>,
    /// `SESSION_SQLALCHEMY_CREATE_TABLE` (Satchel's own): create the table and index if
    /// missing. Default true; turn off when migrations manage the schema.
    #[serde(rename = "SESSION_SQLALCHEMY_CREATE_TABLE")]
    pub sqlalchemy_create_table: bool,
    /// `SESSION_CLEANUP_N_REQUESTS`: purge expired rows before about one request in N+1, as
    /// Flask-Session does. Unset: only the periodic purge runs.
    #[serde(rename = "SESSION_CLEANUP_N_REQUESTS")]
    pub cleanup_n_requests: Option<u64>,
    /// `SATCHEL_PURGE_INTERVAL` (Satchel's own): seconds between purges of expired SQL rows.
    /// Default 600; 0 turns the periodic purge off.
    #[serde(rename = "SATCHEL_PURGE_INTERVAL", with = "seconds")]
    pub purge_interval: Duration,
    /// `SATCHEL_POOL_SIZE` (Satchel's own): connections per pool. Default 16. PostgreSQL,
    /// MySQL/MariaDB and memcached keep a pool per thread running a current-thread runtime
    /// (each actix-web worker), so a server sees up to this many per worker.
    #[serde(rename = "SATCHEL_POOL_SIZE")]
    pub pool_size: u32,
    /// `SATCHEL_CONNECT_TIMEOUT` (Satchel's own): seconds to wait for a connection. Default 5.
    #[serde(rename = "SATCHEL_CONNECT_TIMEOUT", with = "seconds")]
    pub connect_timeout: Duration,
    /// `SATCHEL_OPERATION_TIMEOUT` (Satchel's own): seconds one store operation may take.
    /// Default 5.
    #[serde(rename = "SATCHEL_OPERATION_TIMEOUT", with = "seconds")]
    pub operation_timeout: Duration,
    /// `SATCHEL_ON_LOAD_ERROR` (Satchel's own): `fail` (default) answers 500 when the backend
    /// cannot load a session; `fresh` logs and continues with an empty session.
    #[serde(rename = "SATCHEL_ON_LOAD_ERROR")]
    pub on_load_error: LoadErrorPolicy,
    /// `SATCHEL_MAX_SESSION_SIZE` (Satchel's own): the largest encoded session, in bytes, that
    /// is stored; a larger one fails the request with an error saying so. Default 1 MiB.
    #[serde(rename = "SATCHEL_MAX_SESSION_SIZE")]
    pub max_session_size: usize,
    /// `SECRET_KEY`: signs cookies. Any length, as in Flask.
    #[serde(rename = "SECRET_KEY")]
    pub secret_key: Option<Secret>,
    /// `SECRET_KEY_FALLBACKS`: older keys still accepted when verifying (cookie sessions).
    #[serde(rename = "SECRET_KEY_FALLBACKS")]
    pub secret_key_fallbacks: Vec<Secret>,
    /// `SESSION_COOKIE_NAME`. Default `session`.
    #[serde(rename = "SESSION_COOKIE_NAME")]
    pub cookie_name: String,
    /// `SESSION_COOKIE_DOMAIN`. Default none (host-only cookie).
    #[serde(rename = "SESSION_COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,
    /// `SESSION_COOKIE_PATH`. Default `/`.
    #[serde(rename = "SESSION_COOKIE_PATH")]
    pub cookie_path: String,
    /// `SESSION_COOKIE_HTTPONLY`. Default true.
    #[serde(rename = "SESSION_COOKIE_HTTPONLY")]
    pub cookie_httponly: bool,
    /// `SESSION_COOKIE_SECURE`. Default false.
    #[serde(rename = "SESSION_COOKIE_SECURE")]
    pub cookie_secure: bool,
    /// `SESSION_COOKIE_SAMESITE`. Default none (no attribute).
    #[serde(rename = "SESSION_COOKIE_SAMESITE")]
    pub cookie_samesite: Option<SameSite>,
    /// `PERMANENT_SESSION_LIFETIME`, in seconds: the store's TTL for every session, and the
    /// cookie's lifetime for permanent ones. Default 31 days.
    #[serde(rename = "PERMANENT_SESSION_LIFETIME", with = "seconds")]
    pub permanent_session_lifetime: Duration,
    /// `SESSION_REFRESH_EACH_REQUEST`: extend the TTL on every request. Default true.
    #[serde(rename = "SESSION_REFRESH_EACH_REQUEST")]
    pub refresh_each_request: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            session_type: SessionType::Sqlalchemy,
            permanent: true,
            use_signer: false,
            key_prefix: "session:".into(),
            id_length: DEFAULT_ID_BYTES,
            serialization_format: SerializationFormat::Msgpack,
            pickle_fallback: true,
            redis: None,
            memcached: None,
            mongodb: None,
            mongodb_db: "flask_session".into(),
            mongodb_collect: "sessions".into(),
            sqlalchemy: None,
            sqlalchemy_table: "sessions".into(),
            sqlalchemy_schema: None,
            sqlalchemy_create_table: true,
            cleanup_n_requests: None,
            purge_interval: Duration::from_secs(600),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            on_load_error: LoadErrorPolicy::Fail,
            max_session_size: DEFAULT_MAX_SESSION_SIZE,
            secret_key: None,
            secret_key_fallbacks: Vec::new(),
            cookie_name: "session".into(),
            cookie_domain: None,
            cookie_path: "/".into(),
            cookie_httponly: true,
            cookie_secure: false,
            cookie_samesite: None,
            permanent_session_lifetime: DEFAULT_LIFETIME,
            refresh_each_request: true,
        }
    }
}

impl SessionConfig {
    /// Reads the configuration from environment variables with Flask's names; unset ones keep
    /// their defaults. Fails on the first malformed value, naming the variable.
    ///
    /// ```
    /// let config = satchel_core::SessionConfig::from_env().unwrap();
    /// assert!(!config.key_prefix.is_empty());
    /// ```
    pub fn from_env() -> Result<SessionConfig, ConfigError> {
        SessionConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a setting's text by name; this is
    /// [`from_env`](Self::from_env) without the process environment, for tests and other sources.
    ///
    /// ```
    /// use satchel_core::{SessionConfig, SessionType};
    /// let config = SessionConfig::from_lookup(|name| match name {
    ///     "SESSION_TYPE" => Some("memory".into()),
    ///     "SESSION_PERMANENT" => Some("False".into()),
    ///     _ => None,
    /// }).unwrap();
    /// assert_eq!(config.session_type, SessionType::Memory);
    /// assert!(!config.permanent);
    ///
    /// let err = SessionConfig::from_lookup(|name| {
    ///     (name == "SESSION_PERMANENT").then(|| "maybe".to_string())
    /// }).unwrap_err();
    /// assert!(err.to_string().contains("SESSION_PERMANENT"));
    /// ```
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SessionConfig, ConfigError> {
        let mut c = SessionConfig::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("SESSION_TYPE") {
            c.session_type = v.parse()?;
        }
        set_bool(&get, "SESSION_PERMANENT", &mut c.permanent)?;
        set_bool(&get, "SESSION_USE_SIGNER", &mut c.use_signer)?;
        // An empty prefix is legitimate, so this one is read without the emptiness filter.
        if let Some(v) = lookup("SESSION_KEY_PREFIX") {
            c.key_prefix = v;
        }
        set_parsed(
            &get,
            "SESSION_ID_LENGTH",
            "a whole number of bytes, e.g. 32",
            &mut c.id_length,
        )?;
        if let Some(v) = get("SESSION_SERIALIZATION_FORMAT") {
            c.serialization_format = match v.trim().to_ascii_lowercase().as_str() {
                "msgpack" => SerializationFormat::Msgpack,
                "json" => SerializationFormat::Json,
                _ => {
                    return Err(invalid(
                        "SESSION_SERIALIZATION_FORMAT",
                        &v,
                        "msgpack or json".into(),
                    ));
                }
            };
        }
        set_bool(&get, "SESSION_PICKLE_FALLBACK", &mut c.pickle_fallback)?;
        c.redis = get("SESSION_REDIS");
        c.memcached = get("SESSION_MEMCACHED");
        c.mongodb = get("SESSION_MONGODB");
        set_string(&get, "SESSION_MONGODB_DB", &mut c.mongodb_db);
        set_string(&get, "SESSION_MONGODB_COLLECT", &mut c.mongodb_collect);
        c.sqlalchemy = get("SESSION_SQLALCHEMY");
        set_string(&get, "SESSION_SQLALCHEMY_TABLE", &mut c.sqlalchemy_table);
        c.sqlalchemy_schema = get("SESSION_SQLALCHEMY_SCHEMA");
        set_bool(
            &get,
            "SESSION_SQLALCHEMY_CREATE_TABLE",
            &mut c.sqlalchemy_create_table,
        )?;
        if let Some(v) = get("SESSION_CLEANUP_N_REQUESTS") {
            c.cleanup_n_requests = Some(parse(&v, "SESSION_CLEANUP_N_REQUESTS", "a whole number")?);
        }
        set_secs(&get, "SATCHEL_PURGE_INTERVAL", &mut c.purge_interval)?;
        set_parsed(
            &get,
            "SATCHEL_POOL_SIZE",
            "a whole number of connections",
            &mut c.pool_size,
        )?;
        set_secs(&get, "SATCHEL_CONNECT_TIMEOUT", &mut c.connect_timeout)?;
        set_secs(&get, "SATCHEL_OPERATION_TIMEOUT", &mut c.operation_timeout)?;
        if let Some(v) = get("SATCHEL_ON_LOAD_ERROR") {
            c.on_load_error = v.parse()?;
        }
        set_parsed(
            &get,
            "SATCHEL_MAX_SESSION_SIZE",
            "a whole number of bytes",
            &mut c.max_session_size,
        )?;
        c.secret_key = get("SECRET_KEY").map(Secret);
        if let Some(v) = get("SECRET_KEY_FALLBACKS") {
            c.secret_key_fallbacks = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Secret(s.to_owned()))
                .collect();
        }
        set_string(&get, "SESSION_COOKIE_NAME", &mut c.cookie_name);
        c.cookie_domain = get("SESSION_COOKIE_DOMAIN");
        set_string(&get, "SESSION_COOKIE_PATH", &mut c.cookie_path);
        set_bool(&get, "SESSION_COOKIE_HTTPONLY", &mut c.cookie_httponly)?;
        set_bool(&get, "SESSION_COOKIE_SECURE", &mut c.cookie_secure)?;
        if let Some(v) = get("SESSION_COOKIE_SAMESITE") {
            c.cookie_samesite = Some(v.parse()?);
        }
        set_secs(
            &get,
            "PERMANENT_SESSION_LIFETIME",
            &mut c.permanent_session_lifetime,
        )?;
        set_bool(
            &get,
            "SESSION_REFRESH_EACH_REQUEST",
            &mut c.refresh_each_request,
        )?;
        c.validate()?;
        Ok(c)
    }

    /// Checks settings that are well-formed one by one but unusable, such as an id length out
    /// of range or a zero lifetime. [`from_env`](Self::from_env) calls it; call it yourself
    /// after deserializing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_ID_BYTES..=MAX_ID_BYTES).contains(&self.id_length) {
            return Err(invalid(
                "SESSION_ID_LENGTH",
                &self.id_length.to_string(),
                format!("between {MIN_ID_BYTES} and {MAX_ID_BYTES} bytes"),
            ));
        }
        if self.permanent_session_lifetime.is_zero() {
            return Err(invalid(
                "PERMANENT_SESSION_LIFETIME",
                "0",
                "at least 1 second".into(),
            ));
        }
        if self.cookie_name.is_empty()
            || !self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return Err(invalid(
                "SESSION_COOKIE_NAME",
                &self.cookie_name,
                "a cookie name: visible ASCII without separators".into(),
            ));
        }
        if self.max_session_size == 0 {
            return Err(invalid(
                "SATCHEL_MAX_SESSION_SIZE",
                "0",
                "at least 1 byte".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err(invalid("SATCHEL_POOL_SIZE", "0", "at least 1".into()));
        }
        if self.key_prefix.len() > 200 || self.key_prefix.chars().any(char::is_control) {
            return Err(invalid(
                "SESSION_KEY_PREFIX",
                &self.key_prefix,
                "at most 200 bytes, without control characters".into(),
            ));
        }
        Ok(())
    }

    /// The store key for a session id: `SESSION_KEY_PREFIX + id`.
    pub fn store_key(&self, id: &str) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + id.len());
        key.push_str(&self.key_prefix);
        key.push_str(id);
        key
    }
}

fn invalid(setting: &'static str, value: &str, expected: String) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: value.to_owned(),
        expected,
    }
}

fn parse<T: FromStr>(value: &str, setting: &'static str, expected: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(setting, value, expected.to_owned()))
}

fn set_string(get: &impl Fn(&str) -> Option<String>, name: &str, slot: &mut String) {
    if let Some(v) = get(name) {
        *slot = v;
    }
}

fn set_parsed<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    expected: &str,
    slot: &mut T,
) -> Result<(), ConfigError> {
    if let Some(v) = get(name) {
        *slot = parse(&v, name, expected)?;
    }
    Ok(())
}

fn set_secs(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    slot: &mut Duration,
) -> Result<(), ConfigError> {
    if let Some(v) = get(name) {
        let secs: f64 = parse(&v, name, "a number of seconds, e.g. 3600")?;
        *slot = Duration::try_from_secs_f64(secs)
            .map_err(|_| invalid(name, &v, "a non-negative number of seconds".into()))?;
    }
    Ok(())
}

fn set_bool(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    slot: &mut bool,
) -> Result<(), ConfigError> {
    if let Some(v) = get(name) {
        *slot = match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                return Err(invalid(
                    name,
                    &v,
                    "true or false (also 1/0, yes/no, on/off)".into(),
                ));
            }
        };
    }
    Ok(())
}

/// Durations as whole or fractional seconds, as Flask accepts `PERMANENT_SESSION_LIFETIME`.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_are_flask_sessions_with_sqlite() {
        let c = SessionConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c.session_type, SessionType::Sqlalchemy);
        assert!(c.sqlalchemy.is_none());
        assert!(c.permanent && c.refresh_each_request && c.cookie_httponly);
        assert_eq!(c.permanent_session_lifetime.as_secs(), 2_678_400);
        assert_eq!(c.cookie_name, "session");
        assert_eq!(c.store_key("abc"), "session:abc");
    }

    #[test]
    fn every_setting_is_read_from_flask_names() {
        let c = SessionConfig::from_lookup(lookup(&[
            ("SESSION_TYPE", "Redis"),
            ("SESSION_REDIS", "redis://127.0.0.1:6379/0"),
            ("SESSION_KEY_PREFIX", "flask"),
            ("SESSION_USE_SIGNER", "true"),
            ("SESSION_SERIALIZATION_FORMAT", "JSON"),
            ("SESSION_COOKIE_SAMESITE", "Lax"),
            ("PERMANENT_SESSION_LIFETIME", "3600"),
            ("SECRET_KEY", "s3cret"),
            ("SECRET_KEY_FALLBACKS", "old1, old2"),
        ]))
        .unwrap();
        assert_eq!(c.session_type, SessionType::Redis);
        assert_eq!(c.key_prefix, "flask");
        assert!(c.use_signer);
        assert_eq!(c.serialization_format, SerializationFormat::Json);
        assert_eq!(c.cookie_samesite, Some(SameSite::Lax));
        assert_eq!(c.permanent_session_lifetime, Duration::from_secs(3600));
        assert_eq!(c.secret_key_fallbacks.len(), 2);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn pickle_fallback_is_on_by_default_and_can_be_turned_off() {
        assert!(
            SessionConfig::from_lookup(|_| None)
                .unwrap()
                .pickle_fallback
        );
        let off = lookup(&[("SESSION_PICKLE_FALLBACK", "false")]);
        assert!(!SessionConfig::from_lookup(off).unwrap().pickle_fallback);
        let json: SessionConfig =
            serde_json::from_str(r#"{"SESSION_PICKLE_FALLBACK": false}"#).unwrap();
        assert!(!json.pickle_fallback);
        let bad = lookup(&[("SESSION_PICKLE_FALLBACK", "sometimes")]);
        assert!(SessionConfig::from_lookup(bad).is_err());
    }

    #[test]
    fn malformed_settings_name_themselves() {
        for (name, value) in [
            ("SESSION_TYPE", "nosuch"),
            ("SESSION_PERMANENT", "perhaps"),
            ("SESSION_ID_LENGTH", "abc"),
            ("SESSION_ID_LENGTH", "4"),
            ("SESSION_SERIALIZATION_FORMAT", "pickle"),
            ("SESSION_COOKIE_SAMESITE", "sometimes"),
            ("PERMANENT_SESSION_LIFETIME", "-5"),
            ("PERMANENT_SESSION_LIFETIME", "0"),
            ("SESSION_COOKIE_NAME", "a b"),
            ("SATCHEL_POOL_SIZE", "0"),
            ("SATCHEL_ON_LOAD_ERROR", "ignore"),
            ("SATCHEL_MAX_SESSION_SIZE", "big"),
            ("SATCHEL_MAX_SESSION_SIZE", "0"),
            ("SESSION_CLEANUP_N_REQUESTS", "-1"),
        ] {
            let err = SessionConfig::from_lookup(lookup(&[(name, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(name), "{name}={value}: {text}");
        }
    }

    #[test]
    fn unknown_session_type_lists_the_accepted_ones() {
        let err = SessionConfig::from_lookup(lookup(&[("SESSION_TYPE", "cassandra")])).unwrap_err();
        assert!(err.to_string().contains(ACCEPTED_TYPES), "{err}");
        let err =
            SessionConfig::from_lookup(lookup(&[("SESSION_TYPE", "filesystem")])).unwrap_err();
        assert!(err.to_string().contains("does not support"), "{err}");
    }

    #[test]
    fn serde_uses_flask_names_and_validates_types() {
        let c: SessionConfig =
            serde_json::from_str(r#"{"SESSION_TYPE":"sql","SESSION_COOKIE_SAMESITE":"None"}"#)
                .unwrap();
        assert_eq!(c.session_type, SessionType::Sqlalchemy);
        assert_eq!(c.cookie_samesite, Some(SameSite::None));
        let err = serde_json::from_str::<SessionConfig>(r#"{"SESSION_TYPE":"nosql"}"#).unwrap_err();
        assert!(err.to_string().contains("SESSION_TYPE"), "{err}");
    }
}
