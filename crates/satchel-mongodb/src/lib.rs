#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod error;
mod uri;

pub use backend::{DEFAULT_URI, MongoBackend};
pub use error::MongoError;
pub use mongodb;

/// The backend's name in errors and logs.
const NAME: &str = "mongodb";
