//! Talking to the providers over HTTPS: where to send the reader (the authorization URL), and,
//! once they come back with a code, who they are (the code exchanged for tokens, then GitHub's
//! user API or a verified ID token).
//!
//! An OpenID provider's discovery document and keys (JWKS) are fetched when first needed and
//! kept by the instance: the document for a day, the keys for an hour, and the keys again at
//! once when a token names a key the instance does not know (the issuer rotated its keys).
//! Every call is bounded in time and size (see [`super::http`]), and a provider that fails or
//! answers nonsense is a failure of this sign-in, never of the function.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use super::Failure;
use super::id_token::{Expected, KeySet, Rejection};
use super::pending::PendingSignIn;
use super::settings::{Protocol, ProviderSettings, SignInSettings, is_loopback};
use crate::infra::provider_http::{Call, CallFailure, ProviderHttp, Status};

/// How long a discovery document is trusted.
const DISCOVERY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long an issuer's keys are trusted before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(3600);

/// Who the reader is, as the provider told it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The reader's id at the provider (`account.accountId`).
    pub account_id: String,
    /// Their address, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider verified that address.
    pub email_verified: bool,
    /// Their display name.
    pub name: Option<String>,
    /// Their picture.
    pub image: Option<String>,
    /// The scopes granted, as Better-Auth stores them: the token response's `scope`, split on
    /// spaces and joined with commas.
    pub scope: String,
}

/// The parameters of one authorization request.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    /// The state that names the pending sign-in.
    pub state: &'a str,
    /// The PKCE challenge (S256 of the verifier).
    pub code_challenge: &'a str,
    /// The nonce the ID token must carry (OpenID Connect only).
    pub nonce: &'a str,
    /// Where the provider sends the reader back.
    pub callback: &'a str,
}

/// The configured providers and what is known of them.
pub struct Providers {
    http: ProviderHttp,
    providers: Vec<Provider>,
}

struct Provider {
    settings: ProviderSettings,
    discovery: Mutex<Option<Arc<Discovery>>>,
    keys: Mutex<Option<Arc<KeySet>>>,
}

/// What an OpenID provider's discovery document says, checked.
#[derive(Debug)]
struct Discovery {
    fetched_at: Instant,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
    userinfo_endpoint: Option<Url>,
    /// `client_secret_basic` (the default) rather than `client_secret_post`.
    basic_auth: bool,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.iter().map(|p| &p.settings.id)).finish()
    }
}

impl Providers {
    /// The providers of `settings`, with an HTTP client for them.
    pub fn new(settings: &SignInSettings) -> Self {
        let providers = settings
            .providers
            .iter()
            .map(|settings| Provider {
                settings: settings.clone(),
                discovery: Mutex::default(),
                keys: Mutex::default(),
            })
            .collect();
        Self { http: ProviderHttp::default(), providers }
    }

    /// The provider with this id, if it is configured.
    pub fn settings(&self, id: &str) -> Option<&ProviderSettings> {
        self.provider(id).map(|p| &p.settings)
    }

    fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.settings.id == id)
    }

    /// Where to send the reader: the provider's authorization endpoint with this request.
    pub async fn authorization_url(
        &self,
        id: &str,
        request: &AuthorizationRequest<'_>,
    ) -> Result<Url, Failure> {
        let provider = self.provider(id).ok_or(Failure::ServerError)?;
        let settings = &provider.settings;
        let (mut url, scopes, nonce) = match &settings.protocol {
            Protocol::GitHub { web, .. } => {
                (below(web, &["login", "oauth", "authorize"]), "read:user user:email".to_owned(), None)
            }
            Protocol::OpenIdConnect { scopes, .. } => {
                let discovery = self.discovery(provider).await?;
                (discovery.authorization_endpoint.clone(), scopes.join(" "), Some(request.nonce))
            }
        };
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &settings.client_id)
                .append_pair("redirect_uri", request.callback)
                .append_pair("scope", &scopes)
                .append_pair("state", request.state)
                .append_pair("code_challenge", request.code_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(nonce) = nonce {
                query.append_pair("nonce", nonce);
            }
        }
        Ok(url)
    }

    /// The issuer a callback's `iss` parameter (RFC 9207) must name, for an OpenID provider.
    pub fn issuer_of(&self, id: &str) -> Option<&str> {
        match &self.provider(id)?.settings.protocol {
            Protocol::OpenIdConnect { issuer, .. } => Some(issuer),
            Protocol::GitHub { .. } => None,
        }
    }

    /// Who came back with `code`: the code is exchanged (with the pending sign-in's callback
    /// and PKCE verifier), then the reader is read from GitHub's API or a verified ID token.
    pub async fn identify(&self, id: &str, code: &str, pending: &PendingSignIn) -> Result<Identity, Failure> {
        let provider = self.provider(id).ok_or(Failure::ServerError)?;
        match &provider.settings.protocol {
            Protocol::GitHub { web, api } => self.github_identity(provider, web, api, code, pending).await,
            Protocol::OpenIdConnect { issuer, issuer_alias, .. } => {
                let mut issuers = vec![issuer.as_str()];
                issuers.extend(issuer_alias.as_deref());
                self.openid_identity(provider, &issuers, code, pending).await
            }
        }
    }

    async fn github_identity(
        &self,
        provider: &Provider,
        web: &Url,
        api: &Url,
        code: &str,
        pending: &PendingSignIn,
    ) -> Result<Identity, Failure> {
        let settings = &provider.settings;
        let token_endpoint = below(web, &["login", "oauth", "access_token"]);
        // GitHub takes the client's credentials in the body.
        let tokens = self.exchange_code(settings, &token_endpoint, false, code, pending).await?;

        #[derive(Deserialize)]
        struct GitHubUser {
            id: serde_json::Value,
            login: Option<String>,
            name: Option<String>,
            avatar_url: Option<String>,
            email: Option<String>,
        }
        #[derive(Deserialize)]
        struct GitHubEmail {
            email: String,
            #[serde(default)]
            primary: bool,
            #[serde(default)]
            verified: bool,
        }
        let github = |path: &[&str]| {
            Call::get(&below(api, path))
                .bearer(&tokens.access_token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
        };
        let (status, user) = self.http.json::<GitHubUser>(github(&["user"])).await?;
        let user = user.filter(|_| status.is_success()).ok_or(Failure::ProviderError)?;
        // GitHub's ids are numbers; Better-Auth stores them as their decimal text.
        let account_id = match &user.id {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) if !s.is_empty() => s.clone(),
            _ => return Err(Failure::ProviderError),
        };
        // The account's addresses, the primary one verified or not. Without the permission
        // (a GitHub App may not have it) only the public profile address is known, unverified.
        let (status, emails) = self.http.json::<Vec<GitHubEmail>>(github(&["user", "emails"])).await?;
        let emails = match status {
            s if s.is_success() => emails.ok_or(Failure::ProviderError)?,
            Status(403 | 404) => Vec::new(),
            _ => return Err(Failure::ProviderError),
        };
        let (email, email_verified) = match emails.into_iter().find(|e| e.primary) {
            Some(primary) => (Some(primary.email), primary.verified),
            None => (user.email, false),
        };
        Ok(Identity {
            account_id,
            email,
            email_verified,
            name: user.name.filter(|n| !n.trim().is_empty()).or(user.login),
            image: user.avatar_url,
            scope: tokens.scope(),
        })
    }

    async fn openid_identity(
        &self,
        provider: &Provider,
        issuers: &[&str],
        code: &str,
        pending: &PendingSignIn,
    ) -> Result<Identity, Failure> {
        let settings = &provider.settings;
        let discovery = self.discovery(provider).await?;
        let tokens = self
            .exchange_code(settings, &discovery.token_endpoint, discovery.basic_auth, code, pending)
            .await?;
        let id_token = tokens.id_token.as_deref().ok_or(Failure::ProviderError)?;
        let expected = Expected { issuers, client_id: &settings.client_id, nonce: &pending.nonce };
        let claims = self.keys(provider, &discovery, id_token).await?.verify(id_token, &expected).map_err(
            |r| match r {
                Rejection::Expired => Failure::IdTokenExpired,
                Rejection::NonceMismatch => Failure::NonceMismatch,
                Rejection::Invalid | Rejection::UnknownKey => Failure::InvalidIdToken,
            },
        )?;
        let mut identity = Identity {
            account_id: claims.sub.clone(),
            email: claims.email.clone(),
            email_verified: claims.email_verified.is_some_and(|f| f.is_set()),
            name: claims.name.clone(),
            image: claims.picture.clone(),
            scope: tokens.scope(),
        };
        // Providers that follow the specification to the letter put the profile in the
        // UserInfo response, not the ID token.
        if identity.email.is_none()
            && let Some(userinfo) = &discovery.userinfo_endpoint
        {
            #[derive(Deserialize)]
            struct UserInfo {
                sub: String,
                email: Option<String>,
                email_verified: Option<super::id_token::Flag>,
                name: Option<String>,
                picture: Option<String>,
            }
            let (status, info) =
                self.http.json::<UserInfo>(Call::get(userinfo).bearer(&tokens.access_token)).await?;
            let info = info.filter(|_| status.is_success()).ok_or(Failure::ProviderError)?;
            // Another subject's profile must not be taken for this one's.
            if info.sub != claims.sub {
                return Err(Failure::ProviderError);
            }
            identity.email = info.email;
            identity.email_verified = info.email_verified.is_some_and(|f| f.is_set());
            identity.name = identity.name.or(info.name);
            identity.image = identity.image.or(info.picture);
        }
        Ok(identity)
    }

    /// The authorization code exchanged for tokens (RFC 6749 4.1.3, with the PKCE verifier).
    async fn exchange_code(
        &self,
        settings: &ProviderSettings,
        endpoint: &Url,
        basic_auth: bool,
        code: &str,
        pending: &PendingSignIn,
    ) -> Result<Tokens, Failure> {
        let secret = settings.client_secret.expose_secret();
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &pending.callback),
            ("code_verifier", &pending.verifier),
        ];
        let mut basic = None;
        if basic_auth {
            // RFC 6749 2.3.1: each part form-encoded before the Basic encoding.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            basic = Some(STANDARD.encode(format!("{}:{}", encode(&settings.client_id), encode(secret))));
        } else {
            pairs.extend([("client_id", settings.client_id.as_str()), ("client_secret", secret)]);
        }
        let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let mut call = Call::post_form(endpoint, form);
        if let Some(basic) = basic {
            call = call.header("authorization", format!("Basic {basic}"));
        }
        let (status, tokens) = self.http.json::<Tokens>(call).await?;
        match tokens {
            Some(tokens) if status.is_success() && !tokens.access_token.is_empty() => Ok(tokens),
            // A refused code (used, expired, another client's, a wrong verifier), which GitHub
            // answers with 200 and an `error`.
            _ => Err(Failure::ProviderError),
        }
    }

    async fn discovery(&self, provider: &Provider) -> Result<Arc<Discovery>, Failure> {
        let cached = provider.discovery.lock().map_err(|_| Failure::ServerError)?.clone();
        if let Some(discovery) = cached.filter(|d| d.fetched_at.elapsed() < DISCOVERY_TTL) {
            return Ok(discovery);
        }
        let Protocol::OpenIdConnect { issuer, .. } = &provider.settings.protocol else {
            return Err(Failure::ServerError);
        };

        #[derive(Deserialize)]
        struct Document {
            issuer: String,
            authorization_endpoint: String,
            token_endpoint: String,
            jwks_uri: String,
            userinfo_endpoint: Option<String>,
            token_endpoint_auth_methods_supported: Option<Vec<String>>,
        }
        let address = Url::parse(&format!("{issuer}/.well-known/openid-configuration"))
            .map_err(|_| Failure::ServerError)?;
        let (status, document) = self.http.json::<Document>(Call::get(&address)).await?;
        let document = document.filter(|_| status.is_success()).ok_or(Failure::ProviderError)?;
        // The document must be the issuer's own (OpenID Connect Discovery 4.3).
        if document.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            tracing::warn!(provider = %provider.settings.id, "the discovery document names another issuer");
            return Err(Failure::ProviderError);
        }
        let loopback_issuer = Url::parse(issuer).is_ok_and(|u| is_loopback(&u));
        let endpoint = |raw: &str| {
            let url = Url::parse(raw).map_err(|_| Failure::ProviderError)?;
            let secure =
                url.scheme() == "https" || (url.scheme() == "http" && loopback_issuer && is_loopback(&url));
            secure.then_some(url).ok_or(Failure::ProviderError)
        };
        let methods = document.token_endpoint_auth_methods_supported.unwrap_or_default();
        let discovery = Arc::new(Discovery {
            fetched_at: Instant::now(),
            authorization_endpoint: endpoint(&document.authorization_endpoint)?,
            token_endpoint: endpoint(&document.token_endpoint)?,
            jwks_uri: endpoint(&document.jwks_uri)?,
            userinfo_endpoint: document.userinfo_endpoint.as_deref().map(endpoint).transpose()?,
            basic_auth: methods.is_empty()
                || methods.iter().any(|m| m == "client_secret_basic")
                || !methods.iter().any(|m| m == "client_secret_post"),
        });
        *provider.discovery.lock().map_err(|_| Failure::ServerError)? = Some(discovery.clone());
        Ok(discovery)
    }

    /// The issuer's keys, fetched again when they are old or do not include the key
    /// `id_token` names.
    async fn keys(
        &self,
        provider: &Provider,
        discovery: &Discovery,
        id_token: &str,
    ) -> Result<Arc<KeySet>, Failure> {
        let cached = provider.keys.lock().map_err(|_| Failure::ServerError)?.clone();
        if let Some(keys) = cached.filter(|k| k.fetched_at.elapsed() < KEYS_TTL && !k.lacks_key_of(id_token))
        {
            return Ok(keys);
        }
        let (status, body) = self.http.send(Call::get(&discovery.jwks_uri)).await?;
        if !status.is_success() {
            return Err(if status.is_server_error() {
                Failure::ProviderUnavailable
            } else {
                Failure::ProviderError
            });
        }
        let keys = Arc::new(KeySet::parse(&body).map_err(|_| Failure::ProviderError)?);
        *provider.keys.lock().map_err(|_| Failure::ServerError)? = Some(keys.clone());
        Ok(keys)
    }
}

/// A token endpoint's answer, the parts primer reads.
#[derive(Deserialize)]
struct Tokens {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
}

impl Tokens {
    fn scope(&self) -> String {
        match &self.scope {
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect::<Vec<_>>().join(","),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|s| s.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        }
    }
}

/// `base` with `segments` appended to its path (a GitHub Enterprise API lives under `/api/v3`).
fn below(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A provider that does not answer is unavailable; one that answers what cannot be read errs.
impl From<CallFailure> for Failure {
    fn from(failure: CallFailure) -> Self {
        match failure {
            CallFailure::Unavailable => Failure::ProviderUnavailable,
            CallFailure::Misbehaved => Failure::ProviderError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_appended_below_the_base() {
        let api = Url::parse("https://api.github.com").unwrap();
        assert_eq!(below(&api, &["user", "emails"]).as_str(), "https://api.github.com/user/emails");
        let enterprise = Url::parse("https://ghe.example/api/v3").unwrap();
        assert_eq!(below(&enterprise, &["user"]).as_str(), "https://ghe.example/api/v3/user");
        let trailing = Url::parse("http://127.0.0.1:9/stub/").unwrap();
        assert_eq!(
            below(&trailing, &["login", "oauth", "authorize"]).as_str(),
            "http://127.0.0.1:9/stub/login/oauth/authorize"
        );
    }

    #[test]
    fn scopes_are_stored_as_better_auth_stores_them() {
        let tokens = |scope: serde_json::Value| Tokens {
            access_token: "a".into(),
            id_token: None,
            scope: Some(scope),
        };
        assert_eq!(tokens(serde_json::json!("openid email  profile")).scope(), "openid,email,profile");
        assert_eq!(tokens(serde_json::json!("read:user,user:email")).scope(), "read:user,user:email");
        assert_eq!(tokens(serde_json::json!(["openid", "email"])).scope(), "openid,email");
        assert_eq!(Tokens { access_token: "a".into(), id_token: None, scope: None }.scope(), "");
    }
}
