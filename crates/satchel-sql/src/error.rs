//! The errors this crate puts inside [`satchel_core::BackendError`] and
//! [`satchel_core::ConfigError`].

use std::time::Duration;

/// Why a SQL operation failed. Carried as the `source` of a [`satchel_core::BackendError`].
///
/// Messages never contain a session id or a password: the database's own text for a unique
/// violation quotes the key, so that one is replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The database could not be reached at start-up.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database did not answer at start-up within `SATCHEL_CONNECT_TIMEOUT`.
    #[error("cannot connect to {url}: no connection within {timeout:?}")]
    ConnectTimeout {
        /// The URL, password removed.
        url: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// A unique constraint refused a row (the key is deliberately not quoted).
    #[error("the database refused a duplicate session_id (code {code})")]
    Duplicate {
        /// The database's error code.
        code: String,
    },
    /// Any other driver or database error.
    #[error(transparent)]
    Driver(sqlx::Error),
}

impl SqlError {
    /// Wraps a driver error, hiding the key a unique violation's message would quote.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> SqlError {
        if let sqlx::Error::Database(db) = &error {
            if db.is_unique_violation() {
                return SqlError::Duplicate {
                    code: db.code().map(|c| c.into_owned()).unwrap_or_default(),
                };
            }
        }
        SqlError::Driver(error)
    }
}

/// `url` with any password replaced by `***`, in the user-info part and in a `password=` query
/// parameter, for messages and logs.
///
/// ```
/// use satchel_sql::redact_url;
/// assert_eq!(
///     redact_url("postgres://app:hunter2@db:5432/app?sslmode=require&password=x"),
///     "postgres://app:***@db:5432/app?sslmode=require&password=***"
/// );
/// assert_eq!(redact_url("sqlite://sessions.db"), "sqlite://sessions.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_query(url);
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..rest_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(&rest[authority_end..]));
    out
}

fn redact_query(text: &str) -> String {
    let Some(q) = text.find('?') else {
        return text.to_owned();
    };
    let (head, query) = text.split_at(q + 1);
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        for (url, want) in [
            ("mysql://u:p%40ss@h/db", "mysql://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?password=s&user=u",
                "postgres://h/db?password=***&user=u",
            ),
            ("postgres://u:a@b@h", "postgres://u:***@h"),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redact_url(url), want);
        }
    }
}
