//! `cargo run -p local`: the local runner (see the crate's library). It serves every
//! function's routes until Ctrl-C, on a database migrated beforehand (`admin migrate`, over
//! the direct URL: the migrator's lock is session-scoped, which a transaction-mode pooler
//! cannot carry); it refuses to start on an older schema.

use std::process::ExitCode;

use primer_shared::{AppState, infra::db, infra::telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    primer_shared::http::app::limit_allocator_arenas();
    telemetry::init();
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %primer_shared::error::ErrorChain(e.as_ref()), "the local runner stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let mut state = AppState::from_env().await?;
    require_current_schema(&state.pool).await?;
    let port: u16 = std::env::var("PORT").ok().map(|p| p.parse()).transpose()?.unwrap_or(local::DEFAULT_PORT);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    // Without a site of its own, e-mailed links lead to the pages this runner serves.
    if std::env::var_os("FRONTEND_URL").is_none() {
        std::sync::Arc::make_mut(&mut state.config).email.frontend_url = url.clone();
    }
    tracing::info!(
        "primer is listening on {url} (the API under {url}/api, the example site at {url}/); e-mailed links lead to {}",
        state.config.email.frontend_url
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    local::serve(listener, local::app(state), local::ConnectionLimits::default(), shutdown).await?;
    Ok(())
}

/// Fails unless every migration of this build has been applied.
async fn require_current_schema(pool: &sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    let latest = db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default();
    let applied = db::applied_migration(pool).await;
    if applied.is_some_and(|v| v >= latest) {
        return Ok(());
    }
    Err(format!(
        "the database is not migrated to {latest} (it is at {}): run `cargo run -p local --bin admin -- migrate` over the direct URL first",
        applied.map_or("nothing".to_owned(), |v| v.to_string())
    )
    .into())
}
