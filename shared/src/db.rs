//! The database pool and the migrations.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

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
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
}
