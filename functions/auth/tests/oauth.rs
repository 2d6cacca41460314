//! Signing in with other providers. Against a real OpenID provider (npm `oidc-provider`,
//! tests/oidc-provider, started per test) with primer served over HTTP and a browser-like
//! client (a cookie jar, every redirect followed one by one, the provider's login and consent
//! forms submitted); and against a stub of GitHub (the test kit's), driven in-process. Then the
//! attacks: forged or stale ID tokens, replayed states and codes, unverified addresses,
//! redirects off the site, parallel redemptions through PgBouncer, and the throttles.

use std::collections::HashMap;

use axum::http::{Method, StatusCode, header};
use primer_shared::Config;
use primer_shared::domain::auth::oauth::Failure;
use primer_shared::domain::auth::oauth::settings::{Protocol, ProviderSettings};
use primer_shared::domain::auth::rate_limit::AddressLimit;
use primer_shared::test_util::github_stub::{GitHubAccount, GitHubStub};
use primer_shared::test_util::oidc::OidcProvider;
use primer_shared::test_util::{TestApp, TestUser, tally, test_config};
use reqwest::Url;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The readers' site (`FRONTEND_URL` of these tests' configurations).
const SITE: &str = "http://localhost:3000";
/// The page of the site a sign-in returns to.
const SIGNED_IN_PAGE: &str = "http://localhost:3000/signed-in";
const CLIENT_SECRET: &str = "primer-at-the-test-provider-secret";

/// The accounts at the OpenID provider.
fn provider_accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Liddell"},
        "bob": {"email": "bob@example.com", "email_verified": false, "name": "Bob (unverified)"},
        "carol": {"email": "carol@example.com", "email_verified": true, "name": "Carol"},
        "dave": {"email": "dave@example.com", "email_verified": false, "name": "Dave"},
    })
}

/// primer on a real socket, configured with the OpenID provider twice: `corp` (RS256 ID
/// tokens) and `corp-es` (ES256), both by the provider's discovery document.
struct OpenIdSetup {
    app: TestApp,
    base: String,
    provider: OidcProvider,
    browser: Browser,
}

async fn with_openid_provider(pool: PgPool, change: impl FnOnce(&mut Config)) -> OpenIdSetup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = |id: &str, provider: &str, alg: &str| {
        json!({"client_id": id, "client_secret": CLIENT_SECRET, "id_token_signed_response_alg": alg,
               "redirect_uris": [format!("{base}/api/auth/oauth/{provider}/callback")]})
    };
    let provider = OidcProvider::start(json!({
        "clients": [client("primer-rs", "corp", "RS256"), client("primer-es", "corp-es", "ES256")],
        "accounts": provider_accounts(),
    }))
    .await;
    let mut config = site_config();
    for (id, client_id) in [("corp", "primer-rs"), ("corp-es", "primer-es")] {
        config.sign_in.providers.push(openid_provider(id, &provider.issuer, client_id));
    }
    change(&mut config);
    let app = TestApp::with_config(pool, config, auth::router);
    app.serve(listener);
    OpenIdSetup { app, base, provider, browser: Browser::new() }
}

/// The test configuration, with the readers' site at [`SITE`].
fn site_config() -> Config {
    let mut config = test_config();
    config.email.frontend_url = SITE.into();
    config
}

fn openid_provider(id: &str, issuer: &str, client_id: &str) -> ProviderSettings {
    ProviderSettings {
        id: id.into(),
        name: format!("{id} sign-in"),
        client_id: client_id.into(),
        client_secret: CLIENT_SECRET.to_owned().into(),
        protocol: Protocol::OpenIdConnect {
            issuer: issuer.into(),
            issuer_alias: None,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
        },
    }
}

impl OpenIdSetup {
    /// `start` for `provider`, returning to the signed-in page.
    fn start_url(&self, provider: &str) -> String {
        format!("{}/api/auth/oauth/{provider}/start?redirect_to={}", self.base, enc(SIGNED_IN_PAGE))
    }

    /// A whole sign-in as `login`, in a browser of its own (the provider knows nobody yet):
    /// where it ends on the site.
    async fn sign_in(&self, provider: &str, login: &str) -> Url {
        let end =
            Browser::new().go(&self.start_url(provider), login, true, |url| url.starts_with(SITE)).await;
        Url::parse(&end).unwrap()
    }
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A browser, as far as a sign-in needs one: cookies kept per site, redirects followed one at a
/// time (so a test can stop anywhere), the provider's forms submitted.
struct Browser {
    http: reqwest::Client,
}

impl Browser {
    fn new() -> Self {
        let http = primer_shared::test_util::http_client()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { http }
    }

    /// Goes to `url` and on: redirects followed, the login form filled in with `login`, consent
    /// given (or declined), until a redirect's target satisfies `stop`: that target.
    async fn go(&self, url: &str, login: &str, consent: bool, stop: impl Fn(&str) -> bool) -> String {
        let mut request = self.http.get(url).build().unwrap();
        for _ in 0..20 {
            let from = request.url().clone();
            let response = self.http.execute(request).await.unwrap();
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers()[header::LOCATION].to_str().unwrap();
                let next = from.join(location).unwrap().to_string();
                if stop(&next) {
                    return next;
                }
                request = self.http.get(&next).build().unwrap();
                continue;
            }
            let page = response.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{from}: {page}");
            let actions: Vec<&str> =
                page.split("action=\"").skip(1).filter_map(|a| a.split('"').next()).collect();
            let pick =
                |suffix: &str| actions.iter().find(|a| a.ends_with(suffix)).map(|a| from.join(a).unwrap());
            request = if let Some(action) = pick("/login") {
                let body = format!("login={}", enc(login));
                let post =
                    self.http.post(action).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                post.body(body).build().unwrap()
            } else if let Some(action) = pick(if consent { "/confirm" } else { "/abort" }) {
                self.http.post(action).build().unwrap()
            } else {
                panic!("a page without the expected form at {from}: {page}");
            };
        }
        panic!("more than 20 steps from {url}");
    }

    /// `GET url` without following: the redirect's target.
    async fn redirect_of(&self, url: &str) -> String {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND, "{url}: {}", response.text().await.unwrap());
        response.headers()[header::LOCATION].to_str().unwrap().to_owned()
    }
}

/// The value of `key` in a URL's fragment (`#code=...`, `#error=...`).
fn fragment(url: &str, key: &str) -> Option<String> {
    let fragment = url.split_once('#')?.1;
    url::form_urlencoded::parse(fragment.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The one-time code a sign-in ended with; panics on an error.
fn code_of(url: &str) -> String {
    fragment(url, "code").unwrap_or_else(|| panic!("no code in {url}"))
}

/// Redeems a sign-in's one-time code: the signed-in user's JSON and a test user with its tokens.
async fn redeem(app: &TestApp, url: &str) -> (Value, TestUser) {
    let exchanged = app.exchange_sign_in_code(&code_of(url)).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text());
    let body = exchanged.json();
    let user = TestUser {
        id: body["user"]["id"].as_str().unwrap().into(),
        email: body["user"]["email"].as_str().unwrap().to_owned(),
        password: String::new(),
        access_token: body["session"]["access_token"].as_str().unwrap().to_owned(),
        refresh_token: body["session"]["refresh_token"].as_str().unwrap().to_owned(),
        session_id: body["session"]["session_id"].as_str().unwrap().to_owned(),
    };
    (body["user"].clone(), user)
}

/// A provider account as stored: every column Better-Auth writes.
async fn account_row(pool: &PgPool, provider: &str, account_id: &str) -> Option<Value> {
    sqlx::query_scalar!(
        r#"SELECT to_jsonb(a) - 'id' - 'createdAt' - 'updatedAt'
                  || jsonb_build_object('stamped', a."createdAt" = a."updatedAt" AND a."createdAt" > now() - interval '1 minute') AS "row!"
           FROM "account" a WHERE "providerId" = $1 AND "accountId" = $2"#,
        provider,
        account_id,
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn users_with_email(pool: &PgPool, email: &str) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "user" WHERE email = $1"#, email)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn accounts_of(pool: &PgPool, user_id: &str) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "account" WHERE "userId" = $1"#, user_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_reader_signs_up_then_in_with_an_openid_provider_as_a_browser_does(pool: PgPool) {
    let setup = with_openid_provider(pool, |_| {}).await;
    let app = &setup.app;

    // The start: a redirect to the provider with state, PKCE S256 and a nonce, kept server-side.
    let to_provider = setup.browser.redirect_of(&setup.start_url("corp")).await;
    let to_provider = Url::parse(&to_provider).unwrap();
    assert!(to_provider.as_str().starts_with(&setup.provider.issuer), "{to_provider}");
    let query: HashMap<_, _> = to_provider.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "primer-rs");
    assert_eq!(query["redirect_uri"], format!("{}/api/auth/oauth/corp/callback", setup.base));
    assert_eq!(query["scope"], "openid email profile");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!((query["state"].len(), query["nonce"].len()), (43, 43));
    let stored = sqlx::query!(
        r#"SELECT identifier, value FROM "verification" WHERE identifier LIKE 'primer:oauth-state:%'"#,
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].identifier.contains(&query["state"]), "the state is kept only as a digest");

    // On, as a browser goes: login and consent at the provider, back to the site.
    let ended = setup.browser.go(to_provider.as_str(), "alice", true, |u| u.starts_with(SITE)).await;
    let ended = Url::parse(&ended).unwrap();
    assert_eq!(ended.as_str().split('#').next(), Some(SIGNED_IN_PAGE));
    let (user, session) = redeem(app, ended.as_str()).await;
    assert_eq!(
        (user["email"].as_str(), user["email_verified"].as_bool()),
        (Some("alice@example.com"), Some(true))
    );
    assert_eq!(user["name"], "Alice Liddell");
    assert_eq!(app.me(&session.access_token).await.json()["user"]["id"], user["id"]);

    // The account row as Better-Auth writes one, with no provider token kept.
    let row = account_row(app.pool(), "corp", "alice").await.expect("a corp account for alice");
    assert_eq!(
        row,
        json!({"accountId": "alice", "providerId": "corp", "userId": user["id"], "scope": "openid,email,profile",
               "accessToken": null, "refreshToken": null, "idToken": null, "accessTokenExpiresAt": null,
               "refreshTokenExpiresAt": null, "password": null, "stamped": true})
    );

    // Signing in again (the provider remembers the browser: no login, no consent) finds the
    // same user...
    let again = setup.browser.go(&setup.start_url("corp"), "alice", true, |u| u.starts_with(SITE)).await;
    assert_eq!(redeem(app, &again).await.0["id"], user["id"]);
    // ...and through the second client, whose ID tokens are ES256, the same address (verified
    // on both sides) links the new provider account to the same user.
    let through_es =
        setup.browser.go(&setup.start_url("corp-es"), "alice", true, |u| u.starts_with(SITE)).await;
    let (linked, session) = redeem(app, &through_es).await;
    assert_eq!(linked["id"], user["id"]);
    assert_eq!(users_with_email(app.pool(), "alice@example.com").await, 1);
    let accounts = app.get("/api/auth/accounts", Some(&session.access_token)).await.json();
    let providers: Vec<&str> =
        accounts["accounts"].as_array().unwrap().iter().map(|a| a["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["corp", "corp-es"]);
    assert_eq!(accounts["accounts"][1]["name"], "corp-es sign-in");

    // Nothing of the sign-ins is left behind but the accounts.
    let left = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM "verification" WHERE identifier LIKE $1"#,
        "primer:oauth-%",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(left, 0, "states and codes are gone once used");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn forged_and_stale_id_tokens_are_refused(pool: PgPool) {
    let setup = with_openid_provider(pool, |_| {}).await;
    let app = &setup.app;
    // A first sign-in, so that the provider's keys are known.
    redeem(app, setup.sign_in("corp", "alice").await.as_str()).await;
    assert_eq!(setup.provider.jwks_requests().await, 1);

    for (mode, expected) in [
        ("wrong_aud", Failure::InvalidIdToken),
        ("wrong_iss", Failure::InvalidIdToken),
        ("expired", Failure::IdTokenExpired),
        ("wrong_nonce", Failure::NonceMismatch),
        ("none", Failure::InvalidIdToken),
        ("hs256", Failure::InvalidIdToken),
    ] {
        setup.provider.tamper_next_id_token(mode).await;
        let ended = setup.sign_in("corp", "carol").await;
        assert_eq!(fragment(ended.as_str(), "error").as_deref(), Some(expected.code()), "{mode}: {ended}");
        assert_eq!(users_with_email(app.pool(), "carol@example.com").await, 0, "{mode}");
    }
    // None of those is a reason to fetch the keys again.
    assert_eq!(setup.provider.jwks_requests().await, 1);

    // A key the provider does not publish: the keys are fetched again, and it is still refused.
    setup.provider.tamper_next_id_token("unknown_kid").await;
    let ended = setup.sign_in("corp", "carol").await;
    assert_eq!(fragment(ended.as_str(), "error").as_deref(), Some("invalid_id_token"), "{ended}");
    assert_eq!(setup.provider.jwks_requests().await, 2);
    assert_eq!(users_with_email(app.pool(), "carol@example.com").await, 0);

    // The provider rotates to a new key: fetched again once, and the token is good.
    setup.provider.tamper_next_id_token("rotated").await;
    let (carol, _) = redeem(app, setup.sign_in("corp", "carol").await.as_str()).await;
    assert_eq!(carol["email"], "carol@example.com");
    assert_eq!(setup.provider.jwks_requests().await, 3);
    redeem(app, setup.sign_in("corp", "carol").await.as_str()).await;
    assert_eq!(setup.provider.jwks_requests().await, 3, "known keys are not fetched again");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_state_and_a_code_work_once(pool: PgPool) {
    let setup = with_openid_provider(pool, |_| {}).await;
    let app = &setup.app;
    let callback_prefix = format!("{}/api/auth/oauth/corp/callback", setup.base);

    // Up to primer's callback, then the callback twice.
    let callback =
        setup.browser.go(&setup.start_url("corp"), "alice", true, |u| u.starts_with(&callback_prefix)).await;
    let first = setup.browser.redirect_of(&callback).await;
    let replayed = setup.browser.redirect_of(&callback).await;
    assert!(first.starts_with(SIGNED_IN_PAGE) && fragment(&first, "code").is_some(), "{first}");
    assert_eq!(fragment(&replayed, "error").as_deref(), Some("invalid_state"), "{replayed}");
    assert!(replayed.starts_with(SITE), "an unknown state returns to FRONTEND_URL: {replayed}");

    // The one-time code, twice.
    let code = code_of(&first);
    assert_eq!(app.exchange_sign_in_code(&code).await.status, StatusCode::OK);
    let again = app.exchange_sign_in_code(&code).await;
    assert_eq!((again.status, again.error_code().as_str()), (StatusCode::BAD_REQUEST, "invalid_code"));

    // A code past its minute.
    let late = code_of(setup.sign_in("corp", "alice").await.as_str());
    sqlx::query!(
        r#"UPDATE "verification" SET "expiresAt" = now() - interval '1 second' WHERE identifier LIKE 'primer:oauth-code:%'"#,
    )
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(app.exchange_sign_in_code(&late).await.error_code(), "invalid_code");

    // A state past its ten minutes, and a state started for another provider.
    let callback =
        setup.browser.go(&setup.start_url("corp"), "alice", true, |u| u.starts_with(&callback_prefix)).await;
    sqlx::query!(
        r#"UPDATE "verification" SET "expiresAt" = now() - interval '1 second' WHERE identifier LIKE 'primer:oauth-state:%'"#,
    )
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(
        fragment(&setup.browser.redirect_of(&callback).await, "error").as_deref(),
        Some("invalid_state")
    );
    let callback =
        setup.browser.go(&setup.start_url("corp"), "alice", true, |u| u.starts_with(&callback_prefix)).await;
    let crossed = callback.replace("/oauth/corp/callback", "/oauth/corp-es/callback");
    assert_eq!(
        fragment(&setup.browser.redirect_of(&crossed).await, "error").as_deref(),
        Some("invalid_state")
    );
    assert_eq!(
        fragment(&setup.browser.redirect_of(&callback).await, "error").as_deref(),
        Some("invalid_state"),
        "consumed"
    );

    // Malformed bodies of the exchange are the contract's errors, not a 500.
    for (body, status) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"code": ""}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"code": "x".repeat(5000)}), StatusCode::BAD_REQUEST),
        (json!({"code": "a\u{0}b"}), StatusCode::BAD_REQUEST),
    ] {
        let response = app.call(Method::POST, "/api/auth/oauth/exchange", None, Some(body.clone())).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn declining_at_the_provider_returns_to_the_site_with_an_error(pool: PgPool) {
    let setup = with_openid_provider(pool, |_| {}).await;
    let ended = setup.browser.go(&setup.start_url("corp"), "alice", false, |u| u.starts_with(SITE)).await;
    assert!(ended.starts_with(SIGNED_IN_PAGE), "{ended}");
    assert_eq!(fragment(&ended, "error").as_deref(), Some("access_denied"));
    assert_eq!(users_with_email(setup.app.pool(), "alice@example.com").await, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_address_the_provider_did_not_verify_never_links(pool: PgPool) {
    let setup = with_openid_provider(pool, |_| {}).await;
    let app = &setup.app;
    // Bob has a password account whose address he verified.
    let bob = app.signed_up("bob@example.com").await;
    primer_shared::domain::user::mark_email_verified(app.pool(), &bob.id).await.unwrap();

    // Someone at the provider claims bob@example.com without the provider having checked it.
    let ended = setup.sign_in("corp", "bob").await;
    assert_eq!(fragment(ended.as_str(), "error").as_deref(), Some("account_not_linked"), "{ended}");
    assert!(account_row(app.pool(), "corp", "bob").await.is_none());
    assert_eq!(accounts_of(app.pool(), bob.id.as_str()).await, 1);
    assert_eq!(users_with_email(app.pool(), "bob@example.com").await, 1);

    // An unverified address no account has: a new account, unverified.
    let (dave, _) = redeem(app, setup.sign_in("corp", "dave").await.as_str()).await;
    assert_eq!(
        (dave["email"].as_str(), dave["email_verified"].as_bool()),
        (Some("dave@example.com"), Some(false))
    );
}

/// The auth function with GitHub through the stub.
async fn with_github(pool: PgPool, change: impl FnOnce(&mut Config)) -> (TestApp, GitHubStub) {
    let stub = GitHubStub::start().await;
    let mut config = site_config();
    stub.configure(&mut config);
    change(&mut config);
    (TestApp::with_config(pool, config, auth::router), stub)
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_reader_signs_up_with_github(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let octocat = GitHubAccount::new(4242, "octocat", "Octo@Example.com", true);
    let ended = app.sign_in_with_github(&stub, &octocat, None).await;
    assert!(ended.starts_with(&format!("{SITE}/#code=")), "{ended}");
    let (user, _) = redeem(&app, &ended).await;
    assert_eq!(
        (user["email"].as_str(), user["email_verified"].as_bool()),
        (Some("octo@example.com"), Some(true))
    );
    assert_eq!(
        (user["name"].as_str(), user["image"].as_str()),
        (Some("octocat at GitHub"), Some("https://avatars.example/u/4242"))
    );
    let row = account_row(app.pool(), "github", "4242").await.expect("GitHub's numeric id, as text");
    assert_eq!((row["scope"].as_str(), row["accessToken"].as_str()), (Some("read:user,user:email"), None));

    // What primer sent GitHub's token endpoint: the code with its PKCE verifier and callback.
    let sent = stub.token_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["redirect_uri"], "http://primer.test/api/auth/oauth/github/callback");
    assert_eq!(sent[0]["code_verifier"].len(), 43);
    assert_eq!(sent[0]["grant_type"], "authorization_code");

    // The same GitHub account later, whatever its address has become: the same user.
    let renamed = GitHubAccount::new(4242, "octocat", "new-address@example.com", true);
    let (again, _) = redeem(&app, &app.sign_in_with_github(&stub, &renamed, None).await).await;
    assert_eq!(again["id"], user["id"]);

    // No address at all: no account can be made.
    let silent = GitHubAccount { emails: vec![], ..GitHubAccount::new(7, "silent", "x@example.com", true) };
    let ended = app.sign_in_with_github(&stub, &silent, None).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("email_not_found"), "{ended}");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn github_links_by_address_only_when_both_sides_verified_it(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let verified = app.signed_up("verified@example.com").await;
    primer_shared::domain::user::mark_email_verified(app.pool(), &verified.id).await.unwrap();
    let unverified = app.signed_up("unverified@example.com").await;

    // GitHub's primary address, unverified there, equal to an account's: never linked.
    let claim = GitHubAccount::new(1, "claimant", "verified@example.com", false);
    let ended = app.sign_in_with_github(&stub, &claim, None).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("account_not_linked"), "{ended}");
    // Verified at GitHub, and by the account: linked, the same user.
    let owner = GitHubAccount::new(2, "owner", "verified@example.com", true);
    let (user, _) = redeem(&app, &app.sign_in_with_github(&stub, &owner, None).await).await;
    assert_eq!(user["id"], verified.id.as_str());
    // Verified at GitHub, but the account never verified it (whoever registered it may not own
    // it): not linked, as Better-Auth's default also refuses.
    let late = GitHubAccount::new(3, "late", "unverified@example.com", true);
    let ended = app.sign_in_with_github(&stub, &late, None).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("account_not_linked"), "{ended}");
    assert!(account_row(app.pool(), "github", "3").await.is_none());
    assert_eq!(accounts_of(app.pool(), unverified.id.as_str()).await, 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn with_local_verification_not_required_a_provider_verified_address_links(pool: PgPool) {
    let (app, stub) = with_github(pool, |c| c.sign_in.require_local_email_verified = false).await;
    let user = app.signed_up("ada@example.com").await;
    let (linked, _) = redeem(
        &app,
        &app.sign_in_with_github(&stub, &GitHubAccount::new(5, "ada", "ada@example.com", true), None).await,
    )
    .await;
    assert_eq!(
        (linked["id"].as_str(), linked["email_verified"].as_bool()),
        (Some(user.id.as_str()), Some(true))
    );
    // Still never on an address the provider did not verify.
    let claim = GitHubAccount::new(6, "eve", "ada@example.com", false);
    let ended = app.sign_in_with_github(&stub, &claim, None).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("account_not_linked"));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn declines_and_outages_at_github_return_to_the_site(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let octocat = GitHubAccount::new(4242, "octocat", "octo@example.com", true);
    stub.declines(true);
    let ended = app.sign_in_with_github(&stub, &octocat, Some(SIGNED_IN_PAGE)).await;
    assert_eq!(ended, format!("{SIGNED_IN_PAGE}#error=access_denied"));
    stub.declines(false);

    // GitHub goes down between its page and the code exchange.
    stub.sign_in_as(&octocat);
    let to_github = app.redirected("/api/auth/oauth/github/start").await;
    let back = stub.approve(&to_github);
    stub.down(true);
    let ended = app.redirected(back.strip_prefix("http://primer.test").unwrap()).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("provider_unavailable"), "{ended}");
    stub.down(false);
    // The state was spent by that attempt: the same callback again is no sign-in.
    let ended = app.redirected(back.strip_prefix("http://primer.test").unwrap()).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("invalid_state"));
    assert_eq!(users_with_email(app.pool(), "octo@example.com").await, 0);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_unreachable_openid_provider_is_an_error_for_the_site_not_a_500(pool: PgPool) {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut config = site_config();
    config.sign_in.providers.push(openid_provider("corp", &issuer, "primer"));
    let app = TestApp::with_config(pool, config, auth::router);
    let to = app.redirected(&format!("/api/auth/oauth/corp/start?redirect_to={}", enc(SIGNED_IN_PAGE))).await;
    assert_eq!(to, format!("{SIGNED_IN_PAGE}#error=provider_unavailable"));
    let user = app.signed_up("ada@example.com").await;
    let link = app.call(Method::POST, "/api/auth/oauth/corp/link", Some(&user.access_token), None).await;
    assert_eq!((link.status, link.error_code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn twenty_parallel_redemptions_of_one_code_open_one_session(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let ended = app
        .sign_in_with_github(&stub, &GitHubAccount::new(9, "racer", "racer@example.com", true), None)
        .await;
    let code = code_of(&ended);
    let attempts: Vec<_> = (0..20).map(|_| app.exchange_sign_in_code(&code)).collect();
    let responses = futures_util::future::join_all(attempts).await;
    assert_eq!(tally(&responses), HashMap::from([(200, 1), (400, 19)]), "through PgBouncer, at once");
    let user_id = responses.iter().find(|r| r.status == StatusCode::OK).unwrap().json()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "session" WHERE "userId" = $1"#, user_id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(sessions, 1);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_signed_in_reader_links_and_unlinks_a_provider(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let ada = app.signed_up("ada@example.com").await;
    // Her GitHub account has another address, not even verified: her session is the proof.
    let hers = GitHubAccount::new(11, "ada-l", "ada.lovelace@other.example", false);

    let link = |user: &TestUser| {
        let token = user.access_token.clone();
        let app = app.clone();
        async move {
            let body = json!({"redirect_to": format!("{SITE}/settings")});
            app.call(Method::POST, "/api/auth/oauth/github/link", Some(&token), Some(body)).await
        }
    };
    let linking = |url: String, account: GitHubAccount| {
        let (app, stub) = (app.clone(), stub.clone());
        async move {
            stub.sign_in_as(&account);
            let back = stub.approve(&url);
            app.redirected(back.strip_prefix("http://primer.test").unwrap()).await
        }
    };
    let started = link(&ada).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let url = started.json()["url"].as_str().unwrap().to_owned();
    assert!(url.contains("/login/oauth/authorize?"), "{url}");
    assert_eq!(linking(url, hers.clone()).await, format!("{SITE}/settings#linked=github"));
    let ways = |user: TestUser| {
        let app = app.clone();
        async move {
            let accounts = app.get("/api/auth/accounts", Some(&user.access_token)).await.json();
            accounts["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["provider"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ways(ada.clone()).await, ["credential", "github"]);
    // And GitHub now signs her in.
    let (signed_in, _) = redeem(&app, &app.sign_in_with_github(&stub, &hers, None).await).await;
    assert_eq!(signed_in["id"], ada.id.as_str());

    // Her GitHub account cannot be linked to someone else; she cannot link a second one.
    let grace = app.signed_up("grace@example.com").await;
    let url = link(&grace).await.json()["url"].as_str().unwrap().to_owned();
    assert_eq!(
        fragment(&linking(url, hers.clone()).await, "error").as_deref(),
        Some("account_already_linked")
    );
    let url = link(&ada).await.json()["url"].as_str().unwrap().to_owned();
    let second = GitHubAccount::new(12, "ada-alt", "alt@example.com", true);
    assert_eq!(fragment(&linking(url, second).await, "error").as_deref(), Some("provider_already_linked"));
    // A link whose session ended before the provider answered is no one's request any more.
    let url = link(&grace).await.json()["url"].as_str().unwrap().to_owned();
    assert_eq!(app.logout(&grace.access_token).await.status, StatusCode::NO_CONTENT);
    let graces = GitHubAccount::new(13, "grace-h", "grace@example.com", true);
    assert_eq!(fragment(&linking(url, graces).await, "error").as_deref(), Some("invalid_state"));
    assert!(account_row(app.pool(), "github", "13").await.is_none());

    // Unlinking: GitHub goes; the password, now her last way in, cannot.
    let remove = |provider: &'static str| {
        let (app, token) = (app.clone(), ada.access_token.clone());
        async move {
            app.call(Method::DELETE, &format!("/api/auth/accounts/{provider}"), Some(&token), None).await
        }
    };
    assert_eq!(remove("github").await.status, StatusCode::NO_CONTENT);
    assert_eq!(ways(ada.clone()).await, ["credential"]);
    let last = remove("credential").await;
    assert_eq!((last.status, last.error_code().as_str()), (StatusCode::CONFLICT, "last_sign_in_method"));
    assert_eq!(remove("github").await.status, StatusCode::NOT_FOUND);
    assert_eq!(remove("gitlab").await.status, StatusCode::NOT_FOUND);
    assert_eq!(remove("a%00b").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call(Method::POST, "/api/auth/oauth/github/link", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/api/auth/accounts", None).await.status, StatusCode::UNAUTHORIZED);
    let unknown = app.call(Method::POST, "/api/auth/oauth/gitlab/link", Some(&ada.access_token), None).await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (StatusCode::NOT_FOUND, "unknown_provider"));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn two_removals_at_once_leave_one_way_to_sign_in(pool: PgPool) {
    let (app, _stub) = with_github(pool, |_| {}).await;
    for round in 0..5 {
        let user = app.signed_up(&format!("both{round}@example.com")).await;
        primer_shared::domain::user::linked::link(
            app.pool(),
            &user.id,
            &primer_shared::domain::user::linked::ProviderAccount {
                provider: "github",
                account_id: &format!("{round}"),
                scope: "",
            },
        )
        .await
        .unwrap();
        let remove = |provider: &'static str| {
            let (app, token) = (app.clone(), user.access_token.clone());
            async move {
                app.call(Method::DELETE, &format!("/api/auth/accounts/{provider}"), Some(&token), None).await
            }
        };
        let (a, b) = tokio::join!(remove("github"), remove("credential"));
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [204, 409], "round {round}");
        let left = accounts_of(app.pool(), user.id.as_str()).await;
        assert_eq!(left, 1, "round {round}");
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_reader_who_signed_up_with_github_sets_a_password_through_the_reset_flow(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let octocat = GitHubAccount::new(4242, "octocat", "octo@example.com", true);
    let (user, session) = redeem(&app, &app.sign_in_with_github(&stub, &octocat, None).await).await;
    let login = app.login("octo@example.com", "a password of my own").await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "no password yet");

    assert_eq!(app.forgot_password("octo@example.com").await.status, StatusCode::ACCEPTED);
    let reset = app.reset_password(&app.reset_mail("octo@example.com").token, "a password of my own").await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    let login = app.login("octo@example.com", "a password of my own").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(login.json()["user"]["id"], user["id"]);
    let token = login.json()["session"]["access_token"].as_str().unwrap().to_owned();
    let accounts = app.get("/api/auth/accounts", Some(&token)).await.json();
    let providers: Vec<&str> =
        accounts["accounts"].as_array().unwrap().iter().map(|a| a["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["github", "credential"]);
    assert_eq!(accounts["accounts"][1]["name"], "Password");
    // The reset ended the GitHub session, as it ends every session.
    assert_eq!(app.me(&session.access_token).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn deleting_the_account_removes_its_links(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let octocat = GitHubAccount::new(4242, "octocat", "octo@example.com", true);
    let (user, session) = redeem(&app, &app.sign_in_with_github(&stub, &octocat, None).await).await;
    // No password: a fresh session is the proof.
    let deleted =
        app.call(Method::DELETE, "/api/auth/me", Some(&session.access_token), Some(json!({}))).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert_eq!(accounts_of(app.pool(), user["id"].as_str().unwrap()).await, 0);
    // The same GitHub account signs up anew.
    let (again, _) = redeem(&app, &app.sign_in_with_github(&stub, &octocat, None).await).await;
    assert_ne!(again["id"], user["id"]);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn starts_and_callbacks_are_throttled_per_address(pool: PgPool) {
    let (app, _stub) = with_github(pool, |c| {
        c.sign_in.limit = AddressLimit { per_address: 3, window: std::time::Duration::from_secs(3600) }
    })
    .await;
    let starts: Vec<_> = (0..10).map(|_| app.get("/api/auth/oauth/github/start", None)).collect();
    let responses = futures_util::future::join_all(starts).await;
    assert_eq!(tally(&responses), HashMap::from([(302, 3), (429, 7)]), "at once, through PgBouncer");
    let refused = responses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).unwrap();
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    // Another address has its own share.
    app.from_ip([198, 51, 100, 7]).redirected("/api/auth/oauth/github/start").await;

    // Callbacks have their own share; past it, the reader is still sent back to the site.
    let callbacks: Vec<_> = (0..5)
        .map(|i| {
            let app = app.clone();
            async move {
                app.redirected(&format!("/api/auth/oauth/github/callback?code=c&state=unknown-{i}")).await
            }
        })
        .collect();
    let ends = futures_util::future::join_all(callbacks).await;
    let mut errors: Vec<String> = ends.iter().map(|e| fragment(e, "error").unwrap()).collect();
    errors.sort();
    assert_eq!(errors, ["invalid_state", "invalid_state", "invalid_state", "rate_limited", "rate_limited"]);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn redirect_to_must_be_a_page_of_the_site(pool: PgPool) {
    let (app, _stub) =
        with_github(pool, |c| c.sign_in.site_origins = vec!["https://preview.book.example".into()]).await;
    let start = |redirect_to: &str| {
        let (app, path) =
            (app.clone(), format!("/api/auth/oauth/github/start?redirect_to={}", enc(redirect_to)));
        async move { app.get(&path, None).await }
    };
    for refused in [
        "https://evil.example/steal",
        "http://localhost:3001/",
        "https://localhost:3000/",
        "http://localhost:3000@evil.example/",
        "http://user:pass@localhost:3000/",
        "//evil.example/",
        "/relative",
        "javascript:alert(1)",
        "http://localhost:3000/signed-in#already",
        &format!("http://localhost:3000/{}", "a".repeat(2100)),
    ] {
        let response = start(refused).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}: {}", response.text());
        assert_eq!(response.json()["error"]["details"][0]["field"], "redirect_to", "{refused}");
    }
    for allowed in ["http://localhost:3000/signed-in?from=nav", "https://preview.book.example/x"] {
        assert_eq!(start(allowed).await.status, StatusCode::FOUND, "{allowed}");
    }
    // Linking takes its return page from the same list.
    let link = app.signed_up("ada@example.com").await;
    let body = json!({"redirect_to": "https://evil.example/"});
    let refused =
        app.call(Method::POST, "/api/auth/oauth/github/link", Some(&link.access_token), Some(body)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn only_configured_providers_exist(pool: PgPool) {
    let none = TestApp::new(pool.clone(), auth::router);
    assert_eq!(none.get("/api/auth/oauth/providers", None).await.json(), json!({"providers": []}));
    for path in [
        "/api/auth/oauth/github/start",
        "/api/auth/oauth/github/callback?state=x",
        "/api/auth/oauth/../x/start",
    ] {
        let response = none.get(path, None).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(none.get("/api/auth/oauth/github/start", None).await.error_code(), "unknown_provider");

    let (app, _stub) =
        with_github(pool, |c| c.sign_in.providers.push(openid_provider("corp", "https://id.example", "c")))
            .await;
    let listed = app.get("/api/auth/oauth/providers", None).await;
    assert_eq!(
        listed.json(),
        json!({"providers": [{"id": "github", "name": "GitHub", "kind": "oauth2"}, {"id": "corp", "name": "corp sign-in", "kind": "oidc"}]})
    );
    assert_eq!(app.get("/api/auth/oauth/google/start", None).await.error_code(), "unknown_provider");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn the_callback_answers_any_query_with_a_redirect_to_the_site(pool: PgPool) {
    let (app, _stub) = with_github(pool, |_| {}).await;
    let long = "s".repeat(10_000);
    for query in [
        "",
        "?state=",
        "?code=abc",
        "?state=a%00b&code=x",
        "?state[]=a&code[]=b",
        "?state=x&state=y&error=server_error",
        "?error=access_denied",
        &format!("?state={long}&code={long}"),
        "?%FF%FE=1&state=%E2%82",
    ] {
        let to = app.redirected(&format!("/api/auth/oauth/github/callback{query}")).await;
        assert!(to.starts_with(SITE), "{query}: {to}");
        assert_eq!(fragment(&to, "error").as_deref(), Some("invalid_state"), "{query}: {to}");
    }
}

#[test]
fn the_contract_names_every_code_a_sign_in_can_end_with() {
    use utoipa::OpenApi as _;
    let document = serde_json::to_value(auth::Api::openapi()).unwrap();
    let description =
        document["paths"]["/api/auth/oauth/{provider}/callback"]["get"]["description"].as_str().unwrap();
    for failure in Failure::ALL {
        assert!(
            description.contains(&format!("`{}`", failure.code())),
            "{} is not documented",
            failure.code()
        );
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_code_exchanged_without_the_sign_ins_pkce_verifier_is_refused(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    stub.sign_in_as(&GitHubAccount::new(21, "pkce", "pkce@example.com", true));
    let back = stub.approve(&app.redirected("/api/auth/oauth/github/start").await);
    // Someone who got hold of the code and the state but not the verifier the sign-in kept:
    // a verifier of their own is not the one the challenge was made from.
    sqlx::query!(
        r#"UPDATE "verification" SET value = jsonb_set(value::jsonb, '{verifier}', to_jsonb('x'::text))::text
           WHERE identifier LIKE 'primer:oauth-state:%'"#,
    )
    .execute(app.pool())
    .await
    .unwrap();
    let ended = app.redirected(back.strip_prefix("http://primer.test").unwrap()).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("provider_error"), "{ended}");
    assert_eq!(stub.token_requests().last().unwrap()["code_verifier"], "x");
    assert_eq!(users_with_email(app.pool(), "pkce@example.com").await, 0);

    // An address no account may have is not made into one.
    let odd = GitHubAccount::new(22, "odd", "not an address", true);
    let ended = app.sign_in_with_github(&stub, &odd, None).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("invalid_email"), "{ended}");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_disabled_account_does_not_sign_in_with_a_provider(pool: PgPool) {
    let (app, stub) = with_github(pool, |_| {}).await;
    let octocat = GitHubAccount::new(4242, "octocat", "octo@example.com", true);
    let (user, _) = redeem(&app, &app.sign_in_with_github(&stub, &octocat, None).await).await;
    let disable = |active: bool| {
        sqlx::query!(
            r#"UPDATE "user" SET is_active = $2 WHERE id = $1"#,
            user["id"].as_str().unwrap(),
            active
        )
        .execute(app.pool())
    };
    disable(false).await.unwrap();
    let ended = app.sign_in_with_github(&stub, &octocat, None).await;
    assert_eq!(fragment(&ended, "error").as_deref(), Some("account_disabled"), "{ended}");
    // Disabled between the callback and the exchange: the code is spent, no session opens.
    disable(true).await.unwrap();
    let code = code_of(&app.sign_in_with_github(&stub, &octocat, None).await);
    disable(false).await.unwrap();
    let refused = app.exchange_sign_in_code(&code).await;
    assert_eq!((refused.status, refused.error_code().as_str()), (StatusCode::FORBIDDEN, "account_disabled"));
    disable(true).await.unwrap();
    assert_eq!(app.exchange_sign_in_code(&code).await.error_code(), "invalid_code");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_discovery_document_of_another_issuer_is_not_trusted(pool: PgPool) {
    let provider = OidcProvider::start(json!({"clients": [], "accounts": {}})).await;
    // The same server under another name: its document names 127.0.0.1, not localhost.
    let impostor = provider.issuer.replace("127.0.0.1", "localhost");
    let mut config = site_config();
    config.sign_in.providers.push(openid_provider("corp", &impostor, "primer"));
    let app = TestApp::with_config(pool, config, auth::router);
    let to = app.redirected(&format!("/api/auth/oauth/corp/start?redirect_to={}", enc(SIGNED_IN_PAGE))).await;
    assert_eq!(to, format!("{SIGNED_IN_PAGE}#error=provider_error"));
}
