//! Session ids: random bytes from the OS CSPRNG, base64url without padding, as Flask-Session's
//! `secrets.token_urlsafe(SESSION_ID_LENGTH)`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Flask-Session's default `SESSION_ID_LENGTH`: 32 bytes, 43 characters.
pub const DEFAULT_ID_BYTES: usize = 32;

/// The fewest random bytes accepted for an id (128 bits).
pub const MIN_ID_BYTES: usize = 16;

/// The most random bytes accepted for an id.
pub const MAX_ID_BYTES: usize = 256;

/// A validated session id. The only ways to get one are [`SessionId::generate`] and
/// [`SessionId::parse`], so an id that reaches a backend has the right length and alphabet.
///
/// `Debug` and `Display` show only the first characters: ids are credentials and must not be
/// logged in full.
///
/// # Example
///
/// ```
/// use satchel_core::SessionId;
///
/// let id = SessionId::generate(32).unwrap();
/// assert_eq!(id.as_str().len(), 43);
/// assert!(SessionId::parse(id.as_str(), 32).is_ok());
/// assert!(SessionId::parse("abc def", 32).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

/// Why a string is not a session id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionId {
    /// The string has the wrong length for the configured number of bytes.
    #[error("session id has {actual} characters, expected {expected}")]
    Length {
        /// Expected characters.
        expected: usize,
        /// Characters seen.
        actual: usize,
    },
    /// The string has a character outside base64url's `A-Z a-z 0-9 - _`.
    #[error("session id has a character outside the base64url alphabet")]
    Alphabet,
    /// The number of random bytes asked for is outside the accepted range.
    #[error("SESSION_ID_LENGTH must be between {MIN_ID_BYTES} and {MAX_ID_BYTES} bytes, not {0}")]
    ByteLength(usize),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

impl SessionId {
    /// Draws a new id of `bytes` random bytes from the OS CSPRNG.
    pub fn generate(bytes: usize) -> Result<SessionId, InvalidSessionId> {
        check_byte_length(bytes)?;
        let mut raw = [0u8; MAX_ID_BYTES];
        let raw = &mut raw[..bytes];
        getrandom::fill(raw).map_err(|e| InvalidSessionId::Random(e.to_string()))?;
        Ok(SessionId(URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Validates `text` as an id of `bytes` random bytes: exact length, base64url alphabet.
    pub fn parse(text: &str, bytes: usize) -> Result<SessionId, InvalidSessionId> {
        SessionId::validate(text, bytes)?;
        Ok(SessionId(text.to_owned()))
    }

    /// The checks of [`SessionId::parse`] without keeping a copy, for callers that only need
    /// to know the text is an id (a store building its key from it on every request).
    ///
    /// ```
    /// use satchel_core::SessionId;
    /// assert!(SessionId::validate("KbBTwKKcUhVGBMkMW8X5td", 16).is_ok());
    /// assert!(SessionId::validate("KbBTwKKcUhVGBMkMW8X5t!", 16).is_err());
    /// ```
    pub fn validate(text: &str, bytes: usize) -> Result<(), InvalidSessionId> {
        check_byte_length(bytes)?;
        let expected = encoded_len(bytes);
        if text.len() != expected {
            return Err(InvalidSessionId::Length {
                expected,
                actual: text.len(),
            });
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidSessionId::Alphabet);
        }
        Ok(())
    }

    /// The id as it appears in the cookie and after the key prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A shortened form that is safe to log: the first six characters and an ellipsis.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// Shortens any credential-like string for logging: the first six characters and an ellipsis.
///
/// ```
/// assert_eq!(satchel_core::session_id::redact("KbBTwKKcUhVGBMkMW8X5td"), "KbBTwK…");
/// ```
pub fn redact(text: &str) -> String {
    let head: String = text.chars().take(6).collect();
    format!("{head}…")
}

/// Characters in the unpadded base64url encoding of `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

fn check_byte_length(bytes: usize) -> Result<(), InvalidSessionId> {
    if (MIN_ID_BYTES..=MAX_ID_BYTES).contains(&bytes) {
        Ok(())
    } else {
        Err(InvalidSessionId::ByteLength(bytes))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", self.redacted())
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_match_flask_session_length_and_alphabet() {
        for bytes in [16, 24, 32, 48, 64] {
            let id = SessionId::generate(bytes).unwrap();
            assert_eq!(id.as_str().len(), encoded_len(bytes));
            assert!(SessionId::parse(id.as_str(), bytes).is_ok());
        }
        assert_eq!(encoded_len(32), 43);
        assert_eq!(encoded_len(16), 22);
        assert_eq!(encoded_len(64), 86);
    }

    #[test]
    fn generated_ids_differ() {
        let a = SessionId::generate(32).unwrap();
        let b = SessionId::generate(32).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn flask_session_example_id_parses() {
        assert!(SessionId::parse("KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM", 32).is_ok());
    }

    #[test]
    fn bad_ids_are_refused() {
        let ok = "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM";
        assert!(matches!(
            SessionId::parse(&ok[1..], 32),
            Err(InvalidSessionId::Length { .. })
        ));
        for bad in [
            "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0H ",
            "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0\r\n",
            "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0H*",
            "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0H%",
            "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0H=",
        ] {
            assert_eq!(
                SessionId::parse(bad, 32),
                Err(InvalidSessionId::Alphabet),
                "{bad:?}"
            );
        }
        // A multi-byte character must not be mistaken for the right length.
        assert!(SessionId::parse("é".repeat(21).as_str(), 32).is_err());
        assert!(SessionId::parse("", 32).is_err());
        assert_eq!(
            SessionId::generate(8).unwrap_err(),
            InvalidSessionId::ByteLength(8)
        );
    }

    #[test]
    fn debug_and_display_never_show_the_whole_id() {
        let id = SessionId::generate(32).unwrap();
        assert!(!format!("{id:?}").contains(id.as_str()));
        assert!(!format!("{id}").contains(id.as_str()));
    }
}
