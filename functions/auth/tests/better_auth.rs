//! Sharing the database with Better-Auth: its session tokens as callers, its (and the chatbot model's)
//! password hashes at login, the provider accounts each side links. First against Better-Auth rows written by hand, then against a
//! real Better-Auth (npm `better-auth`, installed in tests/better-auth/ by `scripts/test`)
//! running on each test's own database.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use primer_shared::AppState;
use primer_shared::domain::auth::password::{self, Password, Verdict};
use primer_shared::test_util::github_stub::{GitHubAccount, GitHubStub};
use primer_shared::test_util::{TestApp, TestResponse, TestUser, event, stored_password_hash, test_config};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;

/// The `BETTER_AUTH_SECRET` the tests' frontend and primer share.
const SECRET: &str = "better-auth-secret-shared-with-primer-0123";
const PASSWORD: &str = "correct horse battery";

/// The auth function with Better-Auth interop on.
fn app(pool: PgPool) -> TestApp {
    let mut config = test_config();
    config.better_auth_secret = Some(SECRET.to_owned().into());
    TestApp::with_state(AppState::new(config, pool), auth::router)
}

/// `token.base64(HMAC-SHA256(secret, token))`, the value of Better-Auth's session cookie
/// before URL-encoding.
fn signed(token: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    format!("{token}.{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// What `encodeURIComponent` makes of a signed value (base64 needs only these three).
fn url_encoded(value: &str) -> String {
    value.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// A session as Better-Auth writes one, expiring `expires_in_secs` from now: (id, token).
async fn better_auth_session(pool: &PgPool, user_id: &str, expires_in_secs: i64) -> (String, String) {
    // Better-Auth's tokens are 32 letters and digits; a simple UUID is one such.
    let (id, token) = (uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string());
    sqlx::query!(
        r#"INSERT INTO "session" (id, "expiresAt", token, "createdAt", "updatedAt", "userAgent", "userId")
           VALUES ($1, now() + make_interval(secs => $2), $3, now(), now(), 'Mozilla/5.0', $4)"#,
        &id,
        expires_in_secs as f64,
        &token,
        user_id
    )
    .execute(pool)
    .await
    .unwrap();
    (id, token)
}

/// `GET /api/auth/me` with a `Cookie` header.
async fn me_with_cookie(app: &TestApp, cookie: &str) -> TestResponse {
    let request = Request::get("/api/auth/me").header(header::COOKIE, cookie).body(Body::empty()).unwrap();
    app.send(request).await
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn better_auth_tokens_raw_signed_or_in_a_cookie_are_callers(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let (session_id, token) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    let signed = signed(&token, SECRET);

    for (form, presented) in
        [("raw", token.clone()), ("signed", signed.clone()), ("URL-encoded", url_encoded(&signed))]
    {
        let me = app.me(&presented).await;
        assert_eq!(me.status, StatusCode::OK, "{form}: {}", me.text());
        assert_eq!(me.json()["user"]["id"], user.id.as_str(), "{form}");
    }
    for name in ["better-auth.session_token", "__Secure-better-auth.session_token"] {
        let me = me_with_cookie(&app, &format!("theme=dark; {name}={}", url_encoded(&signed))).await;
        assert_eq!(me.status, StatusCode::OK, "{name}: {}", me.text());
    }

    // The Better-Auth session is the caller's session, here as on every authenticated route.
    assert_eq!(current_session(&app, &token).await, session_id);
}

/// The id of the session `GET /api/auth/sessions` marks as the caller's.
async fn current_session(app: &TestApp, token: &str) -> String {
    let sessions = app.get("/api/auth/sessions", Some(token)).await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.text());
    let body = sessions.json();
    let current: Vec<&Value> =
        body["sessions"].as_array().unwrap().iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{body}");
    current[0]["id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn bad_signatures_dead_sessions_and_unsigned_cookies_are_401(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("eve@example.com").await;
    let (_, live) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    let (_, expired) = better_auth_session(app.pool(), user.id.as_str(), -60).await;
    let (revoked_id, revoked) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    sqlx::query!(r#"DELETE FROM "session" WHERE id = $1"#, &revoked_id).execute(app.pool()).await.unwrap();
    // The genuine article works, so the refusals below are about what was changed.
    assert_eq!(app.me(&signed(&live, SECRET)).await.status, StatusCode::OK);

    let other_secret = signed(&live, "another-secret-another-secret-another-secret");
    let mut flipped = signed(&live, SECRET).into_bytes();
    let last_letter = flipped.iter().rposition(u8::is_ascii_alphabetic).unwrap();
    flipped[last_letter] ^= 0x20; // the case of one letter of the signature
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, presented) in [
        ("signed with another secret", other_secret),
        ("tampered signature", flipped),
        (
            "signature of another token",
            format!("{live}.{}", signed(&revoked, SECRET).split_once('.').unwrap().1),
        ),
        ("expired, raw", expired.clone()),
        ("expired, signed", signed(&expired, SECRET)),
        ("revoked, raw", revoked.clone()),
        ("revoked, signed", signed(&revoked, SECRET)),
    ] {
        let response = app.me(&presented).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(response.error_code(), "unauthorized", "{what}");
    }
    // A cookie must be signed, as Better-Auth itself insists.
    let unsigned = me_with_cookie(&app, &format!("better-auth.session_token={live}")).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_disabled_user_with_a_better_auth_session_is_403(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("mallory@example.com").await;
    let (_, token) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    sqlx::query!(r#"UPDATE "user" SET is_active = false WHERE id = $1"#, user.id.as_str())
        .execute(app.pool())
        .await
        .unwrap();
    for presented in [token.clone(), signed(&token, SECRET)] {
        let response = app.me(&presented).await;
        assert_eq!(
            (response.status, response.error_code().as_str()),
            (StatusCode::FORBIDDEN, "account_disabled")
        );
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn without_a_better_auth_secret_its_tokens_are_401(pool: PgPool) {
    let app = TestApp::new(pool, auth::router);
    let user = app.signed_up("ada@example.com").await;
    let (_, token) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    let signed = signed(&token, SECRET);
    assert_eq!(app.me(&token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&signed).await.status, StatusCode::UNAUTHORIZED);
    let cookie = format!("better-auth.session_token={}", url_encoded(&signed));
    assert_eq!(me_with_cookie(&app, &cookie).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::OK, "primer's own tokens still work");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn primers_own_session_rows_cannot_be_named_as_better_auth_tokens(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let stored: String =
        sqlx::query_scalar!(r#"SELECT token FROM "session" WHERE id = $1"#, &user.session_id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(stored.starts_with("sha256:"), "{stored}");
    for presented in [stored.clone(), signed(&stored, SECRET), user.refresh_token.clone()] {
        assert_eq!(app.me(&presented).await.status, StatusCode::UNAUTHORIZED, "{presented}");
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn logging_out_through_primer_ends_the_better_auth_session(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let (session_id, token) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    assert_eq!(app.logout(&signed(&token, SECRET)).await.status, StatusCode::NO_CONTENT);
    let left: i64 =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "session" WHERE id = $1"#, &session_id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(left, 0);
    assert_eq!(app.me(&token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&user.access_token).await.status, StatusCode::OK, "other sessions are untouched");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_better_auth_cookie_works_through_the_lambda_entry(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    let (_, token) = better_auth_session(app.pool(), user.id.as_str(), 3600).await;
    // API Gateway's payload 2.0 carries cookies in their own array, not in the headers.
    let mut request: Value = serde_json::from_str(&event("auth-me-get.json", &[])).unwrap();
    request["headers"].as_object_mut().unwrap().remove("authorization");
    request["cookies"] =
        json!(["theme=dark", format!("better-auth.session_token={}", url_encoded(&signed(&token, SECRET)))]);
    let response = app.send_event(&request.to_string()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["user"]["id"], user.id.as_str());
}

/// A Better-Auth scrypt hash made by better-auth 1.7.25 (`interop.mjs hash-passwords`), and a
/// bcrypt hash made by crypt(3) as the chatbot model stored them.
const LEGACY_HASHES: &[(&str, &str)] = &[
    (
        "Better-Auth scrypt",
        "07e8eeddb1d57ee9719e9a861cacb654:5f28db96418a4f80c8af06c8efbe26514a365c30f3e59ed5c9bb40882713708abd1ef21de90969359497557d6f559c2a02d7753b30da5e159e775bc10fe44756",
    ),
    ("bcrypt $2b$", "$2b$04$wBO3sCyIUa6HWD3KagSjp.UmofRS0mInbUxKd7aBCUKw4kSOHa4ne"),
];

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn legacy_hashes_are_upgraded_to_argon2id_once_at_login(pool: PgPool) {
    let app = app(pool);
    for (i, (format, legacy)) in LEGACY_HASHES.iter().enumerate() {
        let user = app.signed_up(&format!("legacy{i}@example.com")).await;
        primer_shared::domain::user::set_password_hash(app.pool(), &user.id, legacy).await.unwrap();

        assert_eq!(
            app.login(&user.email, "not the password").await.status,
            StatusCode::UNAUTHORIZED,
            "{format}"
        );
        assert_eq!(
            stored_password_hash(app.pool(), &user.id).await,
            *legacy,
            "{format}: a failed login changes nothing"
        );

        assert_eq!(app.login(&user.email, PASSWORD).await.status, StatusCode::OK, "{format}");
        let upgraded = stored_password_hash(app.pool(), &user.id).await;
        assert!(upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{format}: {upgraded}");
        let left: i64 =
            sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "account" WHERE password = $1"#, legacy)
                .fetch_one(app.pool())
                .await
                .unwrap();
        assert_eq!(left, 0, "{format}: the legacy hash is gone");
        let password = Password::parse_presented(PASSWORD.into()).unwrap();
        assert_eq!(password::verify(&password, &upgraded).await.unwrap(), Verdict::Match, "{format}");

        // Once is enough: the next login finds a current hash and leaves it alone.
        assert_eq!(app.login(&user.email, PASSWORD).await.status, StatusCode::OK, "{format}");
        assert_eq!(stored_password_hash(app.pool(), &user.id).await, upgraded, "{format}");
    }
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_unknown_hash_format_fails_closed_at_login(pool: PgPool) {
    let app = app(pool);
    let user = app.signed_up("ada@example.com").await;
    // What a careless import might leave: the password itself, or a hash of a format we lack.
    for stored in [PASSWORD, "$1$salt$notsupported", "5f4dcc3b5aa765d61d8327deb882cf99"] {
        primer_shared::domain::user::set_password_hash(app.pool(), &user.id, stored).await.unwrap();
        assert_eq!(app.login(&user.email, PASSWORD).await.status, StatusCode::UNAUTHORIZED, "{stored}");
        assert_eq!(stored_password_hash(app.pool(), &user.id).await, stored);
    }
}

/// A real Better-Auth (tests/better-auth/interop.mjs under Node) on the test's database.
struct BetterAuth {
    dir: PathBuf,
    database_url: String,
}

impl BetterAuth {
    /// Better-Auth on `pool`'s database; panics when it is not installed.
    fn on(pool: &PgPool) -> Self {
        let dir = std::env::var_os("PRIMER_BETTER_AUTH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/better-auth"));
        assert!(
            dir.join("node_modules/better-auth").is_dir() && dir.join("node_modules/pg").is_dir(),
            "Better-Auth is not installed in {}/node_modules: run scripts/test, which installs Better-Auth \
             (or `npm ci --prefix tests/better-auth`)",
            dir.display()
        );
        let database =
            pool.connect_options().get_database().expect("#[sqlx::test] names its database").to_owned();
        Self { dir, database_url: with_database(&std::env::var("DATABASE_URL").unwrap(), &database) }
    }

    /// Runs one command of interop.mjs and returns its JSON answer.
    async fn run(&self, command: &str, input: Value) -> Value {
        let mut node = std::process::Command::new("node");
        node.current_dir(&self.dir)
            .arg("interop.mjs")
            .arg(command)
            .arg(input.to_string())
            .env("DATABASE_URL", &self.database_url)
            .env("BETTER_AUTH_SECRET", SECRET);
        let output = tokio::task::spawn_blocking(move || node.output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot run node (Node.js 20 or later is needed): {e}"));
        assert!(
            output.status.success(),
            "interop.mjs {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("interop.mjs {command} printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
        })
    }
}

/// `url` with its database replaced by `database` (query parameters such as `sslmode` kept).
fn with_database(url: &str, database: &str) -> String {
    let (location, query) = url.split_once('?').map_or((url, None), |(l, q)| (l, Some(q)));
    let authority_start = location.find("://").map_or(0, |i| i + 3);
    let server = match location[authority_start..].find('/') {
        Some(slash) => &location[..authority_start + slash],
        None => location,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[test]
fn the_database_is_swapped_in_any_url() {
    assert_eq!(with_database("postgres://u@h:5/postgres", "t1"), "postgres://u@h:5/t1");
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=require", "t1"),
        "postgres://u:p@h/t1?sslmode=require"
    );
    assert_eq!(with_database("postgres://h:5", "t1"), "postgres://h:5/t1");
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_real_better_auth_and_primer_share_one_database(pool: PgPool) {
    let better_auth = BetterAuth::on(&pool);
    let app = app(pool);

    let signed_in = better_auth
        .run(
            "sign-up-and-in",
            json!({"email": "Ada@Example.com", "password": PASSWORD, "name": "Ada Lovelace"}),
        )
        .await;
    let text =
        |key: &str| signed_in[key].as_str().unwrap_or_else(|| panic!("no {key} in {signed_in}")).to_owned();
    let (user_id, session_id, token, cookie) =
        (text("user_id"), text("session_id"), text("token"), text("cookie"));
    let (salt, key) = stored_password_hash(app.pool(), &user_id.as_str().into())
        .await
        .split_once(':')
        .map(|(s, k)| (s.len(), k.len()))
        .unwrap();
    assert_eq!((salt, key), (32, 128), "Better-Auth stored its scrypt salthex:keyhex");

    // Better-Auth's session, as its bearer plugin or its cookie would present it.
    for (form, presented) in [("raw token", token.as_str()), ("signed cookie value", cookie.as_str())] {
        let me = app.me(presented).await;
        assert_eq!(me.status, StatusCode::OK, "{form}: {}", me.text());
        assert_eq!(me.json()["user"]["id"], user_id.as_str(), "{form}");
        assert_eq!(me.json()["user"]["email"], "ada@example.com", "{form}");
    }
    let me = me_with_cookie(&app, &format!("better-auth.session_token={cookie}")).await;
    assert_eq!(me.status, StatusCode::OK, "cookie: {}", me.text());
    assert_eq!(current_session(&app, &token).await, session_id);

    // The same password logs in through primer, which upgrades the hash on the way.
    let login = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(login.json()["user"]["id"], user_id.as_str());
    let upgraded = stored_password_hash(app.pool(), &user_id.as_str().into()).await;
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");

    // primer has written to user, account and session: Better-Auth still reads its own session.
    let session = better_auth.run("get-session", json!({"cookie": cookie})).await;
    assert_eq!(session, json!({"session_id": session_id, "user_id": user_id}));

    // And its migration planner finds primer's schema complete: nothing to create or add.
    let plan = better_auth.run("plan-migrations", json!({})).await;
    assert_eq!(plan, json!({"to_be_created": [], "to_be_added": []}));
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn better_auths_own_password_hashes_verify_in_primer(pool: PgPool) {
    let better_auth = BetterAuth::on(&pool);
    let passwords = [
        PASSWORD,
        // A ligature and precomposed letters: Better-Auth hashes their NFKC form.
        "\u{fb01}anc\u{e9} \u{c5}ngstr\u{f6}m",
        "a passphrase longer than bcrypt's seventy-two bytes, which scrypt hashes in full 🦀",
    ];
    let hashes = better_auth.run("hash-passwords", json!({"passwords": passwords})).await;
    let hashes = hashes.as_array().expect("a list of hashes");
    assert_eq!(hashes.len(), passwords.len());
    let verify = async |password: &str, stored: &str| {
        password::verify(&Password::parse_presented(password.into()).unwrap(), stored).await.unwrap()
    };
    for vector in hashes {
        let (password, stored) = (vector["password"].as_str().unwrap(), vector["hash"].as_str().unwrap());
        assert_eq!(verify(password, stored).await, Verdict::MatchNeedsRehash, "{password}");
        assert_eq!(verify(&format!("{password} "), stored).await, Verdict::Mismatch, "{password}");
    }
    let ligature = hashes[1]["hash"].as_str().unwrap();
    assert_eq!(verify("fiance\u{301} A\u{30a}ngstro\u{308}m", ligature).await, Verdict::MatchNeedsRehash);
}

#[sqlx::test(migrations = false)]
async fn primer_migrates_a_database_that_better_auth_created_first(pool: PgPool) {
    let better_auth = BetterAuth::on(&pool);
    let created = better_auth.run("migrate", json!({})).await;
    assert_eq!(created, json!({"created": ["user", "session", "account", "verification"]}));
    let signed_in = better_auth
        .run(
            "sign-up-and-in",
            json!({"email": "early@example.com", "password": PASSWORD, "name": "Early Adopter"}),
        )
        .await;

    primer_shared::infra::db::MIGRATOR
        .run(&pool)
        .await
        .expect("primer's migrations apply over Better-Auth's tables");
    let app = app(pool);
    let me = app.me(signed_in["token"].as_str().unwrap()).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(app.login("early@example.com", PASSWORD).await.status, StatusCode::OK);
    let plan = better_auth.run("plan-migrations", json!({})).await;
    assert_eq!(plan, json!({"to_be_created": [], "to_be_added": []}));
}

/// The auth function as a deployment sharing its users with a Better-Auth frontend runs it:
/// Better-Auth's hashes are kept as they are (`UPGRADE_BETTER_AUTH_HASHES` unset).
fn two_front_doors(pool: PgPool) -> TestApp {
    let mut config = test_config();
    config.better_auth_secret = Some(SECRET.to_owned().into());
    config.upgrade_better_auth_hashes = false;
    TestApp::with_state(AppState::new(config, pool), auth::router)
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn one_database_two_front_doors_for_passwords(pool: PgPool) {
    let app = two_front_doors(pool.clone());
    let better_auth = BetterAuth::on(&pool);

    // A reader who signed up through primer (argon2id) signs in at the Better-Auth frontend...
    let ada = app.signed_up("ada@example.com").await;
    assert!(stored_password_hash(&pool, &ada.id).await.starts_with("$argon2id$"));
    let signed_in =
        better_auth.run("sign-in", json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(signed_in["user_id"], ada.id.as_str(), "{signed_in}");
    let refused =
        better_auth.run("sign-in", json!({"email": "ada@example.com", "password": "not it at all"})).await;
    assert!(refused["error"].is_string(), "{refused}");

    // ...and one who signed up at the Better-Auth frontend (scrypt) signs in at primer, and still
    // at Better-Auth afterwards: primer keeps the hash Better-Auth can verify.
    let grace = better_auth
        .run("sign-up-and-in", json!({"email": "grace@example.com", "password": PASSWORD, "name": "Grace"}))
        .await;
    let grace_id = grace["user_id"].as_str().unwrap().to_owned();
    let scrypt = stored_password_hash(&pool, &grace_id.as_str().into()).await;
    assert_eq!(app.login("grace@example.com", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(stored_password_hash(&pool, &grace_id.as_str().into()).await, scrypt);
    let again = better_auth.run("sign-in", json!({"email": "grace@example.com", "password": PASSWORD})).await;
    assert_eq!(again["user_id"], grace_id.as_str(), "{again}");

    // A password changed through primer is argon2id, and Better-Auth verifies it too.
    let session = app.signed_in(&TestUser { email: "grace@example.com".into(), ..ada.clone() }).await;
    let changed = app.change_password(&session.access_token, PASSWORD, "a brand new password").await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    let after = better_auth
        .run("sign-in", json!({"email": "grace@example.com", "password": "a brand new password"}))
        .await;
    assert_eq!(after["user_id"], grace_id.as_str(), "{after}");
}

/// How many `verification` rows have exactly this identifier.
async fn rows_named(pool: &PgPool, identifier: &str) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM "verification" WHERE identifier = $1"#,
        identifier
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn primer_and_better_auth_reset_links_share_the_table_and_neither_takes_the_others(pool: PgPool) {
    let better_auth = BetterAuth::on(&pool);
    let app = app(pool);
    let signed_in = better_auth
        .run("sign-up-and-in", json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}))
        .await;
    let (user_id, cookie) =
        (signed_in["user_id"].as_str().unwrap().to_owned(), signed_in["cookie"].as_str().unwrap().to_owned());

    // Both frontends' forgot-password flows, for the same reader.
    let ba_first = better_auth.run("request-password-reset", json!({"email": "ada@example.com"})).await;
    let ba_first = ba_first["token"].as_str().expect("Better-Auth sent a reset e-mail").to_owned();
    assert_eq!(app.forgot_password("ada@example.com").await.status, StatusCode::ACCEPTED);
    let ours = app.reset_mail("ada@example.com").token;
    let (ba_row, our_row) =
        (format!("reset-password:{ba_first}"), format!("primer:reset-password:{user_id}"));
    let stored: String =
        sqlx::query_scalar!(r#"SELECT value FROM "verification" WHERE identifier = $1"#, &ba_row)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(stored, user_id, "Better-Auth's row as it writes it");

    // Each side's token is nothing to the other, and trying it consumes nothing.
    let crossed = app.reset_password(&ba_first, "primer's new passphrase").await;
    assert_eq!((crossed.status, crossed.error_code().as_str()), (StatusCode::BAD_REQUEST, "invalid_token"));
    let crossed = better_auth
        .run("reset-password", json!({"token": ours, "new_password": "BA's new passphrase"}))
        .await;
    assert_eq!(crossed, json!({"ok": false, "code": "INVALID_TOKEN"}));
    assert_eq!((rows_named(app.pool(), &ba_row).await, rows_named(app.pool(), &our_row).await), (1, 1));

    // Better-Auth's reset consumes its row only.
    let ba_second = better_auth.run("request-password-reset", json!({"email": "ada@example.com"})).await;
    let ba_second = ba_second["token"].as_str().unwrap().to_owned();
    let done = better_auth
        .run("reset-password", json!({"token": ba_first, "new_password": "set through Better-Auth"}))
        .await;
    assert_eq!(done, json!({"ok": true}));
    assert_eq!(rows_named(app.pool(), &ba_row).await, 0);
    assert_eq!(rows_named(app.pool(), &our_row).await, 1, "primer's link survives Better-Auth's reset");
    assert_eq!(app.login("ada@example.com", "set through Better-Auth").await.status, StatusCode::OK);

    // primer's reset consumes its own rows, ends Better-Auth's sessions too, and leaves
    // Better-Auth's other pending link alone.
    let reset = app.reset_password(&ours, "set through primer").await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    assert_eq!(rows_named(app.pool(), &our_row).await, 0);
    assert_eq!(rows_named(app.pool(), &format!("reset-password:{ba_second}")).await, 1);
    assert_eq!(better_auth.run("get-session", json!({"cookie": cookie})).await, Value::Null);
    assert_eq!(app.login("ada@example.com", "set through primer").await.status, StatusCode::OK);
    let done = better_auth
        .run("reset-password", json!({"token": ba_second, "new_password": "Better-Auth again"}))
        .await;
    assert_eq!(done, json!({"ok": true}), "Better-Auth's link still works after primer's reset");
    assert_eq!(app.login("ada@example.com", "Better-Auth again").await.status, StatusCode::OK);
}

/// A provider account row without what differs between any two (ids, user, timestamps).
async fn provider_account_shape(pool: &PgPool, account_id: &str) -> Value {
    sqlx::query_scalar!(
        r#"SELECT to_jsonb(a) - 'id' - 'userId' - 'accountId' - 'createdAt' - 'updatedAt' AS "shape!"
           FROM "account" a WHERE "providerId" = 'github' AND "accountId" = $1"#,
        account_id
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_github_link_made_at_either_front_door_signs_in_at_the_other(pool: PgPool) {
    let better_auth = BetterAuth::on(&pool);
    let stub = GitHubStub::start().await;
    let mut config = test_config();
    config.better_auth_secret = Some(SECRET.to_owned().into());
    stub.configure(&mut config);
    let app = TestApp::with_state(AppState::new(config, pool.clone()), auth::router);
    let users = || async {
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM "user""#).fetch_one(&pool).await.unwrap()
    };

    // A reader who signed up at the Better-Auth frontend with GitHub (its own OAuth sign-in)...
    let grace = better_auth
        .run(
            "oauth-sign-in",
            json!({"provider_id": "github", "account_id": "777", "email": "grace@example.com",
                   "email_verified": true, "name": "Grace", "scope": "read:user,user:email"}),
        )
        .await;
    assert_eq!(grace["is_register"], true, "{grace}");
    // ...signs in here with the same GitHub account: the same user, nothing new written.
    let ended = app
        .sign_in_with_github(&stub, &GitHubAccount::new(777, "grace-h", "grace@example.com", true), None)
        .await;
    let code = ended.split_once("#code=").unwrap_or_else(|| panic!("{ended}")).1;
    let exchanged = app.exchange_sign_in_code(code).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text());
    assert_eq!(exchanged.json()["user"]["id"], grace["user_id"]);
    assert_eq!(users().await, 1);

    // The reverse: a reader who signed up here with GitHub...
    let ended = app
        .sign_in_with_github(&stub, &GitHubAccount::new(4242, "ada-l", "ada@example.com", true), None)
        .await;
    let code = ended.split_once("#code=").unwrap().1;
    let ada = app.exchange_sign_in_code(code).await.json()["user"]["id"].as_str().unwrap().to_owned();
    // ...is that user to Better-Auth's OAuth sign-in, which finds primer's link as its own.
    let there = better_auth
        .run(
            "oauth-sign-in",
            json!({"provider_id": "github", "account_id": "4242", "email": "ada@example.com",
                   "email_verified": true, "name": "Ada", "scope": "read:user,user:email"}),
        )
        .await;
    assert_eq!(
        (there["user_id"].as_str(), there["is_register"].as_bool()),
        (Some(ada.as_str()), Some(false)),
        "{there}"
    );
    let listed = better_auth.run("list-accounts", json!({"user_id": ada})).await;
    assert_eq!(
        listed,
        json!([{"provider_id": "github", "account_id": "4242", "scope": "read:user,user:email", "access_token": null}])
    );
    // The two rows are alike in every column the two front doors both write.
    assert_eq!(provider_account_shape(&pool, "4242").await, provider_account_shape(&pool, "777").await);
    assert_eq!(users().await, 2);

    // And the same rule on both sides: an address its account never verified is linked by
    // neither, whatever the provider says.
    app.signed_up("bob@example.com").await;
    let refused = better_auth
        .run(
            "oauth-sign-in",
            json!({"provider_id": "github", "account_id": "555", "email": "bob@example.com",
                   "email_verified": true, "name": "Bob", "scope": ""}),
        )
        .await;
    assert_eq!(refused, json!({"error": "account not linked"}));
    let ended =
        app.sign_in_with_github(&stub, &GitHubAccount::new(556, "bob", "bob@example.com", true), None).await;
    assert!(ended.ends_with("#error=account_not_linked"), "{ended}");

    // primer's unique index on the provider account is nothing Better-Auth's planner misses.
    let plan = better_auth.run("plan-migrations", json!({})).await;
    assert_eq!(plan, json!({"to_be_created": [], "to_be_added": []}));
}
