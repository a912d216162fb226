//! A loopback TCP proxy for fault tests: forwards every connection to a real server and can be
//! told, at any moment, to delay or stall the server's replies (requests always go through), or
//! to go down and come back up as a stopped and restarted server would.
//!
//! Stalled replies are held, not dropped, and delivered when the proxy resumes: a client that
//! gave up on a request (its timeout fired) must not read that late reply as the answer to a
//! later one, which is exactly the bug this lets a test catch.
//!
//! Going down closes the listening port and every open connection, so clients see what a
//! stopped server gives them (refused connects, reset connections) without the test stopping
//! a server that other tests share.
//!
//! ```ignore
//! let mut proxy = SlowProxy::start("127.0.0.1:11211").await?;
//! // point the client at proxy.addr() (see `via`) ...
//! proxy.stall();       // replies stop
//! proxy.resume();      // replies flow again, held ones first
//! proxy.down().await;  // the "server" is stopped
//! proxy.up().await?;   // and back, on the same port
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
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
    target: String,
    mode: watch::Sender<Mode>,
    /// The accept task and the signal that shuts it down; `None` while down.
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl SlowProxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`), in the
    /// current tokio runtime.
    pub(crate) async fn start(target: &str) -> std::io::Result<SlowProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Forward);
        let mut proxy = SlowProxy {
            addr,
            target: target.to_owned(),
            mode,
            running: None,
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel();
        let accept = tokio::spawn(accept_loop(
            listener,
            self.target.clone(),
            self.mode.clone(),
            stopped,
        ));
        self.running = Some((stop, accept));
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

    /// Stops as a server does: once this returns, the port refuses connections and every
    /// connection through the proxy is closed (replies held by a stall are lost). The mode is
    /// kept for when it comes [`up`](Self::up) again.
    pub(crate) async fn down(&mut self) {
        if let Some((stop, accept)) = self.running.take() {
            let _ = stop.send(());
            let _ = accept.await;
        }
    }

    /// Listens again on the same port, as a restarted server does (nothing if already up).
    pub(crate) async fn up(&mut self) -> std::io::Result<()> {
        if self.running.is_none() {
            // tokio sets SO_REUSEADDR, so the port's closed connections do not block the bind.
            let listener = TcpListener::bind(self.addr).await?;
            self.serve(listener);
        }
        Ok(())
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks; aborting it drops (and aborts) them all.
        if let Some((_, accept)) = &self.running {
            accept.abort();
        }
    }
}

/// `url` with its `host:port` replaced by `addr`, to send a client through the proxy.
pub(crate) fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map(|(userinfo, _)| format!("{userinfo}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// `host:port` of `url` (a single host), with `default_port` when it names none: the address
/// the proxy forwards to.
pub(crate) fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    mode: watch::Sender<Mode>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => {
                // Aborts every connection task and waits until each has closed its sockets.
                connections.shutdown().await;
                return;
            }
        };
        let Ok((client, _)) = accepted else {
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
