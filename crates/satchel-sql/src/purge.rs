//! The periodic purge of expired rows: one task per process and table.
//!
//! actix-web builds its app once per worker thread; a guard keyed by database and table keeps
//! those (or any repeated `connect`) from starting one purge each. Only the key is global: the
//! pool stays with the backend that owns it, and the task holds it weakly.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use crate::Inner;

fn running() -> MutexGuard<'static, HashSet<String>> {
    static RUNNING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    // The set is only ever inserted into or removed from, so a poisoned lock is still consistent.
    RUNNING
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Frees the key when the task ends, however it ends (stopped, aborted, runtime shut down).
struct Claim(String);

impl Drop for Claim {
    fn drop(&mut self) {
        running().remove(&self.0);
    }
}

pub(crate) fn spawn(inner: &Arc<Inner>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() || !running().insert(inner.purge_key.clone()) {
        return None;
    }
    let claim = Claim(inner.purge_key.clone());
    let weak: Weak<Inner> = Arc::downgrade(inner);
    Some(tokio::spawn(async move {
        let _claim = claim;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if let Err(error) = inner.purge().await {
                tracing::warn!(backend = inner.name, %error, "satchel-sql: periodic purge failed");
            }
        }
    }))
}
