//! `rediss://` against a private TLS Redis whose certificate a private CA signed
//! (feature `tls`; needs `openssl` to make the certificates).
#![cfg(feature = "tls")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use satchel_core::testkit::{fresh_key, run};
use satchel_core::{Backend, ConfigError};
use satchel_redis::RedisBackend;
use satchel_redis::testing::{RedisServer, TlsFiles};

use common::{LONG, connect, options, skipped};

const CHILD_URL: &str = "SATCHEL_REDIS_TLS_CHILD_URL";

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

fn make_certificates(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=satchel test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ],
    );
    TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: dir.join("ca.crt"),
    }
}

#[test]
fn rediss_urls_work_with_a_trusted_ca_and_fail_cleanly_without_one() {
    if skipped(None) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("satchel-redis-tls-{}", std::process::id()));
    let files = make_certificates(&dir);
    let server = RedisServer::start_tls(files.clone());

    // Not trusted: the handshake fails, at start-up, with an error naming the address.
    run(async {
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            RedisBackend::from_url(&server.url(), options(1, Duration::from_secs(5))),
        )
        .await
        .expect("no hang");
        let err = outcome.expect_err("an unknown CA is refused");
        assert!(matches!(err, ConfigError::Backend(_)), "{err:?}");
        assert!(
            err.to_string().contains(&server.port().to_string()),
            "{err}"
        );
    });

    // Trusted through SSL_CERT_FILE, which rustls reads when it connects. Setting it in this
    // process would need `unsafe` (other test threads read the environment), so the check
    // runs in a child process: this same test binary, running the ignored test below.
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tls_round_trip_in_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", &files.ca)
        .env(CHILD_URL, server.url())
        .status()
        .unwrap();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        status.success(),
        "the TLS round trip failed in the child process"
    );
}

#[test]
#[ignore = "run by rediss_urls_work_with_a_trusted_ca_and_fail_cleanly_without_one, with SSL_CERT_FILE set"]
fn tls_round_trip_in_child_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    run(async {
        let backend = connect(&url).await;
        let key = fresh_key();
        backend.store(&key, b"over TLS", LONG).await.unwrap();
        assert_eq!(
            backend.load(&key).await.unwrap(),
            Some(b"over TLS".to_vec())
        );
    });
}
