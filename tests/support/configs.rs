//! Session configs the facade tests build their apps from.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use satchel::{SessionConfig, SessionType};

/// `SESSION_TYPE=memory`, every other setting at its default.
pub(crate) fn memory_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.session_type = SessionType::Memory;
    config
}

/// SQLite in a temp directory (kept alive by the returned guard), with no purge task.
pub(crate) fn sqlite_config() -> (SessionConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SessionConfig::default();
    config.session_type = SessionType::Sqlalchemy;
    config.sqlalchemy = Some(format!(
        "sqlite://{}",
        dir.path().join("sessions.sqlite3").display()
    ));
    config.purge_interval = Duration::ZERO;
    (config, dir)
}
