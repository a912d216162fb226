//! The server going away while the backend runs, and coming back.
//!
//! The backend talks to the real server (`SATCHEL_MONGODB_URL`) through a TCP relay on loopback
//! that the test takes down (closing every connection and the listening port) and brings back,
//! which is what a stopped and restarted server looks like from the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use satchel_core::{Backend, BackendError, SessionConfig, SessionId, testkit};
use satchel_mongodb::MongoBackend;
use satchel_mongodb::mongodb::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

fn url() -> String {
    std::env::var("SATCHEL_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// `(user info with its '@', host:port)` of a single-host `mongodb://` URL.
fn single_host(url: &str) -> (String, String) {
    let rest = url.strip_prefix("mongodb://").unwrap_or_else(|| {
        panic!("the outage test needs a single-host mongodb:// SATCHEL_MONGODB_URL, not {url:?}")
    });
    let authority = rest.split(['/', '?']).next().unwrap();
    let (user_info, host) = match authority.rsplit_once('@') {
        Some((user_info, host)) => (format!("{user_info}@"), host),
        None => (String::new(), authority),
    };
    assert!(
        !host.contains(','),
        "the outage test needs a single-host SATCHEL_MONGODB_URL"
    );
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:27017")
    };
    (user_info, host)
}

/// Forwards connections from a loopback port to the server until taken down.
struct Relay {
    port: u16,
    upstream: String,
    serving: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut relay = Relay {
            port,
            upstream,
            serving: None,
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        self.serving = Some(tokio::spawn(async move {
            // Dropped with this task, which aborts every forwarding task and closes its sockets.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and every connection through it.
    async fn down(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            let _ = serving.await;
        }
    }

    /// Listens on the same port again.
    async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

#[test]
fn requests_fail_cleanly_while_the_server_is_down_and_succeed_once_it_is_back() {
    if testkit::skipped("MONGODB") {
        return;
    }
    testkit::run(async {
        let (user_info, upstream) = single_host(&url());
        let mut relay = Relay::start(upstream).await;
        let db = format!(
            "satchel_test_{}",
            &SessionId::generate(32).unwrap().as_str()[..16]
        );
        let mut config = SessionConfig::default();
        // directConnection: talk to this address only, not to replica set members it names.
        config.mongodb = Some(format!(
            "mongodb://{user_info}127.0.0.1:{}/?directConnection=true",
            relay.port
        ));
        config.mongodb_db = db.clone();
        config.connect_timeout = Duration::from_secs(1);
        config.operation_timeout = Duration::from_secs(2);
        let backend = MongoBackend::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = testkit::fresh_key();
        backend
            .store(&key, b"kept", Duration::from_secs(300))
            .await
            .unwrap();

        relay.down().await;
        // Each call must come back with an error by itself; the outer bound only catches a hang.
        let bound = Duration::from_secs(20);
        let load = tokio::time::timeout(bound, backend.load(&key))
            .await
            .expect("load hung");
        assert!(
            matches!(
                load,
                Err(BackendError::Timeout { .. } | BackendError::Driver { .. })
            ),
            "{load:?}"
        );
        let store = tokio::time::timeout(
            bound,
            backend.store(&key, b"lost", Duration::from_secs(300)),
        )
        .await
        .expect("store hung");
        assert!(store.is_err(), "a store succeeded with the server down");
        let text = store.unwrap_err().to_string();
        assert!(text.starts_with("mongodb store"), "{text}");
        assert!(
            !text.contains(&key),
            "the key leaked into the error: {text}"
        );

        relay.up().await;
        let mut last = None;
        for _ in 0..40 {
            match backend.load(&key).await {
                Ok(value) => {
                    last = None;
                    assert_eq!(value, Some(b"kept".to_vec()));
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            last.is_none(),
            "still failing after the server came back: {last:?}"
        );
        backend
            .store(&key, b"again", Duration::from_secs(300))
            .await
            .unwrap();

        relay.down().await;
        let raw = Client::with_uri_str(url()).await.unwrap();
        raw.database(&db).drop().await.unwrap();
    });
}
