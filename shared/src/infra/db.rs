//! The database pool and the migrations.
//!
//! Every wait on the database has an end: the server cuts a statement at `statement_timeout`
//! (5 s) and a lock wait at `lock_timeout` (3 s), both set on the database by a migration, so
//! they hold through PgBouncer in transaction mode, which passes no session settings; a request
//! gives up on its own work after its deadline ([`crate::infra::deadline`]); acquiring a connection
//! (connecting included) waits at most 5 s; the checks of a pooled connection on its way out and
//! back wait at most [`CHECK_TIMEOUT`]; and TCP keepalive (with `TCP_USER_TIMEOUT`) ends a
//! connection whose peer vanished without a word.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::infra::config::{Config, ConfigError};
use crate::infra::deadline;

/// Every migration in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The newest migration the database has applied (`None` before the first, or when the
/// migrations' table cannot be read).
pub async fn applied_migration(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar!("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .ok()
        .flatten()
}

/// A pool that connects on first use, so a cold start costs no round trip to the database
/// and a function that never queries never connects.
pub fn lazy_pool(config: &Config) -> Result<PgPool, ConfigError> {
    let invalid = |e: sqlx::Error| ConfigError::Invalid { name: "DATABASE_URL", reason: e.to_string() };
    let options: PgConnectOptions = config.database_url.expose_secret().parse().map_err(invalid)?;
    Ok(pool_options(config.db_max_connections, options.get_port()).connect_lazy_with(options))
}

/// How every pool of the functions behaves: at most `max_connections` to the server listening
/// on `server_port`, none kept open for nothing, and a 503 rather than a long wait when they are
/// all busy.
///
/// A connection is not pinged each time it is handed out (sqlx's default costs a round trip on
/// every request): only one that sat idle long enough for the server, the pooler or a frozen
/// Lambda to have dropped it is checked first, and replaced if it is dead or silent. A busy
/// connection that dies mid-request is a 503, and is dropped from the pool; one that a request
/// abandoned mid-statement (its deadline passed) is checked when it comes back, and dropped
/// unless it answers within [`CHECK_TIMEOUT`] (sqlx's own check on the way back has no limit).
pub fn pool_options(max_connections: u32, server_port: u16) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .after_connect(move |_, _| {
            Box::pin(async move {
                keep_alive(server_port);
                Ok(())
            })
        })
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    answers(conn).await?;
                }
                Ok(true)
            })
        })
        .after_release(|conn, _| {
            Box::pin(async move {
                if deadline::overran_within(ABANDONED_WITHIN) {
                    answers(conn).await?;
                }
                Ok(true)
            })
        })
}

/// How long a pooled connection may sit idle before it is checked on its way out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How long a check of a pooled connection may wait for its answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How soon after a request overran its deadline the connections coming back are checked: the
/// one it dropped mid-statement comes back at once.
const ABANDONED_WITHIN: Duration = Duration::from_secs(10);

/// Pings `conn`: an error (the pool then closes it without a word to the server) unless the
/// server answers within [`CHECK_TIMEOUT`].
async fn answers(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    match tokio::time::timeout(CHECK_TIMEOUT, conn.ping()).await {
        Ok(answered) => answered,
        Err(_) => Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
    }
}

/// TCP keepalive on the connections to the database (sqlx opens them and sets no option but
/// `TCP_NODELAY`): a peer that vanished without closing (a NAT that forgot the connection, a
/// host that went away) is found after [`KEEPALIVE_IDLE`] of silence and a few probes, and data
/// sent into a black hole fails the connection after [`USER_TIMEOUT`], instead of the kernel's
/// defaults of two hours and fifteen minutes. Called as each connection opens; connections that
/// have it already are left alone.
fn keep_alive(server_port: u16) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    crate::infra::sockets::for_each_connection_to(
        |peer| peer.port() == server_port,
        |socket| {
            if socket.keepalive().unwrap_or(true) {
                return;
            }
            let _ = socket.set_tcp_keepalive(&keepalive);
            #[cfg(target_os = "linux")]
            let _ = socket.set_tcp_user_timeout(Some(USER_TIMEOUT));
        },
    );
}

/// Silence on a database connection before the first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);

/// How long data sent to the database may stay unacknowledged before the connection fails.
const USER_TIMEOUT: Duration = Duration::from_secs(10);
