//! [`MongoBackend`]: sessions as documents in Flask-Session's collection.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use satchel_core::{Backend, BackendError, ConfigError, Operation, SessionConfig};

use crate::NAME;
use crate::error::{
    MongoError, NAMESPACE_NOT_FOUND, backend_error, is_duplicate_key, server_code, startup_error,
};
use crate::uri::redact_uri;

/// The server used when `SESSION_MONGODB` is not set, as Flask-Session's default `MongoClient()`.
pub const DEFAULT_URI: &str = "mongodb://127.0.0.1:27017";

/// The latest instant a BSON date can carry and Python's `datetime` can still read
/// (9999-12-31T23:59:59.999Z): Flask-Session's pymongo fails on anything later.
const LATEST_EXPIRATION_MS: i64 = 253_402_300_799_999;

/// Index builds over an existing Flask-Session collection can take a while; start-up allows them
/// at least this long, whatever the per-operation timeout.
const MIN_INDEX_BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Sessions stored as Flask-Session stores them in MongoDB.
///
/// Each session is one document in `SESSION_MONGODB_DB.SESSION_MONGODB_COLLECT`
/// (default `flask_session.sessions`):
/// `{id: "<SESSION_KEY_PREFIX><session id>", val: BinData(0, <bytes>), expiration: <UTC date>}`.
/// Expired documents are filtered out on read, since the server's TTL monitor removes them only
/// about once a minute. [`load_and_touch`](Backend::load_and_touch) slides `expiration` with a
/// plain read and writes it only when it is more than
/// [`touch_granularity`](satchel_core::touch_granularity) (at most a minute) behind, where
/// Flask-Session rewrites it on every request. A unique index on `id` makes every lookup an
/// index seek and lets [`insert`](Backend::insert) detect a collision in one round trip.
///
/// The driver's [`Client`] is created once by [`connect`](Self::connect); cloning a
/// `MongoBackend` shares it (and its connection pool).
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use satchel_core::{Backend, SessionConfig};
/// use satchel_mongodb::MongoBackend;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = SessionConfig::default();
/// config.mongodb = Some("mongodb://127.0.0.1:27017".into());
/// let backend = MongoBackend::connect(&config).await?;
/// backend.store("session:abc", b"\x80", Duration::from_secs(3600)).await?;
/// assert_eq!(backend.load("session:abc").await?, Some(b"\x80".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MongoBackend {
    collection: Collection<Document>,
    operation_timeout: Duration,
}

impl MongoBackend {
    /// Connects to `SESSION_MONGODB` (default [`DEFAULT_URI`]), checks that the server answers,
    /// and creates the collection's indexes if they are missing: the TTL index `expiration_1`
    /// (`expireAfterSeconds: 0`, as Flask-Session creates it) and a unique index `id_1`.
    ///
    /// Server selection and connecting are bounded by `connect_timeout` (default 5 s) unless the
    /// connection string sets `serverSelectionTimeoutMS` / `connectTimeoutMS` itself; the pool
    /// holds at most `pool_size` connections unless it sets `maxPoolSize`. Every later operation
    /// is bounded by `operation_timeout`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a malformed connection string or database/collection name,
    /// and [`ConfigError::Backend`] when the server cannot be reached or used, or the collection
    /// cannot take the unique index (for example because it holds two documents with one `id`).
    /// The connection string in messages has its password and query options removed.
    ///
    /// ```no_run
    /// # async fn run() {
    /// let config = satchel_core::SessionConfig::from_env().unwrap();
    /// match satchel_mongodb::MongoBackend::connect(&config).await {
    ///     Ok(backend) => { /* share it across actix workers */ }
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    pub async fn connect(config: &SessionConfig) -> Result<MongoBackend, ConfigError> {
        check_names(config)?;
        let uri = config.mongodb.as_deref().unwrap_or(DEFAULT_URI);
        let shown = redact_uri(uri);
        let options = client_options(uri, &shown, config).await?;
        let client = Client::with_options(options).map_err(|e| invalid_uri(&shown, &e))?;
        let collection = client
            .database(&config.mongodb_db)
            .collection::<Document>(&config.mongodb_collect);
        let backend = MongoBackend {
            collection,
            operation_timeout: config.operation_timeout,
        };
        backend
            .ping(&shown, config.connect_timeout + config.operation_timeout)
            .await?;
        backend.ensure_indexes().await?;
        tracing::debug!(backend = NAME, uri = %shown, "connected");
        Ok(backend)
    }

    /// The collection the sessions live in, for inspection and maintenance through the driver.
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    async fn ping(&self, shown: &str, timeout: Duration) -> Result<(), ConfigError> {
        let database = self
            .collection
            .client()
            .database(&self.collection.namespace().db);
        let ping = database.run_command(doc! { "ping": 1 });
        match tokio::time::timeout(timeout, ping.into_future()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(startup_error(
                Operation::Connect,
                MongoError::Connect {
                    uri: shown.to_owned(),
                    source,
                },
            )),
            Err(_) => Err(startup_error(
                Operation::Connect,
                MongoError::NoAnswer {
                    uri: shown.to_owned(),
                    timeout,
                },
            )),
        }
    }

    /// Creates the TTL and unique indexes when missing. Existing ones are looked up first, so a
    /// user allowed to read and write but not to create indexes can run against a collection
    /// that an administrator prepared.
    async fn ensure_indexes(&self) -> Result<(), ConfigError> {
        let existing = self.existing_indexes().await?;
        let namespace = self.collection.namespace().to_string();

        match existing
            .iter()
            .find(|index| is_single_key(index, "expiration"))
        {
            Some(index) if ttl_seconds(index) == Some(0.0) => {}
            Some(index) => {
                // Reads filter out expired sessions whatever the sweep does, so another TTL only
                // changes when the server deletes them: not worth refusing to start over.
                tracing::warn!(
                    backend = NAME,
                    namespace = %namespace,
                    index = index.get_str("name").unwrap_or("?"),
                    "the index on `expiration` is not a TTL index with expireAfterSeconds: 0; \
                     expired sessions are still never returned, but the server may keep them"
                );
            }
            None => {
                let ttl = IndexModel::builder()
                    .keys(doc! { "expiration": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("expiration_1".to_owned())
                            .expire_after(Duration::ZERO)
                            .build(),
                    )
                    .build();
                self.create_index(ttl, &namespace).await?;
            }
        }

        match existing.iter().find(|index| is_single_key(index, "id")) {
            Some(index) if index.get_bool("unique") == Ok(true) => Ok(()),
            Some(index) => Err(startup_error(
                Operation::Setup,
                MongoError::Collection {
                    namespace,
                    problem: format!(
                        "the index {:?} on `id` is not unique; Satchel needs a unique index on \
                         `id` to detect session id collisions: drop that index and Satchel will \
                         create `id_1` (unique) at start-up",
                        index.get_str("name").unwrap_or("?")
                    ),
                },
            )),
            None => {
                let unique = IndexModel::builder()
                    .keys(doc! { "id": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("id_1".to_owned())
                            .unique(true)
                            .build(),
                    )
                    .build();
                self.create_index(unique, &namespace).await
            }
        }
    }

    async fn existing_indexes(&self) -> Result<Vec<Document>, ConfigError> {
        let listing = async {
            let mut cursor = self
                .collection
                .list_indexes()
                .await?
                .with_type::<Document>();
            let mut indexes = Vec::new();
            while cursor.advance().await? {
                indexes.push(cursor.deserialize_current()?);
            }
            Ok(indexes)
        };
        match self.bounded_raw(Operation::Setup, listing).await? {
            Ok(indexes) => Ok(indexes),
            // A collection that does not exist yet has no indexes; createIndexes will create it.
            Err(e) if server_code(&e).is_some_and(|(code, _)| code == NAMESPACE_NOT_FOUND) => {
                Ok(Vec::new())
            }
            Err(e) => Err(backend_error(Operation::Setup, e).into()),
        }
    }

    async fn create_index(&self, index: IndexModel, namespace: &str) -> Result<(), ConfigError> {
        let timeout = self.operation_timeout.max(MIN_INDEX_BUILD_TIMEOUT);
        let build = self.collection.create_index(index).into_future();
        match tokio::time::timeout(timeout, build).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if is_duplicate_key(&e) => Err(startup_error(
                Operation::Setup,
                MongoError::Collection {
                    namespace: namespace.to_owned(),
                    problem: "the unique index `id_1` cannot be built because some documents \
                              share one `id` (Flask-Session has no unique index); delete the \
                              duplicates and start again"
                        .to_owned(),
                },
            )),
            Ok(Err(e)) => Err(backend_error(Operation::Setup, e).into()),
            Err(_) => Err(BackendError::Timeout {
                backend: NAME,
                operation: Operation::Setup,
                timeout,
            }
            .into()),
        }
    }

    /// Runs one driver call within the operation timeout; the outer error is the timeout.
    async fn bounded_raw<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, BackendError> {
        tokio::time::timeout(self.operation_timeout, call)
            .await
            .map_err(|_| BackendError::Timeout {
                backend: NAME,
                operation,
                timeout: self.operation_timeout,
            })
    }

    /// Runs one driver call within the operation timeout.
    async fn bounded<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = mongodb::error::Result<T>>,
    ) -> Result<T, BackendError> {
        self.bounded_raw(operation, call)
            .await?
            .map_err(|e| backend_error(operation, e))
    }
}

impl Backend for MongoBackend {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let now = DateTime::now();
        // `$not: {$lte: now}` is `$gt: now` for dates, but also lets through a document whose
        // `expiration` is missing or not a date, so that it is reported instead of hidden.
        let find = self
            .collection
            .find_one(doc! { "id": key, "expiration": { "$not": { "$lte": now } } })
            .projection(doc! { "_id": 0, "val": 1, "expiration": 1 });
        let found = self.bounded(Operation::Load, find.into_future()).await?;
        Ok(found.and_then(|document| live_value(document, now, Operation::Load)))
    }

    /// Touch coalescing: a plain `find_one` of the value and its expiration, and an
    /// `update_one` of the expiration only when it is more than
    /// [`touch_granularity`](satchel_core::touch_granularity)`(ttl)` short of `now + ttl`.
    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let now = DateTime::now();
        let until = expiration(now, ttl);
        let read_and_slide = async {
            // Only a live session is read and extended: `$gt` never matches a malformed
            // expiration, so a document written by another program is not turned into a
            // session here. `id` comes first: SecantusDB serves a filter from the index of its
            // first indexed field.
            let found = self
                .collection
                .find_one(doc! { "id": key, "expiration": { "$gt": now } })
                .projection(doc! { "_id": 0, "val": 1, "expiration": 1 })
                .await?;
            let stored = match found.as_ref().map(|d| d.get("expiration")) {
                Some(Some(Bson::DateTime(stored))) => *stored,
                _ => return Ok(found),
            };
            if stored < stale_before(until, ttl) {
                // Only over the expiration just read or an older one, and only while live: never
                // shortens an expiration another request just wrote, never revives a session.
                self.collection
                    .update_one(
                        doc! { "id": key, "expiration": { "$lte": stored, "$gt": now } },
                        doc! { "$set": { "expiration": until } },
                    )
                    .await?;
            }
            Ok(found)
        };
        let found = self
            .bounded(Operation::LoadAndTouch, read_and_slide)
            .await?;
        Ok(found.and_then(|document| value(document, Operation::LoadAndTouch)))
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let now = DateTime::now();
        // One round trip: the filter matches only a document that is not live (expired, or with
        // a malformed expiration), which is taken over; otherwise the upsert inserts, and the
        // unique index on `id` refuses it if a live session holds the key.
        let upsert = self
            .collection
            .update_one(
                doc! { "id": key, "expiration": { "$not": { "$gt": now } } },
                doc! { "$set": { "val": binary(value), "expiration": expiration(now, ttl) } },
            )
            .upsert(true);
        match self
            .bounded_raw(Operation::Insert, upsert.into_future())
            .await?
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(backend_error(Operation::Insert, e)),
        }
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let now = DateTime::now();
        // Flask-Session's own write: `$set` of all three fields, upserting on `id`.
        let upsert = || {
            self.collection
                .update_one(
                    doc! { "id": key },
                    doc! { "$set": {
                        "id": key,
                        "val": binary(value),
                        "expiration": expiration(now, ttl),
                    } },
                )
                .upsert(true)
                .into_future()
        };
        match self.bounded_raw(Operation::Store, upsert()).await? {
            Ok(_) => Ok(()),
            // Two first writes of one key raced and the other's insert won; ours now finds the
            // document and updates it. (MongoDB 4.2+ retries this itself; not every server does.)
            Err(e) if is_duplicate_key(&e) => {
                self.bounded(Operation::Store, upsert()).await.map(|_| ())
            }
            Err(e) => Err(backend_error(Operation::Store, e)),
        }
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let now = DateTime::now();
        // One conditional write: only a live document matches, and nothing is upserted.
        let update = self.collection.update_one(
            doc! { "id": key, "expiration": { "$gt": now } },
            doc! { "$set": { "val": binary(value), "expiration": expiration(now, ttl) } },
        );
        let result = self
            .bounded(Operation::Replace, update.into_future())
            .await?;
        Ok(result.matched_count > 0)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let now = DateTime::now();
        let update = self.collection.update_one(
            doc! { "id": key, "expiration": { "$gt": now } },
            doc! { "$set": { "expiration": expiration(now, ttl) } },
        );
        let result = self.bounded(Operation::Touch, update.into_future()).await?;
        Ok(result.matched_count > 0)
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let delete = self.collection.delete_one(doc! { "id": key });
        self.bounded(Operation::Delete, delete.into_future())
            .await
            .map(|_| ())
    }

    /// Deletes the expired documents now. The server's TTL monitor deletes them too, about once
    /// a minute, so calling this is optional.
    async fn purge_expired(&self) -> Result<u64, BackendError> {
        let delete = self
            .collection
            .delete_many(doc! { "expiration": { "$lte": DateTime::now() } });
        let result = self.bounded(Operation::Purge, delete.into_future()).await?;
        Ok(result.deleted_count)
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

/// `now + ttl` to the millisecond, as a BSON date Python can still read.
fn expiration(now: DateTime, ttl: Duration) -> DateTime {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(
        now.timestamp_millis()
            .saturating_add(ttl_ms)
            .min(LATEST_EXPIRATION_MS),
    )
}

/// Touch coalescing: `load_and_touch` writes a new expiration only over one older than this,
/// `until` less the [`touch_granularity`](satchel_core::touch_granularity) of `ttl`.
fn stale_before(until: DateTime, ttl: Duration) -> DateTime {
    let granularity = satchel_core::touch_granularity(ttl).as_millis();
    DateTime::from_millis(
        until
            .timestamp_millis()
            .saturating_sub(i64::try_from(granularity).unwrap_or(i64::MAX)),
    )
}

/// The bytes as BSON binary subtype 0, which pymongo reads back as `bytes`.
fn binary(value: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: value.to_vec(),
    }
}

/// The session bytes of a document that also has a live `expiration`.
fn live_value(document: Document, now: DateTime, operation: Operation) -> Option<Vec<u8>> {
    match document.get("expiration") {
        Some(Bson::DateTime(at)) if *at > now => value(document, operation),
        // Expired between the server's check and ours; not malformed.
        Some(Bson::DateTime(_)) => None,
        other => {
            malformed(operation, "expiration", other);
            None
        }
    }
}

/// The session bytes in `val`, or `None` (with a warning) when `val` is not binary subtype 0.
fn value(mut document: Document, operation: Operation) -> Option<Vec<u8>> {
    match document.remove("val") {
        Some(Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes,
        })) => Some(bytes),
        other => {
            malformed(operation, "val", other.as_ref());
            None
        }
    }
}

/// Logs a document that another program wrote in a shape Satchel cannot read. The key is left
/// out: it holds the session id.
fn malformed(operation: Operation, field: &'static str, found: Option<&Bson>) {
    let found = match found {
        None => "nothing".to_owned(),
        Some(Bson::Binary(binary)) => format!("binary subtype {:?}", binary.subtype),
        Some(other) => format!("{:?}", other.element_type()),
    };
    tracing::warn!(
        backend = NAME,
        operation = %operation,
        field,
        found = %found,
        "stored session document has a field of the wrong type; treating it as no session"
    );
}

/// True for an index on `field` alone, ascending, however the number 1 was written.
fn is_single_key(index: &Document, field: &str) -> bool {
    index
        .get_document("key")
        .is_ok_and(|key| key.len() == 1 && key.get(field).and_then(as_number) == Some(1.0))
}

/// The index's `expireAfterSeconds`, if it has one.
fn ttl_seconds(index: &Document) -> Option<f64> {
    index.get("expireAfterSeconds").and_then(as_number)
}

fn as_number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        // Index options are small numbers; the cast cannot lose anything that matters here.
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}

/// Refuses database and collection names the server would reject, naming the setting.
fn check_names(config: &SessionConfig) -> Result<(), ConfigError> {
    let db = &config.mongodb_db;
    if db.is_empty() || db.len() >= 64 || db.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        return Err(ConfigError::Invalid {
            setting: "SESSION_MONGODB_DB",
            value: db.clone(),
            expected: "a MongoDB database name: 1 to 63 bytes, without / \\ . space \" $".into(),
        });
    }
    let collection = &config.mongodb_collect;
    if collection.is_empty()
        || collection.starts_with("system.")
        || collection.contains(['$', '\0'])
    {
        return Err(ConfigError::Invalid {
            setting: "SESSION_MONGODB_COLLECT",
            value: collection.clone(),
            expected: "a MongoDB collection name: not empty, without $, not starting with system."
                .into(),
        });
    }
    Ok(())
}

/// Parses the connection string and applies Satchel's timeouts and pool size where it sets none.
async fn client_options(
    uri: &str,
    shown: &str,
    config: &SessionConfig,
) -> Result<ClientOptions, ConfigError> {
    // `mongodb+srv://` is resolved through DNS here, which must not outlast the connect timeout.
    let parse = ClientOptions::parse(uri).into_future();
    let parsed = tokio::time::timeout(config.connect_timeout, parse)
        .await
        .map_err(|_| {
            startup_error(
                Operation::Connect,
                MongoError::NoAnswer {
                    uri: shown.to_owned(),
                    timeout: config.connect_timeout,
                },
            )
        })?;
    let mut options = parsed.map_err(|e| match e.kind.as_ref() {
        ErrorKind::DnsResolve { .. } => startup_error(
            Operation::Connect,
            MongoError::Connect {
                uri: shown.to_owned(),
                source: e,
            },
        ),
        _ => invalid_uri(shown, &e),
    })?;
    // The driver waits 30 s by default for a server; a start-up or a request should not.
    options
        .server_selection_timeout
        .get_or_insert(config.connect_timeout);
    options
        .connect_timeout
        .get_or_insert(config.connect_timeout);
    options.max_pool_size.get_or_insert(config.pool_size);
    options.app_name.get_or_insert_with(|| "satchel".to_owned());
    Ok(options)
}

fn invalid_uri(shown: &str, error: &mongodb::error::Error) -> ConfigError {
    ConfigError::Invalid {
        setting: "SESSION_MONGODB",
        value: shown.to_owned(),
        expected: format!(
            "a MongoDB connection string, mongodb://host[:port][/?options] or \
             mongodb+srv://host (the driver said: {error})"
        ),
    }
}
