//! [`Store`]: a [`Backend`] made into an actix-session `SessionStore`, with Flask-Session's
//! ids, keys, codec and `_permanent` handling.

use std::sync::Arc;
use std::time::Duration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use satchel_core::codec::PERMANENT_KEY;
use satchel_core::{
    Backend, Codec, ConfigError, LoadErrorPolicy, SessionConfig, SessionId, SessionTooLarge,
};

use crate::backends::AnyBackend;
use crate::value::{ActixState, from_actix, to_actix};

/// How many fresh ids to try when inserting a new session collides with a live one. With 256
/// random bits a single collision is already astronomically unlikely; a second means the
/// random generator is broken, and the save fails loudly.
const INSERT_ATTEMPTS: usize = 3;

/// Server-side session storage for actix-session, over any [`Backend`].
///
/// Cloning is cheap (one `Arc`); every actix worker holds a clone of the one store built in
/// `main`, so all workers share one connection pool.
///
/// # Example
///
/// With actix-session's own cookie (signed and encrypted with a key you choose):
///
/// ```no_run
/// use actix_session::SessionMiddleware;
/// use actix_web::{App, HttpServer, cookie::Key};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let config = satchel::SessionConfig::from_env().expect("valid session settings");
///     let store = satchel::Store::connect(&config).await.expect("session store reachable");
///     let key = Key::generate();
///     HttpServer::new(move || {
///         App::new().wrap(SessionMiddleware::new(store.clone(), key.clone()))
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
pub struct Store<B: Backend = AnyBackend> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    backend: B,
    codec: Codec,
    key_prefix: String,
    id_length: usize,
    permanent: bool,
    /// Extend the TTL on every read (`SESSION_REFRESH_EACH_REQUEST`); done inside `load` in the
    /// same round trip, so `update_ttl` has nothing left to do.
    refresh_each_request: bool,
    lifetime: Duration,
    on_load_error: LoadErrorPolicy,
    max_session_size: usize,
}

impl<B: Backend> Clone for Store<B> {
    fn clone(&self) -> Self {
        Store {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Store<AnyBackend> {
    /// Connects the backend `config` names and builds the store over it.
    pub async fn connect(config: &SessionConfig) -> Result<Store<AnyBackend>, ConfigError> {
        config.validate()?;
        let backend = AnyBackend::connect(config).await?;
        Ok(Store::new(backend, config))
    }
}

impl<B: Backend> Store<B> {
    /// A store over a backend you built yourself, with the key prefix, id length, codec and
    /// lifetimes from `config`.
    ///
    /// ```
    /// let config = satchel::SessionConfig::default();
    /// let store = satchel::Store::new(satchel_core::MemoryBackend::new(), &config);
    /// ```
    pub fn new(backend: B, config: &SessionConfig) -> Store<B> {
        Store {
            inner: Arc::new(Inner {
                backend,
                codec: Codec::new(config.serialization_format)
                    .with_legacy_pickle(config.pickle_fallback),
                key_prefix: config.key_prefix.clone(),
                id_length: config.id_length,
                permanent: config.permanent,
                refresh_each_request: config.refresh_each_request,
                lifetime: config.permanent_session_lifetime,
                on_load_error: config.on_load_error,
                max_session_size: config.max_session_size,
            }),
        }
    }

    /// The backend underneath, e.g. to purge expired sessions by hand.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The store key (`SESSION_KEY_PREFIX + id`) for a cookie's session key, or `None` when the
    /// text is not a valid id, in which case nothing is sent to the backend.
    fn store_key(&self, session_key: &str) -> Option<String> {
        match SessionId::validate(session_key, self.inner.id_length) {
            Ok(()) => {
                let mut key =
                    String::with_capacity(self.inner.key_prefix.len() + session_key.len());
                key.push_str(&self.inner.key_prefix);
                key.push_str(session_key);
                Some(key)
            }
            Err(reason) => {
                tracing::debug!(%reason, "cookie does not hold a valid session id; starting a fresh session");
                None
            }
        }
    }

    /// Encodes a session, refusing one over `SATCHEL_MAX_SESSION_SIZE`.
    fn encode(&self, state: ActixState) -> anyhow::Result<Vec<u8>> {
        let entries = from_actix(state);
        let bytes = self
            .inner
            .codec
            .encode_entries(entries.iter().map(|(key, value)| (key.as_str(), value)))?;
        if bytes.len() > self.inner.max_session_size {
            let error = SessionTooLarge::OverLimit {
                size: bytes.len(),
                limit: self.inner.max_session_size,
            };
            tracing::error!(%error, "session not saved");
            return Err(error.into());
        }
        Ok(bytes)
    }

    /// Saves a new session under a fresh id, retrying with another id on a collision.
    async fn save_new(&self, value: &[u8], ttl: Duration) -> anyhow::Result<SessionKey> {
        for _ in 0..INSERT_ATTEMPTS {
            let id = SessionId::generate(self.inner.id_length)?;
            let key = format!("{}{}", self.inner.key_prefix, id.as_str());
            if self.inner.backend.insert(&key, value, ttl).await? {
                return Ok(SessionKey::try_from(String::from(id))?);
            }
            tracing::warn!(
                backend = self.inner.backend.name(),
                "new session id collided with a live session; drawing another"
            );
        }
        anyhow::bail!(
            "{INSERT_ATTEMPTS} fresh session ids in a row collided: the random generator is broken"
        )
    }

    fn ttl(&self, ttl: &CookieDuration) -> Duration {
        // actix-session passes the lifetime it was built with; fall back to ours if negative.
        Duration::try_from(*ttl).unwrap_or(self.inner.lifetime)
    }
}

/// True when a session holds nothing but `_permanent`: Flask-Session neither stores such a
/// session nor keeps its entry.
pub(crate) fn holds_only_permanent(state: &ActixState) -> bool {
    state.keys().all(|k| k == PERMANENT_KEY)
}

impl<B: Backend> SessionStore for Store<B> {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<ActixState>, LoadError> {
        let Some(key) = self.store_key(session_key.as_ref()) else {
            return Ok(None);
        };
        let backend = &self.inner.backend;
        let loaded = if self.inner.refresh_each_request {
            backend.load_and_touch(&key, self.inner.lifetime).await
        } else {
            backend.load(&key).await
        };
        let bytes = match loaded {
            Ok(Some(bytes)) if bytes.len() > self.inner.max_session_size => {
                tracing::warn!(
                    backend = backend.name(),
                    session = %satchel_core::session_id::redact(session_key.as_ref()),
                    size = bytes.len(),
                    limit = self.inner.max_session_size,
                    "stored session is over SATCHEL_MAX_SESSION_SIZE; starting a fresh session"
                );
                return Ok(None);
            }
            Ok(Some(bytes)) if !bytes.is_empty() => bytes,
            // Flask-Session treats an empty stored value as a miss.
            Ok(_) => return Ok(None),
            Err(error) => match self.inner.on_load_error {
                LoadErrorPolicy::Fail => {
                    tracing::error!(backend = backend.name(), %error, "loading a session failed");
                    return Err(LoadError::Other(error.into()));
                }
                LoadErrorPolicy::Fresh => {
                    tracing::warn!(
                        backend = backend.name(),
                        %error,
                        "loading a session failed; continuing with an empty session \
                         (SATCHEL_ON_LOAD_ERROR=fresh)"
                    );
                    return Ok(None);
                }
            },
        };
        match self.inner.codec.decode_entries(&bytes) {
            Ok(session) => Ok(Some(to_actix(session))),
            Err(error) => {
                // Unlike Flask-Session, which answers 500 on every request until the entry
                // expires, a corrupt entry gives a fresh session; the next save replaces it.
                tracing::warn!(
                    backend = backend.name(),
                    session = %satchel_core::session_id::redact(session_key.as_ref()),
                    %error,
                    "stored session could not be decoded; starting a fresh session"
                );
                Ok(None)
            }
        }
    }

    async fn save(
        &self,
        mut state: ActixState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        if holds_only_permanent(&state) {
            // Flask-Session never stores an empty session; the id handed back names nothing,
            // so a cookie carrying it reads as a fresh session (the Flask layer drops it).
            return SessionId::generate(self.inner.id_length)
                .map_err(|e| SaveError::Other(e.into()))
                .and_then(|id| {
                    SessionKey::try_from(String::from(id)).map_err(|e| SaveError::Other(e.into()))
                });
        }
        if self.inner.permanent && !state.contains_key(PERMANENT_KEY) {
            state.insert(PERMANENT_KEY.to_owned(), "true".to_owned());
        }
        let value = self.encode(state).map_err(SaveError::Serialization)?;
        self.save_new(&value, self.ttl(ttl)).await.map_err(|error| {
            tracing::error!(backend = self.inner.backend.name(), %error, "saving a new session failed");
            SaveError::Other(error)
        })
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: ActixState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let Some(key) = self.store_key(session_key.as_ref()) else {
            return self.save(state, ttl).await.map_err(save_to_update);
        };
        let backend = &self.inner.backend;
        if holds_only_permanent(&state) {
            // As Flask-Session: a session emptied by the handler is removed, not stored.
            backend
                .delete(&key)
                .await
                .map_err(|e| UpdateError::Other(e.into()))?;
            return Ok(session_key);
        }
        let value = self.encode(state).map_err(UpdateError::Serialization)?;
        let ttl = self.ttl(ttl);
        match backend.replace(&key, &value, ttl).await {
            Ok(true) => Ok(session_key),
            // It expired or was deleted meanwhile: save it as a new session, never resurrect
            // the old id.
            Ok(false) => self.save_new(&value, ttl).await.map_err(UpdateError::Other),
            Err(error) => {
                tracing::error!(backend = backend.name(), %error, "updating a session failed");
                Err(UpdateError::Other(error.into()))
            }
        }
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        if self.inner.refresh_each_request {
            // `load` already extended the TTL where it lagged (`Backend::load_and_touch`).
            return Ok(());
        }
        if let Some(key) = self.store_key(session_key.as_ref()) {
            self.inner.backend.touch(&key, self.ttl(ttl)).await?;
        }
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        if let Some(key) = self.store_key(session_key.as_ref()) {
            self.inner.backend.delete(&key).await?;
        }
        Ok(())
    }
}

fn save_to_update(error: SaveError) -> UpdateError {
    match error {
        SaveError::Serialization(e) => UpdateError::Serialization(e),
        SaveError::Other(e) => UpdateError::Other(e),
    }
}
