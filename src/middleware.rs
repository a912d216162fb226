//! [`Satchel`]: one value built from [`SessionConfig`] that gives each actix worker its session
//! middleware, with the cookie and lifetime settings Flask's names describe.

use actix_session::SessionMiddleware;
use actix_session::config::{
    BrowserSession, PersistentSession, SessionMiddlewareBuilder, TtlExtensionPolicy,
};
use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Key, SameSite as CookieSameSite};
use satchel_core::{ConfigError, SameSite, Secret, SessionConfig, SessionType};
use sha2::{Digest, Sha512};

use crate::cookie_store::CookieStore;
use crate::flask_cookie::FlaskCookie;
use crate::flask_middleware::{ClientSide, FlaskSessionMiddleware};
use crate::store::Store;
use crate::value::ActixState;

/// The session store `SESSION_TYPE` chose: server-side ([`Store`]) or Flask's client-side
/// cookie ([`CookieStore`]).
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// A backend on a server (`redis`, `sqlalchemy`, `memory`, …).
    Server(Store),
    /// `SESSION_TYPE=cookie`: the session is the signed cookie.
    Cookie(CookieStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Server($store) => $call,
            AnyStore::Cookie($store) => $call,
        }
    };
}

impl SessionStore for AnyStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<ActixState>, LoadError> {
        dispatch!(self, s => s.load(session_key).await)
    }

    async fn save(&self, state: ActixState, ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        dispatch!(self, s => s.save(state, ttl).await)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: ActixState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        dispatch!(self, s => s.update(session_key, state, ttl).await)
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        dispatch!(self, s => s.update_ttl(session_key, ttl).await)
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        dispatch!(self, s => s.delete(session_key).await)
    }
}

/// The session store and cookie settings of an app, built once in `main`.
///
/// # Example
///
/// ```no_run
/// use actix_web::{App, HttpServer};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     // SESSION_TYPE, SECRET_KEY, PERMANENT_SESSION_LIFETIME, … from the environment.
///     let sessions = satchel::Satchel::from_env().await.expect("session settings");
///     HttpServer::new(move || App::new().wrap(sessions.middleware()))
///         .bind(("127.0.0.1", 8080))?
///         .run()
///         .await
/// }
/// ```
#[derive(Clone)]
pub struct Satchel {
    store: AnyStore,
    config: SessionConfig,
    /// Signs actix-session's own cookie, when that format is used.
    key: Key,
    flask_cookie: FlaskCookie,
}

impl Satchel {
    /// Reads [`SessionConfig::from_env`] and connects its backend.
    pub async fn from_env() -> Result<Satchel, ConfigError> {
        Satchel::from_config(SessionConfig::from_env()?).await
    }

    /// Connects the backend `config` names. `SECRET_KEY` is needed with `SESSION_TYPE=cookie`
    /// (it signs the session), with `SESSION_USE_SIGNER` (Flask-Session's signed id) and for
    /// [`actix_middleware`](Self::actix_middleware), whose cookies otherwise use a random key
    /// and do not survive a restart.
    pub async fn from_config(config: SessionConfig) -> Result<Satchel, ConfigError> {
        let (flask_cookie, store) = if config.session_type == SessionType::Cookie {
            let store = CookieStore::new(&config)?;
            // Flask-Session's id signer has no part in Flask's own cookie session.
            let mut unsigned = config.clone();
            unsigned.use_signer = false;
            (FlaskCookie::new(&unsigned)?, AnyStore::Cookie(store))
        } else {
            let flask_cookie = FlaskCookie::new(&config)?;
            (
                flask_cookie,
                AnyStore::Server(Store::connect(&config).await?),
            )
        };
        let key = match &config.secret_key {
            Some(secret) => cookie_key(secret),
            // Flask's cookie carries the bare id, so only actix-session's format needs a key.
            None => Key::generate(),
        };
        Ok(Satchel {
            store,
            config,
            key,
            flask_cookie,
        })
    }

    /// The server-side store, e.g. to build `SessionMiddleware` by hand; `None` for
    /// `SESSION_TYPE=cookie`, which stores nothing on a server.
    pub fn store(&self) -> Option<&Store> {
        match &self.store {
            AnyStore::Server(store) => Some(store),
            AnyStore::Cookie(_) => None,
        }
    }

    /// The store `SESSION_TYPE` chose, server-side or client-side.
    pub fn any_store(&self) -> &AnyStore {
        &self.store
    }

    /// The configuration this was built from.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The session middleware for one worker, speaking Flask-Session's cookie: name, value
    /// (the id, signed with `SESSION_USE_SIGNER`) and attributes as Flask-Session 0.8 sends
    /// them, so a Flask app on the same domain and store shares the session. With
    /// `SESSION_TYPE=cookie`, Flask's own signed session cookie instead, which a Flask app with
    /// the same `SECRET_KEY` reads and writes. Handlers use `actix_session::Session`.
    pub fn middleware(&self) -> FlaskSessionMiddleware {
        let client_side = match &self.store {
            AnyStore::Cookie(store) => Some(ClientSide::new(&self.config, store.codec().clone())),
            AnyStore::Server(_) => None,
        };
        FlaskSessionMiddleware::new(
            self.store.clone(),
            self.flask_cookie.clone(),
            self.cookie_ttl(),
            self.config.permanent,
            self.config.refresh_each_request,
            client_side,
        )
    }

    /// actix-session's own middleware and cookie format (signed and encrypted with a key
    /// derived from `SECRET_KEY`), over the same store, for apps that do not share sessions
    /// with Flask: persistent when `SESSION_PERMANENT`, with the TTL extended on every request
    /// when `SESSION_REFRESH_EACH_REQUEST`.
    pub fn actix_middleware(&self) -> SessionMiddleware<AnyStore> {
        let builder = self.session_middleware(self.key.clone());
        let builder = if self.config.permanent {
            builder.session_lifecycle(
                PersistentSession::default()
                    .session_ttl(self.cookie_ttl())
                    .session_ttl_extension_policy(self.ttl_policy()),
            )
        } else {
            builder.session_lifecycle(
                BrowserSession::default()
                    .state_ttl(self.cookie_ttl())
                    .state_ttl_extension_policy(self.ttl_policy()),
            )
        };
        builder.build()
    }

    fn cookie_ttl(&self) -> actix_web::cookie::time::Duration {
        actix_web::cookie::time::Duration::try_from(self.config.permanent_session_lifetime)
            .unwrap_or(actix_web::cookie::time::Duration::MAX)
    }

    fn ttl_policy(&self) -> TtlExtensionPolicy {
        if self.config.refresh_each_request {
            TtlExtensionPolicy::OnEveryRequest
        } else {
            TtlExtensionPolicy::OnStateChanges
        }
    }

    fn session_middleware(&self, key: Key) -> SessionMiddlewareBuilder<AnyStore> {
        let c = &self.config;
        SessionMiddleware::builder(self.store.clone(), key)
            .cookie_name(c.cookie_name.clone())
            .cookie_path(c.cookie_path.clone())
            .cookie_domain(c.cookie_domain.clone())
            .cookie_secure(c.cookie_secure)
            .cookie_http_only(c.cookie_httponly)
            // Flask sends no SameSite attribute by default; browsers then apply Lax, so Lax is
            // what actix-session (which always sends one) says explicitly.
            .cookie_same_site(match c.cookie_samesite {
                Some(SameSite::Strict) => CookieSameSite::Strict,
                Some(SameSite::None) => CookieSameSite::None,
                Some(SameSite::Lax) | None => CookieSameSite::Lax,
            })
    }
}

/// actix-session's cookie key from `SECRET_KEY` of any length, as Flask accepts any length.
///
/// actix's `Key` needs 64 bytes; SHA-512 of a domain-separated secret gives exactly that, and
/// the label keeps this key distinct from any other use of the same secret.
pub fn cookie_key(secret: &Secret) -> Key {
    let digest = Sha512::new()
        .chain_update(b"satchel/actix-session-cookie-key\0")
        .chain_update(secret.expose().as_bytes())
        .finalize();
    Key::from(digest.as_slice())
}
