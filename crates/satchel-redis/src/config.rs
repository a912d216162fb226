//! `SESSION_REDIS` URLs, parsed into deadpool-redis' configuration types.

use std::fmt;
use std::time::Duration;

use deadpool_redis::redis::{self, IntoConnectionInfo};
use satchel_core::{ConfigError, SessionConfig};

/// The setting whose value [`RedisConfig::from_url`] parses, named in its errors.
pub const SETTING: &str = "SESSION_REDIS";

/// The URL used when `SESSION_REDIS` is unset, as Flask-Session's `Redis()` default.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The most connections [`ConnectOptions::from_session_config`] opens, whatever
/// `SATCHEL_POOL_SIZE` says: Redis runs commands on one thread, so more multiplexed
/// connections than this only add sockets.
pub const MAX_SHARED_CONNECTIONS: usize = 4;

const DEFAULT_SENTINEL_PORT: u16 = 26379;

const ACCEPTED: &str = "redis://[user:password@]host[:port][/db], rediss://… (TLS), \
     unix:///path/to/redis.sock[?db=N], redis+unix:///path, \
     redis+cluster://[user:password@]host:port,host:port,… or \
     redis+sentinel://[user:password@]host:port,host:port,…/master-name[/db]";

/// Where the sessions live: one Redis, a Redis Cluster, or the master that Redis Sentinel
/// names. Each variant holds deadpool-redis' own configuration type, so an application that
/// already builds (or deserializes) a deadpool-redis config can hand it over as it is.
///
/// Only the connection fields are read; deadpool's `pool` settings are ignored, because the
/// backend keeps a few long-lived multiplexed connections instead of a checkout pool (see
/// [`RedisBackend`](crate::RedisBackend)).
///
/// `Debug` hides passwords.
///
/// # Example
///
/// ```
/// use satchel_redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis+cluster://10.0.0.1:7001,10.0.0.2:7001").unwrap();
/// assert!(matches!(config, RedisConfig::Cluster(_)));
///
/// let err = RedisConfig::from_url("redis://:hunter2@host:port").unwrap_err().to_string();
/// assert!(err.contains("SESSION_REDIS") && !err.contains("hunter2"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConfig {
    /// One Redis server, over TCP, TLS or a unix socket.
    Standalone(deadpool_redis::Config),
    /// A Redis Cluster, reached through any of its seed nodes.
    Cluster(deadpool_redis::cluster::Config),
    /// The master of a Sentinel-monitored group, looked up through the sentinels.
    Sentinel(deadpool_redis::sentinel::Config),
}

impl RedisConfig {
    /// Parses a `SESSION_REDIS` URL; see the crate documentation for the forms.
    ///
    /// A malformed URL is a [`ConfigError::Invalid`] naming `SESSION_REDIS`, with any password
    /// in it replaced by `***`.
    pub fn from_url(url: &str) -> Result<RedisConfig, ConfigError> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "a URL with a scheme".into()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "redis+cluster" | "rediss+cluster" | "valkey+cluster" | "valkeys+cluster" => {
                parse_cluster(url, scheme, rest)
            }
            "redis+sentinel" | "rediss+sentinel" | "valkey+sentinel" | "valkeys+sentinel" => {
                parse_sentinel(url, scheme, rest)
            }
            "redis" | "rediss" | "valkey" | "valkeys" | "unix" | "redis+unix" | "valkey+unix" => {
                check_tls(url, scheme)?;
                check_node(url, url)?;
                Ok(RedisConfig::Standalone(deadpool_redis::Config::from_url(
                    url,
                )))
            }
            _ => Err(invalid(url, format!("one of {ACCEPTED}"))),
        }
    }

    /// Reads `SESSION_REDIS` from the session configuration; unset means
    /// `redis://127.0.0.1:6379`, as in Flask-Session.
    pub fn from_session_config(config: &SessionConfig) -> Result<RedisConfig, ConfigError> {
        RedisConfig::from_url(config.redis.as_deref().unwrap_or(DEFAULT_URL))
    }

    /// A description of where this points, safe for logs and errors: the URLs with passwords
    /// replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            RedisConfig::Standalone(c) => match (&c.url, &c.connection) {
                (Some(url), _) => redact_url(url),
                (None, Some(info)) => describe_info(info),
                (None, None) => DEFAULT_URL.to_owned(),
            },
            RedisConfig::Cluster(c) => format!(
                "Redis Cluster at {}",
                describe_nodes(&c.urls, &c.connections)
            ),
            RedisConfig::Sentinel(c) => format!(
                "Redis Sentinel master {:?} via {}",
                c.master_name,
                describe_nodes(&c.urls, &c.connections)
            ),
        }
    }

    /// True when the URLs ask for TLS, so the `tls` feature must be compiled in.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn uses_tls(&self) -> bool {
        let tls_url = |u: &String| {
            let scheme = u
                .split("://")
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            scheme.starts_with("rediss") || scheme.starts_with("valkeys")
        };
        match self {
            RedisConfig::Standalone(c) => c.url.as_ref().is_some_and(tls_url),
            RedisConfig::Cluster(c) => c.urls.iter().flatten().any(tls_url),
            RedisConfig::Sentinel(c) => {
                c.urls.iter().flatten().any(tls_url)
                    || c.node_connection_info
                        .as_ref()
                        .is_some_and(|n| n.tls_mode.is_some())
            }
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            RedisConfig::Standalone(_) => "Standalone",
            RedisConfig::Cluster(_) => "Cluster",
            RedisConfig::Sentinel(_) => "Sentinel",
        };
        f.debug_tuple(kind).field(&self.describe()).finish()
    }
}

/// How many shared connections to open and how long to wait.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use satchel_redis::ConnectOptions;
///
/// let options = ConnectOptions::default()
///     .with_connections(2)
///     .with_operation_timeout(Duration::from_secs(1));
/// assert_eq!(options.connections, 2);
/// assert_eq!(options.connect_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Long-lived multiplexed connections shared by all requests (round robin). At least 1.
    pub connections: usize,
    /// How long opening a connection may take (TCP, TLS, `AUTH`, Sentinel lookup).
    pub connect_timeout: Duration,
    /// How long one command may take, reply included.
    pub operation_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connections: MAX_SHARED_CONNECTIONS,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

impl ConnectOptions {
    /// With `connections` shared connections (at least 1).
    pub fn with_connections(mut self, connections: usize) -> ConnectOptions {
        self.connections = connections.max(1);
        self
    }

    /// With this connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.connect_timeout = timeout;
        self
    }

    /// With this per-command timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.operation_timeout = timeout;
        self
    }

    /// `SATCHEL_CONNECT_TIMEOUT`, `SATCHEL_OPERATION_TIMEOUT`, and
    /// `min(SATCHEL_POOL_SIZE, MAX_SHARED_CONNECTIONS)` connections.
    pub fn from_session_config(config: &SessionConfig) -> ConnectOptions {
        let pool = usize::try_from(config.pool_size).unwrap_or(usize::MAX);
        ConnectOptions {
            connections: pool.clamp(1, MAX_SHARED_CONNECTIONS),
            connect_timeout: config.connect_timeout,
            operation_timeout: config.operation_timeout,
        }
    }
}

fn invalid(url: &str, expected: String) -> ConfigError {
    ConfigError::Invalid {
        setting: SETTING,
        value: redact_url(url),
        expected,
    }
}

fn is_tls_scheme(scheme: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    scheme.starts_with("rediss") || scheme.starts_with("valkeys")
}

fn check_tls(url: &str, scheme: &str) -> Result<(), ConfigError> {
    if is_tls_scheme(scheme) && !cfg!(feature = "tls") {
        return Err(invalid(
            url,
            "a plain redis:// URL: TLS (rediss://) needs satchel-redis' `tls` cargo feature".into(),
        ));
    }
    Ok(())
}

/// Lets redis-rs parse one node's URL now, so mistakes surface at start-up with the setting's
/// name rather than at the first request.
fn check_node(original: &str, node_url: &str) -> Result<redis::ConnectionInfo, ConfigError> {
    node_url.into_connection_info().map_err(|e| {
        // The detail is one of redis-rs' fixed messages ("Invalid database number", …); it
        // never echoes the URL, so it cannot leak a password.
        let reason = e.detail().unwrap_or_else(|| e.category()).to_owned();
        invalid(original, format!("{reason}; expected {ACCEPTED}"))
    })
}

/// Splits `user:pass@h1:p1,h2:p2/path?query` into (userinfo with `@`, hosts, path, query).
fn split_multi_host(rest: &str) -> (&str, &str, &str, &str) {
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    (userinfo, hosts, path, query)
}

fn hosts_of<'a>(original: &str, hosts: &'a str) -> Result<Vec<&'a str>, ConfigError> {
    let list: Vec<&str> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if list.is_empty() {
        return Err(invalid(
            original,
            format!("at least one host:port; expected {ACCEPTED}"),
        ));
    }
    Ok(list)
}

fn has_port(host: &str) -> bool {
    match host.rfind(']') {
        // [v6]:port
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    }
}

/// The plain scheme for one node: `redis+cluster` → `redis`, `rediss+sentinel` → `rediss`.
fn node_scheme(scheme: &str) -> String {
    scheme
        .split('+')
        .next()
        .unwrap_or("redis")
        .to_ascii_lowercase()
}

fn parse_cluster(url: &str, scheme: &str, rest: &str) -> Result<RedisConfig, ConfigError> {
    check_tls(url, scheme)?;
    let (userinfo, hosts, path, query) = split_multi_host(rest);
    if !matches!(path, "" | "/" | "/0") {
        return Err(invalid(
            url,
            "no database number: Redis Cluster has only database 0".into(),
        ));
    }
    let node_scheme = node_scheme(scheme);
    let mut urls = Vec::new();
    for host in hosts_of(url, hosts)? {
        let node = format!("{node_scheme}://{userinfo}{host}/{query}");
        check_node(url, &node)?;
        urls.push(node);
    }
    Ok(RedisConfig::Cluster(
        deadpool_redis::cluster::Config::from_urls(urls),
    ))
}

fn parse_sentinel(url: &str, scheme: &str, rest: &str) -> Result<RedisConfig, ConfigError> {
    use deadpool_redis::sentinel::{
        Config, SentinelNodeConnectionInfo, SentinelServerType, TlsMode,
    };

    check_tls(url, scheme)?;
    let (userinfo, hosts, path, query) = split_multi_host(rest);
    let mut segments = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty());
    let master_name = segments.next().ok_or_else(|| {
        invalid(url, "the master name after the sentinel addresses, e.g. redis+sentinel://127.0.0.1:26379/mymaster".into())
    })?;
    let db = segments.next().unwrap_or("0");
    if segments.next().is_some() {
        return Err(invalid(
            url,
            "at most /master-name/db after the sentinel addresses".into(),
        ));
    }
    let node_scheme = node_scheme(scheme);

    // Sentinels get their own credentials (query `sentinel_username`/`sentinel_password`),
    // because a sentinel usually has no password even when the master has one.
    let mut sentinel_userinfo = String::new();
    let mut master_query = Vec::new();
    let query_text = query.trim_start_matches('?');
    let (mut sentinel_user, mut sentinel_pass) = (None, None);
    for pair in query_text.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => sentinel_user = Some(v),
            Some(("sentinel_password", v)) => sentinel_pass = Some(v),
            _ => master_query.push(pair),
        }
    }
    if sentinel_user.is_some() || sentinel_pass.is_some() {
        sentinel_userinfo = format!(
            "{}{}@",
            sentinel_user.unwrap_or(""),
            sentinel_pass.map(|p| format!(":{p}")).unwrap_or_default()
        );
    }
    let master_query = if master_query.is_empty() {
        String::new()
    } else {
        format!("?{}", master_query.join("&"))
    };

    let hosts = hosts_of(url, hosts)?;
    let mut urls = Vec::new();
    for host in &hosts {
        let port = if has_port(host) {
            String::new()
        } else {
            format!(":{DEFAULT_SENTINEL_PORT}")
        };
        let node = format!("{node_scheme}://{sentinel_userinfo}{host}{port}/");
        check_node(url, &node)?;
        urls.push(node);
    }
    // The master's credentials, database and protocol, parsed by redis-rs from a URL of the
    // same shape so percent-decoding and validation match the standalone form.
    let master = check_node(
        url,
        &format!("{node_scheme}://{userinfo}{}/{db}{master_query}", hosts[0]),
    )?;
    let tls_mode = match master.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => Some(TlsMode::Insecure),
        redis::ConnectionAddr::TcpTls { .. } => Some(TlsMode::Secure),
        _ => None,
    };
    let node_info = SentinelNodeConnectionInfo {
        tls_mode,
        redis_connection_info: Some(master.redis_settings().clone().into()),
    };
    Ok(RedisConfig::Sentinel(
        Config::from_urls(urls, master_name.to_owned(), SentinelServerType::Master)
            .with_node_connection_info(Some(node_info)),
    ))
}

/// Replaces the password in a Redis URL (userinfo, or a `pass`/`password` query parameter)
/// with `***`, for errors and logs.
///
/// ```
/// use satchel_redis::redact_url;
/// assert_eq!(redact_url("redis://user:s3cret@h:6379/0"), "redis://user:***@h:6379/0");
/// assert_eq!(redact_url("redis+unix:///tmp/r.sock?pass=s3cret&db=1"), "redis+unix:///tmp/r.sock?pass=***&db=1");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: it may be a bare password pasted in the wrong place.
        return "***".to_owned();
    };
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    let mut out = format!("{scheme}://");
    match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@")),
                // `redis://secret@host` is a user name to Redis, but people put passwords there.
                None => out.push_str("***@"),
            }
            out.push_str(&authority[i + 1..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("pass") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn describe_info(info: &deadpool_redis::ConnectionInfo) -> String {
    match &info.addr {
        deadpool_redis::ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        deadpool_redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{host}:{port}")
        }
        deadpool_redis::ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
    }
}

fn describe_nodes(
    urls: &Option<Vec<String>>,
    infos: &Option<Vec<deadpool_redis::ConnectionInfo>>,
) -> String {
    let mut nodes: Vec<String> = urls.iter().flatten().map(|u| redact_url(u)).collect();
    nodes.extend(infos.iter().flatten().map(describe_info));
    nodes.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(url: &str) -> String {
        RedisConfig::from_url(url).unwrap_err().to_string()
    }

    #[test]
    fn standalone_forms_parse() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1",
            "redis://:pw@127.0.0.1:6379/2",
            "redis://user:pw@localhost/0?protocol=resp3",
            "unix:///run/redis.sock",
            "redis+unix:///run/redis.sock?db=1",
        ] {
            assert!(
                matches!(RedisConfig::from_url(url), Ok(RedisConfig::Standalone(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn cluster_url_becomes_one_url_per_seed_node() {
        let RedisConfig::Cluster(c) =
            RedisConfig::from_url("redis+cluster://u:p@127.0.0.1:7001, 127.0.0.1:7002,[::1]:7003")
                .unwrap()
        else {
            panic!("not a cluster")
        };
        assert_eq!(
            c.urls.unwrap(),
            [
                "redis://u:p@127.0.0.1:7001/",
                "redis://u:p@127.0.0.1:7002/",
                "redis://u:p@[::1]:7003/"
            ]
        );
    }

    #[test]
    fn cluster_refuses_a_database_number() {
        assert!(message("redis+cluster://127.0.0.1:7001/3").contains("only database 0"));
    }

    #[test]
    fn sentinel_url_names_master_database_and_sentinels() {
        let RedisConfig::Sentinel(c) =
            RedisConfig::from_url("redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1/mymaster/2")
                .unwrap()
        else {
            panic!("not sentinel")
        };
        assert_eq!(c.master_name, "mymaster");
        // Sentinels are contacted without the master's password; the default port is 26379.
        assert_eq!(
            c.urls.unwrap(),
            ["redis://127.0.0.1:26379/", "redis://127.0.0.1:26379/"]
        );
        let info = c
            .node_connection_info
            .unwrap()
            .redis_connection_info
            .unwrap();
        assert_eq!(info.db, 2);
        assert_eq!(info.password.as_deref(), Some("pw"));
    }

    #[test]
    fn sentinel_credentials_come_from_the_query() {
        let RedisConfig::Sentinel(c) = RedisConfig::from_url(
            "redis+sentinel://127.0.0.1:26379/m?sentinel_password=spw&protocol=resp3",
        )
        .unwrap() else {
            panic!("not sentinel")
        };
        assert_eq!(c.urls.unwrap(), ["redis://:spw@127.0.0.1:26379/"]);
        assert!(
            c.node_connection_info
                .unwrap()
                .redis_connection_info
                .unwrap()
                .password
                .is_none()
        );
    }

    #[test]
    fn sentinel_needs_a_master_name() {
        assert!(message("redis+sentinel://127.0.0.1:26379").contains("master name"));
    }

    #[test]
    fn bad_urls_name_the_setting_and_hide_the_password() {
        for url in [
            "http://:hunter2@127.0.0.1",
            "redis://:hunter2@127.0.0.1:notaport",
            "redis://:hunter2@127.0.0.1/notadb",
            "redis+cluster://:hunter2@",
            "hunter2",
        ] {
            let text = message(url);
            assert!(text.contains("SESSION_REDIS"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_the_feature_says_which_feature() {
        assert!(message("rediss://127.0.0.1:6380").contains("`tls`"));
    }

    #[test]
    fn debug_hides_passwords() {
        let config = RedisConfig::from_url("redis+cluster://:hunter2@127.0.0.1:7001").unwrap();
        let text = format!("{config:?}");
        assert!(
            !text.contains("hunter2") && text.contains("127.0.0.1:7001"),
            "{text}"
        );
    }

    #[test]
    fn connect_options_cap_the_shared_connections() {
        let mut config = SessionConfig::default();
        config.pool_size = 16;
        assert_eq!(
            ConnectOptions::from_session_config(&config).connections,
            MAX_SHARED_CONNECTIONS
        );
        config.pool_size = 1;
        assert_eq!(ConnectOptions::from_session_config(&config).connections, 1);
    }
}
