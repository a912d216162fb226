//! Typed errors: from backends, from the codec, from configuration.

use std::time::Duration;

use crate::backend::Operation;

/// Any error a driver returns, boxed so backends need not share error types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a storage backend, with the backend and operation it came from.
///
/// The key is deliberately absent: keys contain session ids, which must never reach logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend could not be reached or answered with an error.
    #[error("{backend} {operation} failed: {source}")]
    Driver {
        /// Backend name, e.g. `"redis"`.
        backend: &'static str,
        /// What was being done.
        operation: Operation,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The operation did not finish within the configured timeout.
    #[error("{backend} {operation} timed out after {timeout:?}")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// What was being done.
        operation: Operation,
        /// The timeout that fired.
        timeout: Duration,
    },
    /// The database gave up waiting for a lock that another transaction holds. It gives up a
    /// little before the operation timeout, so the statement is over when this is returned:
    /// nothing was written, and nothing from this operation can land later.
    #[error(
        "{backend} {operation} failed: the database gave up after {} ms waiting for a lock \
         another transaction holds, and nothing was written; raise SATCHEL_OPERATION_TIMEOUT \
         or find the long-running transaction that holds the lock",
        waited.as_millis()
    )]
    LockTimeout {
        /// Backend name.
        backend: &'static str,
        /// What was being done.
        operation: Operation,
        /// How long the database waited for the lock (its own setting, derived from the
        /// operation timeout).
        waited: Duration,
    },
    /// The value is larger than the backend accepts.
    #[error("{backend} refused a value of {size} bytes: the limit is {limit} bytes")]
    ValueTooLarge {
        /// Backend name.
        backend: &'static str,
        /// Size of the refused value.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// The key cannot be used with this backend (too long, forbidden characters).
    #[error("{backend} cannot use this key: {reason}")]
    InvalidKey {
        /// Backend name.
        backend: &'static str,
        /// Why the key was refused.
        reason: &'static str,
    },
}

impl BackendError {
    /// Wraps a driver error.
    pub fn driver(
        backend: &'static str,
        operation: Operation,
        source: impl Into<BoxError>,
    ) -> Self {
        BackendError::Driver {
            backend,
            operation,
            source: source.into(),
        }
    }
}

/// Stored bytes that could not be decoded, or a session that could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are neither a MessagePack map, a JSON object nor (when that fallback is on) a
    /// Python pickle of a plain-data dict.
    #[error(
        "stored session is neither a MessagePack map, a JSON object nor a plain-data pickle ({len} bytes)"
    )]
    Undecodable {
        /// Length of the refused bytes.
        len: usize,
    },
    /// The session could not be written in the configured format.
    #[error("session could not be encoded as {format}: {reason}")]
    Unencodable {
        /// The format being written.
        format: &'static str,
        /// Why.
        reason: String,
    },
}

/// A session that Satchel refuses to store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionTooLarge {
    /// The encoded session is over `SATCHEL_MAX_SESSION_SIZE`.
    #[error(
        "session of {size} bytes is over SATCHEL_MAX_SESSION_SIZE={limit}; keep less in the \
         session or raise the limit"
    )]
    OverLimit {
        /// Encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// A setting that is missing, malformed or names something not available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value that cannot be used.
    #[error("{setting}={value:?} is not valid: {expected}")]
    Invalid {
        /// The setting's name, as Flask spells it (e.g. `SESSION_TYPE`).
        setting: &'static str,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A setting that the chosen configuration needs is not set.
    #[error("{setting} must be set: {why}")]
    Missing {
        /// The setting's name.
        setting: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// The configured `SESSION_TYPE` names a backend this build does not include.
    #[error("SESSION_TYPE={session_type} needs the `{feature}` backend, which {reason}")]
    BackendUnavailable {
        /// The configured type.
        session_type: &'static str,
        /// The cargo feature that would provide it.
        feature: &'static str,
        /// Why it is not available.
        reason: &'static str,
    },
    /// The backend could not be set up at start-up (unreachable, unwritable, wrong schema).
    #[error("session backend could not start: {0}")]
    Backend(#[from] BackendError),
}
