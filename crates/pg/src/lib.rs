//! yubin's PostgreSQL backend: a pool of connections to the database
//! `[postgres] url` names, and the schema, kept by embedded, versioned
//! migrations ([`migrate`]). A node refuses to start against a schema it
//! does not know ([`Database::check_schema`]).

mod bodies;
mod maildrops;
mod migrate;
mod users;

pub use bodies::CHUNK;
pub use maildrops::{Committed, Listed, Locked, NewMessage};
pub use migrate::{MIGRATIONS, Migration, SchemaStatus};
pub use users::ImportReport;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

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
}

impl Database {
    /// A pool of at most `pool_size` connections to `url` (a libpq-style
    /// URL, `postgresql://user@host:port/db`, or `key=value` pairs);
    /// nothing is connected until first used.
    pub fn connect(url: &str, pool_size: usize) -> Result<Database, DbError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Url(e.to_string()))?;
        // A 250 or a +OK after UPDATE promises the change survives a crash
        // of the database server too, whatever its own default says.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_owned(),
        };
        config.options(options);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))?;
        Ok(Database { pool })
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| DbError::Pool(e.to_string()))
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
