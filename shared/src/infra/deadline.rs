//! Every wait has an end: the deadline of a request's own work.
//!
//! A request's own work is its database round trips and its computation. It may take
//! [`crate::infra::config::Config::work_deadline`] in all (5 s by default); past that the request is
//! dropped where it stands and answered 503 `unavailable` with `Retry-After`, whatever it was
//! waiting for. That is how a database connection that stops answering (a stalled pooler, a
//! network that drops packets, a server that hangs) ends a request within seconds: sqlx has no
//! deadline of its own per statement, and a statement that sent its query and waits for the
//! answer would otherwise wait as long as the TCP connection lives. The server's own
//! `statement_timeout` (a migration sets it) bounds only the work it can see.
//!
//! Waits that have a bound of their own do not count against the deadline: they run inside
//! [`exempt`]. Those are the model's calls (`MODEL_TIMEOUT_SECS` and the like), the blob store's
//! operations (`PRIMER_S3_TIMEOUT_MS`), sending an e-mail, a password hash (a queue of bounded
//! length and a bounded computation), the pauses of a request polling for another one's claim,
//! a forgot-password request's minimum time, and reading the request body (which the platform,
//! or the local runner, bounds). Anything new that waits on the network for longer than a
//! moment must be bounded and exempted the same way, or it ends its request at the deadline.
//!
//! Dropping a request in the middle of a statement leaves that connection waiting for an
//! answer; the pool checks a connection returned in the moments after such a drop within a
//! second, and discards it when it does not answer (see [`crate::infra::db`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use tokio::task::futures::TaskLocalFuture;
// Tokio's clock, so that tests can pause it.
use tokio::time::{Instant as ClockInstant, Sleep};

tokio::task_local! {
    static CLOCK: Arc<Clock>;
}

/// The time a piece of work has used of its budget, stopped while it waits in [`exempt`].
#[derive(Debug)]
struct Clock {
    budget: Duration,
    state: Mutex<Running>,
}

#[derive(Debug)]
struct Running {
    /// Time used before `since`.
    spent: Duration,
    /// When the clock last started; `None` while it is stopped.
    since: Option<ClockInstant>,
    /// How many exempt waits are under way.
    exempt: u32,
}

impl Clock {
    fn started(budget: Duration) -> Arc<Self> {
        let running = Running { spent: Duration::ZERO, since: Some(ClockInstant::now()), exempt: 0 };
        Arc::new(Self { budget, state: Mutex::new(running) })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is left of the budget; `None` while the clock is stopped.
    fn left(&self) -> Option<Duration> {
        let running = self.running();
        let since = running.since?;
        Some(self.budget.saturating_sub(running.spent + since.elapsed()))
    }

    /// Stops the clock until the returned guard goes.
    fn pause(self: &Arc<Self>) -> Pause {
        let mut running = self.running();
        if running.exempt == 0
            && let Some(since) = running.since.take()
        {
            running.spent += since.elapsed();
        }
        running.exempt += 1;
        Pause(self.clone())
    }
}

/// Stops a clock while it lives.
#[derive(Debug)]
struct Pause(Arc<Clock>);

impl Drop for Pause {
    fn drop(&mut self) {
        let mut running = self.0.running();
        running.exempt -= 1;
        if running.exempt == 0 {
            running.since = Some(ClockInstant::now());
        }
    }
}

/// A piece of work used up its budget.
#[derive(Debug, thiserror::Error)]
#[error("the request's own work (database statements and computation) took longer than {0:?}")]
pub struct Overrun(Duration);

/// Runs `work` with `budget` for its own work: [`Within`] yields `Err(Overrun)` (and drops
/// `work`) once the time `work` spends outside [`exempt`] waits passes `budget`.
pub fn within<F: Future>(budget: Duration, work: F) -> Within<F> {
    let clock = Clock::started(budget);
    Within {
        work: Box::pin(CLOCK.scope(clock.clone(), work)),
        clock,
        timer: Box::pin(tokio::time::sleep(budget)),
    }
}

/// The future of [`within`].
pub struct Within<F: Future> {
    work: Pin<Box<TaskLocalFuture<Arc<Clock>, F>>>,
    clock: Arc<Clock>,
    timer: Pin<Box<Sleep>>,
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Overrun>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.work.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        // While stopped, only the work can wake us: an exempt wait that ends is polled by it.
        let Some(left) = self.clock.left() else { return Poll::Pending };
        if left.is_zero() {
            note_overrun();
            return Poll::Ready(Err(Overrun(self.clock.budget)));
        }
        let at = ClockInstant::now() + left;
        self.timer.as_mut().reset(at);
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                note_overrun();
                Poll::Ready(Err(Overrun(self.clock.budget)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `wait`, which is bounded by a limit of its own (a model call, a store operation, an
/// e-mail, a password hash, a pause between polls), without counting it against the deadline
/// of the work around it. Outside any [`within`], it simply runs `wait`.
pub async fn exempt<F: Future>(wait: F) -> F::Output {
    let _paused = CLOCK.try_with(|clock| clock.pause()).ok();
    wait.await
}

/// A request body whose waits for the client do not count against the work's deadline: the
/// platform (or the local runner) bounds how long a client may take to send it.
pub fn exempt_body(body: Body) -> Body {
    match CLOCK.try_with(Arc::clone) {
        Ok(clock) => Body::new(ExemptBody { inner: body, clock, paused: None }),
        Err(_) => body,
    }
}

struct ExemptBody {
    inner: Body,
    clock: Arc<Clock>,
    paused: Option<Pause>,
}

impl http_body::Body for ExemptBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            if self.paused.is_none() {
                self.paused = Some(self.clock.pause());
            }
        } else {
            self.paused = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// When a piece of work last overran, in milliseconds since the process's first look.
static LAST_OVERRUN: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn note_overrun() {
    // 0 means "never": a first overrun at the epoch counts as a millisecond after it.
    let at = epoch().elapsed().as_millis().max(1) as u64;
    LAST_OVERRUN.store(at, Ordering::Relaxed);
}

/// True when a piece of work overran within `window`: a connection it dropped in the middle of
/// a statement may be returned to the pool about now.
pub fn overran_within(window: Duration) -> bool {
    let at = LAST_OVERRUN.load(Ordering::Relaxed);
    at != 0 && epoch().elapsed().as_millis() as u64 <= at + window.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_past_its_budget_is_dropped() {
        let outcome = within(Duration::from_secs(5), tokio::time::sleep(Duration::from_secs(60))).await;
        assert!(outcome.is_err());
        assert!(overran_within(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn exempt_waits_do_not_count() {
        let work = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            exempt(tokio::time::sleep(Duration::from_secs(60))).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            exempt(async { exempt(tokio::time::sleep(Duration::from_secs(30))).await }).await;
            "done"
        };
        assert_eq!(within(Duration::from_secs(5), work).await.unwrap(), "done");
        // The time before and after exempt waits adds up.
        let work = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            exempt(tokio::time::sleep(Duration::from_secs(60))).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        };
        assert!(within(Duration::from_secs(5), work).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn outside_any_deadline_exempt_just_waits() {
        exempt(tokio::time::sleep(Duration::from_secs(10))).await;
    }
}
