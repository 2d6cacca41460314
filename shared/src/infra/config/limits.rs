//! The limits a deployment sets: password checks and anonymous entry points per address,
//! e-mails per account, and the readers' daily quotas with the model's budget. The domain
//! enforces them (`domain::auth::rate_limit`, `domain::usage`); this is only what they are.

use std::time::Duration;

/// How many failed password checks within how long lock further checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed (or in-flight) checks per account and source within the window: from the
    /// account's known places, one budget each; in one of its sessions, one each; from
    /// everywhere else, one together.
    pub per_account: i64,
    /// Failed checks per client address within the window, not counting those of accounts
    /// that then signed in from it.
    pub per_address: i64,
    /// The sliding window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_account: 5, per_address: 100, window: Duration::from_secs(15 * 60) }
    }
}

/// How many requests one client address may make through an anonymous entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimit {
    /// Admitted requests per address within the window.
    pub per_address: i64,
    /// The sliding window.
    pub window: Duration,
}

/// How many e-mails of one kind one account may be sent within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountMailLimit {
    /// E-mails per account (or per address without an account) within the window.
    pub per_account: i64,
    /// The sliding window.
    pub window: Duration,
}

/// A reader's allowance per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyQuota {
    /// Messages posted to the tutor.
    pub messages: i64,
    /// Model tokens (prompt and completion), of the tutor and of personalization.
    pub tokens: i64,
    /// Conversations created.
    pub conversations: i64,
}

/// Quotas, the deployment's budget, and the length limit of model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// A signed-in user's day (`QUOTA_USER_*`).
    pub user: DailyQuota,
    /// A guest's day (`QUOTA_GUEST_*`): far below a user's.
    pub guest: DailyQuota,
    /// Model tokens the whole deployment may use per day (`MODEL_DAILY_TOKEN_BUDGET`); once
    /// spent, the offline tutor and the rule-based engine answer.
    pub daily_token_budget: i64,
    /// The part of it all guests together may use (`MODEL_DAILY_GUEST_TOKEN_BUDGET`), so
    /// that minted guest tokens cannot spend the users' share.
    pub guest_daily_token_budget: i64,
    /// `max_tokens` of a tutor reply (`MODEL_MAX_TOKENS`).
    pub reply_max_tokens: u32,
    /// `max_tokens` of a model-personalized chapter (`PERSONALIZE_MAX_TOKENS`).
    pub personalize_max_tokens: u32,
    /// Whether a signed-in user needs a verified e-mail address for what the model serves
    /// (`REQUIRE_VERIFIED_EMAIL`, off by default; only with a model configured): posting to
    /// the tutor, and every model call. Guests are bound by their own quota instead.
    pub require_verified_email: bool,
}

impl Default for UsageLimits {
    fn default() -> Self {
        Self {
            user: DailyQuota { messages: 200, tokens: 400_000, conversations: 50 },
            guest: DailyQuota { messages: 10, tokens: 30_000, conversations: 10 },
            daily_token_budget: 5_000_000,
            guest_daily_token_budget: 1_000_000,
            reply_max_tokens: 1_024,
            personalize_max_tokens: 8_192,
            require_verified_email: false,
        }
    }
}
