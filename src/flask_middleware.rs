//! The Flask cookie layer: Flask-Session's cookie around Satchel's store, filling the
//! ordinary `actix_session::Session` that handlers extract.
//!
//! The `Session` extractor takes the session from the request's extensions, where any
//! middleware can put one (`SessionExt::get_session`). So this layer does what actix-session's
//! own middleware does, over the same [`SessionStore`] interface, with Flask's cookie instead of
//! actix-session's signed one: it reads the id from Flask's cookie (`session=<id>`, or
//! `<id>.<signature>` with `SESSION_USE_SIGNER`), loads the session, puts it in the request, and
//! after the handler saves, updates or deletes it as actix-session would, then sends Flask's
//! `Set-Cookie` with Flask's attributes, `Expires` only for permanent sessions, and a deletion
//! cookie for an emptied one.
//!
//! Wrapping actix-session's middleware instead (as Satchel's first versions did) cost an HMAC to
//! sign the id into actix-session's cookie and another to verify it on every request, plus
//! actix-session's cookie parsing and, on every change, a signed `Set-Cookie` to parse back;
//! see benches/HISTORY.md.
//!
//! With `SESSION_TYPE=cookie` the cookie value is the whole signed session (Flask's own
//! `SecureCookieSessionInterface`): it is the session key [`CookieStore`](crate::CookieStore)
//! loads and returns, sent back with Flask's attributes, re-signed with a fresh timestamp when
//! Flask would send it again unchanged, and deleted with Flask's deletion cookie.

use std::rc::Rc;

use actix_session::storage::{LoadError, SessionKey, SessionStore};
use actix_session::{SessionExt, SessionStatus};
use actix_web::body::MessageBody;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, error::InternalError};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use satchel_core::codec::PERMANENT_KEY;

use crate::cookie_session::CookieSession;
use crate::flask_cookie::FlaskCookie;
use crate::middleware::AnyStore;
use crate::value::ActixState;

/// Longest cookie value passed inward; real ids are 43 characters (86 at most by default).
const MAX_ID_LEN: usize = 512;

/// Longest client-side session cookie value passed inward: no browser keeps more.
const MAX_CLIENT_COOKIE_LEN: usize = 4096;

struct Shared {
    store: AnyStore,
    cookie: FlaskCookie,
    /// The lifetime handed to the store with every save (`PERMANENT_SESSION_LIFETIME`).
    ttl: CookieDuration,
    /// `SESSION_PERMANENT`: whether a new session is permanent.
    permanent_by_default: bool,
    /// `SESSION_REFRESH_EACH_REQUEST`: re-send the cookie of an unchanged permanent session.
    /// The store slides its TTL while loading (`Backend::load_and_touch`).
    refresh_each_request: bool,
    /// `SESSION_TYPE=cookie`: the session lives in the cookie.
    client_side: Option<ClientSide>,
}

/// What Flask's own cookie session needs beyond Flask-Session's cookie.
pub(crate) struct ClientSide {
    /// Re-signs unchanged permanent sessions, as Flask re-serializes them.
    pub(crate) codec: CookieSession,
    /// Flask's deletion cookie, which (unlike Flask-Session's) repeats Domain, Path, Secure,
    /// HttpOnly and SameSite.
    pub(crate) deletion: String,
}

impl ClientSide {
    /// Flask's client-side session for `config`.
    pub(crate) fn new(config: &satchel_core::SessionConfig, codec: CookieSession) -> ClientSide {
        let mut deletion = format!("{}=", config.cookie_name);
        if let Some(domain) = &config.cookie_domain {
            deletion.push_str("; Domain=");
            deletion.push_str(domain);
        }
        deletion.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0");
        if config.cookie_secure {
            deletion.push_str("; Secure");
        }
        if config.cookie_httponly {
            deletion.push_str("; HttpOnly");
        }
        deletion.push_str("; Path=");
        deletion.push_str(&config.cookie_path);
        if let Some(same_site) = config.cookie_samesite {
            deletion.push_str(match same_site {
                satchel_core::SameSite::Strict => "; SameSite=Strict",
                satchel_core::SameSite::Lax => "; SameSite=Lax",
                satchel_core::SameSite::None => "; SameSite=None",
            });
        }
        ClientSide { codec, deletion }
    }
}

/// What the handler left, as the cookie decision needs it.
#[derive(Clone, Copy)]
struct Outcome {
    permanent: bool,
    empty: bool,
    /// The session arrived with data (the cookie named a live session).
    loaded: bool,
    /// The handler changed, purged or renewed the session.
    changed: bool,
}

/// Sessions with Flask-Session's cookie over Satchel's store. Built by
/// [`Satchel::middleware`](crate::Satchel::middleware), once per worker.
///
/// ```no_run
/// use actix_session::Session;
/// use actix_web::{App, HttpServer, web};
///
/// async fn visits(session: Session) -> actix_web::Result<String> {
///     let n = session.get::<u64>("visits")?.unwrap_or(0) + 1;
///     session.insert("visits", n)?;
///     Ok(n.to_string())
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let sessions = satchel::Satchel::from_env().await.expect("session settings and backend");
///     HttpServer::new(move || {
///         App::new()
///             .wrap(sessions.middleware())
///             .route("/", web::get().to(visits))
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
pub struct FlaskSessionMiddleware {
    shared: Rc<Shared>,
}

impl FlaskSessionMiddleware {
    pub(crate) fn new(
        store: AnyStore,
        cookie: FlaskCookie,
        ttl: CookieDuration,
        permanent_by_default: bool,
        refresh_each_request: bool,
        client_side: Option<ClientSide>,
    ) -> FlaskSessionMiddleware {
        FlaskSessionMiddleware {
            shared: Rc::new(Shared {
                store,
                cookie,
                ttl,
                permanent_by_default,
                refresh_each_request,
                client_side,
            }),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for FlaskSessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = FlaskSessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(FlaskSessionService {
            service: Rc::new(service),
            shared: Rc::clone(&self.shared),
        }))
    }
}

/// The per-worker service of [`FlaskSessionMiddleware`].
pub struct FlaskSessionService<S> {
    service: Rc<S>,
    shared: Rc<Shared>,
}

impl<S, B> Service<ServiceRequest> for FlaskSessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let shared = Rc::clone(&self.shared);
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let incoming = read_request_cookie(&req, &shared);
            let (session_key, loaded) = load_session(&shared, incoming.accepted.as_deref()).await?;
            let session = req.get_session();
            for (key, json) in &loaded {
                // The stores hand values over as JSON texts; RawValue inserts them as they are.
                // Borrowed, because `loaded` is kept to tell whether the handler changed them.
                let inserted = serde_json::from_str::<&serde_json::value::RawValue>(json)
                    .map_err(anyhow::Error::from)
                    .and_then(|raw| Ok(session.insert(key.clone(), raw)?));
                if let Err(error) = inserted {
                    tracing::error!(%error, "a loaded session value is not JSON; answering 500");
                    return Err(e500(error));
                }
            }
            let mut res = service.call(req).await?;
            let session = res.request().get_session();
            let status = session.status();
            let outcome = outcome(&shared, &status, &session.entries(), &loaded);
            let written = save_session(&shared, session_key, &session, status, outcome).await?;
            set_response_cookie(&mut res, &shared, &incoming, outcome, written);
            Ok(res)
        })
    }
}

/// The session cookie a request carried.
#[derive(Default)]
struct Incoming {
    /// The browser sent a cookie with the session cookie's name, valid or not.
    present: bool,
    /// The accepted value: the id, or the whole client-side session.
    accepted: Option<String>,
}

/// Flask's session cookie in the request: the first with its name, as werkzeug reads it.
fn read_request_cookie(req: &ServiceRequest, shared: &Shared) -> Incoming {
    let name = shared.cookie.name();
    for value in req.headers().get_all(header::COOKIE) {
        // Not `to_str`, which refuses any non-ASCII byte: a neighbouring cookie with UTF-8 in
        // it must not cost the user their session (actix-web itself parses it this way).
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        // The same split actix-web does when it parses the Cookie header.
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (cookie_name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if cookie_name.trim() != name {
                continue;
            }
            let value = value.trim();
            let accepted = if shared.client_side.is_some() {
                // The whole signed session; the store verifies it.
                Some(value).filter(|v| plausible_client_cookie(v))
            } else {
                shared
                    .cookie
                    .session_id(value)
                    .filter(|id| plausible_id(id))
            };
            if accepted.is_none() {
                tracing::debug!(
                    "session cookie is unsigned, tampered or malformed; starting a fresh session"
                );
            }
            return Incoming {
                present: true,
                accepted: accepted.map(str::to_owned),
            };
        }
    }
    Incoming::default()
}

/// The session the cookie names, as actix-session's middleware loads it: no key when nothing
/// is stored under it (a changed session is then saved under a new one), an error only when
/// the store fails and `SATCHEL_ON_LOAD_ERROR=fail`.
async fn load_session(
    shared: &Shared,
    accepted: Option<&str>,
) -> Result<(Option<SessionKey>, ActixState), actix_web::Error> {
    let Some(session_key) = accepted.and_then(|v| SessionKey::try_from(v.to_owned()).ok()) else {
        return Ok((None, ActixState::new()));
    };
    match shared.store.load(&session_key).await {
        Ok(Some(state)) => Ok((Some(session_key), state)),
        Ok(None) => Ok((None, ActixState::new())),
        // The store logs what went wrong (without the id).
        Err(LoadError::Deserialization(_)) => Ok((Some(session_key), ActixState::new())),
        Err(LoadError::Other(error)) => Err(e500(error)),
    }
}

/// Permanence, emptiness and whether the handler changed the session. A handler that leaves
/// every value as it was has not changed it, even if it wrote one again.
fn outcome(
    shared: &Shared,
    status: &SessionStatus,
    state: &ActixState,
    loaded: &ActixState,
) -> Outcome {
    // A session that arrives empty is new: its permanence comes from SESSION_PERMANENT.
    // One that arrives with data keeps what its `_permanent` key says, as in Flask-Session.
    let arrived_new = loaded.is_empty();
    let explicit = state
        .get(PERMANENT_KEY)
        .and_then(|json| serde_json::from_str::<bool>(json).ok());
    let empty = if shared.client_side.is_some() {
        // Flask's own session keeps a cookie holding only `_permanent`.
        state.is_empty()
    } else {
        crate::store::holds_only_permanent(state)
    };
    Outcome {
        permanent: explicit.unwrap_or(arrived_new && shared.permanent_by_default),
        empty,
        loaded: !arrived_new,
        changed: match status {
            SessionStatus::Unchanged => false,
            // Loading the session into the request counts as a change to actix-session.
            SessionStatus::Changed => state != loaded,
            SessionStatus::Purged | SessionStatus::Renewed => true,
        },
    }
}

/// What the store was told after the handler, for the cookie.
enum Written {
    /// Nothing: the session is unchanged, or new and empty.
    Nothing,
    /// Saved or updated under this key (the id, or the client-side cookie).
    Key(SessionKey),
    /// Purged.
    Deleted,
}

/// Saves, updates or deletes the session as actix-session's middleware does. The state is
/// copied out of the request's `Session` only for a write, so a read-only request copies
/// nothing.
async fn save_session(
    shared: &Shared,
    session_key: Option<SessionKey>,
    session: &actix_session::Session,
    status: SessionStatus,
    outcome: Outcome,
) -> Result<Written, actix_web::Error> {
    let store = &shared.store;
    let ttl = &shared.ttl;
    let state = || session.entries().clone();
    Ok(match session_key {
        // A fresh session is stored only once it holds something.
        None if session.entries().is_empty() || !outcome.changed => Written::Nothing,
        None => Written::Key(store.save(state(), ttl).await.map_err(e500)?),
        Some(_) if !outcome.changed => Written::Nothing,
        Some(key) => match status {
            SessionStatus::Purged => {
                store.delete(&key).await.map_err(e500)?;
                Written::Deleted
            }
            SessionStatus::Renewed => {
                store.delete(&key).await.map_err(e500)?;
                Written::Key(store.save(state(), ttl).await.map_err(e500)?)
            }
            SessionStatus::Changed | SessionStatus::Unchanged => {
                Written::Key(store.update(key, state(), ttl).await.map_err(e500)?)
            }
        },
    })
}

/// An opaque 500, as actix-session answers a store failure: the store has logged the cause,
/// and its text is not for the client.
fn e500<E: std::fmt::Debug + std::fmt::Display + 'static>(error: E) -> actix_web::Error {
    InternalError::from_response(error, HttpResponse::InternalServerError().finish()).into()
}

/// Cheap shape check before the store sees an id, which it then validates exactly.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Cheap shape check of a client-side session cookie: base64url and dots, as itsdangerous
/// writes it, within what a browser keeps.
fn plausible_client_cookie(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CLIENT_COOKIE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Adds Flask-Session's `Set-Cookie` (or Flask's deletion cookie) and `Vary: Cookie`.
fn set_response_cookie<B>(
    res: &mut ServiceResponse<B>,
    shared: &Shared,
    incoming: &Incoming,
    outcome: Outcome,
    written: Written,
) {
    let had_cookie = incoming.present;
    let flask_cookie = match written {
        Written::Nothing => {
            // Flask re-sends the cookie of a loaded permanent session (or deletes it if only
            // `_permanent` is left) with SESSION_REFRESH_EACH_REQUEST.
            let refresh = match &incoming.accepted {
                Some(value) if shared.refresh_each_request && outcome.loaded => {
                    unchanged_cookie(shared, value, outcome)
                }
                _ => None,
            };
            let headers = res.headers_mut();
            if let Some(value) = refresh.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.append(header::SET_COOKIE, value);
            }
            if had_cookie {
                vary_cookie(headers);
            }
            return;
        }
        // Purged, or emptied by the handler: Flask deletes the cookie, but only sends the
        // deletion when the browser had one.
        Written::Deleted => had_cookie.then(|| deletion_cookie(shared)),
        Written::Key(_) if outcome.empty => had_cookie.then(|| deletion_cookie(shared)),
        Written::Key(key) => {
            let now = time::OffsetDateTime::now_utc();
            match &shared.client_side {
                None => Some(
                    shared
                        .cookie
                        .set_cookie(key.as_ref(), outcome.permanent, now),
                ),
                Some(client) => client_cookie(
                    shared,
                    client,
                    key.as_ref(),
                    outcome.permanent,
                    outcome.changed,
                    now,
                ),
            }
        }
    };
    let headers = res.headers_mut();
    if let Some(value) = flask_cookie.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.append(header::SET_COOKIE, value);
    }
    vary_cookie(headers);
}

fn deletion_cookie(shared: &Shared) -> String {
    match &shared.client_side {
        Some(client) => client.deletion.clone(),
        None => shared.cookie.delete_cookie(),
    }
}

/// Flask's `Set-Cookie` (or deletion) for a loaded session the handler did not change, with
/// SESSION_REFRESH_EACH_REQUEST: `value` is what the request's cookie carried.
fn unchanged_cookie(shared: &Shared, value: &str, outcome: Outcome) -> Option<String> {
    if outcome.empty {
        return Some(deletion_cookie(shared));
    }
    let now = time::OffsetDateTime::now_utc();
    match &shared.client_side {
        None if outcome.permanent => Some(shared.cookie.set_cookie(value, true, now)),
        None => None,
        Some(client) => client_cookie(shared, client, value, outcome.permanent, false, now),
    }
}

/// Flask's `Set-Cookie` for a client-side session: the cookie the store just signed when the
/// session changed; when it did not (`value` is then the cookie the request carried, with
/// `SESSION_REFRESH_EACH_REQUEST`), Flask sends it again only for a permanent session, signed
/// anew so its age starts over.
fn client_cookie(
    shared: &Shared,
    client: &ClientSide,
    value: &str,
    permanent: bool,
    changed: bool,
    now: time::OffsetDateTime,
) -> Option<String> {
    if changed {
        return Some(shared.cookie.set_cookie(value, permanent, now));
    }
    if !permanent {
        return None;
    }
    // Unchanged: `value` is the cookie this request's session was loaded from (`unchanged_cookie`
    // runs only for a loaded session), so the cookie store's `loads` has verified it.
    let value = client.codec.resign_accepted(value, now.unix_timestamp())?;
    Some(shared.cookie.set_cookie(&value, permanent, now))
}

fn vary_cookie(headers: &mut actix_web::http::header::HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("Cookie"));
}
