//! The `memcache` client's errors, turned into [`BackendError`]s that never carry a key.
//!
//! `memcache::exp::Error` prints the key of a timed-out request, and keys hold session ids, so
//! its errors are rebuilt here without it instead of being passed on as they are.

use std::io;
use std::time::Duration;

use memcache::exp::Error as ClientError;
use satchel_core::{BackendError, Operation};

use crate::BACKEND;

/// What went wrong talking to memcached, without the key the request was for.
///
/// It is the `source` of [`BackendError::Driver`], for callers that want to downcast.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcachedError {
    /// A server could not be reached or did not answer as memcached at start-up.
    #[error("memcached server {server} (from SESSION_MEMCACHED) is unreachable: {source}")]
    Unreachable {
        /// The server, as `host:port`.
        server: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The connection failed.
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
    /// The request was sent but no answer came back, so whether it was applied is unknown.
    #[error("request sent but its outcome is unknown: {0}")]
    Ambiguous(#[source] Box<MemcachedError>),
    /// memcached answered `SERVER_ERROR`.
    #[error("server error: {0}")]
    Server(String),
    /// memcached answered `CLIENT_ERROR` or `ERROR`.
    #[error("command rejected by the server: {0}")]
    Rejected(String),
    /// An answer that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A write the server did not apply although it had no condition.
    #[error("the server did not store the value")]
    NotStored,
    /// The task running the blocking client ended without an answer.
    #[error("the blocking memcached task failed: {0}")]
    Task(String),
    /// Anything else the client reported (a misuse caught before sending).
    #[error("{0}")]
    Client(String),
}

/// The configured limits an operation ran under, to say which one fired.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) operation: Duration,
}

/// Where an operation failed: in the client, or in the task that ran it.
#[derive(Debug)]
pub(crate) enum Failure {
    Client(ClientError),
    Task(tokio::task::JoinError),
    NotStored,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

impl Failure {
    /// The caller-facing error. `size` is the value's length for writes, so a server that
    /// refuses an item as too large is reported as [`BackendError::ValueTooLarge`].
    pub(crate) fn into_backend_error(
        self,
        operation: Operation,
        timeouts: Timeouts,
        size: Option<(usize, usize)>,
    ) -> BackendError {
        let error = match self {
            Failure::Client(error) => error,
            Failure::Task(error) => {
                return BackendError::driver(
                    BACKEND,
                    operation,
                    MemcachedError::Task(error.to_string()),
                );
            }
            Failure::NotStored => {
                return BackendError::driver(BACKEND, operation, MemcachedError::NotStored);
            }
        };
        let timeout = |timeout| BackendError::Timeout {
            backend: BACKEND,
            operation,
            timeout,
        };
        match &error {
            ClientError::Timeout { .. } => return timeout(timeouts.operation),
            ClientError::Ambiguous { source, .. }
                if matches!(**source, ClientError::Timeout { .. }) =>
            {
                return timeout(timeouts.operation);
            }
            // Dialing and waiting for a pooled connection are bounded by the connect timeout.
            ClientError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                return timeout(timeouts.connect);
            }
            ClientError::Server(message) if message.contains("too large") => {
                if let Some((size, limit)) = size {
                    return BackendError::ValueTooLarge {
                        backend: BACKEND,
                        size,
                        limit,
                    };
                }
            }
            _ => {}
        }
        BackendError::driver(BACKEND, operation, without_key(error))
    }
}

fn without_key(error: ClientError) -> MemcachedError {
    match error {
        ClientError::Io(e) => MemcachedError::Io(e),
        ClientError::Timeout { .. } => MemcachedError::Io(io::ErrorKind::TimedOut.into()),
        ClientError::Ambiguous { source, .. } => {
            MemcachedError::Ambiguous(Box::new(without_key(*source)))
        }
        ClientError::Server(message) => MemcachedError::Server(message),
        ClientError::Rejected(message) => MemcachedError::Rejected(message),
        ClientError::Protocol(message) => MemcachedError::Protocol(message),
        // Usage, EmptyValue, Encode, Decode, Conflict, Callback: none carries a key.
        other => MemcachedError::Client(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        operation: Duration::from_secs(3),
    };

    #[test]
    fn errors_never_show_the_key() {
        let key = b"session:KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM".to_vec();
        let ambiguous = ClientError::Ambiguous {
            key: key.clone(),
            source: Box::new(ClientError::Io(io::ErrorKind::ConnectionReset.into())),
        };
        assert!(
            ambiguous.to_string().contains("KbBTwK"),
            "the client's own message has the key"
        );
        let error = Failure::from(ambiguous).into_backend_error(Operation::Store, TIMEOUTS, None);
        let text = format!("{error} {error:?}");
        assert!(!text.contains("KbBTwK"), "{text}");
        assert!(text.contains("outcome is unknown"), "{text}");
    }

    #[test]
    fn timeouts_say_which_limit_fired() {
        let error = Failure::from(ClientError::Timeout { key: b"k".to_vec() }).into_backend_error(
            Operation::Load,
            TIMEOUTS,
            None,
        );
        assert!(
            matches!(error, BackendError::Timeout { timeout, .. } if timeout == TIMEOUTS.operation)
        );
        let error = Failure::from(ClientError::Io(io::ErrorKind::TimedOut.into()))
            .into_backend_error(Operation::Load, TIMEOUTS, None);
        assert!(
            matches!(error, BackendError::Timeout { timeout, .. } if timeout == TIMEOUTS.connect)
        );
    }

    #[test]
    fn object_too_large_is_value_too_large() {
        let error = Failure::from(ClientError::Server("object too large for cache".into()))
            .into_backend_error(Operation::Store, TIMEOUTS, Some((5, 4)));
        assert!(matches!(
            error,
            BackendError::ValueTooLarge {
                size: 5,
                limit: 4,
                ..
            }
        ));
    }
}
