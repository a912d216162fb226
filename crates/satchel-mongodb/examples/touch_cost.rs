//! What reading a session and sliding its expiration costs on the server in
//! `SATCHEL_MONGODB_URL` (default `mongodb://127.0.0.1:27017`), one way after another:
//!
//! ```sh
//! cargo run -p satchel-mongodb --example touch_cost -- [calls per variant] [filler documents]
//! ```
//!
//! Each variant runs its calls one after another on 64 stored sessions, first in a collection
//! holding only those, then again after `filler` more live documents (default 2000, standing in
//! for the other sessions of a busy site) were added. Measurement only: it prints the figures
//! and checks nothing. It works in a database of its own and drops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use mongodb::Collection;
use mongodb::bson::{Bson, DateTime, Document, doc};
use satchel_core::{Backend, SessionConfig, SessionId};
use satchel_mongodb::{MongoBackend, mongodb};

const SESSIONS: usize = 64;
const LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);

fn later(ms: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + ms)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args
        .next()
        .map_or(300, |a| a.parse().expect("calls: a number"));
    let filler: usize = args
        .next()
        .map_or(2000, |a| a.parse().expect("filler: a number"));

    let mut config = SessionConfig::default();
    config.mongodb = Some(
        std::env::var("SATCHEL_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into()),
    );
    let id = SessionId::generate(32).unwrap();
    config.mongodb_db = format!("satchel_touch_cost_{}", &id.as_str()[..12]);
    config.operation_timeout = Duration::from_secs(120);
    let backend = MongoBackend::connect(&config).await.expect("connect");
    let sessions = backend.collection().clone();

    let keys: Vec<String> = (0..SESSIONS)
        .map(|_| format!("session:{}", SessionId::generate(32).unwrap().as_str()))
        .collect();
    for key in &keys {
        backend
            .store(key, &[0x81, 0xa1, b'a', 1], LIFETIME)
            .await
            .unwrap();
    }

    println!("{calls} calls per variant, {SESSIONS} sessions");
    measure(&backend, &sessions, &keys, calls, "sessions only").await;
    let mut batch = Vec::new();
    for i in 0..filler {
        batch.push(doc! {
            "id": format!("filler:{i}"),
            "val": Bson::Binary(mongodb::bson::Binary {
                subtype: mongodb::bson::spec::BinarySubtype::Generic,
                bytes: vec![0x80],
            }),
            "expiration": later(3_600_000),
        });
        if batch.len() == 500 {
            sessions
                .insert_many(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        sessions.insert_many(batch).await.unwrap();
    }
    let total = sessions.count_documents(doc! {}).await.unwrap();
    measure(
        &backend,
        &sessions,
        &keys,
        calls,
        &format!("{total} documents"),
    )
    .await;

    sessions
        .client()
        .database(&config.mongodb_db)
        .drop()
        .await
        .unwrap();
}

async fn measure(
    backend: &MongoBackend,
    sessions: &Collection<Document>,
    keys: &[String],
    calls: usize,
    label: &str,
) {
    println!("\n## {label}\n");
    println!("| variant | total ms | per call µs | calls/s |");
    println!("|---|---:|---:|---:|");
    for variant in 0..8 {
        let started = Instant::now();
        let mut name = "";
        for i in 0..calls {
            let key = &keys[i % keys.len()];
            let now = DateTime::now();
            let until = later(LIFETIME.as_millis() as i64);
            name = match variant {
                0 => {
                    sessions.find_one(doc! { "id": key }).await.unwrap();
                    "find_one {id} (the raw reference)"
                }
                1 => {
                    sessions
                        .find_one(doc! { "id": key, "expiration": { "$gt": now } })
                        .projection(doc! { "_id": 0, "val": 1, "expiration": 1 })
                        .await
                        .unwrap();
                    "find_one {id, expiration > now} + projection (the coalesced read)"
                }
                2 => {
                    sessions
                        .find_one_and_update(
                            doc! { "id": key, "expiration": { "$gt": now } },
                            doc! { "$set": { "expiration": until } },
                        )
                        .projection(doc! { "_id": 0, "val": 1 })
                        .await
                        .unwrap();
                    "find_one_and_update {id, expiration > now} (the old load_and_touch)"
                }
                3 => {
                    sessions
                        .find_one_and_update(
                            doc! { "id": key },
                            doc! { "$set": { "expiration": until } },
                        )
                        .await
                        .unwrap();
                    "find_one_and_update {id}"
                }
                4 => {
                    sessions
                        .update_one(
                            doc! { "id": key, "expiration": { "$gt": now } },
                            doc! { "$set": { "expiration": until } },
                        )
                        .await
                        .unwrap();
                    "update_one {id, expiration > now} (touch)"
                }
                5 => {
                    sessions
                        .update_one(doc! { "id": key }, doc! { "$set": { "expiration": until } })
                        .await
                        .unwrap();
                    "update_one {id}"
                }
                6 => {
                    backend.load_and_touch(key, LIFETIME).await.unwrap();
                    "MongoBackend::load_and_touch, no write due"
                }
                _ => {
                    // A lifetime 61 s longer on every call: the stored expiration is always more
                    // than the 60 s granularity behind, so every call writes.
                    let ttl = LIFETIME + Duration::from_secs(61 * (i as u64 + 1));
                    backend.load_and_touch(key, ttl).await.unwrap();
                    "MongoBackend::load_and_touch, write due on every call"
                }
            };
        }
        let elapsed = started.elapsed();
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / calls as f64,
            calls as f64 / elapsed.as_secs_f64()
        );
        // Back to the default lifetime, so the next variant starts from the same state.
        for key in keys {
            backend
                .store(key, &[0x81, 0xa1, b'a', 1], LIFETIME)
                .await
                .unwrap();
        }
    }
}
