//! An in-process backend with expiring entries (`SESSION_TYPE=memory`), for tests and
//! development. Sessions live as long as the process, and each process has its own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::BackendError;

struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

/// Sessions kept in a hash map in this process, expired on read.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use satchel_core::{Backend, MemoryBackend};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let backend = MemoryBackend::new();
/// assert!(backend.insert("k", b"v", Duration::from_secs(60)).await.unwrap());
/// assert!(!backend.insert("k", b"w", Duration::from_secs(60)).await.unwrap());
/// # });
/// ```
#[derive(Default)]
pub struct MemoryBackend {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while the lock was held cannot leave an entry half-written (each operation is
        // a single map call), so a poisoned map is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live<'a>(
        entries: &'a mut HashMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Option<&'a mut Entry> {
        if entries.get(key).is_some_and(|e| e.expires_at <= now) {
            entries.remove(key);
        }
        entries.get_mut(key)
    }
}

fn deadline(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Backend for MemoryBackend {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let mut entries = self.entries();
        Ok(Self::live(&mut entries, key, Instant::now()).map(|e| e.value.clone()))
    }

    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let mut entries = self.entries();
        Ok(Self::live(&mut entries, key, Instant::now()).map(|e| {
            e.expires_at = deadline(ttl);
            e.value.clone()
        }))
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let mut entries = self.entries();
        if Self::live(&mut entries, key, Instant::now()).is_some() {
            return Ok(false);
        }
        entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires_at: deadline(ttl),
            },
        );
        Ok(true)
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        self.entries().insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires_at: deadline(ttl),
            },
        );
        Ok(())
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let mut entries = self.entries();
        Ok(Self::live(&mut entries, key, Instant::now())
            .map(|e| {
                e.value = value.to_vec();
                e.expires_at = deadline(ttl);
            })
            .is_some())
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let mut entries = self.entries();
        Ok(Self::live(&mut entries, key, Instant::now())
            .map(|e| e.expires_at = deadline(ttl))
            .is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.entries().remove(key);
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        let now = Instant::now();
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, e| e.expires_at > now);
        Ok((before - entries.len()) as u64)
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    crate::conformance_suite!("MEMORY", async { super::MemoryBackend::new() });
}
