//! The one error type of every function. Each error has a [`kind`](Error::kind) (what went
//! wrong, in no protocol's words) and a [`Code`] (the machine-readable name the API sends); the
//! HTTP layer (`http::error`) maps the kind to a status and renders the API's error shape,
//! `{"error": {"code", "message", "request_id", "details"?}}`.
//!
//! Internal causes keep their source chain for the log; the caller sees only a clean
//! message.

use serde::Serialize;
use utoipa::ToSchema;

/// What a handler returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: malformed JSON, wrong types, unknown query values.
    #[error("{0}")]
    BadRequest(String),
    /// 400 `invalid_token`: a password-reset or verification token that is unknown, expired,
    /// already used or forged; one answer for all, so none can be told apart.
    #[error("this link is invalid, has expired or was already used; ask for a new one")]
    InvalidToken,
    /// 400 `invalid_code`: a sign-in's one-time code that is unknown, expired or already
    /// redeemed; one answer for all.
    #[error("this sign-in code is invalid, has expired or was already used; sign in again")]
    InvalidCode,
    /// 401: no, invalid or expired token; revoked session; deleted user.
    #[error("authentication required")]
    Unauthorized,
    /// 401 with a reason for the caller (e.g. "invalid email or password").
    #[error("{0}")]
    UnauthorizedWith(&'static str),
    /// 403: the account is disabled.
    #[error("this account is disabled")]
    AccountDisabled,
    /// 403: the route needs a verified e-mail address (`REQUIRE_VERIFIED_EMAIL`).
    #[error("verify your e-mail address first: POST /api/auth/email/verify/send sends a new link")]
    EmailUnverified,
    /// 404: no such route or resource, or one that is not the caller's.
    #[error("not found")]
    NotFound,
    /// 404 `unknown_provider`: no sign-in provider is configured under this id.
    #[error("no sign-in provider is configured under this id")]
    UnknownProvider,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 with a specific code (`conflict`, `immutable_field`, `profile_incomplete`).
    #[error("{message}")]
    Conflict {
        /// The machine-readable code.
        code: Code,
        /// What happened, for a person.
        message: String,
    },
    /// 413.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// 415.
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: every invalid field, by its JSON path.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 429.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until an attempt may succeed; sent as `Retry-After`.
        retry_after_secs: u64,
    },
    /// 429 `quota_exceeded`: the caller's daily allowance is used up; `details` says which.
    #[error("your daily {} quota is used up; it renews at {}", .0.quota, .0.resets_at.format("%H:%M UTC"))]
    QuotaExceeded(QuotaDetails),
    /// 502: the language model failed and nothing could stand in.
    #[error("the language model is unavailable")]
    ModelUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 503: the database or the store cannot be reached.
    #[error("a backing service is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 503: another request is doing this very work (answering this message, making this
    /// chapter) and holds its claim for a while yet.
    #[error("{what}; retry in {retry_after_secs} s")]
    Busy {
        /// What is being done.
        what: &'static str,
        /// Seconds until the other request's claim lapses; sent as `Retry-After`.
        retry_after_secs: u64,
    },
    /// 500 from the database.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// 500: a bug.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What kind of failure an [`Error`] is: what the caller did wrong, or what failed under them.
/// The HTTP layer answers each kind with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed, or carries a link or code that is no good (400).
    BadRequest,
    /// The caller is not signed in, or not as who they claim (401).
    Unauthenticated,
    /// The caller is known and may not do this (403).
    Forbidden,
    /// No such thing, or not the caller's (404).
    NotFound,
    /// The resource does not do this (405).
    MethodNotAllowed,
    /// The request contradicts the state of the resource (409).
    Conflict,
    /// The request is larger than allowed (413).
    TooLarge,
    /// The request's body is not JSON (415).
    UnsupportedMediaType,
    /// Fields with invalid values (422).
    Invalid,
    /// Too many attempts, or a quota used up (429).
    TooMany,
    /// The language model failed and nothing could stand in (502).
    UpstreamFailed,
    /// A backing service cannot serve now, or another request does this work (503).
    Unavailable,
    /// A bug or a database failure the caller cannot mend (500).
    Internal,
}

/// The machine-readable code of an error: every value the API sends.
// The document's `Error.code` enum is derived from this type, so a code cannot be sent
// without being listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// 400: malformed JSON, wrong types, unknown query values.
    BadRequest,
    /// 400: an unknown, expired, spent or forged reset or verification token.
    InvalidToken,
    /// 400: an unknown, expired or spent one-time sign-in code.
    InvalidCode,
    /// 401.
    Unauthorized,
    /// 403: the account is disabled.
    AccountDisabled,
    /// 403: the route needs a verified e-mail address.
    EmailUnverified,
    /// 404.
    NotFound,
    /// 404: no sign-in provider is configured under this id.
    UnknownProvider,
    /// 405.
    MethodNotAllowed,
    /// 409.
    Conflict,
    /// 409: the message already has an answer.
    AlreadyAnswered,
    /// 409: an account already uses the address.
    EmailTaken,
    /// 409: the address is already verified.
    EmailAlreadyVerified,
    /// 409: the account at the provider is linked to another user.
    AccountAlreadyLinked,
    /// 409: the user has another account at this provider linked already.
    ProviderAlreadyLinked,
    /// 409: removing it would leave the user no way to sign in.
    LastSignInMethod,
    /// 409: an onboarding answer cannot change.
    ImmutableField,
    /// 409: no onboarded profile.
    ProfileIncomplete,
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 422.
    ValidationFailed,
    /// 429: too many attempts.
    RateLimited,
    /// 429: a daily quota is used up.
    QuotaExceeded,
    /// 502.
    ModelUnavailable,
    /// 503.
    Unavailable,
    /// 500.
    Internal,
}

/// As sent (serde's name): `validation_failed`.
impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(code)) => f.write_str(&code),
            _ => Err(std::fmt::Error),
        }
    }
}

/// One invalid field: its JSON path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path, e.g. `software_context.languages[1]`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// Which daily quota a caller used up, shown in a `quota_exceeded` error's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QuotaDetails {
    /// Which daily allowance is used up.
    #[schema(schema_with = crate::schema::one_of_strings::<QuotaNames>)]
    pub quota: &'static str,
    /// The day's quota.
    pub limit: i64,
    /// What was used today.
    pub used: i64,
    /// Always `day`.
    #[schema(schema_with = crate::schema::one_of_strings::<Periods>)]
    pub period: &'static str,
    /// The next UTC midnight; `Retry-After` counts down to it.
    pub resets_at: chrono::DateTime<chrono::Utc>,
}

/// The values of [`QuotaDetails::quota`].
struct QuotaNames;
impl crate::schema::Strings for QuotaNames {
    const ALL: &[&str] = &["messages", "tokens", "conversations"];
    const DESCRIPTION: Option<&str> = Some("Which daily allowance is used up.");
}

/// The values of [`QuotaDetails::period`].
struct Periods;
impl crate::schema::Strings for Periods {
    const ALL: &[&str] = &["day"];
}

/// Collects every invalid field of a request before failing, so a 422 names them all.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    /// Keeps the value of a parse, or records its error under `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|message| self.add(field, message)).ok()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was recorded, else the 422 listing everything.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::Validation(self.0)) }
    }
}

impl Error {
    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { code: Code::Conflict, message: message.into() }
    }

    /// 422 for a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError { field: field.into(), message: message.into() }])
    }

    /// The 400 of a JSON body whose shape is not the one expected (`reason` says how).
    pub fn wrong_shape(reason: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("the JSON body has the wrong shape: {reason}"))
    }

    /// Wraps any error as a 500.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }

    /// The kind of failure, which decides the status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BadRequest(_) | Self::InvalidToken | Self::InvalidCode => ErrorKind::BadRequest,
            Self::Unauthorized | Self::UnauthorizedWith(_) => ErrorKind::Unauthenticated,
            Self::AccountDisabled | Self::EmailUnverified => ErrorKind::Forbidden,
            Self::NotFound | Self::UnknownProvider => ErrorKind::NotFound,
            Self::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::PayloadTooLarge { .. } => ErrorKind::TooLarge,
            Self::UnsupportedMediaType => ErrorKind::UnsupportedMediaType,
            Self::Validation(_) => ErrorKind::Invalid,
            Self::RateLimited { .. } | Self::QuotaExceeded(_) => ErrorKind::TooMany,
            Self::ModelUnavailable(_) => ErrorKind::UpstreamFailed,
            Self::Unavailable(_) | Self::Busy { .. } => ErrorKind::Unavailable,
            Self::Database(_) | Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Seconds the caller should wait before trying again, when that is known: a rate limit,
    /// a claim another request holds, a used-up quota (until it renews), or an unavailable
    /// backing service (a restarting compute or a full pool is back within seconds).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::Busy { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::QuotaExceeded(quota) => {
                Some((quota.resets_at - chrono::Utc::now()).num_seconds().max(1).unsigned_abs())
            }
            Self::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The machine-readable code of docs/api.md.
    pub fn code(&self) -> Code {
        match self {
            Self::BadRequest(_) => Code::BadRequest,
            Self::InvalidToken => Code::InvalidToken,
            Self::InvalidCode => Code::InvalidCode,
            Self::Unauthorized | Self::UnauthorizedWith(_) => Code::Unauthorized,
            Self::AccountDisabled => Code::AccountDisabled,
            Self::EmailUnverified => Code::EmailUnverified,
            Self::NotFound => Code::NotFound,
            Self::UnknownProvider => Code::UnknownProvider,
            Self::MethodNotAllowed => Code::MethodNotAllowed,
            Self::Conflict { code, .. } => *code,
            Self::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Self::UnsupportedMediaType => Code::UnsupportedMediaType,
            Self::Validation(_) => Code::ValidationFailed,
            Self::RateLimited { .. } => Code::RateLimited,
            Self::QuotaExceeded(_) => Code::QuotaExceeded,
            Self::ModelUnavailable(_) => Code::ModelUnavailable,
            Self::Unavailable(_) | Self::Busy { .. } => Code::Unavailable,
            Self::Database(_) | Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) { Self::Unavailable(Box::new(e)) } else { Self::Database(e) }
    }
}

/// True when a database error says nothing about the request, only that the database cannot
/// serve it now: the caller may retry. Besides an unreachable server and an exhausted pool,
/// that is a connection the server or the pooler ended (Neon suspends idle computes and
/// restarts them), a server out of connections, and a statement or lock time-out.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // A connection cut mid-message reads as a protocol error.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions (PgBouncer's "server conn crashed?" is 08P01);
            // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now;
            // 53300: too many connections; 57014: statement time-out; 55P03: lock time-out;
            // 40P01 and 40001: a deadlock or serialization failure, which a retry resolves.
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "57014" | "55P03" | "40P01" | "40001")
        }),
        _ => false,
    }
}

/// The `Retry-After` of a 503: a restarting compute or a full pool is back within seconds.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// Turns a constraint violation into the error the caller deserves, instead of a 500.
pub trait ResultExt<T> {
    /// If the error is a violation of the constraint (or unique index) `name`, return `map(e)`.
    fn on_constraint(self, name: &str, map: impl FnOnce(&sqlx::Error) -> Error) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn on_constraint(self, name: &str, map: impl FnOnce(&sqlx::Error) -> Error) -> Result<T> {
        self.map_err(|e| match e.into() {
            Error::Database(db) if constraint_of(&db) == Some(name) => map(&db),
            other => other,
        })
    }
}

fn constraint_of(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Displays an error with all its sources, `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
