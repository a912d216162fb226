//! A loopback TCP proxy for fault tests: forwards every connection to a real server and can be
//! told, at any moment, to delay or stall the server's replies (requests always go through).
//!
//! Stalled replies are held, not dropped, and delivered when the proxy resumes: a client that
//! gave up on a request (its timeout fired) must not read that late reply as the answer to a
//! later one, which is exactly the bug this lets a test catch.
//!
//! ```ignore
//! let proxy = SlowProxy::start("127.0.0.1:11211").await?;
//! // point the client at proxy.addr() ...
//! proxy.stall();   // replies stop
//! proxy.resume();  // replies flow again, held ones first
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with the server's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pass them on at once.
    Forward,
    /// Hold every chunk this long before passing it on.
    Delay(Duration),
    /// Hold them until the mode changes.
    Stall,
}

/// A proxy on `127.0.0.1:<random port>`; stops (closing every connection) when dropped.
pub(crate) struct SlowProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`), in the
    /// current tokio runtime.
    pub(crate) async fn start(target: &str) -> std::io::Result<SlowProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(accept_loop(listener, target.to_owned(), mode.clone()));
        Ok(SlowProxy { addr, mode, accept })
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what happens to replies, on every connection, from now on.
    pub(crate) fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Holds every reply until [`resume`](Self::resume).
    pub(crate) fn stall(&self) {
        self.set(Mode::Stall);
    }

    /// Delays every reply chunk by `delay`.
    pub(crate) fn delay(&self, delay: Duration) {
        self.set(Mode::Delay(delay));
    }

    /// Passes replies on at once again, the held ones first.
    pub(crate) fn resume(&self) {
        self.set(Mode::Forward);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks; aborting it drops (and aborts) them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: String, mode: watch::Sender<Mode>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        let mode = mode.subscribe();
        connections.spawn(async move {
            // A server that refuses the connection closes the client's side too, as a dead
            // server would.
            if let Ok(server) = TcpStream::connect(&target).await {
                relay(client, server, mode).await;
            }
        });
    }
}

/// Relays one connection until either side closes it.
async fn relay(client: TcpStream, server: TcpStream, mode: watch::Receiver<Mode>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    tokio::select! {
        _ = requests(client_read, &mut server_write) => {}
        _ = replies(server_read, &mut client_write, mode) => {}
    }
    let _ = server_write.shutdown().await;
    let _ = client_write.shutdown().await;
}

async fn requests(mut from: OwnedReadHalf, to: &mut OwnedWriteHalf) -> std::io::Result<()> {
    tokio::io::copy(&mut from, to).await.map(drop)
}

async fn replies(
    mut from: OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        gate(&mut mode).await?;
        to.write_all(&buf[..n]).await?;
    }
}

/// Waits as long as the current mode says before a reply chunk may pass.
async fn gate(mode: &mut watch::Receiver<Mode>) -> std::io::Result<()> {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Forward => return Ok(()),
            Mode::Delay(delay) => {
                tokio::time::sleep(delay).await;
                return Ok(());
            }
            Mode::Stall => {
                if mode.changed().await.is_err() {
                    // The proxy is gone: close the connection.
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
            }
        }
    }
}
