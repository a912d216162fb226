//! Sessions saved before a backend restart are there after it, through the same running app,
//! which reconnects by itself: Redis with persistence (an append-only file), and PostgreSQL.
//!
//! Each server is the test's own (a free loopback port, a scratch directory removed at the end),
//! so stopping it disturbs no other test. While it is down every request fails cleanly with a
//! 5xx; once it is back, after a few retries while the pool reconnects, 64 concurrent reads all
//! return the stored session. `SATCHEL_SKIP_REDIS=1` / `SATCHEL_SKIP_POSTGRES=1` skip; missing
//! server binaries fail the test (`scripts/services.sh up` installs them).
//!
//! No wall-clock assertion: a 15 s bound per request only turns a hang into a failure.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpResponse, test, web};
use futures_util::future::join_all;
use satchel::{Satchel, SessionConfig};
use satchel_core::testkit::skipped;
use satchel_redis::testing::RedisServer;

/// Turns a hang into a failure; far above the operation timeout.
const HANG: Duration = Duration::from_secs(15);

async fn login(session: Session) -> actix_web::Result<HttpResponse> {
    session.insert("username", "alice")?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

/// A server the scenario stops and starts again.
trait Restartable {
    /// Stops the server; returns once it is down.
    fn stop(&mut self);
    /// Starts it again on the same port and data; returns once it accepts connections.
    fn start(&mut self);
}

impl Restartable for RedisServer {
    fn stop(&mut self) {
        RedisServer::stop(self);
    }

    fn start(&mut self) {
        self.restart();
    }
}

/// The app for `settings`, read the way an app reads its config, with 2 s timeouts.
async fn satchel(settings: &[(&str, String)]) -> Satchel {
    let settings = settings.to_vec();
    let config = SessionConfig::from_lookup(move |name| {
        settings
            .iter()
            .find(|(setting, _)| *setting == name)
            .map(|(_, value)| value.clone())
            .or_else(|| match name {
                "SATCHEL_OPERATION_TIMEOUT" | "SATCHEL_CONNECT_TIMEOUT" => Some("2".into()),
                _ => None,
            })
    })
    .expect("a valid test config");
    Satchel::from_config(config)
        .await
        .unwrap_or_else(|e| panic!("the test's own server must be reachable: {e}"))
}

/// The scenario: log in, stop the server (every request fails with a 5xx), start it again; the
/// same app reads the session back once its pool has reconnected, and so do 64 concurrent reads.
async fn sessions_survive_a_restart(satchel: &Satchel, server: &mut impl Restartable) {
    let app = test::init_service(
        App::new()
            .wrap(satchel.middleware())
            .route("/login", web::post().to(login))
            .route("/whoami", web::get().to(whoami)),
    )
    .await;
    let app = &app;
    let response =
        test::call_service(app, test::TestRequest::post().uri("/login").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .expect("login sets the session cookie")
        .to_str()
        .unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let cookie = cookie.as_str();
    let read = || async move {
        let request = test::TestRequest::get()
            .uri("/whoami")
            .insert_header((header::COOKIE, cookie))
            .to_request();
        let outcome = tokio::time::timeout(HANG, test::try_call_service(app, request))
            .await
            .expect("a request hung instead of failing within the operation timeout");
        match outcome {
            Ok(response) => {
                let status = response.status();
                let body = test::read_body(response).await;
                (status, String::from_utf8_lossy(&body).into_owned())
            }
            Err(error) => (error.error_response().status(), error.to_string()),
        }
    };
    // 64 concurrent reads, as 64 clients would send them.
    let burst = || join_all((0..64).map(|_| read()));
    assert_eq!(read().await, (StatusCode::OK, "alice".into()));

    server.stop();
    for (status, body) in burst().await {
        assert!(
            status.is_server_error(),
            "a read while the server is down: {status} {body}"
        );
    }

    server.start();
    let mut last = None;
    for _ in 0..40 {
        match read().await {
            (StatusCode::OK, body) => {
                assert_eq!(body, "alice", "the session after the restart");
                last = None;
                break;
            }
            failed => last = Some(failed),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        last.is_none(),
        "still failing after the server came back: {last:?}"
    );
    for reply in burst().await {
        assert_eq!(reply, (StatusCode::OK, "alice".into()));
    }
}

#[actix_web::test]
async fn sessions_survive_a_redis_restart_with_persistence() {
    if skipped("REDIS") {
        return;
    }
    let mut server = RedisServer::start_persistent();
    let satchel = satchel(&[
        ("SESSION_TYPE", "redis".into()),
        ("SESSION_REDIS", server.url()),
    ])
    .await;
    sessions_survive_a_restart(&satchel, &mut server).await;
}

#[actix_web::test]
async fn sessions_survive_a_postgres_restart() {
    if skipped("POSTGRES") {
        return;
    }
    let mut server = PostgresServer::start();
    let satchel = satchel(&[
        ("SESSION_TYPE", "sqlalchemy".into()),
        ("SESSION_SQLALCHEMY", server.url()),
        ("SATCHEL_PURGE_INTERVAL", "0".into()),
    ])
    .await;
    sessions_survive_a_restart(&satchel, &mut server).await;
}

/// A PostgreSQL server of the test's own: a cluster in a scratch directory, trust
/// authentication, listening on a free loopback port; stopped and removed when dropped.
///
/// As root, every tool runs as the `postgres` user, since PostgreSQL refuses to run as root.
struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl PostgresServer {
    fn start() -> PostgresServer {
        let bin = pg_bindir();
        let dir = tempfile::Builder::new()
            .prefix("satchel-pg-test-")
            .tempdir()
            .expect("a scratch directory for PostgreSQL");
        // The directory is ours, so its owner tells whether we are root, without unsafe code.
        let as_postgres = dir.path().metadata().unwrap().uid() == 0;
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("chown(1) runs");
            assert!(
                status.success(),
                "as root the test runs PostgreSQL as user postgres, which must exist \
                 (scripts/services.sh creates it)"
            );
        }
        let mut server = PostgresServer {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        server.run(&mut initdb);
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\n",
            server.port,
            server.dir.path().display()
        );
        let conf = server.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("initdb wrote postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("postgresql.conf is writable");
        Restartable::start(&mut server);
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs `command`; fails the test with its output and the server log when it fails.
    fn run(&self, command: &mut Command) {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// `tool` from the PostgreSQL binaries, as the `postgres` user when we are root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        // The postgres user may not be able to enter the current directory.
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    /// `pg_ctl` on this server's data directory and log, with `args`.
    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(args);
        command
    }
}

impl Restartable for PostgresServer {
    /// A fast shutdown: clients are disconnected, committed data is kept.
    fn stop(&mut self) {
        self.run(&mut self.pg_ctl(&["-m", "fast", "-w", "stop"]));
    }

    fn start(&mut self) {
        self.run(&mut self.pg_ctl(&["-w", "-t", "60", "start"]));
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Best effort, and pg_ctl fails on a server already stopped. The TempDir then removes
        // the directory.
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]).output();
    }
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, in `/usr/local/bin`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's packages), as `scripts/services.sh` looks.
fn pg_bindir() -> PathBuf {
    let has_tools = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| dir.join(t).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin")])
        .chain(debian.into_iter().map(|(_, dir)| dir))
        .find(|dir| has_tools(dir))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, in \
                 /usr/local/bin or /usr/lib/postgresql/*/bin: run scripts/services.sh up, which \
                 installs them, or set SATCHEL_SKIP_POSTGRES=1"
            )
        })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("a free loopback port");
    listener
        .local_addr()
        .expect("the listener's address")
        .port()
}
