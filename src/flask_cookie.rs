//! Flask-Session's cookie: the session id, optionally signed with itsdangerous, and the
//! `Set-Cookie` attributes Flask-Session 0.8 sends (format doc §3).
//!
//! itsdangerous has no Rust port; its `Signer` is a few lines over the `hmac` and `sha1` crates:
//! derived key = HMAC-SHA1(SECRET_KEY, salt), signature = base64url(HMAC-SHA1(derived, value)).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use satchel_core::{SameSite, Secret, SessionConfig};
use sha1::Sha1;
use time::OffsetDateTime;

type HmacSha1 = Hmac<Sha1>;

/// The salt Flask-Session's signer uses.
pub const FLASK_SESSION_SALT: &[u8] = b"flask-session";

/// itsdangerous' `Signer(secret, salt, key_derivation="hmac", digest_method=sha1)`.
///
/// ```
/// use satchel::flask_cookie::{FLASK_SESSION_SALT, Signer};
/// use satchel::Secret;
/// // The worked example of the format doc, checked against itsdangerous 2.2.0.
/// let signer = Signer::new(&[Secret::new("secret_key")], FLASK_SESSION_SALT);
/// assert_eq!(signer.sign("abc"), "abc.fVBbioz4ZM8fJwwZH2HP2KqR99k");
/// assert_eq!(signer.unsign("abc.fVBbioz4ZM8fJwwZH2HP2KqR99k"), Some("abc"));
/// assert_eq!(signer.unsign("abd.fVBbioz4ZM8fJwwZH2HP2KqR99k"), None);
/// ```
#[derive(Clone)]
pub struct Signer {
    /// Derived keys, newest first: the first signs, any verifies.
    keys: Vec<HmacSha1>,
}

impl Signer {
    /// A signer for `secrets` (newest first) and `salt`.
    pub fn new(secrets: &[Secret], salt: &[u8]) -> Signer {
        let keys = secrets
            .iter()
            .map(|secret| {
                let derived = hmac_sha1(secret.expose().as_bytes(), salt);
                new_mac(&derived)
            })
            .collect();
        Signer { keys }
    }

    /// `value + "." + signature` with the newest key.
    pub fn sign(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len() + 28);
        out.push_str(value);
        out.push('.');
        if let Some(key) = self.keys.first() {
            let mut mac = key.clone();
            mac.update(value.as_bytes());
            URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut out);
        }
        out
    }

    /// The value of `signed` if its signature (after the last `.`) matches any key, compared
    /// in constant time.
    pub fn unsign<'a>(&self, signed: &'a str) -> Option<&'a str> {
        let (value, signature) = signed.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.keys
            .iter()
            .any(|key| {
                let mut mac = key.clone();
                mac.update(value.as_bytes());
                mac.verify_slice(&signature).is_ok()
            })
            .then_some(value)
    }
}

fn new_mac(key: &[u8]) -> HmacSha1 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha1::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// HMAC-SHA1 of `message` under `key`.
pub(crate) fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = new_mac(key);
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The cookie settings of a Flask app, and the `Set-Cookie` values Flask-Session sends.
#[derive(Clone)]
pub struct FlaskCookie {
    name: String,
    domain: Option<String>,
    path: String,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    lifetime: time::Duration,
    signer: Option<Signer>,
}

impl FlaskCookie {
    /// The cookie described by `config` (`SESSION_COOKIE_*`, `SESSION_USE_SIGNER`,
    /// `PERMANENT_SESSION_LIFETIME`).
    pub fn new(config: &SessionConfig) -> Result<FlaskCookie, satchel_core::ConfigError> {
        let signer = if config.use_signer {
            let secret = config
                .secret_key
                .as_ref()
                .ok_or(satchel_core::ConfigError::Missing {
                    setting: "SECRET_KEY",
                    why: "SESSION_USE_SIGNER signs the session cookie with it",
                })?;
            // Flask-Session's signer verifies with SECRET_KEY only (no fallbacks).
            Some(Signer::new(
                std::slice::from_ref(secret),
                FLASK_SESSION_SALT,
            ))
        } else {
            None
        };
        Ok(FlaskCookie {
            name: config.cookie_name.clone(),
            domain: config.cookie_domain.clone(),
            path: config.cookie_path.clone(),
            secure: config.cookie_secure,
            http_only: config.cookie_httponly,
            same_site: config.cookie_samesite,
            lifetime: time::Duration::try_from(config.permanent_session_lifetime)
                .unwrap_or(time::Duration::MAX),
            signer,
        })
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The session id a cookie value carries: the value itself, or with `SESSION_USE_SIGNER`
    /// the value whose signature verifies. `None` means a fresh session.
    pub fn session_id<'a>(&self, value: &'a str) -> Option<&'a str> {
        match &self.signer {
            Some(signer) => signer.unsign(value),
            None => Some(value),
        }
    }

    /// The `Set-Cookie` value for a session, with Flask-Session's attributes in werkzeug's
    /// order; `Expires` only for a permanent session.
    pub fn set_cookie(&self, id: &str, permanent: bool, now: OffsetDateTime) -> String {
        let value = match &self.signer {
            Some(signer) => signer.sign(id),
            None => id.to_owned(),
        };
        // Name, value, and room for every attribute but a long Domain or Path.
        let mut out = String::with_capacity(self.name.len() + value.len() + 96);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(&value);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if permanent {
            out.push_str("; Expires=");
            push_http_date(&mut out, now.saturating_add(self.lifetime));
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(same_site) = self.same_site {
            out.push_str(match same_site {
                SameSite::Strict => "; SameSite=Strict",
                SameSite::Lax => "; SameSite=Lax",
                SameSite::None => "; SameSite=None",
            });
        }
        out
    }

    /// The `Set-Cookie` value that deletes the cookie, as Flask-Session 0.8 sends it (without
    /// `Secure`, `HttpOnly` or `SameSite`).
    pub fn delete_cookie(&self) -> String {
        let mut out = format!("{}=", self.name);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        out.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=");
        out.push_str(&self.path);
        out
    }
}

/// Day and month names of an HTTP date, Monday and January first.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP date (`Sun, 27 Dec 2026 13:13:48 GMT`) as werkzeug writes `Expires`.
pub fn http_date(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(29);
    push_http_date(&mut out, at);
    out
}

/// Appends [`http_date`]`(at)` to `out`. Written digit by digit rather than with `format!`:
/// every refreshed session's `Set-Cookie` carries one, and `format!` with seven arguments
/// was over half of the cookie's cost (callgrind).
fn push_http_date(out: &mut String, at: OffsetDateTime) {
    fn two_digits(out: &mut String, n: u8) {
        out.push(char::from(b'0' + n / 10 % 10));
        out.push(char::from(b'0' + n % 10));
    }
    let at = at.to_offset(time::UtcOffset::UTC);
    out.push_str(DAYS[usize::from(at.weekday().number_days_from_monday())]);
    out.push_str(", ");
    two_digits(out, at.day());
    out.push(' ');
    out.push_str(MONTHS[usize::from(u8::from(at.month()) - 1)]);
    out.push(' ');
    match u16::try_from(at.year()) {
        Ok(year) if year <= 9999 => {
            // Both halves are below 100, so the casts cannot truncate.
            two_digits(out, (year / 100) as u8);
            two_digits(out, (year % 100) as u8);
        }
        // Outside 0..=9999 (time's large-dates range): as `{:04}` prints it.
        _ => out.push_str(&format!("{:04}", at.year())),
    }
    out.push(' ');
    two_digits(out, at.hour());
    out.push(':');
    two_digits(out, at.minute());
    out.push(':');
    two_digits(out, at.second());
    out.push_str(" GMT");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_match_the_formatted_form() {
        // The form `http_date` wrote with `format!` before it was written digit by digit.
        fn formatted(at: OffsetDateTime) -> String {
            format!(
                "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
                DAYS[usize::from(at.weekday().number_days_from_monday())],
                at.day(),
                MONTHS[usize::from(u8::from(at.month()) - 1)],
                at.year(),
                at.hour(),
                at.minute(),
                at.second()
            )
        }
        assert_eq!(
            http_date(time::macros::datetime!(2026-12-27 13:13:48 UTC)),
            "Sun, 27 Dec 2026 13:13:48 GMT"
        );
        let mut at = Some(time::macros::datetime!(0000-01-01 00:00:00 UTC));
        let last = time::macros::datetime!(9999-12-31 23:59:59 UTC);
        let step = time::Duration::seconds(86_399 * 37 + 3_607);
        while let Some(now) = at.filter(|now| *now <= last) {
            assert_eq!(http_date(now), formatted(now));
            at = now.checked_add(step);
        }
        assert_eq!(http_date(last), formatted(last));
        let offset = time::macros::datetime!(2024-03-01 00:30:00 +02:00);
        assert_eq!(http_date(offset), "Thu, 29 Feb 2024 22:30:00 GMT");
    }

    #[test]
    fn derived_key_matches_itsdangerous() {
        let derived = hmac_sha1(b"secret_key", FLASK_SESSION_SALT);
        let hex: String = derived.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "462111267be3dde734924bb291bf19aeacf99a5e");
    }

    #[test]
    fn tampered_or_truncated_signatures_are_refused() {
        let signer = Signer::new(&[Secret::new("secret_key")], FLASK_SESSION_SALT);
        for bad in [
            "abc",
            "abc.",
            "abc.fVBbioz4ZM8fJwwZH2HP2KqR99",
            "abc.fVBbioz4ZM8fJwwZH2HP2KqR99K",
            "abc.fVBbioz4ZM8fJwwZH2HP2KqR99k=",
            ".fVBbioz4ZM8fJwwZH2HP2KqR99k",
            "abc.fVBbioz4ZM8fJwwZH2HP2KqR99k.x",
        ] {
            assert_eq!(signer.unsign(bad), None, "{bad}");
        }
        let other = Signer::new(&[Secret::new("other")], FLASK_SESSION_SALT);
        assert_eq!(other.unsign("abc.fVBbioz4ZM8fJwwZH2HP2KqR99k"), None);
    }

    #[test]
    fn set_cookie_has_werkzeug_attributes_in_order() {
        let mut config = SessionConfig::default();
        config.cookie_domain = Some("example.com".into());
        config.cookie_path = "/app".into();
        config.cookie_secure = true;
        config.cookie_samesite = Some(SameSite::None);
        let cookie = FlaskCookie::new(&config).unwrap();
        let now = time::macros::datetime!(2026-11-26 13:13:48 UTC);
        assert_eq!(
            cookie.set_cookie("sid", true, now),
            "session=sid; Domain=example.com; Expires=Sun, 27 Dec 2026 13:13:48 GMT; Secure; \
             HttpOnly; Path=/app; SameSite=None"
        );
        assert_eq!(
            cookie.delete_cookie(),
            "session=; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/app"
        );
        let plain = FlaskCookie::new(&SessionConfig::default()).unwrap();
        assert_eq!(
            plain.set_cookie("sid", false, now),
            "session=sid; HttpOnly; Path=/"
        );
    }

    #[test]
    fn signer_requires_a_secret_key() {
        let mut config = SessionConfig::default();
        config.use_signer = true;
        let error = FlaskCookie::new(&config).err().unwrap().to_string();
        assert!(error.contains("SECRET_KEY"), "{error}");
    }
}
