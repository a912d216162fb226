//! # Satchel
//!
//! Server-side sessions for [actix-web](https://actix.rs), with the backend chosen by
//! configuration the way Flask-Session's `SESSION_TYPE` chooses it, storing exactly what
//! Flask-Session 0.8 stores.
//!
//! * [`SessionConfig`] reads Flask's setting names (from the environment or any serde source).
//! * [`Satchel`] connects the configured backend once and gives each worker its session
//!   middleware: Flask-Session's cookie ([`Satchel::middleware`]) or actix-session's own
//!   ([`Satchel::actix_middleware`]); either way handlers use the ordinary
//!   `actix_session::Session`.
//! * [`Store`] is the `actix_session::storage::SessionStore` over any [`Backend`], for apps that
//!   build the middleware by hand.
//! * `SESSION_TYPE=cookie` keeps the whole session in Flask's own signed cookie
//!   ([`CookieStore`], [`cookie_session`]), shared with a Flask app that has the same `SECRET_KEY`.
//! * [`value`] explains how bytes and datetimes look to handlers.
//!
//! ```no_run
//! use actix_session::Session;
//! use actix_web::{App, HttpServer, Responder, get};
//!
//! #[get("/")]
//! async fn index(session: Session) -> actix_web::Result<impl Responder> {
//!     let visits = session.get::<i64>("visits")?.unwrap_or(0) + 1;
//!     session.insert("visits", visits)?;
//!     Ok(format!("visit {visits}"))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let sessions = satchel::Satchel::from_env().await.expect("session settings");
//!     HttpServer::new(move || App::new().wrap(sessions.middleware()).service(index))
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//! }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backends;
pub mod cookie_session;
mod cookie_store;
pub mod flask_cookie;
mod flask_middleware;
mod middleware;
mod store;
pub mod value;

pub use backends::AnyBackend;
pub use cookie_store::{CookieStore, CookieTooLarge, MAX_COOKIE_SIZE};
pub use flask_middleware::{FlaskSessionMiddleware, FlaskSessionService};
pub use middleware::{AnyStore, Satchel, cookie_key};
pub use satchel_core::{
    Backend, BackendError, Codec, ConfigError, LoadErrorPolicy, MemoryBackend, SameSite, Secret,
    SerializationFormat, SessionConfig, SessionData, SessionId, SessionType,
};
pub use store::Store;
