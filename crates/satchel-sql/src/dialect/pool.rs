//! sqlx's connection pool, with new connections opened in background tasks, a few at a time.
//!
//! sqlx opens a connection inside the `acquire` that finds none idle and has room for one, so a
//! caller that stops waiting abandons the connection half open. On a machine too slow to connect
//! within the operation timeout, a pool emptied by an outage would then never refill: every
//! request starts a connect and abandons it. Here a caller that has to wait for a new connection
//! hands the connecting to a task that no caller cancels. The task has all of sqlx's
//! `acquire_timeout` (`SATCHEL_CONNECT_TIMEOUT`) to connect, gives the connection to the
//! longest-waiting caller, and leaves it in the pool when every caller has given up. A caller
//! that finds the pool full waits in sqlx's own queue for a connection given back.
//!
//! At most [`OPENING_AT_ONCE`] such tasks run per pool. Opening a connection costs CPU on both
//! sides (TLS, SCRAM: some 55 ms in a debug build), and when a starved machine opens a whole
//! pool's worth at once, they share the CPU and all finish late, past the connect timeout, so
//! none is ever opened.
//!
//! PostgreSQL and MySQL pools are kept per actix worker thread ([`PerThread`] says why). The
//! shared pool
//! serves everything else (start-up, purging, multi-thread runtimes). `SATCHEL_POOL_SIZE` is
//! then the size of each worker's pool. SQLite connections run on threads of their own, and
//! an in-memory database exists once per pool, so SQLite keeps one shared pool.
//!
//! A connection whose operation completed is not given back to sqlx: [`Checkout::give_back`]
//! hands it to the caller of this lane that has waited longest, or parks it for the next one.
//! sqlx tests every connection given back with a round trip of its own (PostgreSQL `Sync`,
//! MySQL `COM_PING`, a message to SQLite's worker thread), from a task it spawns, so every
//! statement cost the database a second wake-up and the worker a task and two system calls
//! (benches/HISTORY.md measures it). That test exists to catch a connection left mid-statement by a
//! cancelled future; a connection handed on here finished its operation, and a cancelled or
//! failed one still goes back through sqlx. A caller waits for both at once: a connection
//! handed on, and one from sqlx (given back there, or newly opened). A connection parked longer
//! than [`PARKED_AT_MOST`], or out of sqlx's pool longer than [`OUT_AT_MOST`] (so that sqlx's
//! `max_lifetime` still applies), goes back through sqlx, as do all parked ones after a
//! connection error. With no requests at all, parked connections stay open until the next.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use satchel_core::PerThread;
use sqlx::pool::PoolConnection;
use tokio::sync::oneshot;

/// Connections one pool opens at the same time.
const OPENING_AT_ONCE: usize = 2;

/// How often a caller waiting for a new connection also checks for one another caller gave
/// back, and whether the pool has filled up meanwhile.
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// How long a parked connection may wait for its next statement; an older one goes back
/// through sqlx's test.
const PARKED_AT_MOST: Duration = Duration::from_secs(10);

/// How long a connection may stay out of sqlx's pool, parked and reused, before it goes back
/// through sqlx (which closes it past `max_lifetime`).
const OUT_AT_MOST: Duration = Duration::from_secs(60);

type Acquired<DB> = Result<PoolConnection<DB>, sqlx::Error>;

/// A connection taken for one operation, from a lane's parked ones or from sqlx's pool.
pub(crate) struct Checkout<DB: sqlx::Database> {
    conn: PoolConnection<DB>,
    /// When it left sqlx's pool.
    taken: Instant,
    lane: Arc<Lane<DB>>,
}

impl<DB: sqlx::Database> Checkout<DB> {
    /// Hands the connection of an operation that completed to the caller of this lane that has
    /// waited longest, or parks it for the next one; dropping a `Checkout` instead gives the
    /// connection back through sqlx's test.
    pub(crate) fn give_back(self) {
        if self.taken.elapsed() >= OUT_AT_MOST {
            return;
        }
        let mut idle = Idle {
            conn: self.conn,
            taken: self.taken,
            parked: Instant::now(),
        };
        let mut parked = lock(&self.lane.parked);
        // Straight to the caller that has waited longest, if one still waits.
        while let Some(waiter) = parked.waiters.pop_front() {
            match waiter.send(idle) {
                Ok(()) => return,
                Err(back) => idle = back,
            }
        }
        parked.idle.push(idle);
    }
}

impl<DB: sqlx::Database> Checkout<DB> {
    /// A parked connection taken again.
    fn from_idle(idle: Idle<DB>, lane: Arc<Lane<DB>>) -> Checkout<DB> {
        Checkout {
            conn: idle.conn,
            taken: idle.taken,
            lane,
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for Checkout<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<DB: sqlx::Database> Deref for Checkout<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: sqlx::Database> DerefMut for Checkout<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

/// The pools of one store: a shared one, and one per worker thread where that helps (see the
/// module documentation).
pub(crate) struct Pool<DB: sqlx::Database> {
    shared: Arc<Lane<DB>>,
    per_thread: Option<ThreadLanes<DB>>,
}

/// How to build a thread's own pool, and each thread's.
struct ThreadLanes<DB: sqlx::Database> {
    options: sqlx::pool::PoolOptions<DB>,
    connect: <DB::Connection as sqlx::Connection>::Options,
    lanes: PerThread<Arc<Lane<DB>>>,
}

impl<DB: sqlx::Database> Pool<DB> {
    /// One pool for every thread.
    pub(crate) fn new(pool: sqlx::Pool<DB>) -> Pool<DB> {
        Pool {
            shared: Arc::new(Lane::new(pool)),
            per_thread: None,
        }
    }

    /// `pool` for start-up and multi-thread runtimes, and a pool built from `options` and
    /// `connect` for each thread running a current-thread runtime, when it first needs one.
    pub(crate) fn per_thread(
        pool: sqlx::Pool<DB>,
        options: sqlx::pool::PoolOptions<DB>,
        connect: <DB::Connection as sqlx::Connection>::Options,
    ) -> Pool<DB> {
        Pool {
            shared: Arc::new(Lane::new(pool)),
            per_thread: Some(ThreadLanes {
                options,
                connect,
                lanes: PerThread::new(),
            }),
        }
    }

    /// [`per_thread`](Self::per_thread), with the shared pool opened from `options` and
    /// `connect` within `connect_timeout` (sqlx opens one connection to check the server); a
    /// failure names the server as `shown` (password redacted).
    pub(crate) async fn connect_per_thread(
        backend: &'static str,
        shown: &str,
        options: sqlx::pool::PoolOptions<DB>,
        connect: <DB::Connection as sqlx::Connection>::Options,
        connect_timeout: Duration,
    ) -> Result<Pool<DB>, satchel_core::ConfigError> {
        let pool = tokio::time::timeout(
            connect_timeout,
            options.clone().connect_with(connect.clone()),
        )
        .await
        .map_err(|_| super::unreachable(backend, shown, None, connect_timeout))?
        .map_err(|e| super::unreachable(backend, shown, Some(e), connect_timeout))?;
        Ok(Pool::per_thread(pool, options, connect))
    }

    /// The shared sqlx pool, for statements outside a request (schema checks, and tests and
    /// tools given the pool). Its parked connections go back to it first.
    pub(crate) fn sqlx(&self) -> &sqlx::Pool<DB> {
        self.shared.unpark_all();
        &self.shared.pool
    }

    /// The sqlx pool this thread's requests use, with this thread's parked connections given
    /// back to it first.
    pub(crate) fn for_this_thread(&self) -> sqlx::Pool<DB> {
        let lane = self.lane();
        lane.unpark_all();
        lane.pool.clone()
    }

    /// A connection from this thread's pool, waiting until `deadline` at most. Nothing has
    /// been sent on it yet, so giving up is harmless.
    pub(crate) async fn acquire_until(
        &self,
        deadline: Instant,
    ) -> Result<Checkout<DB>, sqlx::Error> {
        let lane = self.lane();
        let mut handed = match lane.take_parked() {
            Ok(idle) => return Ok(Checkout::from_idle(idle, lane)),
            Err(handed) => handed,
        };
        // Whichever comes first: a connection another caller finishes with, or one from sqlx.
        let from_sqlx = lane.acquire_until(deadline);
        tokio::select! {
            biased;
            Ok(idle) = &mut handed => Ok(Checkout::from_idle(idle, lane)),
            acquired = from_sqlx => {
                // One handed over meanwhile goes back through sqlx, to whoever waits there.
                handed.close();
                acquired.map(|conn| Checkout {
                    conn,
                    taken: Instant::now(),
                    lane,
                })
            }
        }
    }

    /// Gives this thread's parked connections back through sqlx's test, after one of them
    /// failed: the others most likely lost their server too.
    pub(crate) fn unpark_all(&self) {
        self.lane().unpark_all();
    }

    fn lane(&self) -> Arc<Lane<DB>> {
        let Some(per_thread) = &self.per_thread else {
            return Arc::clone(&self.shared);
        };
        per_thread
            .lanes
            .get_or_init(|| {
                // Lazy: no connection is opened until a request needs one.
                let pool = per_thread
                    .options
                    .clone()
                    .connect_lazy_with(per_thread.connect.clone());
                Arc::new(Lane::new(pool))
            })
            .unwrap_or_else(|| Arc::clone(&self.shared))
    }
}

/// A sqlx pool, the tasks that open its connections, and the connections parked between
/// operations.
struct Lane<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    opener: Arc<Mutex<Opener<DB>>>,
    parked: Mutex<Parked<DB>>,
}

/// Connections parked between operations, and the callers waiting for one.
struct Parked<DB: sqlx::Database> {
    /// Last parked last.
    idle: Vec<Idle<DB>>,
    /// Oldest first; a caller that got a connection elsewhere or gave up has closed its
    /// receiver.
    waiters: VecDeque<oneshot::Sender<Idle<DB>>>,
}

/// A parked connection (without its lane, which holds it).
struct Idle<DB: sqlx::Database> {
    conn: PoolConnection<DB>,
    /// When it left sqlx's pool.
    taken: Instant,
    parked: Instant,
}

/// The callers waiting for a new connection, and the tasks opening connections for them.
struct Opener<DB: sqlx::Database> {
    /// Oldest first; a caller that gave up has closed its receiver.
    waiting: VecDeque<oneshot::Sender<Acquired<DB>>>,
    /// Opening tasks running, at most [`OPENING_AT_ONCE`].
    running: usize,
}

impl<DB: sqlx::Database> Lane<DB> {
    fn new(pool: sqlx::Pool<DB>) -> Lane<DB> {
        Lane {
            pool,
            opener: Arc::new(Mutex::new(Opener {
                waiting: VecDeque::new(),
                running: 0,
            })),
            parked: Mutex::new(Parked {
                idle: Vec::new(),
                waiters: VecDeque::new(),
            }),
        }
    }

    /// Gives the parked connections back through sqlx's test (which runs in a task sqlx
    /// spawns, so only where there is a runtime; see the `Drop` below for the other case).
    fn unpark_all(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let idle = std::mem::take(&mut lock(&self.parked).idle);
        drop(idle);
    }

    /// The connection parked last, if it has not waited too long (older ones, and the rest
    /// when it has, go back through sqlx); else a place in the queue for the next one given
    /// back.
    fn take_parked(&self) -> Result<Idle<DB>, oneshot::Receiver<Idle<DB>>> {
        let mut parked = lock(&self.parked);
        if let Some(idle) = parked.idle.pop() {
            if idle.parked.elapsed() < PARKED_AT_MOST {
                return Ok(idle);
            }
            // Parked last but too old: every other parked one is older still.
            let stale = std::mem::take(&mut parked.idle);
            drop((idle, stale));
        }
        if parked.waiters.len() >= 64 {
            parked.waiters.retain(|waiter| !waiter.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        parked.waiters.push_back(tx);
        Err(rx)
    }

    async fn acquire_until(&self, deadline: Instant) -> Acquired<DB> {
        // The common case: an idle connection, taken without a task or a timer.
        if let Some(conn) = self.pool.try_acquire() {
            return Ok(conn);
        }
        // Boxed: waiting in sqlx's queue is a future of several KB, which would otherwise be
        // part of every statement's future and be copied with it on every request
        // (actix-session boxes the whole request's future).
        Box::pin(self.wait_or_open(deadline)).await
    }

    async fn wait_or_open(&self, deadline: Instant) -> Acquired<DB> {
        if !self.has_room() {
            return self.wait_in_line(deadline).await;
        }
        let mut opened = self.ask_for_one();
        loop {
            let look_again = (Instant::now() + LOOK_AGAIN).min(deadline);
            match tokio::time::timeout_at(look_again.into(), &mut opened).await {
                Ok(Ok(acquired)) => return acquired,
                // The opening task ended without answering: it panicked, or the runtime is
                // shutting down.
                Ok(Err(_)) => return Err(sqlx::Error::WorkerCrashed),
                Err(_) if Instant::now() >= deadline => return Err(sqlx::Error::PoolTimedOut),
                Err(_) => {}
            }
            if let Some(conn) = self.pool.try_acquire() {
                return Ok(conn);
            }
            if !self.has_room() {
                // No longer queued: a connection opened now goes to another caller.
                drop(opened);
                return self.wait_in_line(deadline).await;
            }
        }
    }

    /// Whether the pool may open another connection (connections being opened count).
    fn has_room(&self) -> bool {
        self.pool.size() < self.pool.options().get_max_connections()
    }

    /// Waits for a connection another caller gives back. A full pool opens none, so a caller
    /// that gives up abandons nothing; had a task waited instead, it would take a connection
    /// nobody needs, ahead of the callers still waiting.
    async fn wait_in_line(&self, deadline: Instant) -> Acquired<DB> {
        tokio::time::timeout_at(deadline.into(), self.pool.acquire())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Queues the caller for the next connection opened, and starts an opening task if fewer
    /// than [`OPENING_AT_ONCE`] run (and fewer than there are callers waiting).
    fn ask_for_one(&self) -> oneshot::Receiver<Acquired<DB>> {
        let (tx, rx) = oneshot::channel();
        let mut opener = lock(&self.opener);
        opener.waiting.retain(|waiter| !waiter.is_closed());
        opener.waiting.push_back(tx);
        if opener.running < OPENING_AT_ONCE.min(opener.waiting.len()) {
            opener.running += 1;
            tokio::spawn(open_for_waiting(
                self.pool.clone(),
                Running(Some(Arc::clone(&self.opener))),
            ));
        }
        rx
    }
}

impl<DB: sqlx::Database> Drop for Lane<DB> {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut lock(&self.parked).idle);
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        // No runtime here (a worker thread's lanes go when the thread ends), and sqlx gives a
        // connection back from a task it spawns, which needs one: close them directly.
        for parked in idle {
            if self.pool.options().get_min_connections() == 0 {
                drop(parked.conn.detach());
            } else {
                // sqlx would spawn a task to open a replacement; the process is ending.
                std::mem::forget(parked.conn);
            }
        }
    }
}

/// Acquires connections (opening them when none is idle) and hands each to the caller that has
/// waited longest, until no caller waits.
async fn open_for_waiting<DB: sqlx::Database>(pool: sqlx::Pool<DB>, mut running: Running<DB>) {
    let Some(opener) = running.0.clone() else {
        return;
    };
    loop {
        let acquired = pool.acquire().await;
        let (unclaimed, done) = {
            let mut opener = lock(&opener);
            let unclaimed = opener.hand_over(acquired);
            let done = opener.waiting.is_empty();
            if done {
                // Decided under the lock, so a caller queued after this starts a new task.
                opener.running -= 1;
                running.0 = None;
            }
            (unclaimed, done)
        };
        if let Some(Err(error)) = &unclaimed {
            tracing::debug!(%error, "satchel-sql: opening a connection failed");
        }
        // A connection nobody waits for any more goes back to the pool.
        drop(unclaimed);
        if done {
            return;
        }
    }
}

impl<DB: sqlx::Database> Opener<DB> {
    /// Gives `acquired` to the longest-waiting caller still waiting; returns it when none is.
    fn hand_over(&mut self, mut acquired: Acquired<DB>) -> Option<Acquired<DB>> {
        while let Some(waiter) = self.waiting.pop_front() {
            match waiter.send(acquired) {
                Ok(()) => {
                    self.waiting.retain(|waiter| !waiter.is_closed());
                    return None;
                }
                Err(back) => acquired = back,
            }
        }
        Some(acquired)
    }
}

/// Counts an opening task as running until it ends, a panic included, so one that died does
/// not keep a place among the [`OPENING_AT_ONCE`].
struct Running<DB: sqlx::Database>(Option<Arc<Mutex<Opener<DB>>>>);

impl<DB: sqlx::Database> Drop for Running<DB> {
    fn drop(&mut self) {
        if let Some(opener) = self.0.take() {
            lock(&opener).running -= 1;
        }
    }
}

/// The lock is held only for queue operations that cannot leave the queue half changed, so a
/// poisoned one is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use satchel_core::testkit::run;
    use sqlx::Sqlite;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::{OPENING_AT_ONCE, Pool};

    fn one_connection_pool() -> Pool<Sqlite> {
        let pool = sqlx::pool::PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_lazy_with(SqliteConnectOptions::from_str("sqlite::memory:").unwrap());
        Pool::new(pool)
    }

    #[test]
    fn a_connection_given_back_is_parked_and_reused_without_sqlx() {
        run(async {
            let pool = one_connection_pool();
            // Read directly: `Pool::sqlx` would give the parked connections back.
            let sqlx_pool = pool.shared.pool.clone();
            let parked = || super::lock(&pool.shared.parked).idle.len();
            let soon = || Instant::now() + Duration::from_secs(5);
            let mut conn = pool.acquire_until(soon()).await.unwrap();
            sqlx::query("CREATE TABLE t (x)")
                .execute(&mut *conn)
                .await
                .unwrap();
            conn.give_back();
            // Parked here, not idle in sqlx's pool: sqlx never saw it back.
            assert_eq!(parked(), 1);
            assert_eq!(sqlx_pool.num_idle(), 0);
            assert_eq!(sqlx_pool.size(), 1);
            // Taken again from the park: the same connection, whose in-memory database (one
            // per connection) has the table.
            let mut conn = pool.acquire_until(soon()).await.unwrap();
            assert_eq!(parked(), 0);
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *conn)
                .await
                .unwrap();
            assert_eq!(sqlx_pool.size(), 1);
            // Dropped without `give_back` (a failure, a cancelled statement): back to sqlx.
            drop(conn);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(parked(), 0);
            assert_eq!(sqlx_pool.num_idle(), 1);
        });
    }

    #[test]
    fn a_connection_given_back_after_its_waiter_gave_up_is_parked_not_lost() {
        run(async {
            let pool = one_connection_pool();
            let conn = pool
                .acquire_until(Instant::now() + Duration::from_secs(5))
                .await
                .unwrap();
            let err = pool
                .acquire_until(Instant::now() + Duration::from_millis(50))
                .await
                .expect_err("the only connection is taken");
            assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
            conn.give_back();
            assert_eq!(super::lock(&pool.shared.parked).idle.len(), 1);
            pool.acquire_until(Instant::now() + Duration::from_millis(50))
                .await
                .expect("the parked connection");
        });
    }

    #[test]
    fn a_connection_given_back_goes_to_the_caller_waiting_for_one() {
        run(async {
            let pool = Arc::new(one_connection_pool());
            let conn = pool
                .acquire_until(Instant::now() + Duration::from_secs(5))
                .await
                .unwrap();
            let waiter = {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    pool.acquire_until(Instant::now() + Duration::from_secs(5))
                        .await
                        .map(drop)
                })
            };
            // Let the waiter queue up in sqlx's pool, which is full.
            tokio::time::sleep(Duration::from_millis(100)).await;
            conn.give_back();
            waiter
                .await
                .unwrap()
                .expect("the waiting caller gets the connection given back");
        });
    }

    #[test]
    fn connections_open_a_few_at_a_time_and_stay_when_their_callers_gave_up() {
        run(async {
            let connecting = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let (c, m) = (Arc::clone(&connecting), Arc::clone(&most));
            // Every connect takes 200 ms, four times as long as the callers wait.
            let pool = sqlx::pool::PoolOptions::<Sqlite>::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .after_connect(move |_, _| {
                    let (c, m) = (Arc::clone(&c), Arc::clone(&m));
                    Box::pin(async move {
                        m.fetch_max(c.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        c.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
                .connect_lazy_with(SqliteConnectOptions::from_str("sqlite::memory:").unwrap());
            let pool = Arc::new(Pool::new(pool));

            let deadline = Instant::now() + Duration::from_millis(50);
            let mut callers = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let pool = Arc::clone(&pool);
                callers.spawn(async move { pool.acquire_until(deadline).await });
            }
            while let Some(done) = callers.join_next().await {
                let err = done.unwrap().expect_err("no connection within 50 ms");
                assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
            }

            tokio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(most.load(Ordering::SeqCst), OPENING_AT_ONCE);
            assert_eq!(pool.sqlx().num_idle(), OPENING_AT_ONCE);
            let soon = Instant::now() + Duration::from_millis(50);
            pool.acquire_until(soon)
                .await
                .expect("a connection opened for a caller that gave up");
        });
    }
}
