//! Helpers shared by the memcached tests: configs, dedicated throwaway servers, raw commands.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use satchel_core::SessionConfig;
use satchel_memcached::{ClientMode, MemcachedBackend};

/// The shared test server (`scripts/services.sh` starts it with `-I 2m`).
pub(crate) fn url() -> String {
    std::env::var("SATCHEL_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".into())
}

/// The second shared test server.
pub(crate) fn url2() -> String {
    std::env::var("SATCHEL_MEMCACHED2_URL").unwrap_or_else(|_| "127.0.0.1:11212".into())
}

/// A config for `servers`, with short timeouts so fault tests finish quickly.
pub(crate) fn config(servers: &str) -> SessionConfig {
    let servers = servers.to_owned();
    SessionConfig::from_lookup(move |name| match name {
        "SESSION_TYPE" => Some("memcached".into()),
        "SESSION_MEMCACHED" => Some(servers.clone()),
        "SATCHEL_CONNECT_TIMEOUT" => Some("1".into()),
        "SATCHEL_OPERATION_TIMEOUT" => Some("1".into()),
        "SATCHEL_POOL_SIZE" => Some("8".into()),
        _ => None,
    })
    .expect("a valid test config")
}

/// A backend on `servers`, failing the test if they are unreachable.
pub(crate) async fn connect(servers: &str, mode: ClientMode) -> MemcachedBackend {
    MemcachedBackend::connect_with(&config(servers), mode)
        .await
        .unwrap_or_else(|e| panic!("memcached at {servers} must be running for this test: {e}"))
}

/// `host:port` of a URL such as `memcache://127.0.0.1:11211`.
pub(crate) fn addr(url: &str) -> String {
    satchel_memcached::config::parse_servers(url)
        .unwrap()
        .remove(0)
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A memcached this test starts on a spare loopback port and kills when dropped.
pub(crate) struct Server {
    pub(crate) port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// Starts `memcached -l 127.0.0.1 -p <free port> <args>` and waits until it answers.
    pub(crate) fn start(args: &[&str]) -> Server {
        let mut server = Server {
            port: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port (after [`stop`](Self::stop)).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let port = self.port.to_string();
        // `-u root` only matters when running as root, where memcached requires it.
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &port, "-U", "0", "-u", "root"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("memcached must be installed (apt-get install memcached)");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(self.addr()).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("memcached on port {port} exited: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "memcached on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (only this test's own child process).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to this test's own child process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("server running")
            .id()
            .to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped process must be resumed to die promptly on some systems.
            let _ = self.child.as_ref().map(|c| {
                Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status()
            });
        }
        self.stop();
    }
}

/// Sends one text-protocol command and returns the answer up to and including `END`, `STORED`,
/// an error line, or whatever arrived before a short pause.
pub(crate) fn raw(addr: &str, command: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stream.write_all(command.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if text.ends_with("END\r\n") || text.ends_with("ERROR\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// One statistic from `stats`.
pub(crate) fn stat(addr: &str, name: &str) -> u64 {
    let answer = raw(addr, "stats\r\n");
    answer
        .lines()
        .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in stats: {answer}"))
}
