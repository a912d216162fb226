//! Test helpers (feature `testing`): a private `redis-server` a test can stop, restart and
//! pause, and a counter of the commands a server ran (`INFO commandstats`).
//!
//! Command counts are server-wide, so count on a private [`RedisServer`], where nothing else
//! runs commands, rather than on a shared one.
//!
//! ```no_run
//! use std::time::Duration;
//! use satchel_core::Backend;
//! use satchel_redis::testing::{CommandCounter, RedisServer};
//! use satchel_redis::{ConnectOptions, RedisBackend};
//!
//! # async fn demo() {
//! let server = RedisServer::start();
//! let backend = RedisBackend::from_url(&server.url(), ConnectOptions::default()).await.unwrap();
//! let mut counter = CommandCounter::new(&server.url()).await;
//! counter.reset().await;
//! backend.load("session:x").await.unwrap();
//! assert_eq!(counter.total().await, 1);
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deadpool_redis::redis;

/// A `redis-server` of its own on a free loopback port, killed when dropped.
///
/// The binary is `$SATCHEL_REDIS_SERVER`, else `redis-server` from `PATH` (or `/usr/bin`,
/// `/usr/sbin`, `/usr/local/bin`). It keeps nothing on disk unless started with
/// [`start_persistent`](Self::start_persistent).
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    unix_socket: Option<PathBuf>,
    tls: Option<TlsFiles>,
    paused: bool,
    persistent: bool,
}

/// PEM files for a TLS server: its certificate and key, and the CA that signed them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA certificate (PEM) clients must trust.
    pub ca: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        RedisServer::start_inner(false, None)
    }

    /// Like [`start`](Self::start), also listening on a unix socket in a scratch directory.
    pub fn start_with_unix_socket() -> RedisServer {
        RedisServer::start_inner(true, None)
    }

    /// Like [`start`](Self::start), with an append-only file synced on every write, so data
    /// written before [`stop`](Self::stop) is there after [`restart`](Self::restart).
    pub fn start_persistent() -> RedisServer {
        let mut server = RedisServer::start_inner(false, None);
        server.persistent = true;
        server.restart();
        server
    }

    /// A server that speaks only TLS (no client certificates asked), at
    /// `rediss://127.0.0.1:<port>`. Needs a `redis-server` built with TLS (Debian's is).
    pub fn start_tls(files: TlsFiles) -> RedisServer {
        RedisServer::start_inner(false, Some(files))
    }

    fn start_inner(with_socket: bool, tls: Option<TlsFiles>) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("satchel-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory for redis-server");
        let unix_socket = with_socket.then(|| dir.join("redis.sock"));
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            unix_socket,
            tls,
            paused: false,
            persistent: false,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The unix socket it listens on, if started with one.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        self.unix_socket.as_deref()
    }

    /// The port it listens on (still reserved for it while stopped).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                self.signal(&child, "CONT");
                self.paused = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(redis_server_binary());
        if let Some(socket) = &self.unix_socket {
            command
                .arg("--unixsocket")
                .arg(socket)
                .args(["--unixsocketperm", "700"]);
        }
        match &self.tls {
            Some(tls) => {
                command.args(["--port", "0", "--tls-port", &self.port.to_string()]);
                command.arg("--tls-cert-file").arg(&tls.cert);
                command.arg("--tls-key-file").arg(&tls.key);
                command.arg("--tls-ca-cert-file").arg(&tls.ca);
                command.args(["--tls-auth-clients", "no"]);
            }
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (install the redis-server package, or set SATCHEL_REDIS_SERVER)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(socket) = &self.unix_socket {
            while !socket.exists() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not create {}",
                    socket.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            self.signal(child, "STOP");
            self.paused = true;
        }
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            self.signal(child, "CONT");
            self.paused = false;
        }
    }

    fn signal(&self, child: &Child, signal: &str) {
        // `kill(1)` rather than libc: this crate forbids unsafe code.
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {} failed", child.id());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a free loopback port");
    listener
        .local_addr()
        .expect("the listener's address")
        .port()
}

fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SATCHEL_REDIS_SERVER") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// Counts the commands a Redis server ran, from `INFO commandstats`, over a connection of its
/// own. Its own `INFO` and `CONFIG RESETSTAT` calls are left out of the counts.
pub struct CommandCounter {
    conn: redis::aio::MultiplexedConnection,
}

impl std::fmt::Debug for CommandCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandCounter").finish_non_exhaustive()
    }
}

impl CommandCounter {
    /// Connects to the server at `url` (a plain `redis://` URL).
    pub async fn new(url: &str) -> CommandCounter {
        let client = redis::Client::open(url).expect("a valid redis URL");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the command counter connects");
        CommandCounter { conn }
    }

    /// Zeroes the server's counters (`CONFIG RESETSTAT`).
    pub async fn reset(&mut self) {
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut self.conn)
            .await
            .expect("CONFIG RESETSTAT");
    }

    /// Calls per command since the last [`reset`](Self::reset), by lower-case name
    /// (`"get"`, `"pttl"`, `"set"`; subcommands as `"client|setinfo"`).
    pub async fn counts(&mut self) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn)
            .await
            .expect("INFO commandstats");
        parse_commandstats(&info)
    }

    /// All calls since the last [`reset`](Self::reset).
    pub async fn total(&mut self) -> u64 {
        self.counts().await.values().sum()
    }
}

/// Parses `cmdstat_get:calls=3,usec=…` lines, leaving out the counter's own commands.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .filter(|(name, _)| !(name == "info" || name == "config" || name.starts_with("config|")))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn commandstats_are_parsed_without_the_counters_own_commands() {
        let info = "# Commandstats\r\ncmdstat_get:calls=2,usec=5,usec_per_call=2.5,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_info:calls=1,usec=9\r\ncmdstat_config|resetstat:calls=1,usec=1\r\ncmdstat_getex:calls=1,usec=1\r\n";
        let counts = super::parse_commandstats(info);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("get".into(), 2), ("getex".into(), 1)]
        );
    }
}
