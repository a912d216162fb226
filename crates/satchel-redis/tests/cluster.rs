//! A Redis Cluster: the conformance suite, and sessions spread over its masters.

mod common;

use satchel_core::Backend;
use satchel_core::testkit::{fresh_key, run};
use satchel_redis::RedisConfig;
use satchel_redis::redis::{self, Value};

use common::{LONG, cluster_url, connect, skipped};

satchel_core::conformance_suite!("REDIS_CLUSTER", common::connect(&common::cluster_url()));

/// (first slot, last slot, "host:port") for each master, from `CLUSTER SLOTS`.
fn slot_owners(reply: Value) -> Vec<(i64, i64, String)> {
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS: {reply:?}")
    };
    ranges
        .into_iter()
        .map(|range| {
            let Value::Array(fields) = range else {
                panic!("slot range: {range:?}")
            };
            let first: i64 = redis::from_redis_value(fields[0].clone()).unwrap();
            let last: i64 = redis::from_redis_value(fields[1].clone()).unwrap();
            let Value::Array(master) = fields[2].clone() else {
                panic!("master: {:?}", fields[2])
            };
            let host: String = redis::from_redis_value(master[0].clone()).unwrap();
            let port: i64 = redis::from_redis_value(master[1].clone()).unwrap();
            (first, last, format!("{host}:{port}"))
        })
        .collect()
}

#[test]
fn sessions_land_on_more_than_one_master_and_each_is_where_its_slot_says() {
    if skipped(Some("REDIS_CLUSTER")) {
        return;
    }
    run(async {
        let url = cluster_url();
        let backend = connect(&url).await;
        let RedisConfig::Cluster(config) = RedisConfig::from_url(&url).unwrap() else {
            panic!("{url} is not a cluster URL")
        };
        let seed = config.urls.unwrap()[0].clone();
        let mut seed = redis::Client::open(seed)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let owners = slot_owners(
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut seed)
                .await
                .unwrap(),
        );

        let mut masters = std::collections::BTreeSet::new();
        for i in 0..32u8 {
            let key = fresh_key();
            backend.store(&key, &[i], LONG).await.unwrap();
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query_async(&mut seed)
                .await
                .unwrap();
            let (_, _, master) = owners
                .iter()
                .find(|(first, last, _)| (*first..=*last).contains(&slot))
                .unwrap_or_else(|| panic!("no master for slot {slot}"));
            // Read straight from that master, without the cluster client's routing.
            let mut node = redis::Client::open(format!("redis://{master}"))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let stored: Vec<u8> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut node)
                .await
                .unwrap();
            assert_eq!(stored, [i]);
            masters.insert(master.clone());
        }
        assert!(masters.len() > 1, "all 32 sessions landed on {masters:?}");
    });
}
