//! The load generator: keep-alive HTTP/1.1 connections, each logged in once, then sending one
//! request after another for a fixed time (closed loop, like wrk).
//!
//! Written here rather than driving `wrk` because each connection must carry its own session:
//! wrk's Lua hooks see threads, not connections, so 64 connections would share two sessions.
//! The client keeps every cookie the server sets, as a browser does (`SESSION_TYPE=cookie` and
//! actix-session's cookie store send a new one on every change).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::targets::Workload;

/// A response as far as the benchmark cares.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// One keep-alive connection with its cookie jar.
pub(crate) struct Connection {
    stream: TcpStream,
    host: String,
    /// Bytes read and not yet consumed.
    buffer: Vec<u8>,
    /// Cookies in the order first set: (name, value).
    jar: Vec<(String, String)>,
    /// The request for the current workload, rebuilt only when the jar changes.
    request: Vec<u8>,
    request_path: &'static str,
    jar_changed: bool,
}

impl Connection {
    pub(crate) async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            host: address.to_string(),
            buffer: Vec::with_capacity(16 * 1024),
            jar: Vec::new(),
            request: Vec::new(),
            request_path: "",
            jar_changed: true,
        })
    }

    fn cookie_header(&self, out: &mut Vec<u8>) {
        if self.jar.is_empty() {
            return;
        }
        out.extend_from_slice(b"Cookie: ");
        for (i, (name, value)) in self.jar.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// `POST /login/` with a user name: the session every later request reuses.
    pub(crate) async fn login(&mut self, username: &str) -> anyhow::Result<Response> {
        let body = format!("username={username}");
        let mut request = format!(
            "POST /login/ HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        self.cookie_header(&mut request);
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body.as_bytes());
        self.stream.write_all(&request).await?;
        self.read_response(true).await
    }

    /// `GET path` with the session cookie; the body is kept when `keep_body`.
    pub(crate) async fn get(
        &mut self,
        path: &'static str,
        keep_body: bool,
    ) -> anyhow::Result<Response> {
        if self.jar_changed || self.request_path != path {
            let mut request =
                format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host).into_bytes();
            self.cookie_header(&mut request);
            request.extend_from_slice(b"\r\n");
            self.request = request;
            self.request_path = path;
            self.jar_changed = false;
        }
        self.stream.write_all(&self.request).await?;
        self.read_response(keep_body).await
    }

    async fn read_response(&mut self, keep_body: bool) -> anyhow::Result<Response> {
        loop {
            if let Some((consumed, response)) = self.parse(keep_body)? {
                self.buffer.drain(..consumed);
                return Ok(response);
            }
            if self.buffer.capacity() - self.buffer.len() < 4096 {
                self.buffer.reserve(16 * 1024);
            }
            let read = self.stream.read_buf(&mut self.buffer).await?;
            if read == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// A whole response at the start of the buffer, and how many bytes it took.
    fn parse(&mut self, keep_body: bool) -> anyhow::Result<Option<(usize, Response)>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        let head = match parsed.parse(&self.buffer)? {
            httparse::Status::Complete(head) => head,
            httparse::Status::Partial => return Ok(None),
        };
        let status = parsed.code.unwrap_or(0);
        let mut length = 0usize;
        let mut cookies: Vec<(String, Option<String>)> = Vec::new();
        for header in parsed.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(header.value)?.trim().parse()?;
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not expected from the servers under test");
            } else if header.name.eq_ignore_ascii_case("set-cookie") {
                cookies.push(set_cookie(std::str::from_utf8(header.value)?)?);
            } else if header.name.eq_ignore_ascii_case("connection")
                && header.value.eq_ignore_ascii_case(b"close")
            {
                bail!("the server asked to close the connection (status {status})");
            }
        }
        if self.buffer.len() < head + length {
            return Ok(None);
        }
        let body = if keep_body {
            self.buffer[head..head + length].to_vec()
        } else {
            Vec::new()
        };
        for (name, value) in cookies {
            self.store_cookie(name, value);
        }
        Ok(Some((head + length, Response { status, body })))
    }

    fn store_cookie(&mut self, name: String, value: Option<String>) {
        let position = self.jar.iter().position(|(n, _)| *n == name);
        match (position, value) {
            (Some(i), Some(value)) => {
                if self.jar[i].1 != value {
                    self.jar[i].1 = value;
                    self.jar_changed = true;
                }
            }
            (None, Some(value)) => {
                self.jar.push((name, value));
                self.jar_changed = true;
            }
            (Some(i), None) => {
                self.jar.remove(i);
                self.jar_changed = true;
            }
            (None, None) => {}
        }
    }
}

/// `name=value; attributes…` → the name and the value, or `None` for a deletion (empty value,
/// `Max-Age=0` or an `Expires` in the past, which every server here spells as 1970).
fn set_cookie(header: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut parts = header.split(';');
    let pair = parts.next().unwrap_or_default();
    let Some((name, value)) = pair.split_once('=') else {
        bail!("malformed Set-Cookie header");
    };
    let deleted = value.trim().is_empty()
        || parts.any(|attribute| {
            let attribute = attribute.trim().to_ascii_lowercase();
            attribute == "max-age=0"
                || (attribute.starts_with("expires=") && attribute.contains("1970"))
        });
    Ok((
        name.trim().to_owned(),
        (!deleted).then(|| value.trim().to_owned()),
    ))
}

/// What one cell (one target, one workload, one round) measured.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    /// Median and 99th percentile of the latency, in microseconds.
    pub(crate) p50_us: u32,
    pub(crate) p99_us: u32,
    /// The first error, to say what went wrong.
    pub(crate) first_error: Option<String>,
}

impl Measurement {
    pub(crate) fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

struct ConnectionResult {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Logs in on `connections` connections, then sends `workload` requests on each for
/// `warmup + duration`, counting those that complete during the last `duration`.
pub(crate) async fn measure(
    address: SocketAddr,
    workload: Workload,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let mut opened = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut connection = Connection::open(address).await?;
        let login = connection.login(&format!("user-{i}")).await?;
        ensure!(
            login.status < 400,
            "login answered {} on connection {i}",
            login.status
        );
        opened.push(connection);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let measure_until = measure_from + duration;
    let path = workload.path();
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut connection| {
            tokio::spawn(async move {
                let mut result = ConnectionResult {
                    latencies_us: Vec::with_capacity(
                        usize::try_from(duration.as_millis()).unwrap_or(0) * 4,
                    ),
                    errors: 0,
                    first_error: None,
                };
                loop {
                    let sent = Instant::now();
                    if sent >= measure_until {
                        break;
                    }
                    let outcome = connection.get(path, false).await;
                    let done = Instant::now();
                    let counted = done >= measure_from && done < measure_until;
                    match outcome {
                        Ok(response) if response.status < 400 => {
                            if counted {
                                let micros = done.duration_since(sent).as_micros();
                                result
                                    .latencies_us
                                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                            }
                        }
                        Ok(response) => {
                            result.errors += 1;
                            result
                                .first_error
                                .get_or_insert_with(|| format!("status {}", response.status));
                        }
                        Err(error) => {
                            // The connection is unusable; the others go on.
                            result.errors += 1;
                            result
                                .first_error
                                .get_or_insert_with(|| format!("{error:#}"));
                            break;
                        }
                    }
                }
                result
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let result = task.await.context("a client connection task panicked")?;
        latencies.extend_from_slice(&result.latencies_us);
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error;
        }
    }
    latencies.sort_unstable();
    let percentile = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((latencies.len() as f64) * p).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    Ok(Measurement {
        requests: latencies.len() as u64,
        errors,
        seconds: duration.as_secs_f64(),
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        first_error,
    })
}

/// Checks that a target keeps a session: after a login, `/read/` answers 200 with the user
/// name (for the session stores), and two `/rmw/` in a row count up.
pub(crate) async fn verify(
    address: SocketAddr,
    workloads: &[Workload],
    raw: bool,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(address).await?;
    let login = connection.login("verify-user").await?;
    ensure!(login.status < 400, "login answered {}", login.status);
    let read = connection.get(Workload::Read.path(), true).await?;
    ensure!(
        read.status == 200,
        "after login, GET /read/ answered {} (is the session cookie kept?)",
        read.status
    );
    ensure!(
        raw || String::from_utf8_lossy(&read.body).contains("verify-user"),
        "after login, GET /read/ did not find the user name in the session: {:?}",
        String::from_utf8_lossy(&read.body)
    );
    if workloads.contains(&Workload::ReadModifyWrite) {
        let first = connection
            .get(Workload::ReadModifyWrite.path(), true)
            .await?;
        let second = connection
            .get(Workload::ReadModifyWrite.path(), true)
            .await?;
        ensure!(
            first.status == 200 && second.status == 200,
            "GET /rmw/ answered {} then {}",
            first.status,
            second.status
        );
        if !raw {
            let count = |r: &Response| String::from_utf8_lossy(&r.body).trim().parse::<i64>().ok();
            ensure!(
                matches!((count(&first), count(&second)), (Some(a), Some(b)) if b == a + 1),
                "GET /rmw/ twice did not count up: {:?} then {:?}",
                String::from_utf8_lossy(&first.body),
                String::from_utf8_lossy(&second.body)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::set_cookie;

    #[test]
    fn set_cookie_gives_the_name_and_value_without_attributes() {
        let (name, value) =
            set_cookie("session=abc.def; Expires=Sat, 26 Dec 2026 10:00:00 GMT; HttpOnly; Path=/")
                .unwrap();
        assert_eq!(name, "session");
        assert_eq!(value.as_deref(), Some("abc.def"));
    }

    #[test]
    fn set_cookie_reads_removals_as_deletions() {
        assert_eq!(set_cookie("id=; Max-Age=0; Path=/").unwrap().1, None);
        assert_eq!(
            set_cookie("session=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0")
                .unwrap()
                .1,
            None
        );
    }

    #[test]
    fn set_cookie_refuses_a_header_without_a_pair() {
        assert!(set_cookie("garbage").is_err());
    }
}
