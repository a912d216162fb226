//! Reading `SESSION_MEMCACHED` and checking the settings memcached constrains.

use satchel_core::session_id::encoded_len;
use satchel_core::{ConfigError, SessionConfig};

use crate::wire::MAX_KEY_LEN;

/// The server used when `SESSION_MEMCACHED` is unset, as Flask-Session's default.
pub const DEFAULT_SERVER: &str = "127.0.0.1:11211";

const DEFAULT_PORT: u16 = 11211;

const ACCEPTED: &str = "memcached servers separated by commas or spaces, each `host:port`, `host` \
     (port 11211) or `memcache://host:port`, e.g. `127.0.0.1:11211,127.0.0.1:11212`";

/// The servers named by `SESSION_MEMCACHED`, normalised to `host:port` (the form the client
/// hashes keys over, so the same list always spreads keys the same way).
///
/// ```
/// use satchel_memcached::config::parse_servers;
/// assert_eq!(
///     parse_servers("memcache://10.0.0.1:11211, cache2").unwrap(),
///     ["10.0.0.1:11211", "cache2:11211"],
/// );
/// let err = parse_servers("redis://127.0.0.1").unwrap_err().to_string();
/// assert!(err.contains("SESSION_MEMCACHED"));
/// ```
pub fn parse_servers(text: &str) -> Result<Vec<String>, ConfigError> {
    let servers = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| parse_server(s).map_err(|why| invalid(text, why)))
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(invalid(text, "no server given"));
    }
    Ok(servers)
}

fn parse_server(token: &str) -> Result<String, String> {
    let rest = match token.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "memcache" | "memcached" => rest,
            "memcache+tls" => {
                return Err(
                    "TLS is not available: Satchel's memcached client speaks plain TCP".into(),
                );
            }
            other => return Err(format!("`{other}://` is not a memcached URL")),
        },
        None => token,
    };
    let (authority, tail) = rest
        .find(['/', '?', '#'])
        .map_or((rest, ""), |i| rest.split_at(i));
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "`{tail}` is not supported in a server address (no paths, unix sockets or options; \
             timeouts come from SATCHEL_CONNECT_TIMEOUT and SATCHEL_OPERATION_TIMEOUT)"
        ));
    }
    if authority.contains('@') {
        return Err("credentials are not supported (memcached's meta protocol has no SASL)".into());
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err(format!("`{token}` has no host"));
    }
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{authority}` has an unclosed `[`"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{authority}` is not host:port")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))?,
    };
    Ok((host, port))
}

fn invalid(value: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        setting: "SESSION_MEMCACHED",
        value: value.to_owned(),
        expected: format!("{ACCEPTED} ({why})"),
    }
}

/// Refuses a `SESSION_KEY_PREFIX` that would make every key unusable in memcached: too long
/// for the 250-byte limit with `SESSION_ID_LENGTH`'s ids, or containing whitespace.
pub fn check_prefix(config: &SessionConfig) -> Result<(), ConfigError> {
    let id_len = encoded_len(config.id_length);
    let prefix = &config.key_prefix;
    let expected = if prefix.len() + id_len > MAX_KEY_LEN {
        format!(
            "at most {} bytes, so that prefix + the {id_len}-character session id \
             (SESSION_ID_LENGTH={}) fit memcached's {MAX_KEY_LEN}-byte key limit",
            MAX_KEY_LEN.saturating_sub(id_len),
            config.id_length,
        )
    } else if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "no whitespace or control characters: memcached keys cannot contain them".to_owned()
    } else {
        return Ok(());
    };
    Err(ConfigError::Invalid {
        setting: "SESSION_KEY_PREFIX",
        value: prefix.clone(),
        expected,
    })
}

/// The servers to use: `SESSION_MEMCACHED`, or [`DEFAULT_SERVER`] when unset.
pub fn servers(config: &SessionConfig) -> Result<Vec<String>, ConfigError> {
    match &config.memcached {
        Some(text) => parse_servers(text),
        None => Ok(vec![DEFAULT_SERVER.to_owned()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_take_commas_spaces_and_urls() {
        assert_eq!(
            parse_servers("127.0.0.1:11211,127.0.0.1:11212").unwrap(),
            ["127.0.0.1:11211", "127.0.0.1:11212"]
        );
        assert_eq!(
            parse_servers(" memcache://127.0.0.1:11211/  memcached://localhost ,[::1]:11300 ,")
                .unwrap(),
            ["127.0.0.1:11211", "localhost:11211", "[::1]:11300"]
        );
        assert_eq!(parse_servers("[::1]").unwrap(), ["[::1]:11211"]);
        assert_eq!(parse_servers("MEMCACHE://cache").unwrap(), ["cache:11211"]);
    }

    #[test]
    fn bad_server_lists_name_the_setting() {
        for bad in [
            "",
            " , ",
            "redis://127.0.0.1:6379",
            "memcache+tls://127.0.0.1:11211",
            "memcache+udp://127.0.0.1:11211",
            "127.0.0.1:notaport",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "memcache://",
            "memcache:///tmp/memcached.sock",
            "memcache://127.0.0.1:11211?timeout=3",
            "memcache://user:pw@127.0.0.1:11211",
            "[::1",
            "[::1]x",
            ":11211",
        ] {
            match parse_servers(bad) {
                Err(ConfigError::Invalid { setting, value, .. }) => {
                    assert_eq!(setting, "SESSION_MEMCACHED", "{bad:?}");
                    assert_eq!(value, bad);
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unset_means_the_local_default() {
        let config = SessionConfig::default();
        assert_eq!(servers(&config).unwrap(), [DEFAULT_SERVER]);
    }

    #[test]
    fn a_prefix_that_makes_every_key_too_long_is_a_config_error() {
        let mut config = SessionConfig::default();
        assert!(check_prefix(&config).is_ok());
        // 43-character ids: a 207-byte prefix fits exactly, 208 does not.
        config.key_prefix = "p".repeat(207);
        assert!(check_prefix(&config).is_ok());
        config.key_prefix = "p".repeat(208);
        let err = check_prefix(&config).unwrap_err().to_string();
        assert!(
            err.contains("SESSION_KEY_PREFIX") && err.contains("250"),
            "{err}"
        );
        // Longer ids leave less room for the prefix.
        config.key_prefix = "session:".into();
        config.id_length = 256;
        assert!(check_prefix(&config).is_err());
        config.id_length = 32;
        config.key_prefix = "my session:".into();
        assert!(
            check_prefix(&config)
                .unwrap_err()
                .to_string()
                .contains("whitespace")
        );
    }
}
