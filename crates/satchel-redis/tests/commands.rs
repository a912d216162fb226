//! Each operation is one round trip of the expected Redis commands, counted on a private
//! server.

mod common;

use satchel_core::Backend;
use satchel_core::testkit::{fresh_key, run};
use satchel_redis::testing::{CommandCounter, RedisServer};
use satchel_redis::{ConnectOptions, RedisBackend};

use common::{LONG, skipped};

fn counts(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(name, calls)| ((*name).to_owned(), *calls))
        .collect()
}

#[test]
fn a_read_is_one_command_a_sliding_read_two_pipelined_and_a_read_then_write_two() {
    if skipped(None) {
        return;
    }
    run(async {
        let server = RedisServer::start();
        let backend = RedisBackend::from_url(&server.url(), ConnectOptions::default())
            .await
            .unwrap();
        let mut counter = CommandCounter::new(&server.url()).await;
        let key = fresh_key();
        backend.store(&key, b"v", LONG).await.unwrap();

        // Several rounds, so every shared connection serves at least one of them.
        for _ in 0..ConnectOptions::default().connections + 1 {
            counter.reset().await;
            assert!(backend.load(&key).await.unwrap().is_some());
            assert_eq!(counter.counts().await, counts(&[("get", 1)]), "load");

            counter.reset().await;
            assert!(backend.load_and_touch(&key, LONG).await.unwrap().is_some());
            // A fresh expiry is read, not rewritten.
            assert_eq!(
                counter.counts().await,
                counts(&[("get", 1), ("pttl", 1)]),
                "load_and_touch"
            );

            counter.reset().await;
            backend.load(&key).await.unwrap();
            backend.store(&key, b"w", LONG).await.unwrap();
            assert_eq!(
                counter.counts().await,
                counts(&[("get", 1), ("set", 1)]),
                "load + store"
            );
        }

        // An expiry more than the touch granularity short is extended, and only then.
        let lagging = fresh_key();
        backend.store(&lagging, b"v", LONG / 2).await.unwrap();
        let mut sliding_read = async |key: &str| {
            counter.reset().await;
            let found = backend.load_and_touch(key, LONG).await.unwrap().is_some();
            (found, counter.counts().await)
        };
        assert_eq!(
            sliding_read(&lagging).await,
            (true, counts(&[("get", 1), ("pttl", 1), ("expire", 1)])),
            "load_and_touch of a lagging expiry"
        );
        assert_eq!(
            sliding_read(&lagging).await,
            (true, counts(&[("get", 1), ("pttl", 1)])),
            "load_and_touch right after the extension"
        );
        // A missing key is not touched.
        assert_eq!(
            sliding_read(&fresh_key()).await,
            (false, counts(&[("get", 1), ("pttl", 1)])),
            "load_and_touch of a missing key"
        );

        for (what, expected) in [
            ("insert", "set"),
            ("replace", "set"),
            ("touch", "expire"),
            ("delete", "del"),
        ] {
            counter.reset().await;
            match what {
                "insert" => drop(backend.insert(&fresh_key(), b"v", LONG).await.unwrap()),
                "replace" => drop(backend.replace(&key, b"x", LONG).await.unwrap()),
                "touch" => drop(backend.touch(&key, LONG).await.unwrap()),
                _ => backend.delete(&key).await.unwrap(),
            }
            assert_eq!(counter.counts().await, counts(&[(expected, 1)]), "{what}");
        }
    });
}
