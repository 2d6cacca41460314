//! The local runner's binary: configuration from the environment, the migrations, then
//! [`local::serve`] until Ctrl-C.

use std::process::ExitCode;

use primer_shared::{AppState, db, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %primer_shared::error::ErrorChain(e.as_ref()), "the local runner stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let state = AppState::from_env().await?;
    db::MIGRATOR.run(&state.pool).await?;
    let port: u16 = std::env::var("PORT").ok().map(|p| p.parse()).transpose()?.unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("primer is listening on http://{}", listener.local_addr()?);
    local::serve(listener, local::router(state), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
