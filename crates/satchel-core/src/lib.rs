//! The parts of Satchel every backend shares: the byte-level [`Backend`] trait, validated
//! [`SessionId`]s, the Flask-Session value [`Codec`], the [`SessionConfig`] with Flask's setting
//! names, typed errors, an in-process [`MemoryBackend`], and (feature `testkit`) the conformance
//! suite every backend runs against its real server.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod codec;
pub mod config;
pub mod error;
pub mod memory;
pub mod per_thread;
pub mod pickle;
pub mod session_id;
#[cfg(feature = "testkit")]
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub mod testkit;

pub use backend::{Backend, MAX_TOUCH_GRANULARITY, Operation, touch_granularity};
pub use codec::{Codec, SerializationFormat, SessionData};
pub use config::{LoadErrorPolicy, SameSite, Secret, SessionConfig, SessionType};
pub use error::{BackendError, BoxError, CodecError, ConfigError, SessionTooLarge};
pub use memory::MemoryBackend;
pub use per_thread::PerThread;
pub use rmpv;
pub use session_id::{InvalidSessionId, SessionId};
