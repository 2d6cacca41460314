//! Configuration, read once per cold start from the environment.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

mod jwt;
mod limits;
pub mod sign_in;

pub use crate::infra::model::ModelConfig;
pub use jwt::{JwtKey, JwtKeys};
pub use limits::{AccountMailLimit, AddressLimit, DailyQuota, LoginLimits, UsageLimits};
pub use sign_in::SignInSettings;

/// The longest making a chapter by rule may take once claimed: the rules themselves take
/// milliseconds; the store's read and write, and the few statements around them, the rest.
/// With a model, its budget comes on top.
pub const RULES_WORK: Duration = Duration::from_secs(8);

/// Everything a function needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where PostgreSQL is (Neon's pooled URL in the cloud).
    pub database_url: SecretString,
    /// Connections per instance: Lambda serves one request at a time, so 1-2 suffice.
    pub db_max_connections: u32,
    /// How access tokens are signed and checked.
    pub jwt: JwtConfig,
    /// The `BETTER_AUTH_SECRET` of a Better-Auth frontend sharing the database; when set, its
    /// session tokens and cookies are accepted as callers (see `auth::better_auth`).
    pub better_auth_secret: Option<SecretString>,
    /// Whether a Better-Auth user's scrypt hash is replaced by argon2id at their first primer
    /// login (`UPGRADE_BETTER_AUTH_HASHES`). Off by default when `BETTER_AUTH_SECRET` is set,
    /// so the Better-Auth frontend can still verify them; always on without it.
    pub upgrade_better_auth_hashes: bool,
    /// Where personalized chapters are stored.
    pub blob: BlobConfig,
    /// How long model-based personalization may take before the rule-based result is served
    /// instead; under API Gateway's 30 s.
    pub personalize_budget: Duration,
    /// The language model; `None` without `MODEL_API_KEY`, and the offline engines answer.
    pub model: Option<ModelConfig>,
    /// Limits on logins, sign-ups, guest tokens and refresh-token reuse.
    pub limits: AbuseLimits,
    /// Daily quotas of readers and the deployment's daily model budget.
    pub usage: UsageLimits,
    /// How e-mail (password resets, address verification) is delivered, and its links.
    pub email: EmailConfig,
    /// The providers readers may sign in with besides a password (GitHub, Google, OpenID
    /// Connect issuers), and where a sign-in may return them.
    pub sign_in: SignInSettings,
    /// How long a request's own work (database round trips and computation, not the waits
    /// bounded elsewhere) may take in all before it is a 503 (`WORK_DEADLINE_MS`, 5 s): see
    /// [`crate::infra::deadline`].
    pub work_deadline: Duration,
    /// How long each kind of function may run, as template.yaml gives it Lambda: what claims on
    /// work are sized by.
    pub timeouts: FunctionTimeouts,
}

/// How long a function may run before Lambda ends it (template.yaml's `Timeout`): a claim on
/// work lasts until the function that took it must have ended, and a little more, so that a
/// claimant that died is taken over soon after, never while it may still be working. The
/// local runner has no such limit of its own, so the work is cut at the same time there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionTimeouts {
    /// Every function behind the HTTP API (`FUNCTION_TIMEOUT_SECS`, 29 s: API Gateway gives up
    /// at 30): JSON posts and retries, personalized chapters.
    pub json: Duration,
    /// The streamed replies' function (`STREAM_FUNCTION_TIMEOUT_SECS`, 150 s): posts and
    /// retries that ask for `text/event-stream`.
    pub stream: Duration,
}

impl Default for FunctionTimeouts {
    fn default() -> Self {
        Self { json: Duration::from_secs(29), stream: Duration::from_secs(150) }
    }
}

/// The limits that keep logins, sign-ups and guest tokens from being abused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Failed password checks per account and per address (`LOGIN_*`).
    pub login: LoginLimits,
    /// Registrations per client address (`REGISTER_*`).
    pub register: AddressLimit,
    /// Guest tokens per client address (`GUEST_TOKENS_*`).
    pub guest: AddressLimit,
    /// How long a just-rotated refresh token still gets its successor instead of revoking the
    /// session (`REFRESH_REUSE_SECS`): two tabs refreshing at once.
    pub refresh_reuse: Duration,
    /// Forgot-password requests per client address (`PASSWORD_FORGOT_*`): each may send an
    /// e-mail.
    pub password_forgot: AddressLimit,
    /// E-mails of one kind (password reset, address verification) sent to one account
    /// (`EMAILS_PER_ACCOUNT`, `EMAILS_WINDOW_SECS`), so nobody can flood a reader's inbox.
    pub account_mails: AccountMailLimit,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self {
            login: LoginLimits::default(),
            // A class signing up together from one school address fits; a script does not.
            register: AddressLimit { per_address: 50, window: Duration::from_secs(3600) },
            guest: AddressLimit { per_address: 20, window: Duration::from_secs(3600) },
            refresh_reuse: Duration::from_secs(10),
            password_forgot: AddressLimit { per_address: 30, window: Duration::from_secs(3600) },
            account_mails: AccountMailLimit { per_account: 3, window: Duration::from_secs(3600) },
        }
    }
}

/// E-mail: how it leaves, who sends it, where its links lead and how long they work.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// How mail is delivered (`EMAIL_DELIVERY`).
    pub delivery: EmailDelivery,
    /// The sender's address (`EMAIL_FROM`); with SES, an identity verified there.
    pub from_address: String,
    /// The sender's display name (`EMAIL_FROM_NAME`).
    pub from_name: String,
    /// The reader-facing site (`FRONTEND_URL`, no trailing `/`): links go to its
    /// `/reset-password?token=...` and `/verify-email?token=...` pages.
    pub frontend_url: String,
    /// How long a password-reset link works (`PASSWORD_RESET_TTL_SECS`, default 1 hour).
    pub reset_ttl: Duration,
    /// How long an address-verification link works (`EMAIL_VERIFICATION_TTL_SECS`, default
    /// 1 day).
    pub verify_ttl: Duration,
    /// The least time a forgot-password request takes (`PASSWORD_FORGOT_MIN_MS`): longer than
    /// sending an e-mail usually takes, so that an address with an account (a token stored, a
    /// mail sent) answers as late as one without.
    pub forgot_min_duration: Duration,
}

/// The local runner on its default port: the OpenAPI document's first server, and where e-mailed
/// links lead without `FRONTEND_URL` (the runner serves the two pages they open,
/// `/verify-email` and `/reset-password`, itself).
pub const LOCAL_RUNNER_URL: &str = "http://127.0.0.1:8790";

impl EmailConfig {
    /// The embedded default: an outbox folder, links to the local runner's pages.
    pub fn outbox(dir: impl Into<PathBuf>) -> Self {
        Self {
            delivery: EmailDelivery::Outbox { dir: dir.into(), log_links: true },
            from_address: "no-reply@primer.localhost".into(),
            from_name: "primer".into(),
            frontend_url: LOCAL_RUNNER_URL.into(),
            reset_ttl: Duration::from_secs(3600),
            verify_ttl: Duration::from_secs(24 * 3600),
            forgot_min_duration: Duration::from_millis(1000),
        }
    }
}

/// Where e-mail goes.
#[derive(Debug, Clone)]
pub enum EmailDelivery {
    /// RFC 5322 files in a folder (`PRIMER_OUTBOX_DIR`, default the project's `.local/outbox`):
    /// the embedded default, so that a laptop works offline.
    Outbox {
        /// The folder.
        dir: PathBuf,
        /// Whether each mail's link goes to the log too, for a developer to follow. Never on
        /// Lambda: a link is a credential, and logs keep none.
        log_links: bool,
    },
    /// Amazon SES (v2 API).
    Ses(SesConfig),
}

/// Amazon SES, or an SES-compatible server.
#[derive(Debug, Clone, Default)]
pub struct SesConfig {
    /// The configuration set every mail is sent with (`SES_CONFIGURATION_SET`), if any.
    pub configuration_set: Option<String>,
    /// The SES region (`SES_REGION`), when not the function's own.
    pub region: Option<String>,
    /// Another server than AWS's (`SES_ENDPOINT`, e.g. a local test server).
    pub endpoint: Option<String>,
}

/// The blob store: a bucket when one is configured, else a local folder.
#[derive(Debug, Clone)]
pub struct BlobConfig {
    /// The folder used when no bucket is configured (`PRIMER_BLOB_DIR`).
    pub dir: PathBuf,
    /// The bucket (`PRIMER_BUCKET`), if any.
    pub s3: Option<S3Config>,
}

/// An S3 bucket, or one on an S3-compatible server.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// Another server than AWS's (`PRIMER_S3_ENDPOINT`, e.g. `http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`PRIMER_S3_PATH_STYLE`), which most S3-compatible servers need.
    pub path_style: bool,
    /// How long connecting may take (`PRIMER_S3_CONNECT_TIMEOUT_MS`, default 2 s).
    pub connect_timeout: Duration,
    /// How long one operation may take, retries included (`PRIMER_S3_TIMEOUT_MS`, default
    /// 5 s): a store that hangs is a 503 then, not a request that holds its caller.
    pub operation_timeout: Duration,
}

impl S3Config {
    /// A bucket with the default time-outs.
    pub fn new(bucket: impl Into<String>, endpoint: Option<String>, path_style: bool) -> Self {
        Self {
            bucket: bucket.into(),
            endpoint,
            path_style,
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

/// The HS256 keys and the claims every access token must carry.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The key that signs (`JWT_SECRET`, at least 32 bytes) and the keys that still verify what
    /// they signed before a rotation (`JWT_PREVIOUS_SECRETS`, comma-separated).
    pub keys: JwtKeys,
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim of access tokens.
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Lifetime of a session (and of its refresh token) since its last refresh.
    pub session_ttl: Duration,
    /// Lifetime of a guest token.
    pub guest_ttl: Duration,
}

/// A configuration value is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The environment variable.
        name: &'static str,
        /// What it should hold.
        hint: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// A sign-in provider's variable (whose name depends on the provider) is missing or
    /// unusable.
    #[error("{name} {reason}")]
    SignInProvider {
        /// The environment variable.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

const MIN_SECRET_BYTES: usize = 32;

/// Whether a function signs or checks tokens. Each function is given only the secrets it uses
/// (template.yaml), so one that handles none is not given `JWT_SECRET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// It signs or checks tokens: `JWT_SECRET` is required.
    Handled,
    /// It handles none (the janitor): the token keys are not read.
    NotHandled,
}

/// `name` in the project's git-ignored `.local/` folder: the default home of what a laptop
/// keeps (personalized chapters, the e-mail outbox), fixed to the repository the binary was
/// built from, whatever the folder it is started in. On Lambda, `/tmp/primer-<name>`, the only
/// place a function may write.
pub fn default_folder(name: &str, on_lambda: bool) -> PathBuf {
    if on_lambda {
        return PathBuf::from(format!("/tmp/primer-{name}"));
    }
    let core_crate = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    core_crate.parent().unwrap_or(core_crate).join(".local").join(name)
}

impl Config {
    /// Reads the process environment, for a function that handles tokens.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_lookup_for(Tokens::Handled, lookup)
    }

    /// [`Config::from_lookup`] for a function that handles `tokens` or not.
    pub fn from_lookup_for(
        tokens: Tokens,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name| lookup(name).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL").ok_or(ConfigError::Missing {
            name: "DATABASE_URL",
            hint: "a PostgreSQL URL such as postgres://user@host:5432/primer",
        })?;
        let keys = match tokens {
            Tokens::Handled => jwt_keys_from(&get)?,
            Tokens::NotHandled => JwtKeys::none(),
        };
        let model = model_from(&get)?;
        let model_configured = model.is_some();
        let on_lambda = get("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let timeouts = FunctionTimeouts {
            json: Duration::from_secs(parse_or(&get, "FUNCTION_TIMEOUT_SECS", 29)?),
            stream: Duration::from_secs(parse_or(&get, "STREAM_FUNCTION_TIMEOUT_SECS", 150)?),
        };
        let personalize_budget = Duration::from_secs(parse_or(&get, "PERSONALIZE_BUDGET_SECS", 20)?);
        if model.is_some() && personalize_budget + RULES_WORK > timeouts.json {
            return Err(ConfigError::Invalid {
                name: "PERSONALIZE_BUDGET_SECS",
                reason: format!(
                    "the model's budget and the {} s a chapter's storing may take must fit in FUNCTION_TIMEOUT_SECS ({} s)",
                    RULES_WORK.as_secs(),
                    timeouts.json.as_secs()
                ),
            });
        }
        if let Some(model) = &model {
            // A model call that outlasts its function would be cut off by it, and its claim
            // would lapse under it.
            if model.total_timeout + Duration::from_secs(2) > timeouts.json {
                return Err(ConfigError::Invalid {
                    name: "MODEL_TOTAL_TIMEOUT_SECS",
                    reason: format!(
                        "a model call must end 2 s before its function does (FUNCTION_TIMEOUT_SECS, {} s)",
                        timeouts.json.as_secs()
                    ),
                });
            }
            if model.stream_timeout + Duration::from_secs(2) > timeouts.stream {
                return Err(ConfigError::Invalid {
                    name: "MODEL_STREAM_TIMEOUT_SECS",
                    reason: format!(
                        "a streamed answer must end 2 s before its function does (STREAM_FUNCTION_TIMEOUT_SECS, {} s)",
                        timeouts.stream.as_secs()
                    ),
                });
            }
        }
        Ok(Self {
            database_url: database_url.into(),
            db_max_connections: parse_or(&get, "DB_MAX_CONNECTIONS", 2)?,
            jwt: JwtConfig {
                keys,
                issuer: get("JWT_ISSUER").unwrap_or_else(|| "primer".into()),
                audience: get("JWT_AUDIENCE").unwrap_or_else(|| "primer-api".into()),
                access_ttl: Duration::from_secs(parse_or(&get, "ACCESS_TOKEN_TTL_SECS", 15 * 60)?),
                session_ttl: Duration::from_secs(parse_or(&get, "SESSION_TTL_SECS", 30 * 24 * 3600)?),
                guest_ttl: Duration::from_secs(parse_or(&get, "GUEST_TOKEN_TTL_SECS", 7 * 24 * 3600)?),
            },
            better_auth_secret: get("BETTER_AUTH_SECRET").map(Into::into),
            upgrade_better_auth_hashes: get("BETTER_AUTH_SECRET").is_none()
                || parse_or(&get, "UPGRADE_BETTER_AUTH_HASHES", false)?,
            blob: BlobConfig {
                dir: get("PRIMER_BLOB_DIR").map_or_else(|| default_folder("blobs", on_lambda), PathBuf::from),
                s3: s3_from(&get)?,
            },
            personalize_budget,
            model,
            limits: limits_from(&get)?,
            usage: usage_from(&get, model_configured)?,
            email: email_from(&get)?,
            sign_in: SignInSettings::from_lookup(&|name| lookup(name).filter(|v| !v.trim().is_empty()))?,
            work_deadline: Duration::from_millis(parse_or(&get, "WORK_DEADLINE_MS", 5000)?.max(1)),
            timeouts,
        })
    }
}

/// `JWT_SECRET` signs; `JWT_PREVIOUS_SECRETS` (comma-separated) still verify. Every secret has
/// at least 32 bytes.
fn jwt_keys_from(get: &impl Fn(&'static str) -> Option<String>) -> Result<JwtKeys, ConfigError> {
    let long_enough = |name, secret: &str, which: &str| {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{which}has {} bytes; use at least {MIN_SECRET_BYTES}", secret.len()),
            });
        }
        Ok(())
    };
    let secret = get("JWT_SECRET").ok_or(ConfigError::Missing {
        name: "JWT_SECRET",
        hint: "a random secret of at least 32 bytes that signs access tokens",
    })?;
    long_enough("JWT_SECRET", &secret, "it ")?;
    let mut previous = Vec::new();
    for (i, old) in
        get("JWT_PREVIOUS_SECRETS").iter().flat_map(|list| list.split(',')).map(str::trim).enumerate()
    {
        if !old.is_empty() {
            long_enough("JWT_PREVIOUS_SECRETS", old, &format!("secret {} ", i + 1))?;
            previous.push(SecretString::from(old.to_owned()));
        }
    }
    Ok(JwtKeys::new(secret.into(), previous))
}

fn s3_from(get: &impl Fn(&'static str) -> Option<String>) -> Result<Option<S3Config>, ConfigError> {
    let Some(bucket) = get("PRIMER_BUCKET").map(|b| b.trim().to_owned()) else {
        return Ok(None);
    };
    // S3's naming rules, checked here so a typo fails the cold start, not the first request.
    let named_well = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !named_well {
        return Err(ConfigError::Invalid {
            name: "PRIMER_BUCKET",
            reason: "a bucket name has 3-63 lower-case letters, digits, dots or hyphens".into(),
        });
    }
    let endpoint = get("PRIMER_S3_ENDPOINT").map(|e| e.trim().to_owned());
    if endpoint.as_ref().is_some_and(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
        return Err(ConfigError::Invalid {
            name: "PRIMER_S3_ENDPOINT",
            reason: "it must be an http:// or https:// URL".into(),
        });
    }
    let mut s3 = S3Config::new(bucket, endpoint, parse_or(get, "PRIMER_S3_PATH_STYLE", false)?);
    let millis = |name, default: Duration| -> Result<Duration, ConfigError> {
        let ms = parse_or(get, name, default.as_millis() as u64)?;
        if ms == 0 {
            return Err(ConfigError::Invalid { name, reason: "a time-out must be at least 1 ms".into() });
        }
        Ok(Duration::from_millis(ms))
    };
    s3.connect_timeout = millis("PRIMER_S3_CONNECT_TIMEOUT_MS", s3.connect_timeout)?;
    s3.operation_timeout = millis("PRIMER_S3_TIMEOUT_MS", s3.operation_timeout)?;
    Ok(Some(s3))
}

/// The model endpoint, when `MODEL_API_KEY` is set. `MODEL_ALLOWED` (comma-separated) lists
/// the models a conversation may choose; `MODEL_NAME`, the default, is always one of them.
fn model_from(get: &impl Fn(&'static str) -> Option<String>) -> Result<Option<ModelConfig>, ConfigError> {
    let Some(api_key) = get("MODEL_API_KEY") else {
        return Ok(None);
    };
    let raw_url = get("MODEL_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".into());
    let base_url = crate::infra::model::Url::parse(raw_url.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| ConfigError::Invalid {
            name: "MODEL_BASE_URL",
            reason: "it must be an http(s) URL".into(),
        })?;
    let mut model = ModelConfig::new(
        api_key.trim().to_owned().into(),
        base_url,
        get("MODEL_NAME").map_or_else(|| "gpt-4o-mini".into(), |name| name.trim().to_owned()),
    );
    for name in get("MODEL_ALLOWED").iter().flat_map(|list| list.split(',')).map(str::trim) {
        if !name.is_empty() && !model.allowed_models.iter().any(|known| known == name) {
            model.allowed_models.push(name.to_owned());
        }
    }
    model.request_timeout = Duration::from_secs(parse_or(get, "MODEL_TIMEOUT_SECS", 20)?);
    model.total_timeout = Duration::from_secs(parse_or(get, "MODEL_TOTAL_TIMEOUT_SECS", 25)?);
    model.max_retries = parse_or(get, "MODEL_MAX_RETRIES", 2)?;
    model.stream_idle_timeout = Duration::from_secs(parse_or(get, "MODEL_STREAM_IDLE_SECS", 10)?);
    model.stream_timeout = Duration::from_secs(parse_or(get, "MODEL_STREAM_TIMEOUT_SECS", 120)?);
    Ok(Some(model))
}

fn limits_from(get: &impl Fn(&'static str) -> Option<String>) -> Result<AbuseLimits, ConfigError> {
    let d = AbuseLimits::default();
    let secs = |name, default: Duration| parse_or(get, name, default.as_secs()).map(Duration::from_secs);
    Ok(AbuseLimits {
        login: LoginLimits {
            per_account: parse_or(get, "LOGIN_MAX_FAILURES_PER_ACCOUNT", d.login.per_account)?,
            per_address: parse_or(get, "LOGIN_MAX_FAILURES_PER_ADDRESS", d.login.per_address)?,
            window: secs("LOGIN_WINDOW_SECS", d.login.window)?,
        },
        register: AddressLimit {
            per_address: parse_or(get, "REGISTER_MAX_PER_ADDRESS", d.register.per_address)?,
            window: secs("REGISTER_WINDOW_SECS", d.register.window)?,
        },
        guest: AddressLimit {
            per_address: parse_or(get, "GUEST_TOKENS_MAX_PER_ADDRESS", d.guest.per_address)?,
            window: secs("GUEST_TOKENS_WINDOW_SECS", d.guest.window)?,
        },
        refresh_reuse: secs("REFRESH_REUSE_SECS", d.refresh_reuse)?,
        password_forgot: AddressLimit {
            per_address: parse_or(get, "PASSWORD_FORGOT_MAX_PER_ADDRESS", d.password_forgot.per_address)?,
            window: secs("PASSWORD_FORGOT_WINDOW_SECS", d.password_forgot.window)?,
        },
        account_mails: AccountMailLimit {
            per_account: parse_or(get, "EMAILS_PER_ACCOUNT", d.account_mails.per_account)?,
            window: secs("EMAILS_WINDOW_SECS", d.account_mails.window)?,
        },
    })
}

/// E-mail delivery: SES with `EMAIL_DELIVERY=ses` (then `EMAIL_FROM` is required), else the
/// outbox folder. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) the outbox is a folder under
/// `/tmp` that nobody reads and logs no links: configure SES to deliver.
fn email_from(get: &impl Fn(&'static str) -> Option<String>) -> Result<EmailConfig, ConfigError> {
    let on_lambda = get("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let dir = get("PRIMER_OUTBOX_DIR").map_or_else(|| default_folder("outbox", on_lambda), PathBuf::from);
    let mut email = EmailConfig::outbox(dir);
    if let EmailDelivery::Outbox { log_links, .. } = &mut email.delivery {
        *log_links = !on_lambda;
    }
    let delivery = get("EMAIL_DELIVERY").map(|d| d.trim().to_ascii_lowercase());
    match delivery.as_deref() {
        None | Some("outbox") => {}
        Some("ses") => {
            if get("EMAIL_FROM").is_none() {
                return Err(ConfigError::Missing {
                    name: "EMAIL_FROM",
                    hint: "the sender address, an identity verified in SES (EMAIL_DELIVERY=ses)",
                });
            }
            let endpoint = get("SES_ENDPOINT").map(|e| e.trim().to_owned());
            if endpoint.as_ref().is_some_and(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
                return Err(ConfigError::Invalid {
                    name: "SES_ENDPOINT",
                    reason: "it must be an http:// or https:// URL".into(),
                });
            }
            email.delivery = EmailDelivery::Ses(SesConfig {
                configuration_set: get("SES_CONFIGURATION_SET").map(|c| c.trim().to_owned()),
                region: get("SES_REGION").map(|r| r.trim().to_owned()),
                endpoint,
            });
        }
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "EMAIL_DELIVERY",
                reason: format!("{other:?} is neither `outbox` nor `ses`"),
            });
        }
    }
    if let Some(from) = get("EMAIL_FROM") {
        let from = from.trim().to_owned();
        if !from.is_ascii() || !from.contains('@') || !super::email::can_send_to(&from) {
            return Err(ConfigError::Invalid {
                name: "EMAIL_FROM",
                reason: "it must be a plain ASCII address such as no-reply@book.example.com".into(),
            });
        }
        email.from_address = from;
    }
    if let Some(name) = get("EMAIL_FROM_NAME") {
        email.from_name = name.trim().to_owned();
    }
    if let Some(url) = get("FRONTEND_URL") {
        email.frontend_url = frontend_url(&url)?;
    }
    let secs = |name, default: Duration| parse_or(get, name, default.as_secs()).map(Duration::from_secs);
    email.reset_ttl = secs("PASSWORD_RESET_TTL_SECS", email.reset_ttl)?;
    email.verify_ttl = secs("EMAIL_VERIFICATION_TTL_SECS", email.verify_ttl)?;
    email.forgot_min_duration = Duration::from_millis(parse_or(
        get,
        "PASSWORD_FORGOT_MIN_MS",
        email.forgot_min_duration.as_millis() as u64,
    )?);
    if email.reset_ttl.is_zero() || email.verify_ttl.is_zero() {
        return Err(ConfigError::Invalid {
            name: "PASSWORD_RESET_TTL_SECS",
            reason: "a link must work for at least a second (PASSWORD_RESET_TTL_SECS, EMAIL_VERIFICATION_TTL_SECS)"
                .into(),
        });
    }
    Ok(email)
}

/// The site links lead to: an http(s) URL without query or fragment, kept without its
/// trailing `/` so that page paths can be appended.
fn frontend_url(raw: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid { name: "FRONTEND_URL", reason: reason.into() };
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("it must be an http(s) URL such as https://book.example.com"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or a fragment: the links add their own"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Quotas; `REQUIRE_VERIFIED_EMAIL` matters only when a model is configured (without one,
/// nothing is model-backed).
fn usage_from(
    get: &impl Fn(&'static str) -> Option<String>,
    model_configured: bool,
) -> Result<UsageLimits, ConfigError> {
    let d = UsageLimits::default();
    let usage = UsageLimits {
        user: DailyQuota {
            messages: parse_or(get, "QUOTA_USER_MESSAGES_PER_DAY", d.user.messages)?,
            tokens: parse_or(get, "QUOTA_USER_TOKENS_PER_DAY", d.user.tokens)?,
            conversations: parse_or(get, "QUOTA_USER_CONVERSATIONS_PER_DAY", d.user.conversations)?,
        },
        guest: DailyQuota {
            messages: parse_or(get, "QUOTA_GUEST_MESSAGES_PER_DAY", d.guest.messages)?,
            tokens: parse_or(get, "QUOTA_GUEST_TOKENS_PER_DAY", d.guest.tokens)?,
            conversations: parse_or(get, "QUOTA_GUEST_CONVERSATIONS_PER_DAY", d.guest.conversations)?,
        },
        daily_token_budget: parse_or(get, "MODEL_DAILY_TOKEN_BUDGET", d.daily_token_budget)?,
        guest_daily_token_budget: parse_or(
            get,
            "MODEL_DAILY_GUEST_TOKEN_BUDGET",
            d.guest_daily_token_budget,
        )?,
        reply_max_tokens: parse_or(get, "MODEL_MAX_TOKENS", d.reply_max_tokens)?,
        personalize_max_tokens: parse_or(get, "PERSONALIZE_MAX_TOKENS", d.personalize_max_tokens)?,
        require_verified_email: model_configured
            && parse_or(get, "REQUIRE_VERIFIED_EMAIL", d.require_verified_email)?,
    };
    if usage.reply_max_tokens == 0 || usage.personalize_max_tokens == 0 {
        return Err(ConfigError::Invalid {
            name: "MODEL_MAX_TOKENS",
            reason:
                "a model call needs room for at least one token (MODEL_MAX_TOKENS, PERSONALIZE_MAX_TOKENS)"
                    .into(),
        });
    }
    Ok(usage)
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = Config::from_lookup(lookup(&[("JWT_SECRET", &"x".repeat(32))])).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL is not set"), "{err}");
    }

    #[test]
    fn short_secret_is_refused() {
        let err = Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", "short")]))
            .unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn previous_secrets_verify_and_the_janitor_needs_none() {
        let (secret, old) = ("s".repeat(40), "o".repeat(32));
        let previous = format!(" {old} ,,");
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("JWT_PREVIOUS_SECRETS", &previous),
        ]))
        .unwrap();
        let ids: Vec<&str> = config.jwt.keys.verifying().map(JwtKey::id).collect();
        assert_eq!(ids, [JwtKey::new(secret.clone().into()).id(), JwtKey::new(old.into()).id()]);
        assert_eq!(config.jwt.keys.signing().unwrap().id(), ids[0]);
        assert!(!format!("{config:?}").contains(&secret), "a key's Debug shows its id only");

        let short = format!("{},short", "o".repeat(32));
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("JWT_PREVIOUS_SECRETS", &short),
        ]))
        .unwrap_err();
        assert_eq!(err.to_string(), "JWT_PREVIOUS_SECRETS is invalid: secret 2 has 5 bytes; use at least 32");

        let janitor =
            Config::from_lookup_for(Tokens::NotHandled, lookup(&[("DATABASE_URL", "postgres://x")])).unwrap();
        assert!(janitor.jwt.keys.signing().is_none() && janitor.jwt.keys.verifying().next().is_none());
        assert!(Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://x")])).is_err());
    }

    #[test]
    fn defaults_apply() {
        let secret = "s".repeat(40);
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", &secret)]))
                .unwrap();
        assert_eq!(config.db_max_connections, 2);
        assert_eq!(config.jwt.access_ttl, Duration::from_secs(900));
        assert_eq!(config.jwt.audience, "primer-api");
        // Fixed to the project, not to the folder the process started in.
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(config.blob.dir, project.join(".local/blobs"));
        assert!(config.blob.dir.is_absolute());
        assert!(config.blob.s3.is_none(), "no bucket means the local folder");
        assert_eq!(config.personalize_budget, Duration::from_secs(20));
        assert_eq!(config.limits, AbuseLimits::default());
        assert_eq!(config.limits.login.per_account, 5);
        assert_eq!(config.usage, UsageLimits::default());
        assert_eq!(config.work_deadline, Duration::from_secs(5));
        assert_eq!(config.timeouts, FunctionTimeouts::default());
    }

    #[test]
    fn limits_and_quotas_are_configurable() {
        let secret = "s".repeat(40);
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "40"),
            ("LOGIN_WINDOW_SECS", "60"),
            ("REGISTER_MAX_PER_ADDRESS", "7"),
            ("GUEST_TOKENS_MAX_PER_ADDRESS", "9"),
            ("GUEST_TOKENS_WINDOW_SECS", "120"),
            ("REFRESH_REUSE_SECS", "0"),
            ("QUOTA_GUEST_MESSAGES_PER_DAY", "4"),
            ("QUOTA_GUEST_CONVERSATIONS_PER_DAY", "3"),
            ("QUOTA_USER_TOKENS_PER_DAY", "1000"),
            ("MODEL_DAILY_TOKEN_BUDGET", "5000"),
            ("MODEL_MAX_TOKENS", "256"),
        ]))
        .unwrap();
        let limits = config.limits;
        assert_eq!((limits.login.per_account, limits.login.per_address), (3, 40));
        assert_eq!(limits.login.window, Duration::from_secs(60));
        assert_eq!((limits.register.per_address, limits.guest.per_address), (7, 9));
        assert_eq!(limits.guest.window, Duration::from_secs(120));
        assert_eq!(limits.refresh_reuse, Duration::ZERO);
        assert_eq!((config.usage.guest.messages, config.usage.user.tokens), (4, 1000));
        assert_eq!((config.usage.guest.conversations, config.usage.user.conversations), (3, 50));
        assert_eq!((config.usage.daily_token_budget, config.usage.reply_max_tokens), (5000, 256));
        let zero =
            [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", secret.as_str()), ("MODEL_MAX_TOKENS", "0")];
        assert!(Config::from_lookup(lookup(&zero)).is_err());
    }

    #[test]
    fn a_bucket_selects_s3_with_its_endpoint() {
        let secret = "s".repeat(40);
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("PRIMER_BUCKET", "primer-staging"),
            ("PRIMER_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("PRIMER_S3_PATH_STYLE", "true"),
        ]))
        .unwrap();
        let s3 = config.blob.s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.path_style), ("primer-staging", true));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    }

    #[test]
    fn a_better_auth_secret_turns_interop_on() {
        use secrecy::ExposeSecret;
        let secret = "s".repeat(40);
        let base = [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", secret.as_str())];
        assert!(Config::from_lookup(lookup(&base)).unwrap().better_auth_secret.is_none());
        let with = [base[0], base[1], ("BETTER_AUTH_SECRET", "shared-with-the-frontend")];
        let config = Config::from_lookup(lookup(&with)).unwrap();
        assert_eq!(config.better_auth_secret.unwrap().expose_secret(), "shared-with-the-frontend");
    }

    #[test]
    fn a_bad_bucket_name_is_refused() {
        let secret = "s".repeat(40);
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("PRIMER_BUCKET", "My_Bucket"),
        ]))
        .unwrap_err();
        assert!(err.to_string().starts_with("PRIMER_BUCKET is invalid"), "{err}");
    }

    #[test]
    fn the_model_is_configured_only_with_a_key() {
        let secret = "s".repeat(40);
        let base = [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", secret.as_str())];
        assert!(Config::from_lookup(lookup(&base)).unwrap().model.is_none());
        let with = [base[0], base[1], ("MODEL_API_KEY", "sk-x"), ("MODEL_ALLOWED", "gpt-4o, gpt-4o-mini,")];
        let model = Config::from_lookup(lookup(&with)).unwrap().model.unwrap();
        assert_eq!(model.base_url.as_str(), "https://api.openai.com/v1");
        assert_eq!(model.default_model, "gpt-4o-mini");
        assert_eq!(model.allowed_models, ["gpt-4o-mini", "gpt-4o"]);
        assert_eq!(model.stream_timeout, Duration::from_secs(120));
        let streaming = [base[0], base[1], ("MODEL_API_KEY", "sk-x"), ("MODEL_STREAM_IDLE_SECS", "3")];
        let model = Config::from_lookup(lookup(&streaming)).unwrap().model.unwrap();
        assert_eq!(model.stream_idle_timeout, Duration::from_secs(3));
        let bad = [base[0], base[1], ("MODEL_API_KEY", "sk-x"), ("MODEL_BASE_URL", "ftp://models")];
        let err = Config::from_lookup(lookup(&bad)).unwrap_err();
        assert!(err.to_string().starts_with("MODEL_BASE_URL is invalid"), "{err}");
        // The model's limits must leave its function time to store what it said.
        let slow = [base[0], base[1], ("MODEL_API_KEY", "sk-x"), ("MODEL_TOTAL_TIMEOUT_SECS", "28")];
        let err = Config::from_lookup(lookup(&slow)).unwrap_err();
        assert!(err.to_string().starts_with("MODEL_TOTAL_TIMEOUT_SECS is invalid"), "{err}");
        let longer = [slow[0], slow[1], slow[2], slow[3], ("FUNCTION_TIMEOUT_SECS", "60")];
        assert_eq!(Config::from_lookup(lookup(&longer)).unwrap().timeouts.json, Duration::from_secs(60));
        let budget = [base[0], base[1], ("MODEL_API_KEY", "sk-x"), ("PERSONALIZE_BUDGET_SECS", "25")];
        let err = Config::from_lookup(lookup(&budget)).unwrap_err();
        assert!(err.to_string().starts_with("PERSONALIZE_BUDGET_SECS is invalid"), "{err}");
        let streams = [base[0], base[1], ("MODEL_API_KEY", "sk-x"), ("STREAM_FUNCTION_TIMEOUT_SECS", "100")];
        let err = Config::from_lookup(lookup(&streams)).unwrap_err();
        assert!(err.to_string().starts_with("MODEL_STREAM_TIMEOUT_SECS is invalid"), "{err}");
    }

    #[test]
    fn email_goes_to_the_outbox_unless_ses_is_asked_for() {
        let secret = "s".repeat(40);
        let base = [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", secret.as_str())];
        let config = |extra: &[(&'static str, &'static str)]| {
            let vars: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            Config::from_lookup(lookup(&vars)).map(|c| c.email)
        };
        let email = config(&[]).unwrap();
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(
            matches!(&email.delivery, EmailDelivery::Outbox { dir, log_links: true } if dir == &project.join(".local/outbox"))
        );
        assert_eq!(email.frontend_url, LOCAL_RUNNER_URL);
        assert_eq!(
            (email.reset_ttl, email.verify_ttl),
            (Duration::from_secs(3600), Duration::from_secs(86400))
        );
        assert_eq!(email.forgot_min_duration, Duration::from_millis(1000));
        // On Lambda the outbox is a scratch folder and logs no links.
        let lambda = config(&[("AWS_LAMBDA_FUNCTION_NAME", "auth")]).unwrap();
        assert!(
            matches!(&lambda.delivery, EmailDelivery::Outbox { dir, log_links: false } if dir == &PathBuf::from("/tmp/primer-outbox"))
        );

        let ses = config(&[
            ("EMAIL_DELIVERY", "SES"),
            ("EMAIL_FROM", "no-reply@book.example.com"),
            ("EMAIL_FROM_NAME", "The Book"),
            ("SES_CONFIGURATION_SET", "primer"),
            ("FRONTEND_URL", "https://book.example.com/read/"),
            ("PASSWORD_RESET_TTL_SECS", "1800"),
            ("PASSWORD_FORGOT_MIN_MS", "750"),
        ])
        .unwrap();
        let EmailDelivery::Ses(delivery) = &ses.delivery else { panic!("{ses:?}") };
        assert_eq!(delivery.configuration_set.as_deref(), Some("primer"));
        assert_eq!(
            (ses.from_address.as_str(), ses.from_name.as_str()),
            ("no-reply@book.example.com", "The Book")
        );
        assert_eq!(ses.frontend_url, "https://book.example.com/read");
        assert_eq!(
            (ses.reset_ttl, ses.forgot_min_duration),
            (Duration::from_secs(1800), Duration::from_millis(750))
        );

        for (bad, name) in [
            (&[("EMAIL_DELIVERY", "ses")][..], "EMAIL_FROM is not set"),
            (&[("EMAIL_DELIVERY", "smtp")][..], "EMAIL_DELIVERY is invalid"),
            (&[("EMAIL_FROM", "not an address")][..], "EMAIL_FROM is invalid"),
            (&[("FRONTEND_URL", "ftp://book.example.com")][..], "FRONTEND_URL is invalid"),
            (&[("FRONTEND_URL", "https://book.example.com/?a=b")][..], "FRONTEND_URL is invalid"),
            (&[("PASSWORD_RESET_TTL_SECS", "0")][..], "PASSWORD_RESET_TTL_SECS is invalid"),
        ] {
            let err = config(bad).unwrap_err().to_string();
            assert!(err.starts_with(name), "{bad:?}: {err}");
        }
    }

    #[test]
    fn recovery_limits_are_configurable() {
        let secret = "s".repeat(40);
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("PASSWORD_FORGOT_MAX_PER_ADDRESS", "12"),
            ("PASSWORD_FORGOT_WINDOW_SECS", "600"),
            ("EMAILS_PER_ACCOUNT", "2"),
            ("EMAILS_WINDOW_SECS", "7200"),
        ]))
        .unwrap();
        let limits = config.limits;
        assert_eq!(
            (limits.password_forgot.per_address, limits.password_forgot.window),
            (12, Duration::from_secs(600))
        );
        assert_eq!(
            (limits.account_mails.per_account, limits.account_mails.window),
            (2, Duration::from_secs(7200))
        );
        let defaults = AbuseLimits::default();
        assert_eq!((defaults.password_forgot.per_address, defaults.account_mails.per_account), (30, 3));
    }

    #[test]
    fn unparsable_number_is_refused() {
        let secret = "s".repeat(40);
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("DB_MAX_CONNECTIONS", "many"),
        ]))
        .unwrap_err();
        assert!(err.to_string().starts_with("DB_MAX_CONNECTIONS is invalid"), "{err}");
    }
}
