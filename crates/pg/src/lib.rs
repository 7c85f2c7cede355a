//! yubin's PostgreSQL backend: a pool of connections to the database
//! `[postgres] url` names, and the schema, kept by embedded, versioned
//! migrations ([`migrate`]). A node refuses to start against a schema it
//! does not know ([`Database::check_schema`]). Connections use TLS as
//! libpq's `sslmode` and `sslrootcert` say ([`tls`]).
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bodies;
mod grants;
mod maildrops;
mod migrate;
mod queue;
mod tls;
mod users;

pub use bodies::{BodyFuture, BodyStore, CHUNK, Chunk, ReadAhead};
pub use maildrops::{
    Committed, Entry, Listed, Listing, ListingKey, Locked, LoginGrant, MaildropLock, NewMessage,
};
pub use migrate::{MIGRATIONS, Migration, SchemaStatus};
pub use queue::{ClaimResult, EntryRecord, NewEntry, QueueEnvelope, Queued};
pub use users::{ImportReport, Removal};

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Semaphore;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// How long connecting to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a step waits for a free connection from a full pool.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// What can go wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `[postgres] url` does not parse.
    #[error("postgres.url: {0}")]
    Url(String),
    /// The database could not be reached or answered with an error.
    #[error("the database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("the database: {0}")]
    Pool(String),
    /// The schema is not the one this yubin knows.
    #[error("{0}")]
    Schema(String),
}

/// A pool of connections to the database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    /// Half the pool, for [`Database::spare_connection`].
    spare: Arc<Semaphore>,
}

impl Database {
    /// A pool of at most `pool_size` connections to `url` (a libpq-style
    /// URL, `postgresql://user@host:port/db`, or `key=value` pairs, with
    /// libpq's `sslmode` and `sslrootcert`); nothing is connected until
    /// first used.
    pub fn connect(url: &str, pool_size: usize) -> Result<Database, DbError> {
        Self::connect_as(url, pool_size, "yubin")
    }

    /// [`Database::connect`], with the connections showing as
    /// `application_name` in `pg_stat_activity` (a node gives its name),
    /// unless the URL names one itself.
    pub fn connect_as(
        url: &str,
        pool_size: usize,
        application_name: &str,
    ) -> Result<Database, DbError> {
        let tls = tls::settings(url)?;
        let mut config: tokio_postgres::Config = tls
            .text
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Url(with_causes(&e)))?;
        config.ssl_mode(tls.mode);
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        // A 250 or a +OK after UPDATE promises the change survives a crash
        // of the database server too, whatever its own default says.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_owned(),
        };
        config.options(options);
        // A database that stops answering (a cut cable, not a refusal)
        // fails a session's step in seconds instead of hanging it.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(15));
        let manager = Manager::from_config(
            config,
            tls.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // The connection given back last is the next one out: a RETR's
            // queries run on the few backends whose memory and caches are
            // warm from the last ones. Taken in turn (FIFO), a 50 MB RETR
            // after a start spread its 50 queries over every connection,
            // and ran at 550–620 MB/s instead of 780–990.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))?;
        Ok(Database {
            pool,
            spare: Arc::new(Semaphore::new((pool_size / 2).max(1))),
        })
    }

    /// A permit for a query beyond what a task needs now (reading a body
    /// ahead of its sending), or `None` when half the pool's connections
    /// are out for such queries already: work that waits for a
    /// connection (a login) never finds the pool taken by reading ahead.
    /// Held while the query runs and its answer waits to be used.
    pub fn spare_connection(&self) -> Option<ReadAhead> {
        self.spare
            .clone()
            .try_acquire_owned()
            .ok()
            .map(ReadAhead::new)
    }

    /// Opens the pool's connections now, all at once, and has each
    /// prepare what logins and RETRs send; how many are open. Otherwise
    /// the first logins and RETRs after a start wait for new connections
    /// (a PostgreSQL process each) and for their first plans: the first
    /// 50 MB RETR after a start ran at 480–670 MB/s, the next ones at
    /// 780–900; with the pool warmed, the first ran at 700–890.
    /// A connection that cannot be had is no error here: the pool opens
    /// it when it is first needed, as it would have.
    pub async fn warm_up(&self) -> usize {
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..self.pool.status().max_size {
            let db = self.clone();
            opening.spawn(async move {
                let client = db.client().await.ok()?;
                for sql in [
                    maildrops::OPEN_MAILDROP,
                    maildrops::RELEASE_LOCKS,
                    bodies::FIRST_CHUNKS,
                    bodies::READ_CHUNKS,
                ] {
                    client.prepare_cached(sql).await.ok()?;
                }
                Some(client)
            });
        }
        // Each is held until all are open, so that none is opened twice.
        opening.join_all().await.into_iter().flatten().count()
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| DbError::Pool(with_causes(&e)))
    }

    /// Runs `sql` for at most one row. Statements are prepared once per
    /// connection and kept, so each later use is one round trip.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.query_opt(&statement, params).await?)
    }

    /// Runs `sql` for exactly one row (see [`Database::query_opt`]).
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.query_one(&statement, params).await?)
    }

    /// Runs `sql` for its rows (see [`Database::query_opt`]).
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.query(&statement, params).await?)
    }

    /// Runs `sql` for the number of rows it changed (see
    /// [`Database::query_opt`]).
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.execute(&statement, params).await?)
    }

    /// Applies every migration the database has not had yet, one node at
    /// a time; the versions applied.
    pub async fn migrate(&self) -> Result<Vec<u32>, DbError> {
        let mut client = self.client().await?;
        migrate::migrate(&mut client).await
    }

    /// Where the database's schema stands.
    pub async fn status(&self) -> Result<SchemaStatus, DbError> {
        let client = self.client().await?;
        migrate::status(&client).await
    }

    /// `Ok` when the database has exactly the schema this yubin knows; an
    /// error that says what to do otherwise.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        let status = self.status().await?;
        status.check()
    }
}

/// An error and what caused it, as one line: the pool's error says only
/// that a connection failed ("error performing TLS handshake"); its
/// causes say why ("invalid peer certificate: UnknownIssuer").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::Database;

    #[test]
    fn a_url_yubin_cannot_honour_is_refused_with_the_setting_named() {
        let refused = |url: &str| match Database::connect(url, 1) {
            Err(error @ super::DbError::Url(_)) => error.to_string(),
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url}: accepted"),
        };
        let error = refused("host=db dbname=yubin sslcert=/etc/yubin/client.pem");
        assert!(error.starts_with("postgres.url: "), "{error}");
        assert!(error.contains("sslcert"), "{error}");
        assert!(refused("host=db sslmode=verify").contains("sslmode"));
        assert!(
            Database::connect(
                "postgresql://yubin@db/yubin?sslmode=verify-full&sslrootcert=system",
                1
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn half_the_pool_is_spared_for_reading_ahead_and_comes_back() {
        // Nothing connects until a query: no server is needed here.
        let db = Database::connect("postgresql://yubin@127.0.0.1:1/yubin", 5).expect("a pool");
        let first = db.spare_connection().expect("one");
        let second = db.clone().spare_connection().expect("two, across clones");
        assert!(db.spare_connection().is_none(), "5 / 2 spared");
        drop(first);
        assert!(db.spare_connection().is_some(), "given back");
        drop(second);
    }
}
