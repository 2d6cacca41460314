//! The database pool and the migrations.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

use crate::config::{Config, ConfigError};

/// Every migration in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A pool that connects on first use, so a cold start costs no round trip to the database
/// and a function that never queries never connects.
pub fn lazy_pool(config: &Config) -> Result<PgPool, ConfigError> {
    pool_options(config.db_max_connections)
        .connect_lazy(config.database_url.expose_secret())
        .map_err(|e| ConfigError::Invalid { name: "DATABASE_URL", reason: e.to_string() })
}

/// How every pool of the functions behaves: at most `max_connections`, none kept open for
/// nothing, and a 503 rather than a long wait when they are all busy.
///
/// A connection is not pinged each time it is handed out (sqlx's default costs a round trip on
/// every request): only one that sat idle long enough for the server, the pooler or a frozen
/// Lambda to have dropped it is checked first, and replaced if it is dead. A busy connection
/// that dies mid-request is a 503, and is dropped from the pool.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How long a pooled connection may sit idle before it is checked on its way out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);
