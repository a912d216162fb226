//! A Sentinel failover under a connected backend: sessions written before it are read back
//! through the new master, and writes go there too.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use satchel_core::Backend;
use satchel_core::testkit::{fresh_key, run};
use satchel_redis::redis::{self, aio::MultiplexedConnection};
use satchel_redis::{ConnectOptions, RedisConfig};

use common::{LONG, connect, sentinel_url, skipped};

const PATIENCE: Duration = Duration::from_secs(60);

async fn open(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn master_addr(sentinel: &mut MultiplexedConnection, name: &str) -> String {
    let addr: Vec<String> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(name)
        .query_async(sentinel)
        .await
        .unwrap();
    format!("{}:{}", addr[0], addr[1])
}

async fn role(addr: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.ok()?;
    redis::from_redis_value(reply.first()?.clone()).ok()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn sessions_written_before_a_failover_are_read_through_the_new_master() {
    if skipped(Some("REDIS_SENTINEL")) {
        return;
    }
    run(async {
        let url = sentinel_url();
        let RedisConfig::Sentinel(config) = RedisConfig::from_url(&url).unwrap() else {
            panic!("{url} is not a sentinel URL")
        };
        let name = config.master_name.clone();
        let mut sentinel = open(&config.urls.unwrap()[0]).await;
        let backend = connect(&url).await;

        let old_master = master_addr(&mut sentinel, &name).await;
        let key = fresh_key();
        backend
            .store(&key, b"written before the failover", LONG)
            .await
            .unwrap();

        // Replication is asynchronous: wait until a replica has the session, so the
        // failover cannot lose it (that would be Redis' doing, not the backend's).
        let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&name)
            .query_async(&mut sentinel)
            .await
            .unwrap();
        let replicas: Vec<String> = replicas
            .iter()
            .filter(|r| {
                !r.get("flags")
                    .is_some_and(|f| f.contains("down") || f.contains("disconnected"))
            })
            .map(|r| format!("{}:{}", r["ip"], r["port"]))
            .collect();
        assert!(
            !replicas.is_empty(),
            "sentinel knows no healthy replica of {name}"
        );
        eventually("the session reached every replica", || {
            let replicas = replicas.clone();
            let key = key.clone();
            async move {
                for replica in &replicas {
                    let mut conn = open(&format!("redis://{replica}")).await;
                    let value: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    if value.is_none() {
                        return false;
                    }
                }
                true
            }
        })
        .await;

        eventually("SENTINEL FAILOVER accepted", || {
            let mut sentinel = sentinel.clone();
            let name = name.clone();
            async move {
                let reply: redis::RedisResult<()> = redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(&name)
                    .query_async(&mut sentinel)
                    .await;
                reply.is_ok()
            }
        })
        .await;
        eventually(
            "the sentinels name a new master that says it is master, and the old one follows it",
            || {
                let mut sentinel = sentinel.clone();
                let (name, old_master) = (name.clone(), old_master.clone());
                async move {
                    let new_master = master_addr(&mut sentinel, &name).await;
                    new_master != old_master
                        && role(&new_master).await.as_deref() == Some("master")
                        && role(&old_master).await.as_deref() == Some("slave")
                }
            },
        )
        .await;
        let new_master = master_addr(&mut sentinel, &name).await;

        // Every shared connection still pointed at the old master; each must find the new one.
        for _ in 0..=ConnectOptions::default().connections {
            assert_eq!(
                backend.load(&key).await.expect("load after failover"),
                Some(b"written before the failover".to_vec())
            );
        }
        let after = fresh_key();
        for _ in 0..=ConnectOptions::default().connections {
            backend
                .store(&after, b"written after the failover", LONG)
                .await
                .expect("store after failover");
        }
        let mut direct = open(&format!("redis://{new_master}")).await;
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(&after)
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(stored, b"written after the failover");
    });
}
