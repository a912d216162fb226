//! The Flask cookie layer: actix-session's middleware inside, Flask-Session's cookie outside.
//!
//! actix-session's `Session` extractor can only be filled by its own middleware, and that
//! middleware always signs or encrypts its cookie. So this layer translates at the edge: on the
//! way in, Flask's cookie (`session=<id>` or `<id>.<signature>`) becomes actix-session's signed
//! cookie; on the way out, actix-session's `Set-Cookie` becomes Flask-Session's, with Flask's
//! attributes, `Expires` only for permanent sessions, and a deletion cookie for an emptied one.
//! A probe just inside actix-session notes, after the handler ran, whether the session is
//! permanent and whether it is empty, which only the session state can tell.

use std::rc::Rc;

use actix_session::{SessionExt, SessionMiddleware};
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderValue};
use futures_util::future::LocalBoxFuture;
use satchel_core::codec::PERMANENT_KEY;

use crate::flask_cookie::FlaskCookie;
use crate::store::Store;

/// Longest cookie value passed inward; real ids are 43 characters (86 at most by default).
const MAX_ID_LEN: usize = 512;

struct Shared {
    cookie: FlaskCookie,
    /// Signs the cookie actix-session sees inside this process; never leaves it.
    inner_key: Key,
    /// `SESSION_PERMANENT`: whether a new session is permanent.
    permanent_by_default: bool,
}

/// What the probe saw after the handler ran.
#[derive(Clone, Copy)]
struct Outcome {
    permanent: bool,
    empty: bool,
}

/// Sessions with Flask-Session's cookie, around actix-session's middleware and Satchel's store.
/// Built by [`Satchel::middleware`](crate::Satchel::middleware).
pub struct FlaskSessionMiddleware {
    inner: SessionMiddleware<Store>,
    shared: Rc<Shared>,
}

impl FlaskSessionMiddleware {
    pub(crate) fn new(
        inner: SessionMiddleware<Store>,
        cookie: FlaskCookie,
        inner_key: Key,
        permanent_by_default: bool,
    ) -> FlaskSessionMiddleware {
        FlaskSessionMiddleware {
            inner,
            shared: Rc::new(Shared {
                cookie,
                inner_key,
                permanent_by_default,
            }),
        }
    }
}

type Inner<S> = <SessionMiddleware<Store> as Transform<Probe<S>, ServiceRequest>>::Transform;

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
        let had_cookie = translate_request_cookie(&mut req, &shared);
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let mut res = service.call(req).await?;
            translate_response_cookie(&mut res, &shared, had_cookie);
            Ok(res)
        })
    }
}

/// Replaces Flask's cookie in the request with the signed cookie actix-session expects.
/// Returns whether the request carried a Flask session cookie at all.
fn translate_request_cookie(req: &mut ServiceRequest, shared: &Shared) -> bool {
    let name = shared.cookie.name();
    let headers = req.headers();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut found = false;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        // The same split actix-web does when it parses the Cookie header.
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (cookie_name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((cookie_name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut out = String::new();
    for (cookie_name, value) in &pairs {
        let value = if cookie_name == name {
            if found {
                continue; // werkzeug reads the first of duplicate cookies
            }
            found = true;
            match shared
                .cookie
                .session_id(value)
                .filter(|id| plausible_id(id))
            {
                Some(id) => sign_inner(shared, id),
                None => {
                    tracing::debug!(
                        "session cookie is unsigned, tampered or malformed; starting a fresh session"
                    );
                    continue;
                }
            }
        } else {
            value.clone()
        };
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(cookie_name);
        out.push('=');
        out.push_str(&value);
    }
    if !found {
        return false;
    }
    let headers = req.headers_mut();
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&out) {
        headers.insert(header::COOKIE, value);
    }
    true
}

/// Cheap shape check before signing: the store validates ids exactly.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
fn translate_response_cookie<B>(res: &mut ServiceResponse<B>, shared: &Shared, had_cookie: bool) {
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
        // Purged, or emptied by the handler: Flask-Session deletes the cookie, but only sends
        // the deletion when the browser had one.
        had_cookie.then(|| shared.cookie.delete_cookie())
    } else {
        let jar = CookieJar::new();
        match jar.signed(&shared.inner_key).verify(inner_cookie) {
            Some(verified) => {
                let permanent = outcome.is_none_or(|o| o.permanent);
                Some(shared.cookie.set_cookie(
                    verified.value(),
                    permanent,
                    time::OffsetDateTime::now_utc(),
                ))
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
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let session = res.request().get_session();
            let explicit = session.get::<bool>(PERMANENT_KEY).ok().flatten();
            let outcome = Outcome {
                permanent: explicit.unwrap_or(arrived_new && permanent_by_default),
                empty: session.entries().keys().all(|k| k == PERMANENT_KEY),
            };
            res.request().extensions_mut().insert(outcome);
            Ok(res)
        })
    }
}
