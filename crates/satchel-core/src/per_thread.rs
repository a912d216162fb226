//! [`PerThread`]: one value per thread that runs a current-thread runtime, for connections.
//!
//! A tokio socket is driven by the reactor of the runtime that dialed it. With one pool shared
//! by all actix-web workers (each runs a current-thread runtime), a connection dialed by one
//! worker and used by another has every reply woken through the first worker's thread, which
//! polls its reactor only between tasks. Backends keep their connections per worker thread
//! with this type instead (benches/HISTORY.md measures what that gave Redis, memcached, PostgreSQL
//! and MariaDB).

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// One value of one owner on one thread.
struct Entry {
    owner: u64,
    /// Dead once the owner is dropped; the entry is then removed, dropping the value.
    alive: Weak<()>,
    /// A `T` of the owner's `PerThread<T>`; one list holds every type.
    value: Box<dyn Any>,
}

thread_local! {
    static ENTRIES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

static NEXT_OWNER: AtomicU64 = AtomicU64::new(0);

/// Whether this thread runs a current-thread tokio runtime (an actix-web worker does), and so
/// keeps [`PerThread`] values of its own.
///
/// ```
/// assert!(!satchel_core::per_thread::on_current_thread_runtime());
/// ```
pub fn on_current_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// A value of type `T` per thread running a current-thread tokio runtime, built on first use.
/// Off such threads (a multi-thread runtime, no runtime) there is none, and the caller uses a
/// shared value instead. Dropping the `PerThread` drops each thread's value the next time
/// that thread adds one, or when the thread exits.
///
/// `T` is a cheap handle (an `Arc`, a client that clones by reference count): [`get`](Self::get)
/// returns clones.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use satchel_core::PerThread;
///
/// let per_thread: PerThread<Arc<String>> = PerThread::new();
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// runtime.block_on(async {
///     let first = per_thread.get_or_init(|| Arc::new("this thread's".to_owned())).unwrap();
///     let again = per_thread.get_or_init(|| unreachable!()).unwrap();
///     assert!(Arc::ptr_eq(&first, &again));
/// });
/// // Outside a current-thread runtime there is no per-thread value.
/// assert!(per_thread.get().is_none());
/// ```
pub struct PerThread<T> {
    owner: u64,
    alive: Arc<()>,
    _values: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for PerThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerThread")
            .field("owner", &self.owner)
            .finish()
    }
}

impl<T: Clone + 'static> Default for PerThread<T> {
    fn default() -> Self {
        PerThread::new()
    }
}

impl<T: Clone + 'static> PerThread<T> {
    /// A new owner, with no value on any thread yet.
    pub fn new() -> PerThread<T> {
        PerThread {
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            _values: PhantomData,
        }
    }

    /// This thread's value, if it has one and runs a current-thread runtime.
    pub fn get(&self) -> Option<T> {
        if !on_current_thread_runtime() {
            return None;
        }
        ENTRIES.with_borrow(|entries| self.find(entries))
    }

    /// This thread's value, built by `make` on first use; `None` off current-thread runtimes.
    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> Option<T> {
        if !on_current_thread_runtime() {
            return None;
        }
        if let Some(value) = ENTRIES.with_borrow(|entries| self.find(entries)) {
            return Some(value);
        }
        // Built outside the borrow, so `make` may use other `PerThread`s.
        Some(self.insert_if_absent(make()))
    }

    /// Keeps `value` as this thread's unless it already has one (another task on this thread
    /// may have built one meanwhile, e.g. across an `.await`); returns the one kept.
    pub fn insert_if_absent(&self, value: T) -> T {
        ENTRIES.with_borrow_mut(|entries| {
            if let Some(existing) = self.find(entries) {
                return existing;
            }
            // Drop the values of owners that are gone before adding one.
            entries.retain(|e| e.alive.strong_count() > 0);
            entries.push(Entry {
                owner: self.owner,
                alive: Arc::downgrade(&self.alive),
                value: Box::new(value.clone()),
            });
            value
        })
    }

    fn find(&self, entries: &[Entry]) -> Option<T> {
        entries
            .iter()
            .find(|e| e.owner == self.owner)
            .and_then(|e| e.value.downcast_ref::<T>())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::PerThread;
    use std::sync::Arc;

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn each_thread_and_each_owner_has_its_own_value() {
        let a: Arc<PerThread<Arc<u32>>> = Arc::new(PerThread::new());
        let b: PerThread<Arc<u32>> = PerThread::new();
        let here = current_thread().block_on(async {
            let a1 = a.get_or_init(|| Arc::new(1)).unwrap();
            assert_eq!(*b.get_or_init(|| Arc::new(2)).unwrap(), 2);
            assert!(Arc::ptr_eq(&a1, &a.get().unwrap()));
            a1
        });
        let a2 = Arc::clone(&a);
        let there = std::thread::spawn(move || {
            current_thread().block_on(async move { a2.get_or_init(|| Arc::new(3)).unwrap() })
        })
        .join()
        .unwrap();
        assert_eq!((*here, *there), (1, 3));
    }

    #[test]
    fn multi_thread_runtimes_and_plain_threads_have_none() {
        let per_thread: PerThread<Arc<u32>> = PerThread::new();
        assert!(per_thread.get_or_init(|| Arc::new(1)).is_none());
        let multi = tokio::runtime::Builder::new_multi_thread().build().unwrap();
        multi.block_on(async { assert!(per_thread.get_or_init(|| Arc::new(1)).is_none()) });
    }

    #[test]
    fn the_first_value_kept_wins_and_dropped_owners_are_cleared() {
        let value = current_thread().block_on(async {
            let per_thread: PerThread<Arc<u32>> = PerThread::new();
            assert_eq!(*per_thread.insert_if_absent(Arc::new(1)), 1);
            assert_eq!(*per_thread.insert_if_absent(Arc::new(2)), 1);
            let kept = per_thread.get().unwrap();
            drop(per_thread);
            // The next owner to add a value clears the dropped one's.
            let other: PerThread<Arc<u32>> = PerThread::new();
            other.get_or_init(|| Arc::new(9));
            kept
        });
        assert_eq!(Arc::strong_count(&value), 1);
    }
}
