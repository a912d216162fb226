//! The byte-level store trait every backend implements.
//!
//! A backend stores opaque bytes under a key with a time to live. It knows nothing of cookies,
//! codecs or actix: those live in the facade.

use std::future::Future;
use std::time::Duration;

use crate::error::BackendError;

/// A session store that keeps opaque bytes under a string key, with a time to live.
///
/// Keys arrive already prefixed (`SESSION_KEY_PREFIX + id`) and already validated; values are
/// the codec's bytes. Every method reports failures as [`BackendError`] and never panics.
///
/// The futures are `Send` so a backend can be driven from any runtime thread.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use satchel_core::{Backend, MemoryBackend};
///
/// # tokio_test_block_on(async {
/// let backend = MemoryBackend::new();
/// backend.store("session:abc", b"\x80", Duration::from_secs(60)).await?;
/// assert_eq!(backend.load("session:abc").await?, Some(b"\x80".to_vec()));
/// # Ok::<_, satchel_core::BackendError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub trait Backend: Send + Sync + 'static {
    /// Returns the value stored under `key`, or `None` if it is absent or expired.
    fn load(&self, key: &str)
    -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;

    /// Returns the value under `key` and extends its TTL to `ttl`, in one round trip where the
    /// backend can (memcached `GAT`).
    ///
    /// Backends where a write costs far more than a read (Redis with persistence or replicas,
    /// SQL, MongoDB) coalesce the extension:
    /// they read the value with its expiry and write `now + ttl` only when the stored expiry is
    /// more than [`touch_granularity`]`(ttl)` short of it. The write never revives an expired
    /// or deleted value (SQL and MongoDB make it conditional on the expiry just read, so it
    /// never shortens an expiry another request wrote meanwhile either; Redis's `EXPIRE` does
    /// nothing to a deleted key).
    fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;

    /// Stores `value` under `key` only if no live value is there; `Ok(false)` on a collision.
    fn insert(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Stores `value` under `key`, replacing whatever was there.
    fn store(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Replaces the value under `key` only if a live value is there; `Ok(false)` if there is
    /// none (it expired or was deleted meanwhile), so the caller can save the session under a
    /// new id instead of resurrecting the old one.
    ///
    /// The default takes two round trips (`touch`, then `store`); backends override it with
    /// one conditional write where they can (Redis `SET … XX`, memcached `replace`, SQL
    /// `UPDATE … WHERE expiry > now`).
    ///
    /// The SQL backend coalesces the expiry here as [`load_and_touch`](Backend::load_and_touch)
    /// does: a stored expiry at most [`touch_granularity`]`(ttl)` short of `now + ttl` is kept,
    /// so the write changes no indexed column (on PostgreSQL that makes it an in-place HOT
    /// update); any other stored expiry, shorter or longer, becomes `now + ttl`.
    fn replace(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send {
        async move {
            if !self.touch(key, ttl).await? {
                return Ok(false);
            }
            self.store(key, value, ttl).await?;
            Ok(true)
        }
    }

    /// Sets the TTL of a live value to `ttl`; `Ok(false)` if there is no live value.
    fn touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Removes the value under `key`; removing an absent key is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Removes expired entries, for backends without native expiry (SQL), and returns how many
    /// were removed. Backends that expire entries themselves return `Ok(0)`.
    fn purge_expired(&self) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// A short name for logs and errors (`"redis"`, `"sqlite"`, …).
    fn name(&self) -> &'static str;
}

/// The longest a coalescing [`Backend::load_and_touch`] lets a stored expiry lag behind
/// `now + ttl` before it writes a new one: a hundredth of `ttl`, at most
/// [`MAX_TOUCH_GRANULARITY`].
///
/// A hundredth keeps the sliding expiry within 1% of the one written on every request (for a
/// short lifetime, say 200 s, that is 2 s); the one-minute cap means that with the default 31-day
/// lifetime a session's expiry is written at most once a minute however often it is read, and
/// ends at most a minute earlier than Flask-Session, which writes it on every request, would
/// end it. A minute is also how often MongoDB's TTL monitor runs, so no expiry there is more
/// precise than that anyway.
///
/// ```
/// use std::time::Duration;
/// use satchel_core::backend::touch_granularity;
///
/// assert_eq!(touch_granularity(Duration::from_secs(200)), Duration::from_secs(2));
/// assert_eq!(touch_granularity(Duration::from_secs(31 * 24 * 3600)), Duration::from_secs(60));
/// ```
pub fn touch_granularity(ttl: Duration) -> Duration {
    (ttl / 100).min(MAX_TOUCH_GRANULARITY)
}

/// The cap on [`touch_granularity`]: at most one expiry write per session per minute.
pub const MAX_TOUCH_GRANULARITY: Duration = Duration::from_secs(60);

/// The backend operation an error comes from, for error messages and log fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Connecting or checking the connection at start-up.
    Connect,
    /// Preparing the schema (tables, indexes).
    Setup,
    /// [`Backend::load`].
    Load,
    /// [`Backend::load_and_touch`].
    LoadAndTouch,
    /// [`Backend::insert`].
    Insert,
    /// [`Backend::store`].
    Store,
    /// [`Backend::replace`].
    Replace,
    /// [`Backend::touch`].
    Touch,
    /// [`Backend::delete`].
    Delete,
    /// [`Backend::purge_expired`].
    Purge,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Connect => "connect",
            Operation::Setup => "setup",
            Operation::Load => "load",
            Operation::LoadAndTouch => "load-and-touch",
            Operation::Insert => "insert",
            Operation::Store => "store",
            Operation::Replace => "replace",
            Operation::Touch => "touch",
            Operation::Delete => "delete",
            Operation::Purge => "purge",
        })
    }
}
