//! The Flask cookie layer: actix-session's middleware inside, Flask-Session's cookie outside.
//!
//! actix-session's `Session` extractor can only be filled by its own middleware, and that
//! middleware always signs or encrypts its cookie. So this layer translates at the edge: on the
//! way in, Flask's cookie (`session=<id>` or `<id>.<signature>`) becomes actix-session's signed
//! cookie; on the way out, actix-session's `Set-Cookie` becomes Flask-Session's, with Flask's
//! attributes, `Expires` only for permanent sessions, and a deletion cookie for an emptied one.
//! A probe just inside actix-session notes, after the handler ran, whether the session is
//! permanent, changed and empty, which only the session state can tell.
//!
//! With `SESSION_TYPE=cookie` the cookie value is the whole signed session (Flask's own
//! `SecureCookieSessionInterface`): it is passed through to [`CookieStore`](crate::CookieStore)
//! unchanged, sent back with Flask's attributes, re-signed with a fresh timestamp when Flask
//! would send it again unchanged, and deleted with Flask's deletion cookie.

use std::rc::Rc;

use actix_session::{SessionExt, SessionMiddleware, SessionStatus};
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderValue};
use futures_util::future::LocalBoxFuture;
use satchel_core::codec::PERMANENT_KEY;

use crate::cookie_session::CookieSession;
use crate::flask_cookie::FlaskCookie;
use crate::middleware::AnyStore;

/// Longest cookie value passed inward; real ids are 43 characters (86 at most by default).
const MAX_ID_LEN: usize = 512;

/// Longest client-side session cookie value passed inward: no browser keeps more.
const MAX_CLIENT_COOKIE_LEN: usize = 4096;

struct Shared {
    cookie: FlaskCookie,
    /// Signs the cookie actix-session sees inside this process; never leaves it.
    inner_key: Key,
    /// `SESSION_PERMANENT`: whether a new session is permanent.
    permanent_by_default: bool,
    /// `SESSION_REFRESH_EACH_REQUEST`: re-send the cookie of an unchanged permanent session.
    /// actix-session inside runs with `OnStateChanges` and sends no cookie for an unchanged
    /// session; this layer sends Flask's from the id the request carried, which spares a
    /// signature by actix-session and its verification here on every read-only request.
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

/// What the probe saw after the handler ran.
#[derive(Clone, Copy)]
struct Outcome {
    permanent: bool,
    empty: bool,
    /// The session arrived with data (the cookie named a live session).
    loaded: bool,
    /// The handler changed, purged or renewed the session.
    changed: bool,
}

/// Sessions with Flask-Session's cookie, around actix-session's middleware and Satchel's store.
/// Built by [`Satchel::middleware`](crate::Satchel::middleware).
pub struct FlaskSessionMiddleware {
    inner: SessionMiddleware<AnyStore>,
    shared: Rc<Shared>,
}

impl FlaskSessionMiddleware {
    pub(crate) fn new(
        inner: SessionMiddleware<AnyStore>,
        cookie: FlaskCookie,
        inner_key: Key,
        permanent_by_default: bool,
        refresh_each_request: bool,
        client_side: Option<ClientSide>,
    ) -> FlaskSessionMiddleware {
        FlaskSessionMiddleware {
            inner,
            shared: Rc::new(Shared {
                cookie,
                inner_key,
                permanent_by_default,
                refresh_each_request,
                client_side,
            }),
        }
    }
}

type Inner<S> = <SessionMiddleware<AnyStore> as Transform<Probe<S>, ServiceRequest>>::Transform;

impl<S, B> Transform<S, ServiceRequest> for FlaskSessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = FlaskSessionService<Inner<S>>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let probe = Probe {
            service,
            shared: Rc::clone(&self.shared),
        };
        let inner = self.inner.new_transform(probe);
        let shared = Rc::clone(&self.shared);
        Box::pin(async move {
            Ok(FlaskSessionService {
                service: Rc::new(inner.await?),
                shared,
            })
        })
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

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let shared = Rc::clone(&self.shared);
        let incoming = translate_request_cookie(&mut req, &shared);
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let mut res = service.call(req).await?;
            translate_response_cookie(&mut res, &shared, &incoming);
            Ok(res)
        })
    }
}

/// The session cookie a request carried.
#[derive(Default)]
struct Incoming {
    /// The browser sent a cookie with the session cookie's name, valid or not.
    present: bool,
    /// The accepted value (the id, or the whole client-side session) and the signed cookie
    /// value actix-session was handed for it.
    accepted: Option<(String, String)>,
}

/// Replaces Flask's cookie in the request with the signed cookie actix-session expects.
fn translate_request_cookie(req: &mut ServiceRequest, shared: &Shared) -> Incoming {
    let name = shared.cookie.name();
    let headers = req.headers();
    // Borrowed from the request's headers, which are replaced only once `out` is built.
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut found = false;
    let mut accepted = None;
    for value in headers.get_all(header::COOKIE) {
        // Not `to_str`, which refuses any non-ASCII byte: a neighbouring cookie with UTF-8 in
        // it must not cost the user their session (actix-web itself parses it this way).
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        // The same split actix-web does when it parses the Cookie header.
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (cookie_name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((cookie_name.trim(), value.trim()));
        }
    }
    let mut out = String::new();
    for &(cookie_name, value) in &pairs {
        let value = if cookie_name == name {
            if found {
                continue; // werkzeug reads the first of duplicate cookies
            }
            found = true;
            let session_key = if shared.client_side.is_some() {
                // The whole signed session; the store verifies it.
                Some(value).filter(|v| plausible_client_cookie(v))
            } else {
                shared
                    .cookie
                    .session_id(value)
                    .filter(|id| plausible_id(id))
            };
            match session_key {
                Some(id) => {
                    let (_, signed) = accepted.insert((id.to_owned(), sign_inner(shared, id)));
                    signed.as_str()
                }
                None => {
                    tracing::debug!(
                        "session cookie is unsigned, tampered or malformed; starting a fresh session"
                    );
                    continue;
                }
            }
        } else {
            value
        };
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(cookie_name);
        out.push('=');
        out.push_str(value);
    }
    if !found {
        return Incoming::default();
    }
    let headers = req.headers_mut();
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_bytes(out.as_bytes()) {
        headers.insert(header::COOKIE, value);
    }
    Incoming {
        present: true,
        accepted,
    }
}

/// Cheap shape check before signing: the store validates ids exactly.
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

fn sign_inner(shared: &Shared, id: &str) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(&shared.inner_key)
        .add(Cookie::new(shared.cookie.name().to_owned(), id.to_owned()));
    jar.get(shared.cookie.name())
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

/// Replaces actix-session's `Set-Cookie` with Flask-Session's.
fn translate_response_cookie<B>(
    res: &mut ServiceResponse<B>,
    shared: &Shared,
    incoming: &Incoming,
) {
    let had_cookie = incoming.present;
    let name = shared.cookie.name();
    let outcome = res.request().extensions().get::<Outcome>().copied();
    let headers = res.headers_mut();
    let mut ours: Option<Cookie<'static>> = None;
    let mut others: Vec<HeaderValue> = Vec::new();
    for value in headers.get_all(header::SET_COOKIE) {
        match value
            .to_str()
            .ok()
            .and_then(|t| Cookie::parse_encoded(t.to_owned()).ok())
        {
            Some(cookie) if cookie.name() == name => ours = Some(cookie),
            _ => others.push(value.clone()),
        }
    }
    let Some(inner_cookie) = ours else {
        // actix-session sends nothing for an unchanged session; Flask re-sends the cookie of a
        // loaded permanent one (or deletes it if only `_permanent` is left) with
        // SESSION_REFRESH_EACH_REQUEST.
        let refresh = match (outcome, &incoming.accepted) {
            (Some(o), Some((value, _)))
                if shared.refresh_each_request && o.loaded && !o.changed =>
            {
                unchanged_cookie(shared, value, o)
            }
            _ => None,
        };
        if let Some(value) = refresh.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.append(header::SET_COOKIE, value);
        }
        if had_cookie {
            vary_cookie(headers);
        }
        return;
    };
    headers.remove(header::SET_COOKIE);
    for value in others {
        headers.append(header::SET_COOKIE, value);
    }

    let empty = outcome.is_some_and(|o| o.empty);
    let flask_cookie = if inner_cookie.value().is_empty() || empty {
        // Purged, or emptied by the handler: Flask deletes the cookie, but only sends the
        // deletion when the browser had one.
        had_cookie.then(|| match &shared.client_side {
            Some(client) => client.deletion.clone(),
            None => shared.cookie.delete_cookie(),
        })
    } else {
        // The id the request carried, signed again by actix-session, is the very string it
        // was handed (HMAC is deterministic): no need to verify it a second time.
        let same_id = incoming
            .accepted
            .as_ref()
            .filter(|(_, signed)| signed == inner_cookie.value())
            .map(|(value, _)| Cookie::new(name.to_owned(), value.clone()));
        let verified = same_id.or_else(|| {
            let jar = CookieJar::new();
            jar.signed(&shared.inner_key).verify(inner_cookie)
        });
        match verified {
            Some(verified) => {
                let permanent = outcome.is_none_or(|o| o.permanent);
                let now = time::OffsetDateTime::now_utc();
                match &shared.client_side {
                    // Flask-Session re-sends the cookie of an unchanged session only when it
                    // is permanent (to slide its expiry); a browser-session cookie stays as is.
                    None if !permanent && outcome.is_some_and(|o| !o.changed) => None,
                    None => Some(shared.cookie.set_cookie(verified.value(), permanent, now)),
                    Some(client) => client_cookie(
                        shared,
                        client,
                        verified.value(),
                        permanent,
                        outcome.is_none_or(|o| o.changed),
                        now,
                    ),
                }
            }
            None => {
                tracing::error!(
                    "actix-session's cookie failed its own signature; not forwarding it"
                );
                None
            }
        }
    };
    if let Some(value) = flask_cookie.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.append(header::SET_COOKIE, value);
    }
    vary_cookie(headers);
}

/// Flask's `Set-Cookie` (or deletion) for a loaded session the handler did not change, with
/// SESSION_REFRESH_EACH_REQUEST: `value` is what the request's cookie carried.
fn unchanged_cookie(shared: &Shared, value: &str, outcome: Outcome) -> Option<String> {
    if outcome.empty {
        return Some(match &shared.client_side {
            Some(client) => client.deletion.clone(),
            None => shared.cookie.delete_cookie(),
        });
    }
    let now = time::OffsetDateTime::now_utc();
    match &shared.client_side {
        None if outcome.permanent => Some(shared.cookie.set_cookie(value, true, now)),
        None => None,
        Some(client) => client_cookie(shared, client, value, outcome.permanent, false, now),
    }
}

/// Flask's `Set-Cookie` for a client-side session: the cookie the store just signed when the
/// session changed; when it did not (actix-session re-sends it on every request with
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
    let value = client.codec.resign(value, now.unix_timestamp())?;
    Some(shared.cookie.set_cookie(&value, permanent, now))
}

fn vary_cookie(headers: &mut actix_web::http::header::HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("Cookie"));
}

/// Sits just inside actix-session: notes whether the session was new before the handler, and
/// whether it is permanent and empty after it.
pub struct Probe<S> {
    service: S,
    shared: Rc<Shared>,
}

impl<S, B> Service<ServiceRequest> for Probe<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // A session that arrives empty is new: its permanence comes from SESSION_PERMANENT.
        // One that arrives with data keeps what its `_permanent` key says, as in Flask-Session.
        let arrived_new = req.get_session().entries().is_empty();
        let permanent_by_default = self.shared.permanent_by_default;
        let client_side = self.shared.client_side.is_some();
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let session = res.request().get_session();
            let explicit = session.get::<bool>(PERMANENT_KEY).ok().flatten();
            let empty = if client_side {
                // Flask's own session keeps a cookie holding only `_permanent`.
                session.entries().is_empty()
            } else {
                session.entries().keys().all(|k| k == PERMANENT_KEY)
            };
            let outcome = Outcome {
                permanent: explicit.unwrap_or(arrived_new && permanent_by_default),
                empty,
                loaded: !arrived_new,
                changed: session.status() != SessionStatus::Unchanged,
            };
            res.request().extensions_mut().insert(outcome);
            Ok(res)
        })
    }
}
