//! The local runner: every function's routes in one HTTP server on `127.0.0.1:3000` (`PORT`
//! to change), so the code that answers on Lambda answers on a laptop too. It applies the
//! migrations at start-up and serves the OpenAPI document at `/api/openapi.json`.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use primer_shared::{AppState, app, db, telemetry};

/// The HTTP contract, as the repository keeps it.
const OPENAPI: &str = include_str!("../../openapi.json");

/// Every function's routes, merged.
fn routes() -> Router<AppState> {
    auth::routes()
        .merge(profile::routes())
        .merge(chapters::routes())
        .merge(conversations::routes())
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
}

#[tokio::main]
async fn main() -> ExitCode {
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
    let state = AppState::from_env().await?;
    db::MIGRATOR.run(&state.pool).await?;
    let port: u16 = std::env::var("PORT").ok().map(|p| p.parse()).transpose()?.unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("primer is listening on http://{}", listener.local_addr()?);
    let service = app::service(routes(), state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
