//! Flask's own client-side session cookie (`SecureCookieSessionInterface`, Flask 3.1), for
//! `SESSION_TYPE=cookie` (format doc §6).
//!
//! The cookie is itsdangerous' `URLSafeTimedSerializer` output: `payload.timestamp.signature`.
//!
//! * payload: Flask's tagged JSON of the session dict, written by `app.json.dumps` (compact,
//!   keys sorted, non-ASCII escaped), zlib-compressed and prefixed with `.` when that is shorter,
//!   then base64url without padding;
//! * timestamp: the Unix time in seconds, big-endian with leading zero bytes stripped, base64url;
//! * signature: base64url HMAC-SHA1 over `payload.timestamp`, under the key
//!   HMAC-SHA1(`SECRET_KEY`, `"cookie-session"`).
//!
//! Reading verifies against `SECRET_KEY`, then each `SECRET_KEY_FALLBACKS` entry, and refuses a
//! timestamp older than `PERMANENT_SESSION_LIFETIME` (for every session, permanent or not, as
//! Flask does) or in the future.
//!
//! # How values look to handlers
//!
//! Each session value reaches actix-session handlers as the JSON text Flask wrote, tags included:
//! a tuple is `{" t": [..]}`, a UUID `{" u": "<32 hex>"}`, `Markup` `{" m": "<html>"}`, bytes
//! `{" b": "<standard base64>"}` (so [`Bytes`](crate::value::Bytes) reads and writes them) and a
//! one-key dict whose key is a tag `{" di": {"<key>__": value}}`. Datetimes, which Flask writes as
//! HTTP dates (`{" d": "Tue, 02 Jan 2024 03:04:05 GMT"}`), are shown as RFC 3339
//! (`{" d": "2024-01-02T03:04:05Z"}`) so that [`Timestamp`](crate::value::Timestamp) works for
//! both session kinds, and written back as HTTP dates (whole seconds, as Flask keeps them). A value
//! Flask wrote and Rust did not change goes back byte for byte as Flask wrote it.
//!
//! Integers beyond 64 bits, which Python allows, are read as floats.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use satchel_core::{ConfigError, Secret, SessionConfig};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;

use crate::flask_cookie::{Signer, http_date};
use crate::value::ActixState;

/// The salt of Flask's session serializer.
pub const COOKIE_SESSION_SALT: &[u8] = b"cookie-session";

/// Largest decompressed payload accepted. A browser cookie holds about 4 KB, and deflate packs
/// at most about 1000:1; anything beyond this is not a session Flask wrote but a zip bomb.
const MAX_PAYLOAD: usize = 1 << 20;

/// Flask's tagged-JSON tags (`flask.json.tag`), any of which makes a one-key dict a tag.
const TAGS: [&str; 6] = [" di", " t", " b", " m", " u", " d"];
const TAG_DICT: &str = " di";
const TAG_DATETIME: &str = " d";

/// Why a cookie was not accepted. Every case reads as an empty session, as in Flask.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieError {
    /// The signature is missing or matches none of the keys.
    #[error("the session cookie's signature does not match SECRET_KEY or any fallback")]
    BadSignature,
    /// The timestamp part is not base64 of at most 8 bytes.
    #[error("the session cookie's timestamp is malformed")]
    BadTimestamp,
    /// Signed longer ago than `PERMANENT_SESSION_LIFETIME`.
    #[error("the session cookie expired {age} s after signing (max_age {max_age} s)")]
    Expired {
        /// Seconds since signing.
        age: i128,
        /// `PERMANENT_SESSION_LIFETIME` in seconds.
        max_age: u64,
    },
    /// Signed in the future: the clocks of the servers disagree.
    #[error("the session cookie was signed {0} s in the future (clock skew between servers?)")]
    FromTheFuture(i128),
    /// Signed correctly but the payload is not base64, zlib or a JSON object.
    #[error("the session cookie's payload cannot be read: {0}")]
    BadPayload(&'static str),
}

/// Flask's signed cookie session serializer: `URLSafeTimedSerializer(SECRET_KEY,
/// salt="cookie-session", serializer=TaggedJSONSerializer)` with `max_age =
/// PERMANENT_SESSION_LIFETIME`.
///
/// ```
/// use satchel::Secret;
/// use satchel::cookie_session::CookieSession;
/// use serde_json::json;
///
/// let codec = CookieSession::new(&Secret::new("secret_key"), &[], std::time::Duration::from_secs(3600));
/// let session = json!({"username": "alice"});
/// let cookie = codec.dumps(session.as_object().unwrap(), 1_700_000_000);
/// // The worked example of the format doc, checked against Flask 3.1.3.
/// assert_eq!(cookie, "eyJ1c2VybmFtZSI6ImFsaWNlIn0.ZVPxAA.jDL-dM1aUqc5lQ_lGpED313KSYI");
/// assert_eq!(codec.loads(&cookie, 1_700_000_100).unwrap(), *session.as_object().unwrap());
/// ```
#[derive(Clone)]
pub struct CookieSession {
    signer: Signer,
    max_age: u64,
}

impl CookieSession {
    /// A serializer signing with `secret` and also accepting cookies signed with any of
    /// `fallbacks`, refusing cookies older than `max_age` (whole seconds, as Flask counts).
    pub fn new(secret: &Secret, fallbacks: &[Secret], max_age: Duration) -> CookieSession {
        let mut keys = Vec::with_capacity(1 + fallbacks.len());
        keys.push(secret.clone());
        keys.extend_from_slice(fallbacks);
        CookieSession {
            signer: Signer::new(&keys, COOKIE_SESSION_SALT),
            max_age: max_age.as_secs(),
        }
    }

    /// The serializer `config` describes: `SECRET_KEY`, `SECRET_KEY_FALLBACKS` and
    /// `PERMANENT_SESSION_LIFETIME`. Without `SECRET_KEY` Flask has no session at all
    /// (`NullSession`); here that is a configuration error.
    pub fn from_config(config: &SessionConfig) -> Result<CookieSession, ConfigError> {
        let secret = config.secret_key.as_ref().ok_or(ConfigError::Missing {
            setting: "SECRET_KEY",
            why: "SESSION_TYPE=cookie signs the whole session into the cookie with it",
        })?;
        Ok(CookieSession::new(
            secret,
            &config.secret_key_fallbacks,
            config.permanent_session_lifetime,
        ))
    }

    /// The session a cookie value carries, as Flask's tagged JSON (tags kept), if the signature
    /// verifies and it was signed at most `max_age` seconds before `now` (Unix seconds).
    pub fn loads(&self, cookie: &str, now: i64) -> Result<Map<String, Json>, CookieError> {
        let signed = self
            .signer
            .unsign(cookie)
            .ok_or(CookieError::BadSignature)?;
        let (payload, timestamp) = signed.rsplit_once('.').ok_or(CookieError::BadSignature)?;
        let signed_at = decode_timestamp(timestamp).ok_or(CookieError::BadTimestamp)?;
        let age = i128::from(now) - i128::from(signed_at);
        if age < 0 {
            return Err(CookieError::FromTheFuture(-age));
        }
        if age > i128::from(self.max_age) {
            return Err(CookieError::Expired {
                age,
                max_age: self.max_age,
            });
        }
        decode_payload(payload)
    }

    /// The cookie value for a session given as Flask's tagged JSON, signed at `now` (Unix
    /// seconds) with `SECRET_KEY`. The JSON is byte for byte what Flask writes for it.
    pub fn dumps(&self, session: &Map<String, Json>, now: i64) -> String {
        let mut json = String::with_capacity(128);
        write_object(&mut json, &escape_top_level(session));
        let mut signed = encode_payload(json.as_bytes());
        signed.push('.');
        signed.push_str(&encode_timestamp(now));
        self.signer.sign(&signed)
    }

    /// The same cookie signed again at `now` with `SECRET_KEY`, payload unchanged: what Flask
    /// sends for an unmodified permanent session with `SESSION_REFRESH_EACH_REQUEST`. `None`
    /// when the cookie does not verify.
    pub fn resign(&self, cookie: &str, now: i64) -> Option<String> {
        let signed = self.signer.unsign(cookie)?;
        self.sign_again(signed, now)
    }

    /// [`CookieSession::resign`] for a cookie that [`CookieSession::loads`] accepted earlier in
    /// the same request, without checking its signature a second time (an HMAC-SHA1 and a
    /// base64 decoding, measured at 5.7k of the 58.7k instructions of a refreshing read). Only
    /// for cookies `loads` accepted: given any other text it would sign a payload of the
    /// client's choosing.
    pub(crate) fn resign_accepted(&self, cookie: &str, now: i64) -> Option<String> {
        debug_assert!(
            self.signer.unsign(cookie).is_some(),
            "resign_accepted on a cookie that does not verify"
        );
        let (signed, _signature) = cookie.rsplit_once('.')?;
        self.sign_again(signed, now)
    }

    /// A verified `payload.timestamp` → `payload.now`, signed; `None` without a timestamp.
    fn sign_again(&self, signed: &str, now: i64) -> Option<String> {
        let (payload, _) = signed.rsplit_once('.')?;
        let mut value = String::with_capacity(payload.len() + 12);
        value.push_str(payload);
        value.push('.');
        value.push_str(&encode_timestamp(now));
        Some(self.signer.sign(&value))
    }
}

/// itsdangerous' `int_to_bytes`: big-endian, leading zero bytes stripped; then base64url.
fn encode_timestamp(now: i64) -> String {
    // Flask signs `int(time.time())`; a clock before 1970 is not a case worth a branch.
    let bytes = u64::try_from(now).unwrap_or(0).to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    URL_SAFE_NO_PAD.encode(&bytes[first..])
}

fn decode_timestamp(text: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    if bytes.len() > 8 {
        return None;
    }
    let mut be = [0u8; 8];
    be[8 - bytes.len()..].copy_from_slice(&bytes);
    // A timestamp past i64::MAX is far in the future; saturate so it is refused as such.
    Some(i64::try_from(u64::from_be_bytes(be)).unwrap_or(i64::MAX))
}

/// itsdangerous' `URLSafeSerializerMixin.dump_payload`: zlib when it saves more than one byte
/// (the `.` prefix costs one), base64url without padding.
fn encode_payload(json: &[u8]) -> String {
    if let Some(compressed) = zlib_if_shorter(json).filter(|c| c.len() + 1 < json.len()) {
        let mut out = String::with_capacity(1 + compressed.len().div_ceil(3) * 4);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&compressed, &mut out);
        return out;
    }
    URL_SAFE_NO_PAD.encode(json)
}

thread_local! {
    /// One zlib compressor per thread, reset before each use. Creating one allocates over
    /// 256 KiB (zlib's window, hash chains and buffers), and a fresh one per cookie cut
    /// `cookie-satchel`'s read-modify-write in `scripts/bench.sh` to less than half (most
    /// likely page faults: that run spent as long in the kernel as in user space). A reset
    /// compressor writes exactly what a new one would.
    static DEFLATE: RefCell<Compress> = RefCell::new(python_zlib_compressor());
}

/// Python's `zlib.compress` default: level 6, zlib header, 32 KiB window, `memLevel` 8.
fn python_zlib_compressor() -> Compress {
    Compress::new(Compression::new(6), true)
}

/// `data` as `zlib.compress(data)` writes it, or `None` when that is not shorter than `data`
/// (the compressor stops as soon as its output reaches `data`'s length).
fn zlib_if_shorter(data: &[u8]) -> Option<Vec<u8>> {
    let compress = |deflate: &mut Compress| {
        deflate.reset();
        let mut out = Vec::with_capacity(data.len());
        match deflate.compress_vec(data, &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => Some(out),
            // Out of room (not shorter) or a zlib error: the session is sent uncompressed.
            _ => None,
        }
    };
    with_reused(&DEFLATE, python_zlib_compressor, compress)
}

thread_local! {
    /// One zlib decompressor per thread, reset before each use, for the same reason as
    /// [`DEFLATE`]: a new one allocates its state and window on every compressed cookie.
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(true));
}

/// `zlib.decompress(data)`, refusing streams that are cut short or inflate past
/// [`MAX_PAYLOAD`] (a zip bomb). Bytes after the end of the stream are ignored, as Python does.
fn unzlib(data: &[u8]) -> Result<Vec<u8>, CookieError> {
    let inflate = |decompress: &mut Decompress| {
        decompress.reset(true);
        // Sessions compress about 2–4:1; the buffer grows if that is not enough.
        let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(MAX_PAYLOAD));
        loop {
            let consumed = usize::try_from(decompress.total_in()).unwrap_or(usize::MAX);
            let input = data.get(consumed..).unwrap_or_default();
            let before = (decompress.total_in(), decompress.total_out());
            let status = decompress
                .decompress_vec(input, &mut out, FlushDecompress::Finish)
                .map_err(|_| CookieError::BadPayload("not a zlib stream"))?;
            if status == Status::StreamEnd {
                return Ok(out);
            }
            if out.len() >= MAX_PAYLOAD {
                return Err(CookieError::BadPayload("decompresses to more than 1 MiB"));
            }
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(1024).min(MAX_PAYLOAD + 1 - out.len()));
            } else if (decompress.total_in(), decompress.total_out()) == before {
                // No progress with room to spare: the input ended before the stream did.
                return Err(CookieError::BadPayload("not a zlib stream"));
            }
        }
    };
    with_reused(&INFLATE, || Decompress::new(true), inflate)
}

/// Runs `f` on this thread's `key`, or on a fresh value from `make` when that is not
/// available (in use further up the stack, or gone because the thread is exiting).
fn with_reused<T: 'static, R>(
    key: &'static std::thread::LocalKey<RefCell<T>>,
    make: impl Fn() -> T,
    f: impl Fn(&mut T) -> R,
) -> R {
    key.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut value) => f(&mut value),
        Err(_) => f(&mut make()),
    })
    .unwrap_or_else(|_| f(&mut make()))
}

fn decode_payload(payload: &str) -> Result<Map<String, Json>, CookieError> {
    let (compressed, text) = match payload.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, payload),
    };
    let raw = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CookieError::BadPayload("not base64url"))?;
    let json = if compressed { unzlib(&raw)? } else { raw };
    let json = tag_non_finite_floats(json);
    match serde_json::from_slice::<Json>(&json) {
        Ok(Json::Object(map)) => unescape_top_level(map),
        Ok(_) => Err(CookieError::BadPayload("not a JSON object")),
        Err(_) => Err(CookieError::BadPayload("not JSON")),
    }
}

/// Python's JSON writes `NaN`, `Infinity` and `-Infinity`, which JSON (and serde_json) has no
/// words for. Outside strings they become Satchel's float tag (`{" f": "nan"}`, as
/// [`crate::value`] shows them to handlers), and [`write_python_float`]'s counterpart in
/// `write_json` turns the tag back into Python's word, so the value survives a Rust rewrite.
/// A hand-written scan: no JSON crate reads these non-standard tokens.
fn tag_non_finite_floats(json: Vec<u8>) -> Vec<u8> {
    const WORDS: [(&[u8], &[u8]); 3] = [
        (b"-Infinity", br#"{" f":"-inf"}"#),
        (b"Infinity", br#"{" f":"inf"}"#),
        (b"NaN", br#"{" f":"nan"}"#),
    ];
    if !json.windows(3).any(|w| w == b"NaN" || w == b"Inf") {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut i = 0;
    'scan: while i < json.len() {
        let byte = json[i];
        if in_string {
            out.push(byte);
            if byte == b'\\' {
                if let Some(&next) = json.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if byte == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
        } else {
            for (word, tag) in WORDS {
                if json[i..].starts_with(word) {
                    out.extend_from_slice(tag);
                    i += word.len();
                    continue 'scan;
                }
            }
        }
        out.push(byte);
        i += 1;
    }
    out
}

/// Flask's loader untags the session dict itself too: a session whose only key is a tag was
/// written as `{" di": {"<key>__": value}}`.
fn unescape_top_level(map: Map<String, Json>) -> Result<Map<String, Json>, CookieError> {
    if map.len() != 1 || !map.keys().all(|k| TAGS.contains(&k.as_str())) {
        return Ok(map);
    }
    match map.into_iter().next() {
        Some((tag, Json::Object(inner))) if tag == TAG_DICT && inner.len() == 1 => Ok(inner
            .into_iter()
            .map(|(k, v)| match k.strip_suffix("__") {
                Some(key) => (key.to_owned(), v),
                None => (k, v),
            })
            .collect()),
        // A tuple, bytes, … as the whole session: Flask cannot make a session of it either.
        _ => Err(CookieError::BadPayload("not a session dict")),
    }
}

/// Flask's `TagDict` applied to the session dict itself.
fn escape_top_level(session: &Map<String, Json>) -> std::borrow::Cow<'_, Map<String, Json>> {
    match session.iter().next() {
        Some((key, value)) if session.len() == 1 && TAGS.contains(&key.as_str()) => {
            let mut inner = Map::with_capacity(1);
            inner.insert(format!("{key}__"), value.clone());
            let mut outer = Map::with_capacity(1);
            outer.insert(TAG_DICT.to_owned(), Json::Object(inner));
            std::borrow::Cow::Owned(outer)
        }
        _ => std::borrow::Cow::Borrowed(session),
    }
}

/// JSON exactly as Flask's `app.json.dumps(obj, separators=(",", ":"))` writes it: keys sorted
/// by code point, every non-ASCII or control character escaped (`\u00e9`, surrogate pairs
/// beyond the BMP), floats as Python's `repr`.
///
/// ```
/// let json = serde_json::json!({"b": [1.5, 1e16, 3.0], "a": "é"});
/// assert_eq!(
///     satchel::cookie_session::dump_json(&json),
///     r#"{"a":"\u00e9","b":[1.5,1e+16,3.0]}"#
/// );
/// ```
pub fn dump_json(value: &Json) -> String {
    let mut out = String::with_capacity(128);
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64() {
                write_python_float(out, f);
            }
        }
        Json::String(s) => write_ascii_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => match non_finite_float(map) {
            Some(f) => write_python_float(out, f),
            None => write_object(out, map),
        },
    }
}

/// The float a `{" f": "inf" | "-inf" | "nan"}` tag stands for.
fn non_finite_float(map: &Map<String, Json>) -> Option<f64> {
    if map.len() != 1 {
        return None;
    }
    match map.get(" f")?.as_str()? {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    }
}

fn write_object(out: &mut String, map: &Map<String, Json>) {
    // Rust orders `str` by UTF-8 bytes, which is code point order, as Python sorts.
    let mut entries: Vec<(&String, &Json)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_ascii_string(out, key);
        out.push(':');
        write_json(out, item);
    }
    out.push('}');
}

/// Python's `json` with `ensure_ascii=True` (`py_encode_basestring_ascii`).
fn write_ascii_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `float.__repr__`: the shortest digits that round-trip (which Rust's `{:e}` also
/// gives), in positional notation for exponents -4 ≤ e < 16, else `d.ddde±XX`.
fn write_python_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        // serde_json cannot hold these; Python would write NaN/Infinity.
        out.push_str(if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        });
        return;
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if f.is_sign_negative() {
        out.push('-');
    }
    // Position of the decimal point relative to the first digit.
    let point = exponent + 1;
    if !(-3..=16).contains(&point) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point.unsigned_abs() as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

/// Flask's tagged session → what actix-session handlers see: each value's JSON text, with HTTP
/// dates shown as RFC 3339.
pub(crate) fn to_state(session: Map<String, Json>) -> ActixState {
    session
        .into_iter()
        .map(|(key, mut value)| {
            map_datetimes(&mut value, &http_date_to_rfc3339);
            (key, value.to_string())
        })
        .collect()
}

/// What handlers left → Flask's tagged session, with RFC 3339 datetimes as Flask's HTTP dates.
/// A text that is not JSON (actix-session only stores serde_json output) is kept as a string.
pub(crate) fn from_state(state: &ActixState) -> Map<String, Json> {
    state
        .iter()
        .map(|(key, text)| {
            let mut value =
                serde_json::from_str::<Json>(text).unwrap_or_else(|_| Json::String(text.clone()));
            map_datetimes(&mut value, &rfc3339_to_http_date);
            (key.clone(), value)
        })
        .collect()
}

/// Rewrites the text of every `{" d": text}` in `value`; a text `convert` cannot read stays.
fn map_datetimes(value: &mut Json, convert: &dyn Fn(&str) -> Option<String>) {
    match value {
        Json::Object(map) => {
            if map.len() == 1 {
                if let Some(Json::String(text)) = map.get_mut(TAG_DATETIME) {
                    if let Some(converted) = convert(text) {
                        *text = converted;
                    }
                    return;
                }
            }
            for item in map.values_mut() {
                map_datetimes(item, convert);
            }
        }
        Json::Array(items) => {
            for item in items {
                map_datetimes(item, convert);
            }
        }
        _ => {}
    }
}

fn http_date_to_rfc3339(text: &str) -> Option<String> {
    parse_http_date(text).and_then(satchel_core::codec::datetime_to_rfc3339)
}

fn rfc3339_to_http_date(text: &str) -> Option<String> {
    let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let at = at.to_offset(time::UtcOffset::UTC);
    // Python's datetime has years 1 to 9999; outside them Flask could not read it back.
    (1..=9999)
        .contains(&at.year())
        .then(|| http_date(at.replace_nanosecond(0).unwrap_or(at)))
}

/// Reads werkzeug's `http_date` form, `Tue, 02 Jan 2024 03:04:05 GMT`, as UTC.
fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = text.split(' ');
    let _weekday = parts.next().filter(|w| w.len() == 4 && w.ends_with(','))?;
    let day: u8 = parts.next().filter(|d| d.len() == 2)?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)?;
    let year: i32 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let clock = parts.next()?;
    if parts.next() != Some("GMT") || parts.next().is_some() {
        return None;
    }
    let mut hms = clock.split(':').map(|p| {
        if p.len() == 2 {
            p.parse::<u8>().ok()
        } else {
            None
        }
    });
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month + 1).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let clock = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TS: i64 = 1_700_000_000;
    const ALICE: &str = "eyJ1c2VybmFtZSI6ImFsaWNlIn0.ZVPxAA.jDL-dM1aUqc5lQ_lGpED313KSYI";
    const ALICE_PERMANENT: &str =
        "eyJfcGVybWFuZW50Ijp0cnVlLCJ1c2VybmFtZSI6ImFsaWNlIn0.ZVPxAA.bfitlA3CpOHpgQJYn2Jh5hu6fU0";
    // The cookies below were produced by Flask 3.1.3 (itsdangerous 2.2.0, zlib 1.2.13) with
    // SECRET_KEY="secret_key" and `time.time` patched to 1700000000, through a real request
    // (`app.test_client()`), so `app.json.dumps` wrote them inside an app context.
    const FLASH: &str = ".eJyrVopPy0kszkgtVrKKrlZSKAFSSrmpxcWJ6alKOkoZqTk5-UqxtTowqdSiovwioERSYgpQOLYWAKmsFNY.ZVPxAA.Lly5Yw7h1BIF32GZBo4F-WePLI4";
    const TAGGED: &str = ".eJyrVkpSsqpWUgCSSo6OrrZKtTpKKWARIKkUUpqqo2BgpOCVmKdgZGBkomBgbGVgYmVgquDuGwJWmglRC6FK4uOBmiqUaoEyOUpW0YY61UqJSlZGtbE6SrlgFUBSySbJrsJGP8kOpL8Eog-s1igWKFAKFgCSSgb4gSHQFgCOHS5X.ZVPxAA.2LfctW5gJL0OBwDKs3Cs2N5rXAU";
    const TAGGED_JSON: &str = r#"{"b":{" b":"AAE="},"d":{" d":"Tue, 02 Jan 2024 03:04:05 GMT"},"di":{" di":{" t__":"x"}},"l":[1,{"a":2}],"m":{" m":"<b>x</b>"},"t":{" t":[1,2]},"u":{" u":"00000000000000000000000000000001"}}"#;
    // Flask 3.1.3's session cookie for floats, integer extremes and escapes, same set-up.
    const MISC: &str = ".eJxVjcGKwzAMRH-l6LB7WCWVLMt2TNkP2bqHLnXagGmh3ZxC_r3KcQV6MzAMs8AP5AXOkI9_z7nieG6vekL4hcyryXQ1k7wP0XuKEmlQ5cCKMFqFe0XpCbl-cTB2pMj0_yy2J2LsNs9OvIaYhp6dbkUhsr0Jcjc4JxIdSUjqY9RECeEO-T63hvCCDLcyE9WhtceuzC6QmFySXIyVaLelcdxIXKCU_eH74xPWN5hQN7U.ZVPxAA.PfNSXFSa8aW72PvRSlbsJLps73o";
    const MISC_JSON: &str = r#"{"Z":{"a":[true,false],"b":1},"big":18446744073709551615,"f":[1.5,3.0,1e+16,1e-05,1000000000000000.0,0.0001,-0.0,123456789.125,1e+300],"i":-9223372036854775808,"n":null,"s":"h\u00e9llo \u2603 \ud83d\ude00 \u007f\u0001\"\\/<>&'"}"#;

    fn codec() -> CookieSession {
        CookieSession::new(
            &Secret::new("secret_key"),
            &[],
            Duration::from_secs(31 * 24 * 3600),
        )
    }

    fn object(value: Json) -> Map<String, Json> {
        match value {
            Json::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// The JSON inside a cookie, without verifying it.
    fn payload_json(cookie: &str) -> String {
        let payload = cookie.rsplitn(3, '.').nth(2).unwrap();
        let map = decode_payload(payload).unwrap();
        dump_json(&Json::Object(map))
    }

    #[test]
    fn derived_key_matches_itsdangerous() {
        let derived = crate::flask_cookie::hmac_sha1(b"secret_key", COOKIE_SESSION_SALT);
        let hex: String = derived.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a99ad8bcd3d7546b94374b939b8691aac9872492");
    }

    #[test]
    fn timestamp_is_big_endian_without_leading_zeros() {
        assert_eq!(encode_timestamp(TS), "ZVPxAA");
        assert_eq!(decode_timestamp("ZVPxAA"), Some(TS));
        assert_eq!(encode_timestamp(0), "");
        assert_eq!(decode_timestamp(""), Some(0));
        assert_eq!(decode_timestamp("AAAAAAAAAAAA"), None, "9 bytes");
        assert_eq!(decode_timestamp("//8"), None, "not base64url");
    }

    #[test]
    fn worked_example_is_written_and_read_byte_for_byte() {
        let session = object(json!({"username": "alice"}));
        assert_eq!(codec().dumps(&session, TS), ALICE);
        assert_eq!(codec().loads(ALICE, TS).unwrap(), session);
        // The live run of the format doc, at another timestamp.
        assert_eq!(
            codec().dumps(&session, 1_795_698_756),
            "eyJ1c2VybmFtZSI6ImFsaWNlIn0.awgwRA.VMmFFBYr2--WzSRZ5EBVn-hnLP0"
        );
    }

    #[test]
    fn permanent_worked_example_puts_permanent_first_by_sorting() {
        let session = object(json!({"username": "alice", "_permanent": true}));
        assert_eq!(codec().dumps(&session, TS), ALICE_PERMANENT);
        assert_eq!(codec().loads(ALICE_PERMANENT, TS + 60).unwrap(), session);
    }

    #[test]
    fn flash_example_decompresses_to_flasks_tuples() {
        assert!(FLASH.starts_with(".eJyrVopPy0kszkgt"));
        let session = codec().loads(FLASH, TS).unwrap();
        let json = dump_json(&Json::Object(session.clone()));
        assert_eq!(
            json,
            r#"{"_flashes":[{" t":["message","hello"]},{" t":["error","bad"]}]}"#
        );
        // Written back compressed, byte for byte as Flask wrote it (same zlib).
        let cookie = codec().dumps(&session, TS);
        assert_eq!(cookie, FLASH);
        assert_eq!(payload_json(&cookie), json);
        assert_eq!(codec().loads(&cookie, TS).unwrap(), session);
    }

    #[test]
    fn tagged_sample_round_trips_with_tags_kept() {
        let session = codec().loads(TAGGED, TS).unwrap();
        assert_eq!(dump_json(&Json::Object(session.clone())), TAGGED_JSON);
        let cookie = codec().dumps(&session, TS);
        assert_eq!(payload_json(&cookie), TAGGED_JSON);
        assert_eq!(cookie, TAGGED);
    }

    #[test]
    fn json_matches_pythons_floats_escapes_and_key_order() {
        let session = codec().loads(MISC, TS).unwrap();
        assert_eq!(dump_json(&Json::Object(session.clone())), MISC_JSON);
        assert_eq!(codec().dumps(&session, TS), MISC);
        for (f, python) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1.5e-5, "1.5e-05"),
            (1e15, "1000000000000000.0"),
            (1.2345e16, "1.2345e+16"),
            (123.0, "123.0"),
            (-2.5, "-2.5"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            let mut out = String::new();
            write_python_float(&mut out, f);
            assert_eq!(out, python, "{f}");
        }
        // Read exactly (serde_json's `float_roundtrip`) and written back as Python's `repr`.
        for python in [
            "0.0036621093759094947",
            "0.0036621093759094943",
            "-3.5819294652201155e-69",
            "2.2250738585072014e-308",
        ] {
            let parsed: Json = serde_json::from_str(python).unwrap();
            assert_eq!(dump_json(&parsed), python);
        }
    }

    #[test]
    fn python_nan_and_infinity_survive_a_rust_rewrite() {
        let codec = codec();
        let json = br#"{"a":NaN,"b":[Infinity,-Infinity],"s":"NaN Infinity \" NaN"}"#;
        let cookie = format!(
            "{}.{}",
            encode_payload(json),
            encode_timestamp(1_700_000_000)
        );
        let signed = codec.signer.sign(&cookie);
        let session = codec.loads(&signed, 1_700_000_001).unwrap();
        assert_eq!(session["s"], "NaN Infinity \" NaN");
        assert_eq!(dump_json(&Json::Object(session)).as_bytes(), json);
    }

    #[test]
    fn a_session_whose_only_key_is_a_tag_is_escaped_like_flask() {
        let session = object(json!({" t": "x"}));
        let cookie = codec().dumps(&session, TS);
        assert_eq!(payload_json(&cookie), r#"{" t":"x"}"#);
        let (payload, _) = cookie.split_once('.').unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(payload).unwrap(),
            br#"{" di":{" t__":"x"}}"#
        );
        assert_eq!(codec().loads(&cookie, TS).unwrap(), session);
    }

    #[test]
    fn handlers_see_rfc3339_datetimes_and_flask_gets_http_dates_back() {
        let session = codec().loads(TAGGED, TS).unwrap();
        let state = to_state(session.clone());
        assert_eq!(state["d"], r#"{" d":"2024-01-02T03:04:05Z"}"#);
        assert_eq!(state["t"], r#"{" t":[1,2]}"#);
        assert_eq!(state["b"], r#"{" b":"AAE="}"#);
        let when: crate::value::Timestamp = serde_json::from_str(&state["d"]).unwrap();
        assert_eq!(when.0, time::macros::datetime!(2024-01-02 03:04:05 UTC));
        let bytes: crate::value::Bytes = serde_json::from_str(&state["b"]).unwrap();
        assert_eq!(bytes.0, [0, 1]);
        assert_eq!(from_state(&state), session);

        // A Rust handler's datetime, with an offset and microseconds, as Flask writes it.
        let mut state = ActixState::new();
        state.insert(
            "at".into(),
            r#"[{" d":"2024-01-02T04:04:05.123456+01:00"}]"#.into(),
        );
        assert_eq!(
            dump_json(&Json::Object(from_state(&state))),
            r#"{"at":[{" d":"Tue, 02 Jan 2024 03:04:05 GMT"}]}"#
        );
    }

    #[test]
    fn rotated_keys_are_read_through_fallbacks_and_written_with_the_new_key() {
        let rotated = CookieSession::new(
            &Secret::new("new_key"),
            &[Secret::new("older"), Secret::new("secret_key")],
            Duration::from_secs(3600),
        );
        let session = rotated.loads(ALICE, TS).unwrap();
        let cookie = rotated.dumps(&session, TS);
        assert_ne!(cookie, ALICE);
        assert_eq!(rotated.loads(&cookie, TS).unwrap(), session);
        assert_eq!(codec().loads(&cookie, TS), Err(CookieError::BadSignature));
        let resigned = rotated.resign(ALICE, TS + 10).unwrap();
        assert_eq!(codec().loads(&resigned, TS), Err(CookieError::BadSignature));
        assert_eq!(rotated.loads(&resigned, TS + 10).unwrap(), session);
        let without = CookieSession::new(&Secret::new("new_key"), &[], Duration::from_secs(3600));
        assert_eq!(without.loads(ALICE, TS), Err(CookieError::BadSignature));
    }

    #[test]
    fn resigning_an_accepted_cookie_is_resigning_it() {
        let codec = codec();
        let compressed = codec.dumps(&codec.loads(MISC, TS).unwrap(), TS);
        for cookie in [
            ALICE,
            ALICE_PERMANENT,
            FLASH,
            TAGGED,
            MISC,
            compressed.as_str(),
        ] {
            assert!(codec.loads(cookie, TS + 60).is_ok(), "{cookie}");
            assert_eq!(
                codec.resign_accepted(cookie, TS + 60),
                codec.resign(cookie, TS + 60),
                "{cookie}"
            );
        }
    }

    #[test]
    fn expired_and_future_timestamps_are_refused() {
        let hour = CookieSession::new(&Secret::new("secret_key"), &[], Duration::from_secs(3600));
        assert!(
            hour.loads(ALICE, TS + 3600).is_ok(),
            "age == max_age is kept"
        );
        assert_eq!(
            hour.loads(ALICE, TS + 3601),
            Err(CookieError::Expired {
                age: 3601,
                max_age: 3600
            })
        );
        assert_eq!(
            hour.loads(ALICE, TS - 1),
            Err(CookieError::FromTheFuture(1))
        );
        // Refreshing moves the timestamp, keeps the payload.
        let fresh = hour.resign(ALICE, TS + 3000).unwrap();
        assert!(fresh.starts_with("eyJ1c2VybmFtZSI6ImFsaWNlIn0."));
        assert!(hour.loads(&fresh, TS + 6000).is_ok());
    }

    #[test]
    fn tampered_truncated_and_garbage_cookies_are_refused_without_panics() {
        let codec = codec();
        let mut bad: Vec<String> = vec![
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "eyJ1c2VybmFtZSI6ImFsaWNlIn0".into(),
            "eyJ1c2VybmFtZSI6ImFsaWNlIn0.ZVPxAA".into(),
            ALICE.replacen("eyJ1", "eyJ2", 1),
            ALICE.replacen("ZVPxAA", "ZVPxAB", 1),
            format!("{ALICE}="),
            format!("{ALICE}.x"),
            format!("x{ALICE}"),
            FLASH[1..].to_owned(),
            "\u{0}\u{1f600}".into(),
            "e30.ZVPxAA.%%%".into(),
        ];
        for cut in 0..ALICE.len() {
            bad.push(ALICE[..cut].to_owned());
        }
        for cut in 0..FLASH.len() {
            bad.push(FLASH[..cut].to_owned());
        }
        bad.push("a".repeat(1 << 20));
        bad.push(format!("{}.ZVPxAA.x", ".".repeat(10_000)));
        for cookie in &bad {
            assert!(codec.loads(cookie, TS).is_err(), "{cookie:.80}");
            assert!(
                codec.resign(cookie, TS).is_none(),
                "resign accepted {cookie:.80}"
            );
        }
    }

    #[test]
    fn correctly_signed_but_unreadable_payloads_are_refused() {
        let codec = codec();
        let sign = |payload: &str| codec.signer.sign(&format!("{payload}.ZVPxAA"));
        let zlib_b64 = |data: &[u8]| {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::new(6));
            std::io::Write::write_all(&mut encoder, data).unwrap();
            format!(".{}", URL_SAFE_NO_PAD.encode(encoder.finish().unwrap()))
        };
        // A zip bomb: 8 MiB of spaces is a valid JSON prefix and packs into a few KB.
        let bomb = zlib_b64(&vec![b' '; 8 << 20]);
        for (payload, reason) in [
            ("!!!".to_owned(), "not base64url"),
            (".AAAA".to_owned(), "not a zlib stream"),
            (URL_SAFE_NO_PAD.encode("[1,2]"), "not a JSON object"),
            (URL_SAFE_NO_PAD.encode("{\"a\":"), "not JSON"),
            (URL_SAFE_NO_PAD.encode("[".repeat(5000)), "not JSON"),
            (
                URL_SAFE_NO_PAD.encode(r#"{" t":[1,2]}"#),
                "not a session dict",
            ),
            (bomb, "decompresses to more than 1 MiB"),
        ] {
            assert_eq!(
                codec.loads(&sign(&payload), TS),
                Err(CookieError::BadPayload(reason)),
                "{payload:.40}"
            );
        }
    }

    #[test]
    fn zlib_streams_are_read_whole_or_refused() {
        let json = format!(r#"{{"a":"{}"}}"#, "xy".repeat(3000));
        let compressed = zlib_if_shorter(json.as_bytes()).unwrap();
        assert_eq!(unzlib(&compressed).unwrap(), json.as_bytes());
        // The same decompressor, reused: nothing of the last stream leaks into the next.
        let mut trailing = compressed.clone();
        trailing.extend_from_slice(b"garbage after the end, ignored as by zlib.decompress");
        assert_eq!(unzlib(&trailing).unwrap(), json.as_bytes());
        for cut in [0, 1, 2, compressed.len() / 2, compressed.len() - 1] {
            assert_eq!(
                unzlib(&compressed[..cut]),
                Err(CookieError::BadPayload("not a zlib stream")),
                "cut at {cut}"
            );
        }
        assert_eq!(zlib_if_shorter(b"{}"), None, "two bytes cannot compress");
    }

    #[test]
    fn short_json_is_not_compressed_and_long_json_is() {
        let short = object(json!({"a": "b"}));
        assert!(!codec().dumps(&short, TS).starts_with('.'));
        let long = object(json!({"a": "x".repeat(500)}));
        let cookie = codec().dumps(&long, TS);
        assert!(cookie.starts_with(".eJ"), "{cookie}");
        assert!(cookie.len() < 100);
        assert_eq!(codec().loads(&cookie, TS).unwrap(), long);
    }

    #[test]
    fn http_dates_parse_strictly() {
        assert_eq!(
            parse_http_date("Tue, 02 Jan 2024 03:04:05 GMT"),
            Some(time::macros::datetime!(2024-01-02 03:04:05 UTC))
        );
        for bad in [
            "",
            "Tue, 02 Jan 2024 03:04:05",
            "Tue, 2 Jan 2024 03:04:05 GMT",
            "Tue, 02 Foo 2024 03:04:05 GMT",
            "Tue, 30 Feb 2024 03:04:05 GMT",
            "Tue, 02 Jan 2024 25:04:05 GMT",
            "Tue, 02 Jan 2024 03:04:05 GMT x",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
