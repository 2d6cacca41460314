//! The janitor on Lambda: the handler the schedule invokes, and the whole `main`.

use primer_shared::error::ErrorChain;
use primer_shared::infra::config::Tokens;
use primer_shared::{AppState, Result, infra::telemetry};
use serde_json::Value;

use crate::sweep::{Sweep, sweep};

/// The Lambda handler: the schedule's event carries nothing the sweep needs.
pub async fn handle(state: &AppState, _event: Value) -> Result<Sweep, lambda_runtime::Error> {
    match sweep(state).await {
        Ok(sweep) => {
            tracing::info!(
                sessions = sweep.sessions,
                verifications = sweep.verifications,
                spent_refresh_tokens = sweep.spent_refresh_tokens,
                password_checks = sweep.password_checks,
                address_admissions = sweep.address_admissions,
                known_places = sweep.known_places,
                usage_days = sweep.usage_days,
                lapsed_reservations = sweep.lapsed_reservations,
                guest_conversations = sweep.guest_conversations,
                personalized_chapters = sweep.personalized_chapters,
                personalized_chapters_failed = sweep.personalized_chapters_failed,
                "janitor swept"
            );
            Ok(sweep)
        }
        Err(e) => {
            tracing::error!(error = %ErrorChain(&e), "janitor failed");
            Err(e.into())
        }
    }
}

/// The whole `main`: logging, state from the environment, then Lambda's loop.
pub async fn run_on_lambda() -> Result<(), lambda_runtime::Error> {
    primer_shared::http::app::limit_allocator_arenas();
    telemetry::init();
    // It signs and checks no token, and is given no JWT_SECRET.
    let state = AppState::from_env_for(Tokens::NotHandled)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    lambda_runtime::run(lambda_runtime::service_fn(|event: lambda_runtime::LambdaEvent<Value>| {
        let state = state.clone();
        async move { handle(&state, event.payload).await }
    }))
    .await
}
