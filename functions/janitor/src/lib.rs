//! The janitor: a clean-up run hourly by an EventBridge schedule, not over HTTP. It removes
//! expired sessions and verification rows, failed password checks and address admissions older
//! than the limits need, usage counters of days long past, the token reservations of model calls
//! whose process died (their tokens given back), guest conversations no guest token
//! can reach any more, and personalized chapters nobody can be served any more (stored under a
//! fingerprint the user's current profile no longer gives the chapter, or made for an old
//! chapter version): object first, then row. It
//! answers (and logs) how many of each it removed.
//!
//! What counts as stale, and the removal itself, live in the core crate, in the module that
//! owns each table (`auth::sessions`, `auth::recovery`, `auth::rate_limit`, `usage`, `guests`,
//! `personalize::cache`); the janitor holds no SQL, only how long records are kept.

pub use crate::lambda::{handle, run_on_lambda};
pub use crate::sweep::{Sweep, sweep};

mod lambda;
mod sweep;
