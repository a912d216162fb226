//! Why a connection could not be opened, naming where it was going (never with a password).

use std::time::Duration;

use deadpool_redis::redis::RedisError;

/// A connection to Redis could not be opened.
///
/// It names the address (the URL with its password replaced by `***`), so an operator can
/// tell which server is down. It reaches callers inside [`satchel_core::BackendError::Driver`]
/// (and, at start-up, inside [`satchel_core::ConfigError::Backend`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not connect to {address}: {failure}")]
pub struct ConnectError {
    address: String,
    #[source]
    failure: ConnectFailure,
}

impl ConnectError {
    pub(crate) fn new(address: String, failure: ConnectFailure) -> ConnectError {
        ConnectError { address, failure }
    }

    /// Where the connection was going, password redacted.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// True when the server did not answer within the connect timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.failure, ConnectFailure::TimedOut(_))
    }
}

/// What went wrong while connecting.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The driver reported an error (refused, authentication failed, no master known, …).
    #[error(transparent)]
    Redis(RedisError),
    /// Nothing answered within the connect timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}
