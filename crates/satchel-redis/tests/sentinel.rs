//! Redis Sentinel: the conformance suite against the master the sentinels name.
//! (The failover test lives in `sentinel_failover.rs`, a binary of its own, so it never
//! runs while these do.)

mod common;

satchel_core::conformance_suite!("REDIS_SENTINEL", common::connect(&common::sentinel_url()));
