//! [`CookieStore`]: `SESSION_TYPE=cookie` as an actix-session `SessionStore` whose "session
//! key" is the whole signed Flask cookie, so nothing is kept on the server.

use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use satchel_core::codec::PERMANENT_KEY;
use satchel_core::{ConfigError, SessionConfig};

use crate::cookie_session::{CookieSession, from_state, to_state};
use crate::value::ActixState;

/// The most a browser keeps of one cookie's name and value (werkzeug's `max_cookie_size`).
pub const MAX_COOKIE_SIZE: usize = 4093;

/// The longest value actix-session accepts as a session key.
const MAX_SESSION_KEY: usize = 4064;

/// Flask's client-side session as an actix-session store: `load` verifies and decodes the
/// cookie, `save`/`update` encode and sign the state into a new cookie, `delete` has nothing to
/// delete. Used by [`Satchel`](crate::Satchel) for `SESSION_TYPE=cookie`, behind the Flask cookie
/// layer, which passes the cookie value through as it is.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use actix_session::storage::SessionStore;
///
/// let mut config = satchel::SessionConfig::default();
/// config.session_type = satchel::SessionType::Cookie;
/// config.secret_key = Some(satchel::Secret::new("secret_key"));
/// let store = satchel::CookieStore::new(&config).unwrap();
///
/// let mut state = std::collections::HashMap::new();
/// state.insert("username".to_owned(), "\"alice\"".to_owned());
/// let ttl = actix_web::cookie::time::Duration::days(31);
/// let cookie = store.save(state.clone(), &ttl).await.unwrap();
/// assert_eq!(store.load(&cookie).await.unwrap().unwrap()["username"], "\"alice\"");
/// # });
/// ```
#[derive(Clone)]
pub struct CookieStore {
    inner: Arc<Inner>,
}

struct Inner {
    codec: CookieSession,
    cookie_name: String,
    /// `SESSION_PERMANENT`: new sessions get `_permanent`, as Flask's `session.permanent = True`.
    permanent: bool,
}

/// Why a session cannot be written into a cookie.
#[derive(Debug, thiserror::Error)]
#[error(
    "the session does not fit in a cookie: {size} bytes as `{name}=<value>`, over the limit of \
     {limit} (browsers keep about 4 KB); store less in the session, or use a server-side \
     SESSION_TYPE (redis, memcached, mongodb, sqlalchemy) instead of SESSION_TYPE=cookie"
)]
pub struct CookieTooLarge {
    /// Length of name, `=` and value.
    pub size: usize,
    /// The cookie's name.
    pub name: String,
    /// The most that fits.
    pub limit: usize,
}

impl CookieStore {
    /// The store `config` describes: `SECRET_KEY` (required), `SECRET_KEY_FALLBACKS`,
    /// `PERMANENT_SESSION_LIFETIME`, `SESSION_PERMANENT`, `SESSION_COOKIE_NAME`.
    pub fn new(config: &SessionConfig) -> Result<CookieStore, ConfigError> {
        config.validate()?;
        Ok(CookieStore {
            inner: Arc::new(Inner {
                codec: CookieSession::from_config(config)?,
                cookie_name: config.cookie_name.clone(),
                permanent: config.permanent,
            }),
        })
    }

    /// The serializer, e.g. to re-sign a cookie.
    pub fn codec(&self) -> &CookieSession {
        &self.inner.codec
    }

    fn encode(&self, state: &ActixState) -> Result<SessionKey, anyhow::Error> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let value = self.inner.codec.dumps(&from_state(state), now);
        // `name=value`, as browsers count it.
        let size = self.inner.cookie_name.len() + 1 + value.len();
        let limit = MAX_COOKIE_SIZE.min(self.inner.cookie_name.len() + 1 + MAX_SESSION_KEY);
        if size > limit {
            let error = CookieTooLarge {
                size,
                name: self.inner.cookie_name.clone(),
                limit,
            };
            tracing::error!(%error, "session not saved");
            return Err(error.into());
        }
        Ok(SessionKey::try_from(value)?)
    }
}

impl SessionStore for CookieStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<ActixState>, LoadError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match self.inner.codec.loads(session_key.as_ref(), now) {
            Ok(session) => Ok(Some(to_state(session))),
            Err(reason) => {
                // As Flask: a cookie that does not verify or has expired is an empty session.
                tracing::debug!(%reason, "session cookie not accepted; starting a fresh session");
                Ok(None)
            }
        }
    }

    async fn save(
        &self,
        mut state: ActixState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        if self.inner.permanent && !state.is_empty() && !state.contains_key(PERMANENT_KEY) {
            state.insert(PERMANENT_KEY.to_owned(), "true".to_owned());
        }
        self.encode(&state).map_err(SaveError::Other)
    }

    async fn update(
        &self,
        _session_key: SessionKey,
        state: ActixState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        // The old cookie is simply replaced; permanence stays what the session says.
        self.encode(&state).map_err(UpdateError::Other)
    }

    async fn update_ttl(
        &self,
        _session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        // The session key cannot change here; the Flask cookie layer re-signs the cookie with a
        // fresh timestamp when Flask would send it again.
        Ok(())
    }

    async fn delete(&self, _session_key: &SessionKey) -> anyhow::Result<()> {
        // Nothing is stored server-side; the deletion cookie does the work.
        Ok(())
    }
}
