//! [`Satchel`]: one value built from [`SessionConfig`] that gives each actix worker its session
//! middleware, with the cookie and lifetime settings Flask's names describe.

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, PersistentSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite as CookieSameSite};
use satchel_core::{ConfigError, SameSite, Secret, SessionConfig};
use sha2::{Digest, Sha512};

use crate::store::Store;

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
    store: Store,
    config: SessionConfig,
    key: Key,
}

impl Satchel {
    /// Reads [`SessionConfig::from_env`] and connects its backend.
    pub async fn from_env() -> Result<Satchel, ConfigError> {
        Satchel::from_config(SessionConfig::from_env()?).await
    }

    /// Connects the backend `config` names. Without `SECRET_KEY`, cookies are signed with a
    /// random key drawn now, so sessions do not survive a restart (a warning says so).
    pub async fn from_config(config: SessionConfig) -> Result<Satchel, ConfigError> {
        let store = Store::connect(&config).await?;
        let key = match &config.secret_key {
            Some(secret) => cookie_key(secret),
            None => {
                tracing::warn!(
                    "SECRET_KEY is not set: session cookies use a random key and will not \
                     survive a restart; set SECRET_KEY"
                );
                Key::generate()
            }
        };
        Ok(Satchel { store, config, key })
    }

    /// The store, e.g. to build `SessionMiddleware` by hand.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration this was built from.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// actix-session's middleware for one worker: the shared store, the cookie named and
    /// scoped by `SESSION_COOKIE_*`, persistent when `SESSION_PERMANENT`, with the TTL extended
    /// on every request when `SESSION_REFRESH_EACH_REQUEST`.
    pub fn middleware(&self) -> SessionMiddleware<Store> {
        let c = &self.config;
        let ttl = actix_web::cookie::time::Duration::try_from(c.permanent_session_lifetime)
            .unwrap_or(actix_web::cookie::time::Duration::MAX);
        let policy = if c.refresh_each_request {
            TtlExtensionPolicy::OnEveryRequest
        } else {
            TtlExtensionPolicy::OnStateChanges
        };
        let builder = SessionMiddleware::builder(self.store.clone(), self.key.clone())
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
            });
        let builder = if c.permanent {
            builder.session_lifecycle(
                PersistentSession::default()
                    .session_ttl(ttl)
                    .session_ttl_extension_policy(policy),
            )
        } else {
            builder.session_lifecycle(
                BrowserSession::default()
                    .state_ttl(ttl)
                    .state_ttl_extension_policy(policy),
            )
        };
        builder.build()
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
