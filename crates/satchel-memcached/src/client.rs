//! The two ways of driving the `memcache` client off the actix worker threads.

use std::sync::Arc;
use std::time::Duration;

use memcache::exp::{AsyncMetaClient, MetaClient, MetaClientBuilder, Operation};
use satchel_core::PerThread;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::Failure;
use crate::wire::DEFAULT_ITEM_SIZE_MAX;

/// How [`MemcachedBackend`](crate::MemcachedBackend) drives the `memcache` client. Both speak
/// the same meta protocol over the same kind of pool, so they differ only in where the socket
/// I/O runs, and can be measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientMode {
    /// `memcache::exp::AsyncMetaClient`: tokio sockets on the caller's runtime, no extra
    /// threads. The default: a session request is a few hundred bytes and one round trip, so
    /// a thread hop per operation would cost more than the I/O itself.
    #[default]
    Async,
    /// `memcache::exp::MetaClient`, the blocking client, run on tokio's blocking thread pool
    /// (`spawn_blocking`) so it never blocks an actix worker.
    Blocking,
}

/// The connected client, in either mode; clones share the pools.
#[derive(Clone)]
pub(crate) enum Client {
    Async(Arc<AsyncClients>),
    Blocking(MetaClient),
}

/// The async clients of one backend: one per actix worker thread ([`PerThread`] says why), and
/// a shared one for everything else.
pub(crate) struct AsyncClients {
    builder: MetaClientBuilder,
    servers: Vec<String>,
    shared: AsyncMetaClient,
    per_thread: PerThread<AsyncMetaClient>,
}

impl AsyncClients {
    async fn connect(
        builder: MetaClientBuilder,
        servers: &[String],
    ) -> Result<AsyncClients, Failure> {
        let shared = builder.clone().connect_multiple_async(servers).await?;
        Ok(AsyncClients {
            builder,
            servers: servers.to_vec(),
            shared,
            per_thread: PerThread::new(),
        })
    }

    /// The client for an operation started on this thread: its own on a current-thread
    /// runtime, built by its first operation (no dialing: connections open lazily), else the
    /// shared one.
    async fn client(&self) -> Result<AsyncMetaClient, Failure> {
        if !satchel_core::per_thread::on_current_thread_runtime() {
            return Ok(self.shared.clone());
        }
        if let Some(client) = self.per_thread.get() {
            return Ok(client);
        }
        // Boxed, as it runs once per thread: resolving the addresses is a large future that
        // would otherwise be part of every operation's future.
        let client = Box::pin(self.builder.clone().connect_multiple_async(&self.servers)).await?;
        Ok(self.per_thread.insert_if_absent(client))
    }
}

/// The pool and timeout settings both modes share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) connections_per_server: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
}

impl Client {
    /// Builds the client. Connections are dialed lazily; the caller checks reachability.
    pub(crate) async fn connect(
        mode: ClientMode,
        servers: &[String],
        settings: PoolSettings,
    ) -> Result<Client, Failure> {
        let builder = MetaClient::builder()
            .connect_timeout(Some(settings.connect_timeout))
            .io_timeout(Some(settings.operation_timeout))
            .max_idle(settings.connections_per_server)
            .max_connections(Some(settings.connections_per_server));
        match mode {
            ClientMode::Async => Ok(Client::Async(Arc::new(
                AsyncClients::connect(builder, servers).await?,
            ))),
            ClientMode::Blocking => {
                // The blocking client resolves host names as it is built.
                let servers = servers.to_vec();
                let client =
                    tokio::task::spawn_blocking(move || builder.connect_multiple(&servers))
                        .await
                        .map_err(Failure::Task)??;
                Ok(Client::Blocking(client))
            }
        }
    }

    /// Runs one meta-protocol operation: one round trip to the key's server.
    pub(crate) async fn run<O>(&self, operation: O) -> Result<O::Output, Failure>
    where
        O: Operation + Send + 'static,
        O::Output: Send + 'static,
    {
        match self {
            Client::Async(clients) => Ok(clients.client().await?.run(operation).await?),
            Client::Blocking(client) => {
                let client = client.clone();
                Ok(tokio::task::spawn_blocking(move || client.run(operation))
                    .await
                    .map_err(Failure::Task)??)
            }
        }
    }
}

/// Reads a server's `item_size_max` from `stats settings`, which also proves it is up.
///
/// Written by hand because neither `memcache` client exposes `stats settings`: one line out,
/// `STAT name value` lines back until `END`.
pub(crate) async fn item_size_max(
    server: &str,
    connect_timeout: Duration,
    operation_timeout: Duration,
) -> std::io::Result<usize> {
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(server))
        .await
        .map_err(|_| timed_out("connecting", connect_timeout))??;
    let exchange = async {
        let mut stream = BufReader::new(stream);
        stream.write_all(b"stats settings\r\n").await?;
        let mut size = None;
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed during `stats settings`",
                ));
            }
            let line = line.trim_end();
            if line == "END" {
                return Ok(size.unwrap_or(DEFAULT_ITEM_SIZE_MAX));
            }
            let Some(stat) = line.strip_prefix("STAT ") else {
                let head: String = line.chars().take(60).collect();
                return Err(std::io::Error::other(format!(
                    "`stats settings` was answered with {head:?}: is this a memcached server?"
                )));
            };
            if let Some(value) = stat.strip_prefix("item_size_max ") {
                size = value.parse().ok();
            }
        }
    };
    tokio::time::timeout(operation_timeout, exchange)
        .await
        .map_err(|_| timed_out("reading `stats settings`", operation_timeout))?
}

fn timed_out(what: &str, after: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out {what} after {after:?}"),
    )
}
