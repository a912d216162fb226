//! memcached-specific behaviour, on the shared test servers and on throwaway servers each test
//! starts on a spare port (so stopping, pausing or filling them disturbs no one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::time::Duration;

use common::Server;
use satchel_core::testkit::{fresh_key, skipped};
use satchel_core::{Backend, BackendError, ConfigError};
use satchel_memcached::memcache::exp::{AsyncMetaClient, Meta};
use satchel_memcached::{ClientMode, MemcachedBackend};

const LONG: Duration = Duration::from_secs(300);
const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);
const THIRTY_ONE_DAYS: Duration = Duration::from_secs(31 * 86_400);

/// Runs a test body on its own runtime, unless memcached tests are skipped; a hang fails the
/// test instead of stalling the run.
fn run(body: impl Future<Output = ()>) {
    if skipped("MEMCACHED") {
        return;
    }
    satchel_core::testkit::run(async {
        tokio::time::timeout(Duration::from_secs(120), body)
            .await
            .expect("the test hung");
    });
}

/// The TTL memcached reports for `key`, in seconds, read with the meta protocol's `t` flag.
async fn remaining_ttl(server: &str, key: &str) -> Option<i64> {
    let client = AsyncMetaClient::connect(server).await.unwrap();
    let found = client
        .get(key)
        .meta(Meta::NONE.ttl())
        .without_value()
        .send()
        .await
        .unwrap();
    found
        .hit()
        .then(|| found.item.ttl.expect("the server reports the ttl"))
}

#[test]
fn thirty_one_day_ttl_is_stored_as_a_unix_time_and_the_item_stays() {
    run(async {
        let server = common::addr(&common::url());
        let backend = common::connect(&server, ClientMode::Async).await;
        let (stored, touched, slid) = (fresh_key(), fresh_key(), fresh_key());
        backend.store(&stored, b"v", THIRTY_ONE_DAYS).await.unwrap();
        for key in [&touched, &slid] {
            backend
                .store(key, b"v", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert!(backend.touch(&touched, THIRTY_ONE_DAYS).await.unwrap());
        assert_eq!(
            backend
                .load_and_touch(&slid, THIRTY_ONE_DAYS)
                .await
                .unwrap(),
            Some(b"v".to_vec())
        );

        // Sent as 2,678,400 seconds, memcached would read a time in 1970 and drop the item.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for key in [&stored, &touched, &slid] {
            assert_eq!(backend.load(key).await.unwrap(), Some(b"v".to_vec()));
            let ttl = remaining_ttl(&server, key)
                .await
                .expect("the item is still there");
            let full = THIRTY_ONE_DAYS.as_secs() as i64;
            assert!((full - 120..=full).contains(&ttl), "remaining ttl {ttl}");
        }

        // 30 days exactly is still relative seconds, and also lives.
        let relative = fresh_key();
        backend.store(&relative, b"v", THIRTY_DAYS).await.unwrap();
        let ttl = remaining_ttl(&server, &relative).await.expect("stored");
        assert!(
            ttl > THIRTY_DAYS.as_secs() as i64 - 120,
            "remaining ttl {ttl}"
        );
    });
}

#[test]
fn sessions_are_stored_as_flask_session_stores_them() {
    run(async {
        let server = common::addr(&common::url());
        let backend = common::connect(&server, ClientMode::Async).await;
        let key = fresh_key();
        // Flask-Session's MessagePack for {"_permanent": true}, with a NUL for good measure.
        let value = b"\x81\xaa_permanent\xc3\x00";
        backend
            .store(&key, value, Duration::from_secs(3600))
            .await
            .unwrap();
        let answer = common::raw(&server, &format!("get {key}\r\n"));
        let header = format!("VALUE {key} 0 {}\r\n", value.len());
        assert!(
            answer.starts_with(&header),
            "flags 0, as pymemcache writes them: {answer:?}"
        );

        // And what a Python client wrote with the text protocol reads back.
        let other = fresh_key();
        let stored = common::raw(&server, &format!("set {other} 0 3600 5\r\nhello\r\n"));
        assert!(stored.starts_with("STORED"), "{stored:?}");
        assert_eq!(backend.load(&other).await.unwrap(), Some(b"hello".to_vec()));

        // An empty value is a value, not a miss.
        backend
            .store(&other, b"", Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(backend.load(&other).await.unwrap(), Some(Vec::new()));
        assert_eq!(
            backend.load_and_touch(&other, LONG).await.unwrap(),
            Some(Vec::new())
        );
    });
}

#[test]
fn keys_are_spread_over_both_servers() {
    run(async {
        let (first, second) = (common::addr(&common::url()), common::addr(&common::url2()));
        let both = common::connect(&format!("{first} {second}"), ClientMode::Async).await;
        assert_eq!(both.servers(), [first.clone(), second.clone()]);
        let keys: Vec<String> = (0..40).map(|_| fresh_key()).collect();
        for key in &keys {
            both.store(key, key.as_bytes(), LONG).await.unwrap();
        }
        let mut counts = Vec::new();
        for server in [&first, &second] {
            let one = common::connect(server, ClientMode::Async).await;
            let mut found = 0;
            for key in &keys {
                if let Some(value) = one.load(key).await.unwrap() {
                    assert_eq!(value, key.as_bytes());
                    found += 1;
                }
            }
            counts.push(found);
        }
        assert!(counts.iter().all(|&n| n > 0), "keys per server: {counts:?}");
        assert_eq!(
            counts.iter().sum::<usize>(),
            keys.len(),
            "each key on exactly one server"
        );

        // Both client modes place keys the same way.
        let blocking = common::connect(&format!("{first},{second}"), ClientMode::Blocking).await;
        for key in &keys {
            assert_eq!(
                blocking.load(key).await.unwrap(),
                Some(key.as_bytes().to_vec())
            );
        }
    });
}

#[test]
fn keys_memcached_cannot_carry_never_reach_the_server() {
    run(async {
        let server = Server::start(&["-m", "8"]);
        let backend = common::connect(&server.addr(), ClientMode::Async).await;
        let counters = || {
            [
                "cmd_get",
                "cmd_set",
                "cmd_touch",
                "delete_misses",
                "delete_hits",
            ]
            .map(|name| common::stat(&server.addr(), name))
        };
        let before = counters();
        let too_long = format!("session:{}", "x".repeat(243));
        for key in [
            too_long.as_str(),
            "session:a b",
            "session:a\tb",
            "session:a\r\nget other",
            "session:\0",
            "session:\u{85}",
            "",
        ] {
            let refused = |result: Result<(), BackendError>| {
                assert!(
                    matches!(
                        result,
                        Err(BackendError::InvalidKey {
                            backend: "memcached",
                            ..
                        })
                    ),
                    "{key:?}: {result:?}"
                );
            };
            refused(backend.load(key).await.map(drop));
            refused(backend.load_and_touch(key, LONG).await.map(drop));
            refused(backend.insert(key, b"v", LONG).await.map(drop));
            refused(backend.store(key, b"v", LONG).await);
            refused(backend.replace(key, b"v", LONG).await.map(drop));
            refused(backend.touch(key, LONG).await.map(drop));
            refused(backend.delete(key).await);
        }
        assert_eq!(counters(), before, "no command reached the server");
        // A key of exactly 250 bytes is fine.
        let longest = format!("session:{}", "x".repeat(242));
        backend.store(&longest, b"v", LONG).await.unwrap();
        assert_eq!(backend.load(&longest).await.unwrap(), Some(b"v".to_vec()));
    });
}

#[test]
fn a_value_over_the_item_size_is_value_too_large() {
    run(async {
        let backend = common::connect(&common::url(), ClientMode::Async).await;
        let limit = backend.item_size_max();
        let value = vec![7u8; limit + 1];
        let key = fresh_key();
        for result in [
            backend.store(&key, &value, LONG).await,
            backend.insert(&key, &value, LONG).await.map(drop),
            backend.replace(&key, &value, LONG).await.map(drop),
        ] {
            match result {
                Err(BackendError::ValueTooLarge {
                    backend: "memcached",
                    size,
                    limit: l,
                }) => {
                    assert_eq!(size, value.len());
                    assert!(l < limit, "limit {l} leaves room for the item header");
                }
                other => panic!("expected ValueTooLarge, got {other:?}"),
            }
        }
        assert_eq!(backend.load(&key).await.unwrap(), None);
    });
}

#[test]
fn the_item_size_is_read_from_the_server_and_values_up_to_it_fit() {
    run(async {
        // memcached's default item size, 1 MiB.
        let server = Server::start(&["-m", "16"]);
        for mode in [ClientMode::Async, ClientMode::Blocking] {
            let backend = common::connect(&server.addr(), mode).await;
            assert_eq!(backend.item_size_max(), 1024 * 1024);
            let key = fresh_key();
            let limit = satchel_memcached::wire::value_limit(backend.item_size_max(), &key);
            let largest = vec![1u8; limit];
            backend.store(&key, &largest, LONG).await.unwrap();
            assert_eq!(
                backend.load(&key).await.unwrap().map(|v| v.len()),
                Some(limit)
            );
            let one_mib = vec![1u8; 1024 * 1024];
            assert!(matches!(
                backend.store(&key, &one_mib, LONG).await,
                Err(BackendError::ValueTooLarge { .. })
            ));
        }
    });
}

#[test]
fn evicted_sessions_read_as_no_session() {
    run(async {
        // 2 MiB of memory: a few hundred 20 KiB sessions force the LRU to evict.
        let server = Server::start(&["-m", "2"]);
        let backend = common::connect(&server.addr(), ClientMode::Async).await;
        let value = vec![b's'; 20 * 1024];
        let keys: Vec<String> = (0..400).map(|_| fresh_key()).collect();
        for key in &keys {
            assert!(backend.insert(key, &value, LONG).await.unwrap());
        }
        assert!(
            common::stat(&server.addr(), "evictions") > 0,
            "the server evicted items"
        );
        let first = &keys[0];
        assert_eq!(backend.load(first).await.unwrap(), None);
        assert_eq!(backend.load_and_touch(first, LONG).await.unwrap(), None);
        assert!(!backend.touch(first, LONG).await.unwrap());
        assert!(!backend.replace(first, b"v", LONG).await.unwrap());
        let last = keys.last().unwrap();
        assert_eq!(backend.load(last).await.unwrap(), Some(value));
    });
}

#[test]
fn a_server_down_at_start_up_is_a_clear_config_error() {
    run(async {
        let nowhere = format!("127.0.0.1:{}", common::free_port());
        for mode in [ClientMode::Async, ClientMode::Blocking] {
            let err = MemcachedBackend::connect_with(&common::config(&nowhere), mode)
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, ConfigError::Backend(BackendError::Driver { .. })),
                "{err:?}"
            );
            assert!(
                text.contains(&nowhere) && text.contains("SESSION_MEMCACHED"),
                "{text}"
            );
        }
        // One server down among several is refused too.
        let servers = format!("{},{nowhere}", common::url());
        let err = MemcachedBackend::connect(&common::config(&servers))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&nowhere), "{err}");
    });
}

#[test]
fn bad_settings_are_config_errors_naming_them() {
    run(async {
        let err = MemcachedBackend::connect(&common::config("redis://127.0.0.1:6379"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    setting: "SESSION_MEMCACHED",
                    ..
                }
            ),
            "{err:?}"
        );

        let mut config = common::config(&common::url());
        config.key_prefix = "p".repeat(208);
        let err = MemcachedBackend::connect(&config).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    setting: "SESSION_KEY_PREFIX",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("250"), "{err}");
    });
}

async fn stopped_server_fails_cleanly_and_recovers(mode: ClientMode) {
    let mut server = Server::start(&["-m", "16", "-I", "2m"]);
    let backend = common::connect(&server.addr(), mode).await;
    let key = fresh_key();
    backend.store(&key, b"before", LONG).await.unwrap();
    assert_eq!(backend.load(&key).await.unwrap(), Some(b"before".to_vec()));

    server.stop();
    for _ in 0..3 {
        assert!(matches!(
            backend.load(&key).await,
            Err(BackendError::Driver { .. })
        ));
        assert!(backend.store(&key, b"during", LONG).await.is_err());
        assert!(backend.touch(&key, LONG).await.is_err());
    }

    server.restart();
    // The same backend, no reconnect: the restarted server is empty.
    assert_eq!(backend.load(&key).await.unwrap(), None);
    backend.store(&key, b"after", LONG).await.unwrap();
    assert_eq!(backend.load(&key).await.unwrap(), Some(b"after".to_vec()));
}

#[test]
fn stopped_server_fails_cleanly_and_recovers_with_the_async_client() {
    run(stopped_server_fails_cleanly_and_recovers(ClientMode::Async));
}

#[test]
fn stopped_server_fails_cleanly_and_recovers_with_the_blocking_client() {
    run(stopped_server_fails_cleanly_and_recovers(
        ClientMode::Blocking,
    ));
}

async fn paused_server_times_out_and_recovers(mode: ClientMode) {
    let server = Server::start(&["-m", "16"]);
    let backend = common::connect(&server.addr(), mode).await;
    let key = fresh_key();
    backend.store(&key, b"v", LONG).await.unwrap();

    // A paused process still completes TCP handshakes but never answers: a hung server.
    server.signal("STOP");
    let result = backend.load(&key).await;
    assert!(
        matches!(
            result,
            Err(BackendError::Timeout {
                backend: "memcached",
                ..
            })
        ),
        "{result:?}"
    );
    let result = backend.store(&key, b"w", LONG).await;
    assert!(
        matches!(result, Err(BackendError::Timeout { .. })),
        "{result:?}"
    );

    server.signal("CONT");
    // The store that timed out may or may not have landed once the server resumed.
    let value = backend.load(&key).await.unwrap();
    assert!(
        value == Some(b"v".to_vec()) || value == Some(b"w".to_vec()),
        "{value:?}"
    );
    backend.store(&key, b"x", LONG).await.unwrap();
    assert_eq!(backend.load(&key).await.unwrap(), Some(b"x".to_vec()));
}

#[test]
fn paused_server_times_out_and_recovers_with_the_async_client() {
    run(paused_server_times_out_and_recovers(ClientMode::Async));
}

#[test]
fn paused_server_times_out_and_recovers_with_the_blocking_client() {
    run(paused_server_times_out_and_recovers(ClientMode::Blocking));
}
