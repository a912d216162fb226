//! What is measured: the servers under test, grouped by backend, and the two workloads.

/// One server under test. Every one answers the same four routes (`/health`, `POST /login/`,
/// `GET /read/`, `GET /rmw/`), so the load generator treats them all alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Constant,
    SatchelMemory,
    RedisRaw,
    RedisSatchel,
    RedisSatchelNoRefresh,
    RedisSatchelActix,
    RedisActixSession,
    RedisActixSessionPerWorker,
    RedisActixSessionRefresh,
    MemcachedRaw,
    MemcachedSatchel,
    MemcachedSatchelNoRefresh,
    MemcachedSatchelAsync,
    MemcachedSatchelBlocking,
    MongodbRaw,
    MongodbSatchel,
    MongodbSatchelNoRefresh,
    PostgresRaw,
    PostgresRawHeld,
    PostgresSatchel,
    PostgresSatchelNoRefresh,
    MysqlRaw,
    MysqlRawHeld,
    MysqlSatchel,
    MysqlSatchelNoRefresh,
    SqliteRaw,
    SqliteRawHeld,
    SqliteSatchel,
    SqliteSatchelNoRefresh,
    CookieActixSession,
    CookieActixSessionRefresh,
    CookieSatchel,
    CookieSatchelNoRefresh,
}

/// Targets measured against the same reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Floor,
    Redis,
    Memcached,
    Mongodb,
    Postgres,
    Mysql,
    Sqlite,
    Cookie,
}

impl Group {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Group::Floor => "actix-web",
            Group::Redis => "redis",
            Group::Memcached => "memcached",
            Group::Mongodb => "mongodb",
            Group::Postgres => "postgres",
            Group::Mysql => "mariadb",
            Group::Sqlite => "sqlite",
            Group::Cookie => "cookie",
        }
    }

    /// The target every other one in the group is divided by.
    pub(crate) fn reference(self) -> Option<Target> {
        match self {
            Group::Floor => Some(Target::Constant),
            Group::Redis => Some(Target::RedisRaw),
            Group::Memcached => Some(Target::MemcachedRaw),
            Group::Mongodb => Some(Target::MongodbRaw),
            Group::Postgres => Some(Target::PostgresRaw),
            Group::Mysql => Some(Target::MysqlRaw),
            Group::Sqlite => Some(Target::SqliteRaw),
            Group::Cookie => Some(Target::CookieActixSession),
        }
    }
}

/// The request measured, on a session established by a login on the same connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// `GET /read/`: reads the session.
    Read,
    /// `GET /rmw/`: reads a counter in the session, increments it and saves the session.
    ReadModifyWrite,
}

impl Workload {
    pub(crate) const ALL: [Workload; 2] = [Workload::Read, Workload::ReadModifyWrite];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Workload::Read => "/read/",
            Workload::ReadModifyWrite => "/rmw/",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::ReadModifyWrite => "rmw",
        }
    }
}

impl Target {
    pub(crate) const ALL: [Target; 33] = [
        Target::Constant,
        Target::SatchelMemory,
        Target::RedisRaw,
        Target::RedisSatchel,
        Target::RedisSatchelNoRefresh,
        Target::RedisSatchelActix,
        Target::RedisActixSession,
        Target::RedisActixSessionPerWorker,
        Target::RedisActixSessionRefresh,
        Target::MemcachedRaw,
        Target::MemcachedSatchel,
        Target::MemcachedSatchelNoRefresh,
        Target::MemcachedSatchelAsync,
        Target::MemcachedSatchelBlocking,
        Target::MongodbRaw,
        Target::MongodbSatchel,
        Target::MongodbSatchelNoRefresh,
        Target::PostgresRaw,
        Target::PostgresRawHeld,
        Target::PostgresSatchel,
        Target::PostgresSatchelNoRefresh,
        Target::MysqlRaw,
        Target::MysqlRawHeld,
        Target::MysqlSatchel,
        Target::MysqlSatchelNoRefresh,
        Target::SqliteRaw,
        Target::SqliteRawHeld,
        Target::SqliteSatchel,
        Target::SqliteSatchelNoRefresh,
        Target::CookieActixSession,
        Target::CookieActixSessionRefresh,
        Target::CookieSatchel,
        Target::CookieSatchelNoRefresh,
    ];

    /// Whether the server is a bare handler without sessions, whose `/read/` answers a
    /// constant instead of the user name.
    pub(crate) fn is_bare(self) -> bool {
        matches!(
            self,
            Target::Constant
                | Target::RedisRaw
                | Target::MemcachedRaw
                | Target::MongodbRaw
                | Target::PostgresRaw
                | Target::PostgresRawHeld
                | Target::MysqlRaw
                | Target::MysqlRawHeld
                | Target::SqliteRaw
                | Target::SqliteRawHeld
        )
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Constant => "constant",
            Target::SatchelMemory => "memory-satchel",
            Target::RedisRaw => "redis-raw",
            Target::RedisSatchel => "redis-satchel",
            Target::RedisSatchelNoRefresh => "redis-satchel-norefresh",
            Target::RedisSatchelActix => "redis-satchel-actix",
            Target::RedisActixSession => "redis-actix-session",
            Target::RedisActixSessionPerWorker => "redis-actix-session-per-worker",
            Target::RedisActixSessionRefresh => "redis-actix-session-refresh",
            Target::MemcachedRaw => "memcached-raw",
            Target::MemcachedSatchel => "memcached-satchel",
            Target::MemcachedSatchelNoRefresh => "memcached-satchel-norefresh",
            Target::MemcachedSatchelAsync => "memcached-satchel-async",
            Target::MemcachedSatchelBlocking => "memcached-satchel-blocking",
            Target::MongodbRaw => "mongodb-raw",
            Target::MongodbSatchel => "mongodb-satchel",
            Target::MongodbSatchelNoRefresh => "mongodb-satchel-norefresh",
            Target::PostgresRaw => "postgres-raw",
            Target::PostgresRawHeld => "postgres-raw-held",
            Target::PostgresSatchel => "postgres-satchel",
            Target::PostgresSatchelNoRefresh => "postgres-satchel-norefresh",
            Target::MysqlRaw => "mariadb-raw",
            Target::MysqlRawHeld => "mariadb-raw-held",
            Target::MysqlSatchel => "mariadb-satchel",
            Target::MysqlSatchelNoRefresh => "mariadb-satchel-norefresh",
            Target::SqliteRaw => "sqlite-raw",
            Target::SqliteRawHeld => "sqlite-raw-held",
            Target::SqliteSatchel => "sqlite-satchel",
            Target::SqliteSatchelNoRefresh => "sqlite-satchel-norefresh",
            Target::CookieActixSession => "cookie-actix-session",
            Target::CookieActixSessionRefresh => "cookie-actix-session-refresh",
            Target::CookieSatchel => "cookie-satchel",
            Target::CookieSatchelNoRefresh => "cookie-satchel-norefresh",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Target::Constant => "bare handler, constant answer (actix-web's floor)",
            Target::SatchelMemory => "Satchel, SESSION_TYPE=memory, Flask cookie",
            Target::RedisRaw => {
                "bare handler, raw GET / GET+SET EX, one multiplexed redis-rs connection per worker"
            }
            Target::RedisSatchel => "Satchel, SESSION_TYPE=redis, Flask cookie (middleware())",
            Target::RedisSatchelActix => {
                "Satchel, SESSION_TYPE=redis, actix-session cookie (actix_middleware())"
            }
            Target::RedisActixSession => {
                "actix-session 0.11 RedisSessionStore, built in main as its docs show"
            }
            Target::RedisActixSessionPerWorker => {
                "actix-session 0.11 RedisSessionStore, built once per worker"
            }
            Target::MemcachedRaw => {
                "bare handler, raw mg / mg+ms, memcache AsyncMetaClient per worker"
            }
            Target::MemcachedSatchel => {
                "Satchel, SESSION_TYPE=memcached, Flask cookie (default mode)"
            }
            Target::MemcachedSatchelAsync => {
                "Satchel memcached Store, ClientMode::Async, actix-session cookie"
            }
            Target::MemcachedSatchelBlocking => {
                "Satchel memcached Store, ClientMode::Blocking, actix-session cookie"
            }
            Target::MongodbRaw => {
                "bare handler, raw find_one / find_one+update_one, driver Client per worker"
            }
            Target::MongodbSatchel => "Satchel, SESSION_TYPE=mongodb, Flask cookie",
            Target::PostgresRaw => "bare handler, raw SELECT / SELECT+UPDATE, sqlx pool per worker",
            Target::PostgresSatchel => {
                "Satchel, SESSION_TYPE=sqlalchemy (PostgreSQL), Flask cookie"
            }
            Target::MysqlRaw => "bare handler, raw SELECT / SELECT+UPDATE, sqlx pool per worker",
            Target::MysqlSatchel => "Satchel, SESSION_TYPE=sqlalchemy (MariaDB), Flask cookie",
            Target::SqliteRaw => "bare handler, raw SELECT / SELECT+UPDATE, sqlx pool per worker",
            Target::PostgresRawHeld | Target::MysqlRawHeld | Target::SqliteRawHeld => {
                "the raw handler's statements on connections the worker holds itself, outside sqlx's pool (no round trip to test each one given back)"
            }
            Target::SqliteSatchel => "Satchel, SESSION_TYPE=sqlalchemy (SQLite file), Flask cookie",
            Target::RedisSatchelNoRefresh
            | Target::MemcachedSatchelNoRefresh
            | Target::CookieSatchelNoRefresh
            | Target::MongodbSatchelNoRefresh
            | Target::PostgresSatchelNoRefresh
            | Target::MysqlSatchelNoRefresh
            | Target::SqliteSatchelNoRefresh => {
                "the row above with SESSION_REFRESH_EACH_REQUEST=false: a read does not extend the expiry"
            }
            Target::CookieActixSession => "actix-session 0.11 CookieSessionStore",
            Target::RedisActixSessionRefresh => {
                "redis-actix-session doing what Flask does by default for a permanent session: PersistentSession (31 days) with TtlExtensionPolicy::OnEveryRequest, so every response sets the cookie again and every read is followed by an EXPIRE. The like-for-like row for redis-satchel; not a reference of issue 8"
            }
            Target::CookieActixSessionRefresh => {
                "cookie-actix-session doing what Flask does by default for a permanent session: PersistentSession (31 days) with TtlExtensionPolicy::OnEveryRequest, so every response carries the session encrypted anew. The like-for-like row for cookie-satchel; not a reference of issue 8"
            }
            Target::CookieSatchel => "Satchel, SESSION_TYPE=cookie (Flask's signed cookie)",
        }
    }

    pub(crate) fn group(self) -> Group {
        match self {
            Target::Constant | Target::SatchelMemory => Group::Floor,
            Target::RedisRaw
            | Target::RedisSatchel
            | Target::RedisSatchelNoRefresh
            | Target::RedisSatchelActix
            | Target::RedisActixSession
            | Target::RedisActixSessionPerWorker
            | Target::RedisActixSessionRefresh => Group::Redis,
            Target::MemcachedRaw
            | Target::MemcachedSatchel
            | Target::MemcachedSatchelNoRefresh
            | Target::MemcachedSatchelAsync
            | Target::MemcachedSatchelBlocking => Group::Memcached,
            Target::MongodbRaw | Target::MongodbSatchel | Target::MongodbSatchelNoRefresh => {
                Group::Mongodb
            }
            Target::PostgresRaw
            | Target::PostgresRawHeld
            | Target::PostgresSatchel
            | Target::PostgresSatchelNoRefresh => Group::Postgres,
            Target::MysqlRaw
            | Target::MysqlRawHeld
            | Target::MysqlSatchel
            | Target::MysqlSatchelNoRefresh => Group::Mysql,
            Target::SqliteRaw
            | Target::SqliteRawHeld
            | Target::SqliteSatchel
            | Target::SqliteSatchelNoRefresh => Group::Sqlite,
            Target::CookieActixSession
            | Target::CookieActixSessionRefresh
            | Target::CookieSatchel
            | Target::CookieSatchelNoRefresh => Group::Cookie,
        }
    }

    /// Whether this is one of Satchel's stores (the rows the targets of issue 8 are about).
    pub(crate) fn is_satchel(self) -> bool {
        self.name().contains("satchel")
    }

    /// Satchel with `SESSION_REFRESH_EACH_REQUEST=false`, to show what Flask's refresh on every
    /// read costs: a `Set-Cookie` on every response, and extending the expiry (get-and-touch on
    /// memcached; on Redis, SQL and MongoDB the expiry read with the value and written only when
    /// it lags by more than the touch granularity). The raw references and actix-session's
    /// stores as its docs build them do neither; the `-refresh` actix-session rows do both.
    pub(crate) fn no_refresh(self) -> bool {
        self.name().ends_with("-norefresh")
    }

    /// The constant handler has no session to modify.
    pub(crate) fn supports(self, workload: Workload) -> bool {
        !(self == Target::Constant && workload == Workload::ReadModifyWrite)
    }

    pub(crate) fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// `--targets`: comma-separated target names or group names (`redis`, `sql` = all three SQL
/// groups, `all`). The constant handler is always included: it is the floor every table shows.
pub(crate) fn select(list: &str) -> Result<Vec<Target>, String> {
    let mut chosen = vec![Target::Constant];
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let matched: Vec<Target> = match word {
            "all" => Target::ALL.to_vec(),
            "sql" => Target::ALL
                .into_iter()
                .filter(|t| matches!(t.group(), Group::Postgres | Group::Mysql | Group::Sqlite))
                .collect(),
            _ => match Target::from_name(word) {
                Some(t) => vec![t],
                None => Target::ALL
                    .into_iter()
                    .filter(|t| {
                        t.group().name() == word || (word == "mysql" && t.group() == Group::Mysql)
                    })
                    .collect(),
            },
        };
        if matched.is_empty() {
            return Err(format!(
                "--targets: no target or group named {word:?} (see `loadtest list`)"
            ));
        }
        chosen.extend(matched);
    }
    // Keep the order of `Target::ALL`, so groups stay together in the table.
    Ok(Target::ALL
        .into_iter()
        .filter(|t| chosen.contains(t))
        .collect())
}

/// `--workloads read,rmw`.
pub(crate) fn workloads(list: &str) -> Result<Vec<Workload>, String> {
    let mut chosen = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match Workload::ALL.into_iter().find(|w| w.name() == word) {
            Some(w) if !chosen.contains(&w) => chosen.push(w),
            Some(_) => {}
            None => return Err(format!("--workloads: {word:?} is neither `read` nor `rmw`")),
        }
    }
    if chosen.is_empty() {
        return Err("--workloads: name at least one of `read`, `rmw`".into());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_name_is_unique_and_found_again() {
        for target in Target::ALL {
            assert_eq!(Target::from_name(target.name()), Some(target));
        }
    }

    #[test]
    fn a_group_name_selects_its_targets_and_the_floor() {
        let chosen = select("redis").unwrap();
        assert_eq!(chosen[0], Target::Constant);
        assert!(chosen[1..].iter().all(|t| t.group() == Group::Redis));
        assert!(chosen.contains(&Target::RedisRaw));
    }

    #[test]
    fn every_group_reference_is_in_its_group() {
        for target in Target::ALL {
            let reference = target.group().reference().unwrap();
            assert_eq!(reference.group(), target.group());
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(select("redis,nope").is_err());
        assert!(workloads("write").is_err());
    }
}
