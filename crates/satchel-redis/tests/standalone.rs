//! One Redis server: the conformance suite, Flask-Session's layout, start-up errors.

mod common;

use std::time::Duration;

use satchel_core::testkit::{fresh_key, run};
use satchel_core::{Backend, ConfigError, SessionConfig};
use satchel_redis::RedisBackend;
use satchel_redis::redis::{self, AsyncCommands};
use satchel_redis::testing::RedisServer;

use common::{LONG, connect, options, skipped, standalone_url};

satchel_core::conformance_suite!("REDIS", common::connect(&common::standalone_url()));

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[test]
fn sessions_are_stored_as_flask_session_stores_them() {
    if skipped(None) {
        return;
    }
    run(async {
        let url = standalone_url();
        let backend = connect(&url).await;
        let mut redis = raw(&url).await;
        let key = fresh_key();
        // Flask-Session 0.8's worked example: {"_permanent": true, "username": "alice", "n": 3}.
        let value = b"\x83\xaa_permanent\xc3\xa8username\xa5alice\xa1n\x03";
        backend
            .store(&key, value, Duration::from_secs(2_678_400))
            .await
            .unwrap();
        let stored: Vec<u8> = redis.get(&key).await.unwrap();
        assert_eq!(stored, value);
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert!((2_678_390..=2_678_400).contains(&ttl), "TTL {ttl}");

        // And a value Flask wrote is read back as it is.
        let flask_key = fresh_key();
        let () = redis.set_ex(&flask_key, &value[..], 60).await.unwrap();
        assert_eq!(
            backend.load(&flask_key).await.unwrap(),
            Some(value.to_vec())
        );
    });
}

#[test]
fn sub_second_ttls_become_one_second_and_fractions_round_up() {
    if skipped(None) {
        return;
    }
    run(async {
        let url = standalone_url();
        let backend = connect(&url).await;
        let mut redis = raw(&url).await;
        let key = fresh_key();
        backend
            .store(&key, b"v", Duration::from_millis(10))
            .await
            .unwrap();
        let pttl: i64 = redis.pttl(&key).await.unwrap();
        assert!(pttl > 500 && pttl <= 1000, "PTTL {pttl}");
        assert!(
            backend
                .touch(&key, Duration::from_millis(2500))
                .await
                .unwrap()
        );
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert_eq!(ttl, 3);
        // A sliding read never shortens a TTL...
        assert_eq!(
            backend.load_and_touch(&key, Duration::ZERO).await.unwrap(),
            Some(b"v".to_vec())
        );
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert_eq!(ttl, 3);
        // ...and extends a lagging one, rounded up the same way.
        let short = fresh_key();
        backend
            .store(&short, b"v", Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(
            backend
                .load_and_touch(&short, Duration::from_millis(1500))
                .await
                .unwrap(),
            Some(b"v".to_vec())
        );
        let ttl: i64 = redis.ttl(&short).await.unwrap();
        assert_eq!(ttl, 2);
    });
}

#[test]
fn a_flask_config_connects_through_session_redis() {
    if skipped(None) {
        return;
    }
    run(async {
        let url = standalone_url();
        let config = SessionConfig::from_lookup(|name| match name {
            "SESSION_TYPE" => Some("redis".into()),
            "SESSION_REDIS" => Some(url.clone()),
            _ => None,
        })
        .unwrap();
        let backend = RedisBackend::connect(&config).await.unwrap();
        let key = fresh_key();
        assert!(backend.insert(&key, b"v", LONG).await.unwrap());
        assert_eq!(backend.name(), "redis");
    });
}

#[test]
fn a_malformed_session_redis_is_a_config_error_naming_the_setting() {
    run(async {
        let mut config = SessionConfig::default();
        config.redis = Some("redis://:hunter2@127.0.0.1:6379/notadb".into());
        let err = RedisBackend::connect(&config).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    setting: "SESSION_REDIS",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    });
}

#[test]
fn redis_down_at_start_up_is_an_error_naming_the_address_without_the_password() {
    if skipped(None) {
        return;
    }
    run(async {
        // A port where nothing listens: a server started and stopped again.
        let mut server = RedisServer::start();
        let port = server.port();
        server.stop();
        let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
        let started = tokio::time::timeout(
            Duration::from_secs(30),
            RedisBackend::from_url(&url, options(2, Duration::from_secs(2))),
        )
        .await
        .expect("connect gives up within its timeout");
        let err = started.unwrap_err();
        assert!(matches!(err, ConfigError::Backend(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    });
}

#[test]
fn a_server_that_does_not_answer_at_start_up_times_out_naming_the_address() {
    if skipped(None) {
        return;
    }
    run(async {
        let mut server = RedisServer::start();
        server.pause();
        let url = format!("redis://:hunter2@127.0.0.1:{}", server.port());
        let started = tokio::time::timeout(
            Duration::from_secs(30),
            RedisBackend::from_url(&url, options(1, Duration::from_secs(1))),
        )
        .await
        .expect("connect gives up within its timeout");
        let text = started.unwrap_err().to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", server.port())),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        server.resume();
    });
}

#[test]
fn unix_socket_urls_connect() {
    if skipped(None) {
        return;
    }
    run(async {
        let server = RedisServer::start_with_unix_socket();
        let path = server.unix_socket().unwrap();
        let backend = connect(&format!("unix://{}?db=1", path.display())).await;
        let key = fresh_key();
        backend.store(&key, b"over a socket", LONG).await.unwrap();
        assert_eq!(
            backend.load(&key).await.unwrap(),
            Some(b"over a socket".to_vec())
        );
        let mut redis = raw(&format!("redis+unix://{}?db=1", path.display())).await;
        let stored: Vec<u8> = redis.get(&key).await.unwrap();
        assert_eq!(stored, b"over a socket");
    });
}
