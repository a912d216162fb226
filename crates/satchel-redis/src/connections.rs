//! Long-lived multiplexed connections, reopened when they drop: one per thread that runs a
//! current-thread runtime (each actix-web worker runs one), and a few shared ones for
//! everything else.
//!
//! A multiplexed connection's driver task lives on the runtime that opened it. Opened in
//! `main`, every command from a worker would hop to the main thread and its reply hop back;
//! opened on the worker's own thread, a command never wakes another thread. On this 2-core
//! machine actix-session's `RedisSessionStore` built per worker served 1.40x the requests of
//! the same store built in `main` (benches/HISTORY.md), and the same held for these connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::sentinel::SentinelClient;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo,
    Pipeline, RedisError, RedisResult, ServerErrorKind,
};
use satchel_core::{BackendError, Operation, PerThread};

use crate::config::{ConnectOptions, RedisConfig};
use crate::error::{ConnectError, ConnectFailure};

pub(crate) const BACKEND: &str = "redis";

/// Opens connections for one [`RedisConfig`].
enum Factory {
    Standalone {
        client: Client,
        config: AsyncConnectionConfig,
    },
    Cluster {
        client: ClusterClient,
    },
    Sentinel {
        // redis-rs' SentinelClient caches its sentinel connections and needs `&mut`; a
        // reconnect is rare, so serializing them costs nothing on the hot path.
        client: tokio::sync::Mutex<SentinelClient>,
        config: AsyncConnectionConfig,
    },
}

impl Factory {
    fn new(config: &RedisConfig, options: &ConnectOptions) -> RedisResult<Factory> {
        // No response timeout inside redis-rs (its default is 500 ms): `Connections::query`
        // bounds each command by the operation timeout itself, including the wait to enter the
        // connection's pipeline, and a second timer would be registered and cancelled on every
        // command for nothing (the native profile in benches/HISTORY.md shows both).
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None);
        Ok(match config {
            RedisConfig::Standalone(c) => {
                let info = match (&c.url, &c.connection) {
                    (Some(url), _) => url.as_str().into_connection_info()?,
                    (None, Some(info)) => redis::ConnectionInfo::from(info.clone()),
                    (None, None) => crate::config::DEFAULT_URL.into_connection_info()?,
                };
                Factory::Standalone {
                    client: Client::open(info)?,
                    config: connection_config,
                }
            }
            RedisConfig::Cluster(c) => {
                let mut builder =
                    redis::cluster::ClusterClientBuilder::new(node_infos(&c.urls, &c.connections)?)
                        .connection_timeout(options.connect_timeout)
                        .response_timeout(options.operation_timeout);
                if c.read_from_replicas {
                    builder = builder
                        .read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy);
                }
                Factory::Cluster {
                    client: builder.build()?,
                }
            }
            RedisConfig::Sentinel(c) => Factory::Sentinel {
                client: tokio::sync::Mutex::new(SentinelClient::build(
                    node_infos(&c.urls, &c.connections)?,
                    c.master_name.clone(),
                    c.node_connection_info.clone().map(Into::into),
                    c.server_type.into(),
                )?),
                config: connection_config,
            },
        })
    }

    async fn connect(&self) -> RedisResult<Conn> {
        Ok(match self {
            Factory::Standalone { client, config } => Conn::Single(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            ),
            Factory::Cluster { client } => Conn::Cluster(client.get_async_connection().await?),
            Factory::Sentinel { client, config } => Conn::Single(
                // Each call asks the sentinels for the current master, so a reconnect after a
                // failover lands on the new one.
                client
                    .lock()
                    .await
                    .get_async_connection_with_config(config)
                    .await?,
            ),
        })
    }
}

fn node_infos(
    urls: &Option<Vec<String>>,
    infos: &Option<Vec<deadpool_redis::ConnectionInfo>>,
) -> RedisResult<Vec<redis::ConnectionInfo>> {
    let mut nodes = Vec::new();
    for url in urls.iter().flatten() {
        nodes.push(url.as_str().into_connection_info()?);
    }
    nodes.extend(
        infos
            .iter()
            .flatten()
            .cloned()
            .map(redis::ConnectionInfo::from),
    );
    if nodes.is_empty() {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "no Redis node addresses given",
        )));
    }
    Ok(nodes)
}

/// One open connection. Both kinds are cheap handles onto a driver task, so cloning one per
/// command is a reference-count bump, and any number of commands can be in flight on it.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: FromRedisValue>(&mut self, request: Request<'_>) -> RedisResult<T> {
        match (self, request) {
            (Conn::Single(c), Request::Command(cmd)) => cmd.query_async(c).await,
            (Conn::Cluster(c), Request::Command(cmd)) => cmd.query_async(c).await,
            (Conn::Single(c), Request::Pipeline(pipe)) => pipe.query_async(c).await,
            (Conn::Cluster(c), Request::Pipeline(pipe)) => pipe.query_async(c).await,
        }
    }
}

/// What [`Connections::query`] sends in one write: a single command, or a pipeline whose
/// replies come back together (on a cluster, all of a pipeline's keys must share a slot).
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    Command(&'a Cmd),
    Pipeline(&'a Pipeline),
}

impl<'a> From<&'a Cmd> for Request<'a> {
    fn from(cmd: &'a Cmd) -> Request<'a> {
        Request::Command(cmd)
    }
}

impl<'a> From<&'a Pipeline> for Request<'a> {
    fn from(pipe: &'a Pipeline) -> Request<'a> {
        Request::Pipeline(pipe)
    }
}

struct SlotState {
    conn: Option<Conn>,
    /// Bumped whenever `conn` is replaced or dropped, so a request only discards the
    /// connection it actually saw fail, and requests queued behind one reconnect share its
    /// outcome instead of each opening a connection of their own.
    generation: u64,
    /// Why the latest reconnect failed, handed to the requests that waited for it.
    last_error: Option<ConnectError>,
}

struct Slot {
    state: RwLock<SlotState>,
    reconnecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn new(conn: Option<Conn>) -> Slot {
        Slot {
            state: RwLock::new(SlotState {
                conn,
                generation: 0,
                last_error: None,
            }),
            reconnecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> (Option<Conn>, u64) {
        // A panic cannot leave the state half-updated (each write is a few assignments), so a
        // poisoned lock is still consistent.
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        (state.conn.clone(), state.generation)
    }

    fn discard(&self, generation: u64) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.generation == generation {
            state.conn = None;
            state.generation += 1;
            state.last_error = None;
        }
    }
}

/// The connections of one backend.
pub(crate) struct Connections {
    factory: Factory,
    /// Used from multi-thread runtimes (where tasks move between threads anyway) and to
    /// check the server at start-up.
    slots: Box<[Arc<Slot>]>,
    next: AtomicUsize,
    /// Each actix worker thread's own connection.
    per_thread: PerThread<Arc<Slot>>,
    options: ConnectOptions,
    /// Where the connections go, password redacted, for errors.
    address: String,
}

impl Connections {
    /// Opens `options.connections` connections; all within `options.connect_timeout`.
    pub(crate) async fn open(
        config: &RedisConfig,
        options: ConnectOptions,
    ) -> Result<Connections, ConnectError> {
        let address = config.describe();
        let fail = |failure| ConnectError::new(address.clone(), failure);
        let factory = Factory::new(config, &options).map_err(|e| fail(ConnectFailure::Redis(e)))?;
        let count = options.connections.max(1);
        let opened = tokio::time::timeout(options.connect_timeout, async {
            let mut conns = Vec::with_capacity(count);
            for _ in 0..count {
                conns.push(factory.connect().await?);
            }
            Ok::<_, RedisError>(conns)
        })
        .await;
        let conns = match opened {
            Ok(Ok(conns)) => conns,
            Ok(Err(e)) => return Err(fail(connect_failure(e, options.connect_timeout))),
            Err(_) => return Err(fail(ConnectFailure::TimedOut(options.connect_timeout))),
        };
        Ok(Connections {
            factory,
            slots: conns
                .into_iter()
                .map(|c| Arc::new(Slot::new(Some(c))))
                .collect(),
            next: AtomicUsize::new(0),
            per_thread: PerThread::new(),
            options,
            address,
        })
    }

    pub(crate) fn options(&self) -> &ConnectOptions {
        &self.options
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The connection slot for a command sent from this thread: its own on a current-thread
    /// runtime, else the next shared one (round robin).
    fn slot(&self) -> Arc<Slot> {
        self.per_thread
            .get_or_init(|| Arc::new(Slot::new(None)))
            .unwrap_or_else(|| {
                let next = self.next.fetch_add(1, Ordering::Relaxed);
                Arc::clone(&self.slots[next % self.slots.len()])
            })
    }

    /// Sends one command or pipeline on this thread's connection (see [`Connections::slot`])
    /// and returns its reply. A thread's connection is opened by its first command.
    ///
    /// A connection that turns out to be dropped (server restarted, network reset, or a
    /// demoted Sentinel master answering `READONLY`) is reopened and the command sent once
    /// more. A command that times out is not retried, since the server may be merely slow,
    /// but its connection is replaced for the next request, in case it was silently cut.
    pub(crate) async fn query<'a, T: FromRedisValue>(
        &self,
        op: Operation,
        request: impl Into<Request<'a>>,
    ) -> Result<T, BackendError> {
        let request = request.into();
        let slot = &*self.slot();
        let mut retried = false;
        loop {
            let (mut conn, generation) = match slot.current() {
                (Some(conn), generation) => (conn, generation),
                // Boxed: opening a connection (Cluster, Sentinel) is a future of several KB,
                // which would otherwise be part of every command's future and be copied with
                // it on every request (actix-session boxes the whole request's future).
                (None, generation) => Box::pin(self.reconnect(slot, generation, op)).await?,
            };
            let error =
                match tokio::time::timeout(self.options.operation_timeout, conn.query(request))
                    .await
                {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(e)) if !e.is_timeout() => e,
                    Ok(Err(_)) | Err(_) => {
                        slot.discard(generation);
                        return Err(self.timeout(op, self.options.operation_timeout));
                    }
                };
            if !needs_new_connection(&error) {
                return Err(BackendError::driver(BACKEND, op, error));
            }
            slot.discard(generation);
            if retried {
                return Err(BackendError::driver(BACKEND, op, error));
            }
            retried = true;
            tracing::debug!(backend = BACKEND, operation = %op, error = %error, "redis connection lost; reconnecting and retrying once");
        }
    }

    /// Replaces the slot's connection unless another request already did since `seen`.
    async fn reconnect(
        &self,
        slot: &Slot,
        seen: u64,
        op: Operation,
    ) -> Result<(Conn, u64), BackendError> {
        let _one_at_a_time = slot.reconnecting.lock().await;
        {
            let state = slot.state.read().unwrap_or_else(PoisonError::into_inner);
            if state.generation != seen {
                if let Some(conn) = &state.conn {
                    return Ok((conn.clone(), state.generation));
                }
                if let Some(error) = &state.last_error {
                    return Err(self.connect_error(op, error.clone()));
                }
            }
        }
        let connect_timeout = self.options.connect_timeout;
        let outcome = tokio::time::timeout(connect_timeout, self.factory.connect()).await;
        let mut state = slot.state.write().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        let failure = match outcome {
            Ok(Ok(conn)) => {
                tracing::debug!(backend = BACKEND, operation = %op, "redis connection reopened");
                state.conn = Some(conn.clone());
                state.last_error = None;
                return Ok((conn, state.generation));
            }
            Ok(Err(e)) => connect_failure(e, connect_timeout),
            Err(_) => ConnectFailure::TimedOut(connect_timeout),
        };
        let error = ConnectError::new(self.address.clone(), failure);
        // Warn once per outage, not once per request while Redis stays down.
        if state.last_error.is_none() {
            tracing::warn!(backend = BACKEND, operation = %op, error = %error, "redis reconnect failed");
        } else {
            tracing::debug!(backend = BACKEND, operation = %op, error = %error, "redis reconnect failed again");
        }
        state.conn = None;
        state.last_error = Some(error.clone());
        Err(self.connect_error(op, error))
    }

    /// A timed-out connect is a [`BackendError::Timeout`], like a timed-out command; anything
    /// else carries the [`ConnectError`], which names the address.
    fn connect_error(&self, op: Operation, error: ConnectError) -> BackendError {
        if error.is_timeout() {
            self.timeout(op, self.options.connect_timeout)
        } else {
            BackendError::driver(BACKEND, op, error)
        }
    }

    fn timeout(&self, operation: Operation, timeout: Duration) -> BackendError {
        BackendError::Timeout {
            backend: BACKEND,
            operation,
            timeout,
        }
    }
}

/// redis-rs reports its own connect timeout as an I/O error; name it for what it is.
fn connect_failure(error: RedisError, timeout: Duration) -> ConnectFailure {
    if error.is_timeout() {
        ConnectFailure::TimedOut(timeout)
    } else {
        ConnectFailure::Redis(error)
    }
}

/// Errors after which this connection is of no further use, but a new one may well work.
fn needs_new_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        // A Sentinel master demoted to replica refuses writes; the sentinels know the new one.
        || error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}
