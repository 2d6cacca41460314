//! A `TestApp` for the functions' integration tests: the real router on a `#[sqlx::test]`
//! database, with one method per route, so tests read as specifications. Users and guests are
//! made through the core crate's flows, so a function's tests need no other function's routes.

pub mod fault_proxy;
pub mod github_stub;
pub mod model_stub;
pub mod oidc;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tower::ServiceExt;

use crate::domain::auth::account::{Accounts, NewAccount, SignedIn};
use crate::domain::auth::password::Password;
use crate::domain::auth::sessions::ClientMeta;
use crate::domain::auth::tokens;
use crate::domain::ids::UserId;
use crate::http::app::AppState;
use crate::infra::blob::{BlobError, BlobFuture, BlobStore, KeyPrefix, ObjectKey};
use crate::infra::config::{BlobConfig, Config, EmailConfig, EmailDelivery, JwtConfig, JwtKeys};
pub use crate::infra::telemetry::CapturedLog;

/// The host the kit's requests name where the app builds a URL of its own from it (a
/// sign-in's callback): the app is reached at `http://primer.test`.
pub const TEST_HOST: &str = "primer.test";

/// The signing secret of every test app.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Configuration for tests; the pool comes from `#[sqlx::test]`, so the URL is unused. Each
/// call gets its own (not yet created) blob folder and e-mail outbox, removed when its
/// `TestApp` is dropped. A forgot-password request answers as soon as it is done (no minimum
/// time), unless a test sets one.
pub fn test_config() -> Config {
    let mut email =
        EmailConfig::outbox(test_dir_root().join("outbox").join(uuid::Uuid::new_v4().to_string()));
    email.forgot_min_duration = Duration::ZERO;
    Config {
        database_url: "postgres://unused-in-tests".to_owned().into(),
        db_max_connections: 2,
        jwt: JwtConfig {
            keys: JwtKeys::new(TEST_JWT_SECRET.into(), []),
            issuer: "primer".into(),
            audience: "primer-api".into(),
            access_ttl: Duration::from_secs(900),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            guest_ttl: Duration::from_secs(3600),
        },
        better_auth_secret: None,
        upgrade_better_auth_hashes: true,
        blob: BlobConfig {
            dir: test_dir_root().join("blobs").join(uuid::Uuid::new_v4().to_string()),
            s3: None,
        },
        personalize_budget: Duration::from_secs(20),
        model: None,
        limits: Default::default(),
        usage: Default::default(),
        email,
        sign_in: Default::default(),
        work_deadline: Duration::from_secs(5),
        timeouts: Default::default(),
    }
}

/// An HTTP client for the tests' own calls (to a runner, moto, a provider), on the crypto
/// provider the functions install (ring): reqwest is built without one, so the tests do not
/// compile a second crypto library.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A GET of `url` with [`http_client`]'s defaults.
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http_client().build()?.get(url).send().await
}

/// Where test blob folders and outboxes go.
fn test_dir_root() -> PathBuf {
    std::env::temp_dir().join("primer-test-blobs")
}

/// Whether the checks that need `service` (`moto`, `pg_stat_statements`) are to be left out:
/// `scripts/test` names in `PRIMER_TEST_SKIPPED` what it could not provide on this machine,
/// having said so and listed it in its summary (and failed the run, in CI). A test calls it
/// first and returns when it is true; anything else missing still fails the test.
pub fn skipped(service: &str) -> bool {
    let skipped =
        std::env::var("PRIMER_TEST_SKIPPED").is_ok_and(|list| list.split(',').any(|s| s == service));
    if skipped {
        eprintln!("skipped: needs {service}, which scripts/test could not provide here");
    }
    skipped
}

/// The URL of the test run's PgBouncer in transaction mode, as Neon's pooled URL runs
/// (`PRIMER_TEST_POOLED_URL`, set by `scripts/test`), if any.
pub fn pooled_url() -> Option<PgConnectOptions> {
    let url = std::env::var("PRIMER_TEST_POOLED_URL").ok().filter(|url| !url.is_empty())?;
    Some(url.parse().unwrap_or_else(|e| panic!("PRIMER_TEST_POOLED_URL {url:?}: {e}")))
}

/// A pool on the same test database as `pool`, through the test run's PgBouncer when there is
/// one (else `pool` itself), configured as the functions configure theirs. `#[sqlx::test]`
/// creates its databases and runs the migrations over the direct URL, as Neon's documentation
/// asks; the app under test then talks only to the pooler.
pub fn through_pooler(pool: &PgPool) -> PgPool {
    let Some(pooled) = pooled_url() else { return pool.clone() };
    let direct = pool.connect_options();
    if direct.get_port() == pooled.get_port() && direct.get_host() == pooled.get_host() {
        return pool.clone();
    }
    let database = direct.get_database().expect("a #[sqlx::test] pool names its database");
    let port = pooled.get_port();
    crate::infra::db::pool_options(POOLED_TEST_CONNECTIONS, port).connect_lazy_with(pooled.database(database))
}

/// A [`FaultProxy`] in front of the test run's PgBouncer (or the database itself, without one),
/// and a pool on `pool`'s database through it, configured as the functions configure theirs:
/// for putting a sick network between the app and the pooler.
pub async fn through_fault_proxy(pool: &PgPool) -> (fault_proxy::FaultProxy, PgPool) {
    let direct = pool.connect_options();
    let upstream = pooled_url().unwrap_or_else(|| (*direct).clone());
    let address: SocketAddr = tokio::net::lookup_host((upstream.get_host(), upstream.get_port()))
        .await
        .expect("the pooler's host resolves")
        .next()
        .expect("an address of the pooler");
    let proxy = fault_proxy::FaultProxy::start(address).await;
    let database = direct.get_database().expect("a #[sqlx::test] pool names its database");
    let options = upstream.host("127.0.0.1").port(proxy.address().port()).database(database);
    let pool = crate::infra::db::pool_options(POOLED_TEST_CONNECTIONS, proxy.address().port())
        .connect_lazy_with(options);
    (proxy, pool)
}

/// A URL of the database behind `pool`, for a process the test starts (a Lambda binary, say).
/// It carries no password: the test cluster trusts connections from this machine.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

/// [`database_url`], through the test run's PgBouncer when there is one: for a process that
/// should reach the database as a deployed function does.
pub fn pooled_database_url(pool: &PgPool) -> String {
    let Some(pooled) = pooled_url() else { return database_url(pool) };
    format!(
        "postgres://{}@{}:{}/{}",
        pooled.get_username(),
        pooled.get_host(),
        pooled.get_port(),
        pool.connect_options().get_database().unwrap_or_default()
    )
}

/// Connections of an app's pool in tests: more than a Lambda instance has, so a test can send
/// requests at once, and more than PgBouncer's server pool (4), so they queue there.
const POOLED_TEST_CONNECTIONS: u32 = 10;

/// Removes a test's blob folder and outbox with the last clone of its `TestApp`.
struct TestDirs(Vec<PathBuf>);

impl Drop for TestDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            // Only folders `test_config` made: a test may point the state anywhere.
            if dir.starts_with(test_dir_root()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// The outbox folder of a configuration, if it writes e-mail to one.
fn outbox_dir(config: &Config) -> Option<&std::path::Path> {
    match &config.email.delivery {
        EmailDelivery::Outbox { dir, .. } => Some(dir),
        EmailDelivery::Ses(_) => None,
    }
}

/// An e-mail primer sent, read back from its RFC 5322 form with an independent parser.
#[derive(Debug, Clone)]
pub struct SentMail {
    /// The `From` header's address.
    pub from: String,
    /// The `To` header's address.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The plain-text part, decoded.
    pub text: String,
    /// The HTML part, decoded.
    pub html: String,
    /// The link in the text part.
    pub link: String,
    /// The link's `token` parameter.
    pub token: String,
}

impl SentMail {
    /// Parses an RFC 5322 message; panics on anything a mail client could not read.
    pub fn parse(raw: &[u8]) -> Self {
        let message = mail_parser::MessageParser::default().parse(raw).expect("an RFC 5322 message");
        let address = |a: Option<&mail_parser::Address>| {
            a.and_then(|a| a.first()).and_then(|a| a.address()).expect("an address").to_owned()
        };
        let text = message.body_text(0).expect("a text part").into_owned();
        let html = message.body_html(0).expect("an HTML part").into_owned();
        let link = text
            .split_whitespace()
            .find(|word| word.starts_with("http://") || word.starts_with("https://"))
            .expect("a link in the text part")
            .to_owned();
        let token = link.split_once("?token=").expect("a token parameter").1.to_owned();
        Self {
            from: address(message.from()),
            to: address(message.to()),
            subject: message.subject().unwrap_or_default().to_owned(),
            text,
            html,
            link,
            token,
        }
    }
}

/// The sample event `events/{name}`, with each `(placeholder, value)` substituted.
pub fn event(name: &str, substitutions: &[(&str, &str)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (placeholder, value) in substitutions {
        text = text.replace(placeholder, value);
    }
    text
}

/// The names of the sample events whose file name starts with `prefix`.
pub fn event_names(prefix: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("events/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// How many of `responses` had each status.
pub fn tally<'a>(
    responses: impl IntoIterator<Item = &'a TestResponse>,
) -> std::collections::HashMap<u16, usize> {
    let mut counts = std::collections::HashMap::new();
    for response in responses {
        *counts.entry(response.status.as_u16()).or_default() += 1;
    }
    counts
}

/// The password hash of `user_id`'s credential account, as stored.
pub async fn stored_password_hash(pool: &PgPool, user_id: &UserId) -> String {
    let credentials = crate::domain::user::credentials_by_id(pool, user_id).await.unwrap();
    credentials.and_then(|c| c.password_hash).expect("the user has a password")
}

/// Asserts that the sample events whose names start with one of `prefixes` are exactly those
/// of `expected`: a new event without an expected status fails its function's test.
pub fn assert_events_covered(prefixes: &[&str], expected: &[(&str, u16)]) {
    let mut names: Vec<String> = prefixes.iter().flat_map(|prefix| event_names(prefix)).collect();
    names.sort();
    let mut covered: Vec<String> = expected.iter().map(|(name, _)| (*name).to_owned()).collect();
    covered.sort();
    assert_eq!(names, covered, "every sample event of {prefixes:?} has an expected status");
}

/// One function's service over a test database.
#[derive(Clone)]
pub struct TestApp {
    /// The service under test.
    pub router: Router,
    /// The state it was built with.
    pub state: AppState,
    /// The client address requests come from (the per-IP rate limit reads it).
    pub client_ip: SocketAddr,
    _dirs: Arc<TestDirs>,
}

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, as sent.
    pub body: Bytes,
}

impl TestResponse {
    async fn read(response: axum::response::Response) -> Self {
        let (parts, body) = response.into_parts();
        Self { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    /// The error object without its request id, which differs per request: for comparing two
    /// answers that must be the same.
    pub fn error_without_request_id(&self) -> Value {
        let mut body = self.json();
        body["error"].as_object_mut().expect("an error body").remove("request_id");
        body
    }

    /// The body as JSON (`Null` when empty); panics on anything else.
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error code of an error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Gives `user_id` an onboarded profile (through [`store_profile`]), replacing any they had,
/// and returns its `profile_hash`: a digest of the values, so changing any of them changes it.
/// `python_proficiency` (also the overall level) is `Beginner`, `Intermediate` or `Advanced`;
/// `robotics_experience` is `none`, `simulation_only` or `real_hardware`; the role is a
/// backend developer's.
pub async fn set_reader_profile(
    pool: &PgPool,
    user_id: &UserId,
    python_proficiency: &str,
    robotics_experience: &str,
    languages: &[&str],
    devices: &[&str],
) -> String {
    let document = json!({
        "software_context": {"languages": languages, "experience_level": python_proficiency},
        "hardware_context": {"devices": devices},
        "python_proficiency": python_proficiency,
        "developer_role": "Backend Developer",
        "robotics_experience": robotics_experience,
    });
    store_profile(pool, user_id, document).await
}

/// How many statements the app's requests in `run` made on `pool`'s database, as
/// `pg_stat_statements` counts them (loaded by `scripts/test`'s cluster): a test of round
/// trips, so that a second query on a hot path shows. Statements of concurrent tests on other
/// databases do not count, nor do the `SET`s PgBouncer sends on its own when it hands a fresh
/// server connection to a client whose tracked parameters (sqlx's `TimeZone`) differ: the app
/// sends none (no session state survives the pooler), and they cost the app no round trip.
pub async fn statements_during<T>(pool: &PgPool, run: impl Future<Output = T>) -> (T, i64) {
    // Checked when they run, not at compile time: pg_stat_statements is the test cluster's
    // extension, not the schema's, so the database the build describes statements against has
    // no such view.
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await
        .expect("pg_stat_statements is loaded (shared_preload_libraries): run the tests with scripts/test");
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE 'SET %'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let before = count().await;
    let output = run.await;
    (output, count().await - before)
}

/// Waits until `ended` says the claim a failed request held is ended, from now (when the
/// database answers again), polling every 50 ms. Fails after `within`, which a test sets well
/// before the claim would lapse by itself, with what the app logged: its tries at ending it.
pub async fn until_claim_ended<F>(within: Duration, captured: &CapturedLog, mut ended: impl FnMut() -> F)
where
    F: Future<Output = bool>,
{
    let answering = std::time::Instant::now();
    while !ended().await {
        assert!(
            answering.elapsed() < within,
            "the claim was left to lapse ({:.1} s after the database answered again); the app logged:\n{}",
            answering.elapsed().as_secs_f64(),
            captured.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Gives `user_id` the profile `document` (the shape of `PUT /api/profile`, which it must pass),
/// replacing any they had, and returns its real `profile_hash`. Unlike the profile function it
/// lets the two onboarding answers change ([`crate::domain::profile::overwrite`]), so a test can
/// put two profiles that differ in any one field before the same reader.
pub async fn store_profile(pool: &PgPool, user_id: &UserId, document: Value) -> String {
    use crate::domain::profile::{self, ProfileInput};
    let profile = serde_json::from_value::<ProfileInput>(document)
        .expect("the profile has the input shape")
        .parse()
        .expect("the profile is valid");
    let hash = profile::overwrite(pool, user_id, &profile).await.expect("the profile is stored");
    hash.as_str().to_owned()
}

/// A blob store whose every operation fails, as an unreachable bucket would.
pub struct UnreachableStore;

impl UnreachableStore {
    fn fail<'a, T: Send + 'a>(operation: &'static str) -> BlobFuture<'a, T> {
        let refused = std::io::Error::other("connection refused");
        Box::pin(async move { Err(BlobError::new(operation, "any", refused)) })
    }
}

impl BlobStore for UnreachableStore {
    fn put<'a>(&'a self, _: &'a ObjectKey, _: Vec<u8>, _: &'a str) -> BlobFuture<'a, ()> {
        Self::fail("put")
    }
    fn get<'a>(&'a self, _: &'a ObjectKey) -> BlobFuture<'a, Option<Vec<u8>>> {
        Self::fail("get")
    }
    fn delete<'a>(&'a self, _: &'a ObjectKey) -> BlobFuture<'a, ()> {
        Self::fail("delete")
    }
    fn delete_prefix<'a>(&'a self, _: &'a KeyPrefix) -> BlobFuture<'a, u64> {
        Self::fail("delete_prefix")
    }
    fn presign_get<'a>(&'a self, _: &'a ObjectKey, _: Duration) -> BlobFuture<'a, Option<String>> {
        Self::fail("presign")
    }
}

/// Another store, observed: its writes counted (and slowed down by `put_delay`, so that
/// concurrent requests really overlap) and the size of each batch it removes recorded.
pub struct CountingStore {
    pub inner: Arc<dyn BlobStore>,
    pub put_delay: Duration,
    puts: std::sync::atomic::AtomicUsize,
    batches: std::sync::Mutex<Vec<usize>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn BlobStore>, put_delay: Duration) -> Self {
        Self { inner, put_delay, puts: Default::default(), batches: Default::default() }
    }

    /// How many objects were written.
    pub fn puts(&self) -> usize {
        self.puts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The size of each `delete_many`, in order.
    pub fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

impl BlobStore for CountingStore {
    fn put<'a>(&'a self, key: &'a ObjectKey, body: Vec<u8>, content_type: &'a str) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(self.put_delay).await;
            self.inner.put(key, body, content_type).await
        })
    }
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, ()> {
        self.inner.delete(key)
    }
    fn delete_prefix<'a>(&'a self, prefix: &'a KeyPrefix) -> BlobFuture<'a, u64> {
        self.inner.delete_prefix(prefix)
    }
    fn delete_many<'a>(&'a self, keys: &'a [ObjectKey]) -> BlobFuture<'a, Vec<ObjectKey>> {
        self.batches.lock().unwrap().push(keys.len());
        self.inner.delete_many(keys)
    }
    fn presigns(&self) -> bool {
        self.inner.presigns()
    }
    fn presign_get<'a>(&'a self, key: &'a ObjectKey, ttl: Duration) -> BlobFuture<'a, Option<String>> {
        self.inner.presign_get(key, ttl)
    }
}

/// A signed-in test user: the account, its password, and the tokens of one session.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: UserId,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: String,
}

impl TestUser {
    fn from_signed_in(config: &Config, signed_in: SignedIn, password: &str) -> Self {
        let SignedIn { user, session_id, refresh } = signed_in;
        let access = tokens::issue_access(&config.jwt, &user.id, &session_id).expect("an access token");
        Self {
            id: user.id,
            email: user.email,
            password: password.to_owned(),
            access_token: access.token,
            refresh_token: refresh.expose().to_owned(),
            session_id,
        }
    }
}

impl TestApp {
    /// Builds one function's service (its `routes()` with the shared layers) on the test pool.
    pub fn for_function(pool: PgPool, routes: fn() -> Router<AppState>) -> Self {
        Self::new(pool, move |state| crate::http::app::service(routes(), state))
    }

    /// Builds the service with `router` on the test pool.
    pub fn new(pool: PgPool, router: impl FnOnce(AppState) -> Router) -> Self {
        Self::with_state(AppState::new(test_config(), pool), router)
    }

    /// Builds the service with `router` on the test pool, with the test configuration as
    /// `change` leaves it (other limits, say).
    pub fn with_changed_config(
        pool: PgPool,
        change: impl FnOnce(&mut Config),
        router: impl FnOnce(AppState) -> Router,
    ) -> Self {
        let mut config = test_config();
        change(&mut config);
        Self::with_config(pool, config, router)
    }

    /// Builds the service with `router` on the test pool, with `config` (other limits, say).
    pub fn with_config(pool: PgPool, config: Config, router: impl FnOnce(AppState) -> Router) -> Self {
        Self::with_state(AppState::new(config, pool), router)
    }

    /// Builds the service with `router` on a state the test made (another blob store, say).
    /// The state's pool is routed through the test run's PgBouncer, when there is one.
    pub fn with_state(mut state: AppState, router: impl FnOnce(AppState) -> Router) -> Self {
        state.pool = through_pooler(&state.pool);
        Self::on_its_own_pool(state, router)
    }

    /// Builds the service with `router` on a state whose pool the test made and keeps (one
    /// through a [`fault_proxy::FaultProxy`], say).
    pub fn on_its_own_pool(state: AppState, router: impl FnOnce(AppState) -> Router) -> Self {
        // PRIMER_TEST_LOG=1 (with RUST_LOG) shows the app's log lines, e.g. the cause of a 503.
        if std::env::var_os("PRIMER_TEST_LOG").is_some() {
            crate::infra::telemetry::init();
        }
        let mut dirs = vec![state.config.blob.dir.clone()];
        dirs.extend(outbox_dir(&state.config).map(ToOwned::to_owned));
        Self {
            router: router(state.clone()),
            state,
            client_ip: SocketAddr::from(([127, 0, 0, 1], 40000)),
            _dirs: Arc::new(TestDirs(dirs)),
        }
    }

    /// Serves the app over HTTP on `listener`, the peer's address as the client's, for a test
    /// that talks to it as a browser does (cookies, redirects, other servers in between).
    pub fn serve(&self, listener: tokio::net::TcpListener) {
        let service = self.router.clone().into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
    }

    /// Every e-mail in the app's outbox, oldest first.
    pub fn outbox(&self) -> Vec<SentMail> {
        let dir = outbox_dir(&self.state.config).expect("the app writes e-mail to an outbox");
        let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        names.sort();
        names.iter().map(|p| SentMail::parse(&std::fs::read(p).unwrap())).collect()
    }

    /// The e-mails in the outbox to `address` whose subject contains `subject`, oldest first.
    pub fn mails_to(&self, address: &str, subject: &str) -> Vec<SentMail> {
        self.outbox().into_iter().filter(|m| m.to == address && m.subject.contains(subject)).collect()
    }

    /// The newest password-reset e-mail to `address`; panics when there is none.
    pub fn reset_mail(&self, address: &str) -> SentMail {
        self.mails_to(address, "Reset").pop().unwrap_or_else(|| panic!("no reset e-mail to {address}"))
    }

    /// The newest verification e-mail to `address`; panics when there is none.
    pub fn verification_mail(&self, address: &str) -> SentMail {
        self.mails_to(address, "Confirm")
            .pop()
            .unwrap_or_else(|| panic!("no verification e-mail to {address}"))
    }

    /// The test database.
    pub fn pool(&self) -> &PgPool {
        &self.state.pool
    }

    /// The same app, with requests coming from another address.
    pub fn from_ip(&self, ip: [u8; 4]) -> Self {
        Self { client_ip: SocketAddr::from((ip, 40000)), ..self.clone() }
    }

    /// Sends any request.
    pub async fn send(&self, mut request: Request<Body>) -> TestResponse {
        request.extensions_mut().insert(ConnectInfo(self.client_ip));
        TestResponse::read(self.router.clone().oneshot(request).await.expect("the router is infallible"))
            .await
    }

    /// Feeds an API Gateway HTTP API event (JSON) through the service, as `lambda_http` does
    /// on Lambda: the request context (source IP, request id) comes from the event.
    pub async fn send_event(&self, event: &str) -> TestResponse {
        let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
        TestResponse::read(self.router.clone().oneshot(request).await.expect("the router is infallible"))
            .await
    }

    /// Feeds the sample event `name`, with `substitutions`, through the service and asserts
    /// that it gets `expected`.
    pub async fn send_sample_event(
        &self,
        name: &str,
        substitutions: &[(&str, &str)],
        expected: u16,
    ) -> TestResponse {
        let response = self.send_event(&event(name, substitutions)).await;
        assert_eq!(response.status.as_u16(), expected, "{name}: {}", response.text());
        response
    }

    /// Sends `body` as JSON (or nothing) with an optional Bearer token, to `http://primer.test`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        // As a browser sends it: the app builds its sign-in callback from the Host.
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, TEST_HOST);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.call(Method::GET, path, token, None).await
    }

    /// `GET path`; asserts a redirect and returns its `Location`.
    pub async fn redirected(&self, path: &str) -> String {
        let response = self.get(path, None).await;
        assert_eq!(response.status, StatusCode::FOUND, "GET {path}: {}", response.text());
        response.headers[header::LOCATION].to_str().unwrap().to_owned()
    }

    /// Signs `account` in with GitHub through `stub` (configured with
    /// [`github_stub::GitHubStub::configure`]) the way a browser goes: `start`, GitHub's page,
    /// primer's callback. Returns where the callback sent the reader: `redirect_to` (default
    /// `FRONTEND_URL`) with `#code=...`, `#linked=...` or `#error=...`.
    pub async fn sign_in_with_github(
        &self,
        stub: &github_stub::GitHubStub,
        account: &github_stub::GitHubAccount,
        redirect_to: Option<&str>,
    ) -> String {
        stub.sign_in_as(account);
        let query = redirect_to.map(|r| {
            format!("?redirect_to={}", url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>())
        });
        let to_github =
            self.redirected(&format!("/api/auth/oauth/github/start{}", query.unwrap_or_default())).await;
        let back = stub.approve(&to_github);
        let callback = back.strip_prefix(&format!("http://{TEST_HOST}")).expect("back to primer's callback");
        self.redirected(callback).await
    }

    /// `POST /api/auth/oauth/exchange`.
    pub async fn exchange_sign_in_code(&self, code: &str) -> TestResponse {
        self.call(Method::POST, "/api/auth/oauth/exchange", None, Some(json!({"code": code}))).await
    }

    /// `POST /api/auth/register`.
    pub async fn register(&self, email: &str, password: &str) -> TestResponse {
        let body = json!({"email": email, "password": password, "name": "Test Reader"});
        self.call(Method::POST, "/api/auth/register", None, Some(body)).await
    }

    /// `POST /api/auth/login`.
    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        let body = json!({"email": email, "password": password});
        self.call(Method::POST, "/api/auth/login", None, Some(body)).await
    }

    /// `POST /api/auth/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> TestResponse {
        self.call(Method::POST, "/api/auth/refresh", None, Some(json!({"refresh_token": refresh_token})))
            .await
    }

    /// `GET /api/auth/me`.
    pub async fn me(&self, token: &str) -> TestResponse {
        self.get("/api/auth/me", Some(token)).await
    }

    /// `POST /api/auth/logout`.
    pub async fn logout(&self, token: &str) -> TestResponse {
        self.call(Method::POST, "/api/auth/logout", Some(token), None).await
    }

    /// `POST /api/auth/guest`.
    pub async fn guest(&self) -> TestResponse {
        self.call(Method::POST, "/api/auth/guest", None, None).await
    }

    /// `POST /api/auth/password`.
    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> TestResponse {
        let body = json!({"current_password": current, "new_password": new});
        self.call(Method::POST, "/api/auth/password", Some(token), Some(body)).await
    }

    /// `POST /api/auth/password/forgot`.
    pub async fn forgot_password(&self, email: &str) -> TestResponse {
        self.call(Method::POST, "/api/auth/password/forgot", None, Some(json!({"email": email}))).await
    }

    /// `POST /api/auth/password/reset`.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> TestResponse {
        let body = json!({"token": token, "new_password": new_password});
        self.call(Method::POST, "/api/auth/password/reset", None, Some(body)).await
    }

    /// `POST /api/auth/email/verify/send`.
    pub async fn send_verification(&self, token: &str) -> TestResponse {
        self.call(Method::POST, "/api/auth/email/verify/send", Some(token), None).await
    }

    /// `POST /api/auth/email/verify`.
    pub async fn verify_email(&self, token: &str) -> TestResponse {
        self.call(Method::POST, "/api/auth/email/verify", None, Some(json!({"token": token}))).await
    }

    /// `GET /api/usage`.
    pub async fn usage(&self, token: &str) -> TestResponse {
        self.get("/api/usage", Some(token)).await
    }

    /// The core crate's account flows over this app's pool, outbox and configuration.
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts::new(&self.state.pool, self.state.mail.as_ref(), &self.state.config)
    }

    /// The client requests come from, as the flows see it.
    pub fn client(&self) -> ClientMeta {
        ClientMeta { ip: Some(self.client_ip.ip().to_string()), user_agent: None }
    }

    /// Signs `email` up (password `correct horse battery`) through the account flow, as
    /// `POST /api/auth/register` does, and returns the signed-in user.
    pub async fn signed_up(&self, email: &str) -> TestUser {
        let password = "correct horse battery";
        let account = NewAccount {
            email: crate::domain::user::Email::parse(email).expect("a valid test e-mail"),
            password: Password::parse_new(password.to_owned()).unwrap(),
            name: crate::domain::user::UserName::parse("Test Reader").unwrap(),
            guest: None,
        };
        let signed_in = self.accounts().register(account, &self.client()).await.expect("sign-up");
        TestUser::from_signed_in(&self.state.config, signed_in, password)
    }

    /// Signs `user` in again through the account flow, opening a new session.
    pub async fn signed_in(&self, user: &TestUser) -> TestUser {
        let email = crate::domain::user::SignInEmail::parse(&user.email).unwrap();
        let password = Password::parse_presented(user.password.clone()).unwrap();
        let signed_in =
            self.accounts().login(&email, &password, None, &self.client()).await.expect("sign-in");
        TestUser::from_signed_in(&self.state.config, signed_in, &user.password)
    }

    /// A fresh guest token, as `POST /api/auth/guest` issues it.
    pub fn guest_token(&self) -> String {
        tokens::issue_guest(&self.state.config.jwt).expect("a guest token").token
    }
}
