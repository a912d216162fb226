//! memcached's rules for keys, expiry times and item sizes, applied before a request leaves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use satchel_core::BackendError;

use crate::BACKEND;

/// memcached's key limit, in bytes.
pub const MAX_KEY_LEN: usize = 250;

/// Longest expiry memcached reads as relative seconds; anything larger is a unix time.
pub const MAX_RELATIVE_EXPIRY: u64 = 30 * 24 * 60 * 60;

/// The item size memcached uses when `stats settings` does not say (its `-I` default).
pub const DEFAULT_ITEM_SIZE_MAX: usize = 1024 * 1024;

/// Bytes an item takes beside its key and value: memcached's item header (48 bytes on 64-bit),
/// the CAS (8), the key's NUL, the value's CRLF and room for client flags. The server refuses
/// an item whose total exceeds `item_size_max`, so the value limit is that minus this and the key.
const ITEM_OVERHEAD: usize = 64;

/// Refuses a key memcached's text protocol cannot carry, so it never reaches the server.
///
/// ```
/// use satchel_memcached::wire::check_key;
/// assert!(check_key("session:abc").is_ok());
/// assert!(check_key("session:a b").is_err());
/// assert!(check_key(&"k".repeat(251)).is_err());
/// ```
pub fn check_key(key: &str) -> Result<(), BackendError> {
    let reason = if key.is_empty() {
        "it is empty"
    } else if key.len() > MAX_KEY_LEN {
        "it is longer than memcached's 250-byte limit"
    } else if has_whitespace_or_control(key) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(BackendError::InvalidKey {
        backend: BACKEND,
        reason,
    })
}

/// In ASCII, whitespace and control characters are exactly the bytes up to the space and DEL,
/// and testing bytes costs a fraction of decoding characters; this runs on every request.
fn has_whitespace_or_control(key: &str) -> bool {
    if key.is_ascii() {
        key.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        key.chars().any(|c| c.is_whitespace() || c.is_control())
    }
}

/// The expiry to send for `ttl`: whole seconds (rounded up, at least 1) when at most 30 days,
/// otherwise the absolute unix time `now + ttl`, because memcached reads any larger number as
/// a unix time (sending 31 days as seconds would expire the item at once, in 1970).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use satchel_memcached::wire::expiry_at;
/// let now = UNIX_EPOCH + Duration::from_secs(1_795_698_769);
/// assert_eq!(expiry_at(Duration::from_secs(3600), now), 3600);
/// assert_eq!(expiry_at(Duration::from_millis(10), now), 1);
/// assert_eq!(expiry_at(Duration::from_secs(31 * 86400), now), 1_798_377_169);
/// ```
pub fn expiry_at(ttl: Duration, now: SystemTime) -> u32 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
        .max(1);
    if secs <= MAX_RELATIVE_EXPIRY {
        // Fits: at most 2,592,000.
        return u32::try_from(secs).unwrap_or(u32::MAX);
    }
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(now.saturating_add(secs)).unwrap_or(u32::MAX)
}

/// [`expiry_at`] from the current time.
pub fn expiry(ttl: Duration) -> u32 {
    expiry_at(ttl, SystemTime::now())
}

/// The largest value the server takes under `key`, given its `item_size_max`.
pub fn value_limit(item_size_max: usize, key: &str) -> usize {
    item_size_max.saturating_sub(ITEM_OVERHEAD + key.len())
}

/// Refuses a value the server would refuse, before sending a megabyte for nothing.
pub fn check_value(item_size_max: usize, key: &str, value: &[u8]) -> Result<(), BackendError> {
    let limit = value_limit(item_size_max, key);
    if value.len() > limit {
        return Err(BackendError::ValueTooLarge {
            backend: BACKEND,
            size: value.len(),
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(key: &str) -> bool {
        matches!(check_key(key), Err(BackendError::InvalidKey { .. }))
    }

    #[test]
    fn keys_memcached_cannot_carry_are_refused() {
        assert!(check_key(&"k".repeat(250)).is_ok());
        assert!(check_key("session:KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM").is_ok());
        assert!(check_key("séance:é").is_ok());
        for key in [
            "", "a b", "a\tb", "a\nb", "a\rb", "a\0b", "a\u{7f}b", "a\u{85}b", "a\u{a0}b",
        ] {
            assert!(invalid(key), "{key:?}");
        }
        assert!(invalid(&"k".repeat(251)));
        // 250 bytes is the limit, not 250 characters.
        assert!(invalid(&"é".repeat(126)));
    }

    #[test]
    fn the_ascii_byte_test_agrees_with_the_character_test() {
        for byte in 0u8..=0x7f {
            let c = char::from(byte);
            assert_eq!(
                has_whitespace_or_control(&format!("a{c}b")),
                c.is_whitespace() || c.is_control(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn thirty_days_is_relative_and_more_is_absolute() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_698_769);
        assert_eq!(expiry_at(Duration::from_secs(2_592_000), now), 2_592_000);
        assert_eq!(
            expiry_at(Duration::from_secs(2_592_001), now),
            1_795_698_769 + 2_592_001
        );
        // Flask-Session's observed value for the default 31-day lifetime.
        assert_eq!(
            expiry_at(Duration::from_secs(2_678_400), now),
            1_798_377_169
        );
    }

    #[test]
    fn short_ttls_round_up_to_whole_seconds() {
        let now = SystemTime::now();
        assert_eq!(expiry_at(Duration::ZERO, now), 1);
        assert_eq!(expiry_at(Duration::from_millis(999), now), 1);
        assert_eq!(expiry_at(Duration::from_millis(1500), now), 2);
        assert_eq!(expiry_at(Duration::from_secs(1), now), 1);
    }

    #[test]
    fn huge_ttls_saturate_instead_of_wrapping() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_698_769);
        assert_eq!(expiry_at(Duration::from_secs(u64::MAX), now), u32::MAX);
        assert_eq!(expiry_at(Duration::MAX, now), u32::MAX);
    }

    #[test]
    fn values_over_the_item_size_are_refused() {
        let key = "session:abc";
        let limit = value_limit(DEFAULT_ITEM_SIZE_MAX, key);
        assert!(limit < DEFAULT_ITEM_SIZE_MAX && limit > DEFAULT_ITEM_SIZE_MAX - 100);
        assert!(check_value(DEFAULT_ITEM_SIZE_MAX, key, &vec![0; limit]).is_ok());
        match check_value(DEFAULT_ITEM_SIZE_MAX, key, &vec![0; limit + 1]) {
            Err(BackendError::ValueTooLarge { size, limit: l, .. }) => {
                assert_eq!((size, l), (limit + 1, limit));
            }
            other => panic!("expected ValueTooLarge, got {other:?}"),
        }
    }
}
