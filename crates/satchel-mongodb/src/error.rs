//! The MongoDB backend's errors, carried inside [`BackendError`] and [`ConfigError`].

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};
use satchel_core::{BackendError, ConfigError, Operation};

use crate::NAME;

/// The server's code for a duplicate key in a unique index.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// The server's code for "this database or collection does not exist".
pub(crate) const NAMESPACE_NOT_FOUND: i32 = 26;

/// What went wrong talking to MongoDB, as the `source` of a [`BackendError::Driver`].
///
/// Server-side failures keep only the server's error code and code name: the server's message
/// can quote the document or filter, and so the session key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MongoError {
    /// The server named in `SESSION_MONGODB` could not be reached or used at start-up
    /// (connection refused, DNS, TLS, authentication).
    #[error("could not use MongoDB at {uri}: {}", source.kind)]
    Connect {
        /// The connection string with any password and query options removed.
        uri: String,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// The server did not answer the start-up ping in time.
    #[error("MongoDB at {uri} did not answer within {timeout:?}")]
    NoAnswer {
        /// The connection string with any password and query options removed.
        uri: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The server refused the operation.
    #[error("the server refused the operation: error {code} ({code_name})")]
    Server {
        /// The server's error code, e.g. 13 for `Unauthorized`.
        code: i32,
        /// The server's name for the code.
        code_name: String,
    },
    /// The collection cannot hold Satchel's sessions as it is.
    #[error("{namespace}: {problem}")]
    Collection {
        /// `database.collection`.
        namespace: String,
        /// What is wrong and what to do about it.
        problem: String,
    },
    /// The driver failed on the client side (network, server selection, TLS, authentication).
    #[error("{}", .0.kind)]
    Driver(#[source] mongodb::error::Error),
}

impl MongoError {
    /// Sorts a driver error into a server refusal (message withheld) or a client-side failure.
    pub(crate) fn from_driver(error: mongodb::error::Error) -> MongoError {
        match server_code(&error) {
            Some((code, code_name)) => MongoError::Server { code, code_name },
            None => MongoError::Driver(error),
        }
    }
}

/// The server's error code and code name, when the server (not the driver) refused.
pub(crate) fn server_code(error: &mongodb::error::Error) -> Option<(i32, String)> {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some((e.code, e.code_name.clone())),
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            Some((e.code, e.code_name.clone().unwrap_or_default()))
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some((e.code, e.code_name.clone())),
        _ => None,
    }
}

/// True when the server refused a write because the key is already taken.
pub(crate) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    server_code(error).is_some_and(|(code, _)| code == DUPLICATE_KEY)
}

/// A driver error as a [`BackendError`] for `operation`.
pub(crate) fn backend_error(operation: Operation, error: mongodb::error::Error) -> BackendError {
    BackendError::driver(NAME, operation, MongoError::from_driver(error))
}

/// A start-up failure as a [`ConfigError`].
pub(crate) fn startup_error(operation: Operation, error: MongoError) -> ConfigError {
    ConfigError::Backend(BackendError::driver(NAME, operation, error))
}
