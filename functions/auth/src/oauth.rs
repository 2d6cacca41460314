//! Signing in with GitHub, Google and OpenID Connect providers (`/api/auth/oauth/*`), and the
//! ways a user can sign in (`/api/auth/accounts`). The flows are
//! `primer_shared::domain::auth::oauth::SignIn`'s; these handlers read the request, call one, and
//! answer with JSON or, where a browser is sent on, a redirect.

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, HOST, LOCATION, REFERRER_POLICY};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use primer_shared::domain::auth::oauth::{Callback, SignIn, Url};
use primer_shared::http::extract::{AuthUser, ClientMeta, JsonBody, OptionalJsonBody, QueryParams};
use primer_shared::http::openapi as api;
use primer_shared::{AppState, Error, FieldErrors, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body::{SignedIn, guest_of, signed_in};

/// The sign-in routes, merged into the auth function's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/oauth/providers", get(list_providers))
        .route("/api/auth/oauth/{provider}/start", get(start))
        .route("/api/auth/oauth/{provider}/callback", get(callback))
        .route("/api/auth/oauth/{provider}/link", post(link))
        .route("/api/auth/oauth/exchange", post(exchange))
        .route("/api/auth/accounts", get(list_accounts))
        .route("/api/auth/accounts/{provider}", delete(remove_account))
}

/// The sign-in flows over the function's pool, configuration and providers.
fn sign_in(state: &AppState) -> SignIn<'_> {
    SignIn::new(&state.pool, &state.config, &state.sign_in)
}

/// The API's public base URL, which the callback a provider returns readers to starts with:
/// `API_URL` when set; on Lambda, `https://` and the domain API Gateway was called on (which
/// API Gateway, not the client, vouches for); locally, the `Host` the browser used. `None`
/// when a request names none of these (the flow then refuses to start).
pub(crate) struct PublicApiUrl(Option<String>);

impl FromRequestParts<AppState> for PublicApiUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        if let Some(url) = &state.config.sign_in.api_url {
            return Ok(Self(Some(url.clone())));
        }
        if let Some(RequestContext::ApiGatewayV2(context)) = parts.request_context_ref()
            && let Some(domain) = &context.domain_name
        {
            return Ok(Self(Some(format!("https://{domain}"))));
        }
        let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok()).filter(|h| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
        Ok(Self(host.map(|host| format!("http://{host}"))))
    }
}

/// A 302 to `url` that no cache keeps and that passes no referrer on (the URL carries a state
/// or a one-time code).
fn redirect(url: &Url) -> Response {
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return Error::internal("a redirect that is no header value").into_response();
    };
    let headers = [
        (LOCATION, location),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (StatusCode::FOUND, headers).into_response()
}

/// One provider a reader may sign in with.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"id": "github", "name": "GitHub", "kind": "oauth2"})))]
pub(crate) struct ProviderInfo {
    /// The id in the routes (`github`, `google`, or a configured OpenID provider's).
    id: String,
    /// What a button says ("GitHub").
    name: String,
    #[schema(schema_with = api::one_of_strings::<Kinds>)]
    kind: &'static str,
}

/// The values of [`ProviderInfo::kind`].
struct Kinds;
impl api::Strings for Kinds {
    const ALL: &[&str] = &["oauth2", "oidc"];
    const DESCRIPTION: Option<&str> = Some("`oauth2` (GitHub) or `oidc` (OpenID Connect).");
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProviderList {
    providers: Vec<ProviderInfo>,
}

#[utoipa::path(
    get,
    path = "/api/auth/oauth/providers",
    tag = "auth",
    operation_id = "listSignInProviders",
    summary = "The providers a reader may sign in with",
    description = "What the deployment configured (GitHub, Google, OpenID Connect issuers), in order: one button each. Empty when none is.",
    responses(
        (status = 200, description = "The configured providers.", body = inline(ProviderList)),
        api::ServerErrors,
    ),
)]
pub(crate) async fn list_providers(State(state): State<AppState>) -> Json<ProviderList> {
    let providers = sign_in(&state)
        .providers()
        .iter()
        .map(|p| ProviderInfo { id: p.id.clone(), name: p.name.clone(), kind: p.kind() })
        .collect();
    Json(ProviderList { providers })
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StartQuery {
    /// The page of the site to return to (`FRONTEND_URL`'s origin or one of `SITE_ORIGINS`),
    /// without a fragment; default `FRONTEND_URL`.
    #[param(max_length = 2048)]
    redirect_to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/auth/oauth/{provider}/start",
    tag = "auth",
    operation_id = "startSignIn",
    summary = "Send the reader to the provider to sign in",
    description = "For a link or a button the reader follows: a 302 to the provider's authorization page, with `state`, PKCE (`S256`) and, for OpenID Connect, a `nonce`, all kept server-side for 10 minutes and usable once. The provider sends the reader back to `/api/auth/oauth/{provider}/callback`, which returns them to `redirect_to`. When the provider cannot be reached, a 302 straight back to `redirect_to` with `#error=provider_unavailable`. Throttled per client address (`OAUTH_MAX_PER_ADDRESS`, default 100 an hour).",
    params(("provider" = String, Path, description = "A configured provider's id.", example = "github"), StartQuery),
    responses(
        (status = 302, description = "To the provider (or back to `redirect_to` with `#error=provider_unavailable`).",
         headers(("Location" = String, description = "Where the browser goes next."))),
        (status = 400, response = api::BadRequest),
        (status = 404, response = api::UnknownProvider),
        (status = 422, response = api::ValidationFailed),
        (status = 429, response = api::RateLimited),
        api::ServerErrors,
    ),
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    QueryParams(query): QueryParams<StartQuery>,
    PublicApiUrl(api_url): PublicApiUrl,
    client: ClientMeta,
) -> Result<Response> {
    let url =
        sign_in(&state).start(&provider, query.redirect_to.as_deref(), api_url.as_deref(), &client).await?;
    Ok(redirect(&url))
}

#[utoipa::path(
    get,
    path = "/api/auth/oauth/{provider}/callback",
    tag = "auth",
    operation_id = "finishSignIn",
    summary = "Where the provider returns the reader",
    description = "Register `<API URL>/api/auth/oauth/{provider}/callback` at the provider. Exchanges the code (with the PKCE verifier) and, for OpenID Connect, verifies the ID token (RS256 or ES256 from the issuer's JWKS; `iss`, `aud`, `exp`, `nonce`). Then the reader is the user who owns this provider account; else, when the provider verified the address, the user with that address (linked now; by default only if that user verified it too); else a new user. Always a 302 to the sign-in's `redirect_to` (to `FRONTEND_URL` when the state is unknown): with `#code=<one-time code>` (valid 60 s, once: `POST /api/auth/oauth/exchange`), `#linked=<provider>` after a link, or `#error=<code>`, one of: `access_denied` (the reader declined), `invalid_state` (unknown, used, expired, or another provider's), `provider_error` (the provider refused the code or answered nonsense), `provider_unavailable`, `invalid_id_token` (signature, algorithm, issuer or audience), `id_token_expired`, `nonce_mismatch`, `email_not_found`, `invalid_email`, `account_not_linked` (an account has the address and it is not verified by the provider, or by the account: sign in with the password and link), `account_disabled`, `account_already_linked` and `provider_already_linked` (linking), `rate_limited`, `temporarily_unavailable`, `server_error`. Throttled per client address like `start`.",
    params(
        ("provider" = String, Path, description = "A configured provider's id.", example = "github"),
        ("code" = Option<String>, Query, description = "The authorization code."),
        ("state" = Option<String>, Query, description = "The state `start` sent."),
        ("error" = Option<String>, Query, description = "The provider's error, e.g. `access_denied`."),
        ("iss" = Option<String>, Query, description = "The issuer that answered (RFC 9207)."),
    ),
    responses(
        (status = 302, description = "Back to the site, with `#code=...`, `#linked=...` or `#error=...` in the fragment.",
         headers(("Location" = String, description = "The site's page, with the outcome in its fragment."))),
        (status = 404, response = api::UnknownProvider),
        api::ServerErrors,
    ),
)]

pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    client: ClientMeta,
) -> Result<Response> {
    let callback = Callback::from_query(query.as_deref().unwrap_or_default());
    let url = sign_in(&state).finish(&provider, &callback, &client).await?;
    Ok(redirect(&url))
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct LinkRequest {
    /// The page of the site to return to; default `FRONTEND_URL`.
    #[schema(max_length = 2048)]
    redirect_to: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"url": "https://github.com/login/oauth/authorize?response_type=code&client_id=Iv1.8a61f9b3a7aba766&redirect_uri=https%3A%2F%2Fapi.book.example%2Fapi%2Fauth%2Foauth%2Fgithub%2Fcallback&scope=read%3Auser+user%3Aemail&state=Jx0H2lVq8c5KpB7f3nY1aR6wT9eU4sD2gF0hL8mN5oQ&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"})))]
pub(crate) struct LinkUrl {
    /// Where to send the reader: the provider's authorization page.
    #[schema(format = "uri")]
    url: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/oauth/{provider}/link",
    tag = "auth",
    operation_id = "linkSignInProvider",
    summary = "Start linking a provider to the signed-in user",
    description = "Answers the provider's authorization URL for the site to navigate to. When the reader comes back through the callback, the provider account is linked to this user, whatever address the provider reports (the session is the proof), as long as this session is still live; the callback then returns them to `redirect_to` with `#linked=<provider>` (or `#error=account_already_linked` when the provider account is another user's, `provider_already_linked` when this user has another account there). 503 when the provider cannot be reached.",
    params(("provider" = String, Path, description = "A configured provider's id.", example = "github")),
    request_body(content = LinkRequest, description = "Optional: a bare POST returns to `FRONTEND_URL`."),
    responses(
        (status = 200, description = "The URL to navigate to.", body = LinkUrl),
        api::SignedInErrors,
        api::JsonBodyErrors,
        (status = 404, response = api::UnknownProvider),
        (status = 422, response = api::ValidationFailed),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn link(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(provider): Path<String>,
    PublicApiUrl(api_url): PublicApiUrl,
    OptionalJsonBody(body): OptionalJsonBody<LinkRequest>,
) -> Result<Json<LinkUrl>> {
    let (user_id, session_id) = (&caller.user_id, &caller.session_id);
    let url = sign_in(&state)
        .start_link(&provider, body.redirect_to.as_deref(), api_url.as_deref(), user_id, session_id)
        .await?;
    Ok(Json(LinkUrl { url: url.into() }))
}

/// A link may be started with a bare POST (its `redirect_to` defaults to `FRONTEND_URL`).
pub(crate) static OPTIONAL_LINK_BODY: api::OptionalPostBody =
    api::OptionalPostBody("/api/auth/oauth/{provider}/link");

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"code": "Yq3r8N1sWfK0vX5cT7bH2dJ9mL4pA6eG1iO8uZ3kR0s"})))]
pub(crate) struct ExchangeRequest {
    /// The `code` of the `#code=...` the callback returned with.
    #[schema(value_type = String, required)]
    code: Option<String>,
    /// Hands the guest's conversations to the user.
    guest_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/auth/oauth/exchange",
    tag = "auth",
    operation_id = "exchangeSignInCode",
    summary = "Redeem a finished sign-in's one-time code",
    description = "Answers like a login: the user and a new session. The code works once, for 60 seconds: of any number of requests with one code, exactly one succeeds; an unknown, expired or spent code is a 400 `invalid_code`. With `guest_token`, the guest's conversations become the user's.",
    request_body = ExchangeRequest,
    responses(
        (status = 200, description = "Signed in; a new session.", body = SignedIn),
        (status = 400, response = api::InvalidCode),
        (status = 403, response = api::AccountDisabled),
        (status = 413, response = api::PayloadTooLarge),
        (status = 415, response = api::UnsupportedMediaType),
        (status = 422, response = api::ValidationFailed),
        api::ServerErrors,
    ),
)]
pub(crate) async fn exchange(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<ExchangeRequest>,
) -> Result<Json<SignedIn>> {
    let mut errors = FieldErrors::new();
    let code =
        errors.check("code", body.code.filter(|c| !c.is_empty()).ok_or_else(|| "is required".to_owned()));
    let guest = guest_of(&state, body.guest_token.as_deref(), &mut errors);
    errors.finish()?;
    let opened = sign_in(&state).redeem(&code.unwrap_or_default(), guest, &client).await?;
    Ok(Json(signed_in(&state, opened)?))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccountList {
    accounts: Vec<primer_shared::domain::auth::oauth::WayToSignIn>,
}

#[utoipa::path(
    get,
    path = "/api/auth/accounts",
    tag = "auth",
    operation_id = "listSignInMethods",
    summary = "The ways the user can sign in",
    description = "Their password (`credential`) if they have one, and each provider account, those linked through a Better-Auth frontend on the same database included.",
    responses(
        (status = 200, description = "Oldest first.", body = AccountList),
        api::SignedInErrors,
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<AccountList>> {
    let accounts = sign_in(&state).methods(&caller.user_id).await?;
    Ok(Json(AccountList { accounts }))
}

#[utoipa::path(
    delete,
    path = "/api/auth/accounts/{provider}",
    tag = "auth",
    operation_id = "removeSignInMethod",
    summary = "Remove a way to sign in",
    description = "Unlinks the provider (`credential`: removes the password). 404 when the user has no such way to sign in; 409 `last_sign_in_method` when it is their only one (two removals at once cannot leave none).",
    params(("provider" = String, Path, description = "`credential`, or a provider's id as `GET /api/auth/accounts` lists it.", example = "github")),
    responses(
        (status = 204, description = "Removed."),
        api::SignedInErrors,
        (status = 404, response = api::NotFound),
        (status = 409, response = api::LastSignInMethod),
        api::ServerErrors,
    ),
    security(("bearerAuth" = [])),
)]
pub(crate) async fn remove_account(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(provider): Path<String>,
) -> Result<StatusCode> {
    sign_in(&state).remove(&caller.user_id, &provider).await?;
    Ok(StatusCode::NO_CONTENT)
}
