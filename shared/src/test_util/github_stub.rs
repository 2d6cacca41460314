//! GitHub's OAuth and user API on 127.0.0.1, as far as a sign-in uses them, since the real one
//! cannot be reached from a test: the authorization page (which signs in whoever the test says
//! is signed in at GitHub, or declines), the token endpoint (client credentials, a single-use
//! code bound to its redirect URI, PKCE S256 checked; GitHub's `200 {"error": ...}` for a bad
//! code), and `/user` and `/user/emails` under `/api/v3` (GitHub Enterprise's layout, so the
//! base path is exercised). It can also be made to fail like a GitHub outage (503).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::auth::oauth::settings::{Protocol, ProviderSettings};
use crate::infra::config::Config;

/// The client id primer is configured with for the stub.
pub const CLIENT_ID: &str = "primer-test-github-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "primer-test-github-secret";

/// A GitHub account the stub knows.
#[derive(Debug, Clone)]
pub struct GitHubAccount {
    /// GitHub's numeric id.
    pub id: u64,
    /// The login.
    pub login: String,
    /// The profile's name, if set.
    pub name: Option<String>,
    /// Its addresses: (address, primary, verified).
    pub emails: Vec<(String, bool, bool)>,
}

impl GitHubAccount {
    /// An account whose one address is primary, verified or not.
    pub fn new(id: u64, login: &str, email: &str, verified: bool) -> Self {
        Self {
            id,
            login: login.into(),
            name: Some(format!("{login} at GitHub")),
            emails: vec![(email.into(), true, verified)],
        }
    }
}

#[derive(Default)]
struct Stub {
    signed_in: Mutex<Option<GitHubAccount>>,
    declines: Mutex<bool>,
    down: Mutex<bool>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, GitHubAccount>>,
    token_requests: Mutex<Vec<HashMap<String, String>>>,
}

struct Grant {
    account: GitHubAccount,
    redirect_uri: String,
    challenge: String,
}

/// The running stub; it stops with the test's runtime.
#[derive(Clone)]
pub struct GitHubStub {
    base: String,
    stub: Arc<Stub>,
}

impl GitHubStub {
    /// Starts the stub on a free port.
    pub async fn start() -> Self {
        let stub = Arc::new(Stub::default());
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/v3/user", get(user))
            .route("/api/v3/user/emails", get(emails))
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, stub }
    }

    /// Configures `config` to offer GitHub through this stub.
    pub fn configure(&self, config: &mut Config) {
        config.sign_in.providers.retain(|p| p.id != "github");
        config.sign_in.providers.push(ProviderSettings {
            id: "github".into(),
            name: "GitHub".into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.to_owned().into(),
            protocol: Protocol::GitHub {
                web: self.base.parse().unwrap(),
                api: format!("{}/api/v3", self.base).parse().unwrap(),
            },
        });
    }

    /// Who the browser is signed in as at GitHub from now on.
    pub fn sign_in_as(&self, account: &GitHubAccount) {
        *self.stub.signed_in.lock().unwrap() = Some(account.clone());
    }

    /// Whether the reader declines on the authorization page from now on.
    pub fn declines(&self, declines: bool) {
        *self.stub.declines.lock().unwrap() = declines;
    }

    /// Whether every endpoint answers 503 from now on.
    pub fn down(&self, down: bool) {
        *self.stub.down.lock().unwrap() = down;
    }

    /// What the authorization page does with `authorization_url` (primer's redirect to GitHub)
    /// for whoever is signed in: the URL it sends the browser back to, primer's callback with
    /// a code and the state (or with `error=access_denied`). For tests that drive primer
    /// without a browser; panics where GitHub would show an error page.
    pub fn approve(&self, authorization_url: &str) -> String {
        let url = url::Url::parse(authorization_url).expect("an authorization URL");
        assert!(url.as_str().starts_with(&self.base), "{url} is not the stub's");
        let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
        decide(&self.stub, &params)
            .unwrap_or_else(|(status, why)| panic!("GitHub would refuse ({status}): {why}"))
    }

    /// The form of every token request primer made, oldest first.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.stub.token_requests.lock().unwrap().clone()
    }
}

type Params = Query<HashMap<String, String>>;

async fn authorize(State(stub): State<Arc<Stub>>, Query(params): Params) -> Response {
    match decide(&stub, &params) {
        Ok(location) => Redirect::to(&location).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// What the authorization page does with a request: where it sends the browser back (the
/// callback with a code, or with `error=access_denied`), or why it refuses to.
fn decide(stub: &Stub, params: &HashMap<String, String>) -> Result<String, (StatusCode, &'static str)> {
    if *stub.down.lock().unwrap() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "down"));
    }
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let redirect_uri = param("redirect_uri");
    if param("client_id") != CLIENT_ID || redirect_uri.is_empty() {
        return Err((StatusCode::NOT_FOUND, "unknown application"));
    }
    if param("code_challenge_method") != "S256" || param("code_challenge").is_empty() {
        return Err((StatusCode::BAD_REQUEST, "PKCE S256 is expected"));
    }
    let mut back =
        url::Url::parse(&redirect_uri).map_err(|_| (StatusCode::BAD_REQUEST, "a bad redirect_uri"))?;
    if *stub.declines.lock().unwrap() {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user has denied your application access.")
            .append_pair("state", &param("state"));
        return Ok(back.into());
    }
    let account =
        stub.signed_in.lock().unwrap().clone().ok_or((StatusCode::UNAUTHORIZED, "nobody is signed in"))?;
    let code = uuid::Uuid::new_v4().simple().to_string();
    let grant = Grant { account, redirect_uri, challenge: param("code_challenge") };
    stub.grants.lock().unwrap().insert(code.clone(), grant);
    back.query_pairs_mut().append_pair("code", &code).append_pair("state", &param("state"));
    Ok(back.into())
}

async fn access_token(State(stub): State<Arc<Stub>>, headers: HeaderMap, body: Bytes) -> Response {
    if *stub.down.lock().unwrap() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    stub.token_requests.lock().unwrap().push(form.clone());
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let json_asked =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    // GitHub answers a bad request with 200 and an error, in JSON when asked for it.
    let refuse =
        |error: &str| axum::Json(json!({"error": error, "error_description": error})).into_response();
    if !json_asked {
        return (StatusCode::OK, "error=unsupported_response_type").into_response();
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return refuse("incorrect_client_credentials");
    }
    // A code works once, whatever the outcome.
    let Some(grant) = stub.grants.lock().unwrap().remove(field("code")) else {
        return refuse("bad_verification_code");
    };
    if field("redirect_uri") != grant.redirect_uri {
        return refuse("redirect_uri_mismatch");
    }
    if URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes())) != grant.challenge {
        return refuse("bad_verification_code");
    }
    let token = format!("gho_{}", uuid::Uuid::new_v4().simple());
    stub.tokens.lock().unwrap().insert(token.clone(), grant.account);
    axum::Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}))
        .into_response()
}

/// The account behind the request's token, or the answer GitHub would give.
fn caller(stub: &Stub, headers: &HeaderMap) -> Result<GitHubAccount, (StatusCode, &'static str)> {
    if *stub.down.lock().unwrap() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "down"));
    }
    // GitHub refuses API requests without a User-Agent.
    if !headers.contains_key(header::USER_AGENT) {
        return Err((StatusCode::FORBIDDEN, "a User-Agent is required"));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    stub.tokens.lock().unwrap().get(token).cloned().ok_or((StatusCode::UNAUTHORIZED, "bad credentials"))
}

async fn user(State(stub): State<Arc<Stub>>, headers: HeaderMap) -> Response {
    match caller(&stub, &headers) {
        Ok(account) => {
            let public_email =
                account.emails.iter().find(|(_, primary, _)| *primary).map(|(e, ..)| e.clone());
            axum::Json(json!({
                "id": account.id,
                "login": account.login,
                "name": account.name,
                "email": public_email,
                "avatar_url": format!("https://avatars.example/u/{}", account.id),
            }))
            .into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn emails(State(stub): State<Arc<Stub>>, headers: HeaderMap) -> Response {
    match caller(&stub, &headers) {
        Ok(account) => {
            let emails: Vec<_> = account
                .emails
                .iter()
                .map(|(email, primary, verified)| {
                    json!({"email": email, "primary": primary, "verified": verified, "visibility": "private"})
                })
                .collect();
            axum::Json(emails).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}
