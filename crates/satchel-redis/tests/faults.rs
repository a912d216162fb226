//! A private Redis stopped, restarted and frozen under a connected backend.

mod common;

use std::time::Duration;

use satchel_core::testkit::{fresh_key, run};
use satchel_core::{Backend, BackendError};
use satchel_redis::RedisBackend;
use satchel_redis::testing::RedisServer;

use common::{LONG, options, skipped};

/// Far longer than any timeout below: reaching it means a hang, not slowness.
const HANG: Duration = Duration::from_secs(60);

#[test]
fn requests_fail_cleanly_while_redis_is_down_and_succeed_again_once_it_is_back() {
    if skipped(None) {
        return;
    }
    run(async {
        let mut server = RedisServer::start();
        let backend = RedisBackend::from_url(&server.url(), options(2, Duration::from_secs(2)))
            .await
            .unwrap();
        let key = fresh_key();
        backend.store(&key, b"v", LONG).await.unwrap();

        server.stop();
        // More requests than connections, so every connection meets the outage.
        for _ in 0..6 {
            let outcome = tokio::time::timeout(HANG, backend.load(&key))
                .await
                .expect("no hang");
            let err = outcome.expect_err("Redis is down");
            let text = err.to_string();
            assert!(text.starts_with("redis load"), "{text}");
            assert!(
                matches!(err, BackendError::Timeout { .. })
                    || text.contains(&server.port().to_string()),
                "a connection error names the address: {text}"
            );
        }
        let outcome = tokio::time::timeout(HANG, backend.store(&key, b"w", LONG))
            .await
            .expect("no hang");
        assert!(outcome.is_err());

        server.restart();
        // The private server keeps nothing on disk, so the session is gone, but every
        // request succeeds again without a new backend.
        for i in 0..6u8 {
            let key = fresh_key();
            backend
                .store(&key, &[i], LONG)
                .await
                .expect("store after restart");
            assert_eq!(
                backend.load(&key).await.expect("load after restart"),
                Some(vec![i])
            );
        }
    });
}

#[test]
fn a_connection_dropped_between_requests_is_reopened_without_an_error() {
    if skipped(None) {
        return;
    }
    run(async {
        let mut server = RedisServer::start();
        let backend = RedisBackend::from_url(&server.url(), options(3, Duration::from_secs(2)))
            .await
            .unwrap();
        // Redis restarts while nothing is in flight: the next requests on each connection
        // find it dropped, share one reconnect, retry once, and the callers never notice.
        server.restart();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let backend = backend.clone();
            tasks.spawn(async move {
                let key = fresh_key();
                let value = i.to_be_bytes();
                backend
                    .store(&key, &value, LONG)
                    .await
                    .expect("store is retried on a new connection");
                assert_eq!(backend.load(&key).await.unwrap(), Some(value.to_vec()));
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a request failed after the restart");
        }
    });
}

#[test]
fn a_frozen_server_gives_timeouts_not_hangs_and_recovers() {
    if skipped(None) {
        return;
    }
    run(async {
        let mut server = RedisServer::start();
        let backend = RedisBackend::from_url(&server.url(), options(2, Duration::from_secs(1)))
            .await
            .unwrap();
        let key = fresh_key();
        backend.store(&key, b"v", LONG).await.unwrap();

        server.pause();
        for _ in 0..3 {
            let outcome = tokio::time::timeout(HANG, backend.load(&key))
                .await
                .expect("no hang");
            assert!(
                matches!(outcome, Err(BackendError::Timeout { .. })),
                "{outcome:?}"
            );
        }
        server.resume();
        for _ in 0..4 {
            assert_eq!(
                backend.load(&key).await.expect("load after resume"),
                Some(b"v".to_vec())
            );
        }
    });
}
