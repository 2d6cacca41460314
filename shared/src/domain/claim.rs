//! What the claims on slow work share (a reply to a question, a personalized chapter): how long
//! one outlives its work, and how a request dropped while it holds one gives it up.
//!
//! A claim is a lease in a row, taken by one statement (see `conversations::claim_reply` and
//! `personalize::cache`); it lasts until the request that took it must have ended, by its
//! function's timeout, and [`CLAIM_MARGIN`] more. A request that fails gives its claim up at
//! once; one that is dropped (its deadline passed, its client left with the runner) cannot wait
//! for that, nor can one whose own try fails, so [`give_up_in_background`] does it from a task
//! of its own, trying again while the database does not answer, until the claim would have
//! lapsed anyway. A claim counts as held until giving it up has succeeded: a try cut short with
//! its request leaves it to that task too.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ErrorChain, Result};
use crate::infra::telemetry;

/// How long a claim outlives the moment its request must have ended: time for the function to
/// be gone for sure, and for clocks to disagree a little.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(2);

/// How long one attempt at giving a claim up may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Gives up a claim of a dropped request from a task of its own: `release` is tried until it
/// succeeds or `lapses_at`, when the claim lapses by itself.
pub fn give_up_in_background<F, Fut>(what: &'static str, lapses_at: Instant, release: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    tokio::spawn(telemetry::in_request_context(async move {
        loop {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, release()).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::warn!(what, error = %ErrorChain(&e), "giving up a claim failed"),
                Err(_) => tracing::warn!(what, "giving up a claim timed out"),
            }
            if Instant::now() + Duration::from_secs(1) >= lapses_at {
                tracing::warn!(what, "the claim lapses by itself");
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }));
}
