//! The sign-in flows ([`SignIn`]): start, callback, link, the one-time code's exchange, and the
//! ways a user signs in. See the module above for what they do and why.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
pub use url::Url;
use uuid::Uuid;

use super::pending::{self, PendingSignIn, random_secret};
use super::providers::{AuthorizationRequest, Identity, Providers};
use super::settings::ProviderSettings;
use crate::domain::auth::account::SignedIn;
use crate::domain::auth::rate_limit::{self, EntryPoint};
use crate::domain::auth::sessions::{self, ClientMeta};
use crate::domain::auth::tokens::RefreshToken;
use crate::domain::conversations::guests;
use crate::domain::ids::UserId;
use crate::domain::user::linked::{self, ProviderAccount, SignInMethod};
use crate::domain::user::{self, Email, SignInEmail, UserName};
use crate::error::{Code, Error, ErrorChain, Result};
use crate::infra::config::Config;

/// How long a started sign-in waits for the provider's callback.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// How long the site has to redeem a finished sign-in's one-time code.
const CODE_TTL: Duration = Duration::from_secs(60);
/// The longest `redirect_to`.
const MAX_REDIRECT_CHARS: usize = 2048;

/// Why a sign-in did not finish: the site reads it from `#error=<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The reader declined at the provider.
    AccessDenied,
    /// No pending sign-in has this state: never started, already used, expired, or started
    /// for another provider.
    InvalidState,
    /// The provider refused the code or answered something unusable.
    ProviderError,
    /// The provider did not answer, or answered with a server error.
    ProviderUnavailable,
    /// The ID token's signature, issuer, audience or algorithm is wrong.
    InvalidIdToken,
    /// The ID token has expired.
    IdTokenExpired,
    /// The ID token's nonce is not this sign-in's.
    NonceMismatch,
    /// The provider gave no e-mail address, and a new account needs one.
    EmailNotFound,
    /// The provider's address is not one an account may have.
    InvalidEmail,
    /// An account has this address, and the provider (or that account) has not verified
    /// it: sign in with the password and link the provider from there.
    AccountNotLinked,
    /// The account is disabled.
    AccountDisabled,
    /// (Linking) the provider account belongs to another user.
    AccountAlreadyLinked,
    /// (Linking) the user has another account at this provider.
    ProviderAlreadyLinked,
    /// Too many sign-ins from this address.
    RateLimited,
    /// The database is unavailable; try again.
    Unavailable,
    /// A bug (logged).
    ServerError,
}

impl Failure {
    /// The code in `#error=<code>`.
    pub fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::InvalidState => "invalid_state",
            Self::ProviderError => "provider_error",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::InvalidIdToken => "invalid_id_token",
            Self::IdTokenExpired => "id_token_expired",
            Self::NonceMismatch => "nonce_mismatch",
            Self::EmailNotFound => "email_not_found",
            Self::InvalidEmail => "invalid_email",
            Self::AccountNotLinked => "account_not_linked",
            Self::AccountDisabled => "account_disabled",
            Self::AccountAlreadyLinked => "account_already_linked",
            Self::ProviderAlreadyLinked => "provider_already_linked",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// Every code, for the documentation.
    pub const ALL: &[Self] = &[
        Self::AccessDenied,
        Self::InvalidState,
        Self::ProviderError,
        Self::ProviderUnavailable,
        Self::InvalidIdToken,
        Self::IdTokenExpired,
        Self::NonceMismatch,
        Self::EmailNotFound,
        Self::InvalidEmail,
        Self::AccountNotLinked,
        Self::AccountDisabled,
        Self::AccountAlreadyLinked,
        Self::ProviderAlreadyLinked,
        Self::RateLimited,
        Self::Unavailable,
        Self::ServerError,
    ];
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::RateLimited { .. } => Self::RateLimited,
            Error::Unavailable(_) => Self::Unavailable,
            Error::AccountDisabled => Self::AccountDisabled,
            Error::Conflict { code: Code::AccountAlreadyLinked, .. } => Self::AccountAlreadyLinked,
            other => {
                tracing::error!(error = %ErrorChain(&other), "a sign-in with a provider failed");
                Self::ServerError
            }
        }
    }
}

/// One way a user signs in, as `GET /api/auth/accounts` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"provider": "github", "name": "GitHub", "linked_at": "2026-11-29T09:58:12Z"})))]
pub struct WayToSignIn {
    /// `credential` (the password), or the provider's id.
    pub provider: String,
    /// What to call it: `Password`, the provider's name, or its id when this deployment
    /// does not offer it (linked through a Better-Auth frontend).
    pub name: String,
    /// When it was added.
    pub linked_at: chrono::DateTime<chrono::Utc>,
}

/// What the provider's callback brought: the query of
/// `GET /api/auth/oauth/{provider}/callback`.
#[derive(Debug, Default, Clone)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state `start` sent.
    pub state: Option<String>,
    /// The provider's error (`access_denied` when the reader declined).
    pub error: Option<String>,
    /// The issuer that answered (RFC 9207), when the provider says.
    pub iss: Option<String>,
}

impl Callback {
    /// Reads a callback's query leniently: the first value of each parameter, anything
    /// else ignored, so that a provider's odd query still ends on the site, not on an
    /// error page.
    pub fn from_query(query: &str) -> Self {
        let mut callback = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*name {
                "code" => &mut callback.code,
                "state" => &mut callback.state,
                "error" => &mut callback.error,
                "iss" => &mut callback.iss,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        callback
    }
}

/// A finished sign-in.
enum Finished {
    /// A one-time code that signs the user in.
    SignedIn(String),
    /// The provider was linked to the signed-in user.
    Linked,
}

/// The sign-in flows over one pool, configuration and set of providers.
pub struct SignIn<'a> {
    pool: &'a PgPool,
    config: &'a Config,
    providers: &'a Providers,
}

impl<'a> SignIn<'a> {
    /// The flows over `pool`, configured by `config`, with `providers`.
    pub fn new(pool: &'a PgPool, config: &'a Config, providers: &'a Providers) -> Self {
        Self { pool, config, providers }
    }

    /// The configured providers, in their order.
    pub fn providers(&self) -> &'a [ProviderSettings] {
        &self.config.sign_in.providers
    }

    /// Starts signing in with `provider`: 404 `unknown_provider` when it is not
    /// configured, 429 past the client address's share, 422 when `redirect_to` is not a
    /// page of the site. Then the URL to send the reader to: the provider's, or (when it
    /// cannot be reached) back to the site with `#error=provider_unavailable`. `api_url` is
    /// the API's public base URL, for the callback (400 without one).
    pub async fn start(
        &self,
        provider: &str,
        redirect_to: Option<&str>,
        api_url: Option<&str>,
        client: &ClientMeta,
    ) -> Result<Url> {
        self.providers.settings(provider).ok_or(Error::UnknownProvider)?;
        let limit = self.config.sign_in.limit;
        rate_limit::admit(self.pool, EntryPoint::OAuthStart, limit, client.ip.as_deref()).await?;
        let return_to = self.return_to(redirect_to)?;
        let api_url = api_url.ok_or_else(no_api_url)?;
        match self.begin(provider, &return_to, api_url, None).await {
            Ok(url) => Ok(url),
            Err(failure) => Ok(with_fragment(return_to, "error", failure.code())),
        }
    }

    /// Starts linking `provider` to the signed-in user (`user_id`, on session
    /// `session_id`): the URL to send them to. 404 `unknown_provider`, 422 for a
    /// `redirect_to` off the site, 503 when the provider cannot be reached.
    pub async fn start_link(
        &self,
        provider: &str,
        redirect_to: Option<&str>,
        api_url: Option<&str>,
        user_id: &UserId,
        session_id: &str,
    ) -> Result<Url> {
        self.providers.settings(provider).ok_or(Error::UnknownProvider)?;
        let return_to = self.return_to(redirect_to)?;
        let api_url = api_url.ok_or_else(no_api_url)?;
        let link = Some((user_id, session_id));
        self.begin(provider, &return_to, api_url, link).await.map_err(|failure| match failure {
            Failure::ProviderUnavailable | Failure::ProviderError => {
                Error::Unavailable(format!("the sign-in provider {provider} cannot be reached").into())
            }
            Failure::Unavailable => Error::Unavailable("the database is unavailable".into()),
            other => Error::internal(format!("starting a link failed: {}", other.code())),
        })
    }

    /// Stores the pending sign-in and builds the provider's authorization URL.
    async fn begin(
        &self,
        provider: &str,
        return_to: &Url,
        api_url: &str,
        link: Option<(&UserId, &str)>,
    ) -> std::result::Result<Url, Failure> {
        let (state, verifier, nonce) = (random_secret(), random_secret(), random_secret());
        let callback = format!("{api_url}/api/auth/oauth/{provider}/callback");
        let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let request = AuthorizationRequest {
            state: &state,
            code_challenge: &code_challenge,
            nonce: &nonce,
            callback: &callback,
        };
        // The provider's URL first: an OpenID provider's comes from its discovery document.
        let url = self.providers.authorization_url(provider, &request).await?;
        let pending = PendingSignIn {
            provider: provider.to_owned(),
            verifier,
            nonce,
            redirect_to: return_to.to_string(),
            callback,
            link_user: link.map(|(user, _)| user.to_owned()),
            link_session: link.map(|(_, session)| session.to_owned()),
        };
        pending::store(self.pool, &state, &pending, PENDING_TTL).await?;
        Ok(url)
    }

    /// Where a sign-in may return the reader: `redirect_to` when it is a page of the site
    /// (`FRONTEND_URL`'s origin or one of `SITE_ORIGINS`), `FRONTEND_URL` when it is left
    /// out; anything else is a 422, so no one can use the sign-in to send readers (and
    /// their one-time code) to a page of their own.
    fn return_to(&self, redirect_to: Option<&str>) -> Result<Url> {
        let frontend = Url::parse(&self.config.email.frontend_url).map_err(Error::internal)?;
        let Some(raw) = redirect_to.filter(|r| !r.is_empty()) else { return Ok(frontend) };
        let refuse = || {
            Error::invalid(
                "redirect_to",
                "must be a page of the site (FRONTEND_URL or SITE_ORIGINS), without a fragment",
            )
        };
        if raw.chars().count() > MAX_REDIRECT_CHARS {
            return Err(refuse());
        }
        let url = Url::parse(raw).map_err(|_| refuse())?;
        let origin = url.origin().ascii_serialization();
        let allowed = origin == frontend.origin().ascii_serialization()
            || self.config.sign_in.site_origins.contains(&origin);
        let clean = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && url.fragment().is_none();
        if allowed && clean { Ok(url) } else { Err(refuse()) }
    }

    /// The provider's callback: finishes the sign-in (or the link) and says where the
    /// reader goes next, always: back to the site with `#code=...`, `#linked=<provider>` or
    /// `#error=<code>`. 404 `unknown_provider` (the only error) when `provider` is not
    /// configured.
    pub async fn finish(&self, provider: &str, callback: &Callback, client: &ClientMeta) -> Result<Url> {
        self.providers.settings(provider).ok_or(Error::UnknownProvider)?;
        let fallback = Url::parse(&self.config.email.frontend_url).map_err(Error::internal)?;
        let limit = self.config.sign_in.limit;
        if let Err(e) =
            rate_limit::admit(self.pool, EntryPoint::OAuthCallback, limit, client.ip.as_deref()).await
        {
            return Ok(with_fragment(fallback, "error", Failure::from(e).code()));
        }
        let Some(state) = callback.state.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(with_fragment(fallback, "error", Failure::InvalidState.code()));
        };
        let pending = match pending::take(self.pool, state).await {
            Ok(Some(pending)) => pending,
            Ok(None) => return Ok(with_fragment(fallback, "error", Failure::InvalidState.code())),
            Err(e) => return Ok(with_fragment(fallback, "error", Failure::from(e).code())),
        };
        let return_to = Url::parse(&pending.redirect_to).unwrap_or(fallback);
        Ok(match self.complete(provider, callback, &pending).await {
            Ok(Finished::SignedIn(code)) => with_fragment(return_to, "code", &code),
            Ok(Finished::Linked) => with_fragment(return_to, "linked", provider),
            Err(failure) => {
                tracing::info!(provider, error = failure.code(), "a sign-in with a provider did not finish");
                with_fragment(return_to, "error", failure.code())
            }
        })
    }

    async fn complete(
        &self,
        provider: &str,
        callback: &Callback,
        pending: &PendingSignIn,
    ) -> std::result::Result<Finished, Failure> {
        if pending.provider != provider {
            return Err(Failure::InvalidState);
        }
        if let Some(error) = &callback.error {
            return Err(if error == "access_denied" {
                Failure::AccessDenied
            } else {
                Failure::ProviderError
            });
        }
        // A callback that names another issuer than the provider's (a mix-up, RFC 9207).
        if let (Some(expected), Some(named)) = (self.providers.issuer_of(provider), callback.iss.as_deref())
            && named.trim_end_matches('/') != expected.trim_end_matches('/')
        {
            return Err(Failure::ProviderError);
        }
        let code = callback.code.as_deref().filter(|c| !c.is_empty()).ok_or(Failure::ProviderError)?;
        let identity = self.providers.identify(provider, code, pending).await?;
        let account = ProviderAccount { provider, account_id: &identity.account_id, scope: &identity.scope };
        match (&pending.link_user, &pending.link_session) {
            (Some(user_id), Some(session_id)) => {
                self.link(user_id, session_id, &account).await?;
                tracing::info!(provider, user_id = %user_id, "provider linked");
                Ok(Finished::Linked)
            }
            _ => {
                // Two sign-ins of one new reader at once: the second finds what the
                // first created.
                match self.sign_in_as(&identity, &account).await {
                    Err(Retry::Again) => self.sign_in_as(&identity, &account).await,
                    other => other,
                }
                .map_err(Retry::into_failure)
                .map(Finished::SignedIn)
            }
        }
    }

    /// The one-time code of the user `identity` is: the account's owner, else the user with
    /// its verified address (linked now), else a new user.
    async fn sign_in_as(
        &self,
        identity: &Identity,
        account: &ProviderAccount<'_>,
    ) -> std::result::Result<String, Retry> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if let Some(owner) = linked::owner_of(&mut *tx, account).await? {
            if !owner.is_active {
                return Err(Failure::AccountDisabled.into());
            }
            if identity.email_verified
                && identity.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&owner.email))
            {
                user::mark_email_verified(&mut *tx, &owner.id).await?;
            }
            let code = pending::issue_code(&mut *tx, &owner.id, CODE_TTL).await?;
            tx.commit().await.map_err(Error::from)?;
            return Ok(code);
        }
        let raw_email =
            identity.email.as_deref().filter(|e| !e.trim().is_empty()).ok_or(Failure::EmailNotFound)?;
        let sign_in_email = SignInEmail::parse(raw_email).map_err(|_| Failure::InvalidEmail)?;
        let user_id = match user::credentials_by_email(&mut *tx, &sign_in_email).await? {
            Some(found) => {
                let user = found.user;
                let local_unverified =
                    self.config.sign_in.require_local_email_verified && !user.email_verified;
                if !identity.email_verified || local_unverified {
                    return Err(Failure::AccountNotLinked.into());
                }
                if !user.is_active {
                    return Err(Failure::AccountDisabled.into());
                }
                rate_limit::lock_account(&mut tx, &user.id).await?;
                linked::link(&mut *tx, &user.id, account).await.map_err(Retry::on_conflict)?;
                user::mark_email_verified(&mut *tx, &user.id).await?;
                tracing::info!(provider = account.provider, user_id = %user.id, "provider linked by verified address");
                user.id
            }
            None => {
                let email = Email::parse(raw_email).map_err(|_| Failure::InvalidEmail)?;
                let name = display_name(identity, &email);
                let image = identity.image.as_deref().filter(|url| usable_image(url));
                let created = linked::create_with_provider(
                    &mut tx,
                    &email,
                    identity.email_verified,
                    &name,
                    image,
                    account,
                )
                .await
                .map_err(Retry::on_conflict)?;
                tracing::info!(provider = account.provider, user_id = %created.id, "registered with a provider");
                created.id
            }
        };
        let code = pending::issue_code(&mut *tx, &user_id, CODE_TTL).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(code)
    }

    /// Links `account` to `user_id`, if the session that asked is still live.
    async fn link(
        &self,
        user_id: &UserId,
        session_id: &str,
        account: &ProviderAccount<'_>,
    ) -> std::result::Result<(), Failure> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        rate_limit::lock_account(&mut tx, user_id).await?;
        if !linked::lock_user(&mut tx, user_id).await? {
            return Err(Failure::InvalidState);
        }
        // Signed out (or the session revoked) since: the link is no one's request any more.
        let user =
            user::by_live_session(&mut *tx, session_id, user_id).await?.ok_or(Failure::InvalidState)?;
        if !user.is_active {
            return Err(Failure::AccountDisabled);
        }
        match linked::owner_of(&mut *tx, account).await? {
            Some(owner) if owner.id == *user_id => return Ok(()),
            Some(_) => return Err(Failure::AccountAlreadyLinked),
            None => {}
        }
        if linked::account_at(&mut *tx, user_id, account.provider).await?.is_some() {
            return Err(Failure::ProviderAlreadyLinked);
        }
        linked::link(&mut *tx, user_id, account).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    /// Redeems a finished sign-in's one-time code for a session, as a login answers; with
    /// `guest`, the guest's conversations become the user's. 400 `invalid_code` for a code
    /// that is unknown, expired or spent (of any number of requests with one code, one
    /// succeeds); 403 for a disabled account.
    pub async fn redeem(&self, code: &str, guest: Option<Uuid>, client: &ClientMeta) -> Result<SignedIn> {
        let refresh = RefreshToken::generate();
        let mut tx = self.pool.begin().await?;
        let user_id = pending::redeem_code(&mut *tx, code).await?.ok_or(Error::InvalidCode)?;
        // A login: the account's lock first, as every change to what signs it in takes it.
        rate_limit::lock_account(&mut tx, &user_id).await?;
        let user = user::by_id(&mut *tx, &user_id).await?.ok_or(Error::InvalidCode)?;
        if !user.is_active {
            // The code is spent either way.
            tx.commit().await?;
            return Err(Error::AccountDisabled);
        }
        let user = user::record_login(&mut *tx, &user_id).await?;
        let session_id =
            sessions::create(&mut *tx, &user.id, &refresh, self.config.jwt.session_ttl, client).await?;
        // Signed in from here: a known place, which a stranger's wrong passwords do not lock.
        rate_limit::record_place(&mut *tx, &user.id, client.ip.as_deref()).await?;
        if let Some(guest_id) = guest {
            guests::claim_conversations(&mut *tx, guest_id, &user.id).await?;
        }
        tx.commit().await?;
        Ok(SignedIn { user, session_id, refresh })
    }

    /// The user's ways to sign in: their password and their provider accounts.
    pub async fn methods(&self, user_id: &UserId) -> Result<Vec<WayToSignIn>> {
        let methods = linked::sign_in_methods(self.pool, user_id).await?;
        Ok(methods
            .into_iter()
            .map(|SignInMethod { provider, linked_at }| {
                let name = match self.config.sign_in.provider(&provider) {
                    _ if provider == "credential" => "Password".to_owned(),
                    Some(configured) => configured.name.clone(),
                    // Linked through a Better-Auth frontend, not offered here.
                    None => provider.clone(),
                };
                WayToSignIn { provider, name, linked_at }
            })
            .collect())
    }

    /// Removes the user's way to sign in with `provider` (`credential`: their password).
    /// 404 when they have none there, 409 `last_sign_in_method` when it is their only one.
    /// Changes to one user's ways to sign in are serialised on the user's row, so two
    /// removals at once cannot leave the user with none.
    pub async fn remove(&self, user_id: &UserId, provider: &str) -> Result<()> {
        // Provider ids are short runs of letters, digits and `-`: anything else names no
        // account, and must not reach the database.
        let plausible = (1..=64).contains(&provider.len())
            && provider.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plausible {
            return Err(Error::NotFound);
        }
        let mut tx = self.pool.begin().await?;
        rate_limit::lock_account(&mut tx, user_id).await?;
        if !linked::lock_user(&mut tx, user_id).await? {
            return Err(Error::Unauthorized);
        }
        let methods = linked::sign_in_methods(&mut *tx, user_id).await?;
        if !methods.iter().any(|m| m.provider == provider) {
            return Err(Error::NotFound);
        }
        if methods.len() == 1 {
            return Err(Error::Conflict {
                code: Code::LastSignInMethod,
                message: "this is the account's only way to sign in: add another first".into(),
            });
        }
        linked::unlink(&mut *tx, user_id, provider).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user_id, provider, "way to sign in removed");
        Ok(())
    }
}

/// A sign-in that lost a race (another created the user or linked the account first) and
/// may be tried again, or a failure.
enum Retry {
    Again,
    Failed(Failure),
}

impl Retry {
    fn on_conflict(e: Error) -> Self {
        match e {
            Error::Conflict { code: Code::EmailTaken | Code::AccountAlreadyLinked, .. } => Self::Again,
            other => Self::Failed(other.into()),
        }
    }

    fn into_failure(self) -> Failure {
        match self {
            // Lost twice: someone else holds the address or the account.
            Self::Again => Failure::AccountNotLinked,
            Self::Failed(failure) => failure,
        }
    }
}

impl From<Failure> for Retry {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

impl From<Error> for Retry {
    fn from(e: Error) -> Self {
        Self::Failed(e.into())
    }
}

/// 400: a request that names no host, when `API_URL` is not set either.
fn no_api_url() -> Error {
    Error::BadRequest(
        "the request names no host, and API_URL is not set: the sign-in's callback is unknown".into(),
    )
}

/// `url` with `#key=value`.
fn with_fragment(mut url: Url, key: &str, value: &str) -> Url {
    url.set_fragment(Some(&format!("{key}={value}")));
    url
}

/// The name the provider gives (without control characters, at most 100 characters),
/// else the address's local part.
fn display_name(identity: &Identity, email: &Email) -> UserName {
    let clean = |raw: &str| raw.chars().filter(|c| !c.is_control()).take(100).collect::<String>();
    identity
        .name
        .as_deref()
        .and_then(|n| UserName::parse(&clean(n)).ok())
        .or_else(|| UserName::parse(&clean(email.as_str().split('@').next().unwrap_or_default())).ok())
        .unwrap_or_else(|| UserName::parse("Reader").expect("a valid name"))
}

/// An avatar URL as a profile may hold one: http(s), at most 2048 characters.
fn usable_image(url: &str) -> bool {
    url.len() <= 2048
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_replace_nothing_but_the_fragment() {
        let url = Url::parse("https://book.example/signed-in?from=nav").unwrap();
        assert_eq!(
            with_fragment(url, "code", "abc").as_str(),
            "https://book.example/signed-in?from=nav#code=abc"
        );
    }

    #[test]
    fn a_callback_query_is_read_leniently() {
        let callback =
            Callback::from_query("state=s1&code=c%2B1&state=s2&code[]=x&error&junk=%ZZ&iss=https%3A%2F%2Fid");
        assert_eq!(callback.state.as_deref(), Some("s1"));
        assert_eq!(callback.code.as_deref(), Some("c+1"));
        assert_eq!(callback.error.as_deref(), Some(""));
        assert_eq!(callback.iss.as_deref(), Some("https://id"));
        assert!(Callback::from_query("").state.is_none());
    }

    #[test]
    fn every_failure_has_its_own_code() {
        let codes: std::collections::BTreeSet<_> = Failure::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes.len(), Failure::ALL.len());
    }

    #[test]
    fn a_name_comes_from_the_provider_or_the_address() {
        let identity = |name: Option<&str>| Identity {
            account_id: "1".into(),
            email: None,
            email_verified: false,
            name: name.map(str::to_owned),
            image: None,
            scope: String::new(),
        };
        let email = Email::parse("ada.l@example.com").unwrap();
        assert_eq!(display_name(&identity(Some("Ada\u{7}")), &email).as_str(), "Ada");
        assert_eq!(display_name(&identity(Some("  ")), &email).as_str(), "ada.l");
        assert_eq!(display_name(&identity(None), &email).as_str(), "ada.l");
        assert_eq!(display_name(&identity(Some(&"n".repeat(300))), &email).as_str().len(), 100);
        assert!(usable_image("https://avatars.example/1.png"));
        assert!(!usable_image("javascript:alert(1)"));
    }
}
