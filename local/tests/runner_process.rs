//! The runner as a process, as a developer runs it: out of file descriptors it slows down
//! instead of spinning and logging without end, and killed with `kill -9` in the middle of a
//! streamed answer, the next runner lets the retry answer once the dead claim lapses, and gives
//! the dead call's reserved tokens back.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use primer_shared::test_util::model_stub::{EventReader, StreamScript, StreamingModel};
use primer_shared::test_util::{TEST_JWT_SECRET, pooled_database_url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

/// A runner process on a free port, its log in a file.
struct Runner {
    child: Child,
    base: String,
    log: PathBuf,
    _scratch: tempdir::Scratch,
}

mod tempdir {
    /// A folder of the test's own, removed with it.
    pub struct Scratch(pub std::path::PathBuf);

    impl Scratch {
        pub fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("primer-runner-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Runner {
    /// Starts the runner on `pool`'s database (through the pooler), with `env` on top, and
    /// `descriptors` as its file descriptor limit if given; waits until it answers.
    async fn start(pool: &PgPool, env: &[(&str, String)], descriptors: Option<u64>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let scratch = tempdir::Scratch::new();
        let log = scratch.0.join("runner.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_local"));
        command
            .current_dir(&scratch.0)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", pooled_database_url(pool))
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "info")
            .env("PRIMER_OUTBOX_DIR", scratch.0.join("outbox"))
            .env("PRIMER_BLOB_DIR", scratch.0.join("blobs"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap());
        if let Some(limit) = descriptors {
            // SAFETY: between fork and exec, only setrlimit, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("the runner starts");
        let runner = Self { child, base: format!("http://127.0.0.1:{port}"), log, _scratch: scratch };
        let ready = Instant::now() + Duration::from_secs(60);
        loop {
            let answered =
                primer_shared::test_util::http_get(format!("{}/api/profile/options", runner.base)).await;
            if answered.is_ok_and(|r| r.status() == StatusCode::OK) {
                return runner;
            }
            assert!(Instant::now() < ready, "the runner did not come up: {}", runner.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = primer_shared::test_util::http_client()
            .build()
            .unwrap()
            .request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Case 1 of the attack report, the accept loop's half: with more clients than file descriptors,
/// accepting fails with EMFILE. The loop backs off (no core spinning) and logs a line per ten
/// seconds, not one per failure; once the clients go, the runner answers again.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn out_of_file_descriptors_the_runner_backs_off_and_logs_little(pool: PgPool) {
    // A cap above the descriptor limit, so that accepting itself runs out.
    let env = [("PRIMER_MAX_CONNECTIONS", "1000".to_owned())];
    let runner = Runner::start(&pool, &env, Some(64)).await;
    let address = runner.base.trim_start_matches("http://").to_owned();
    let mut clients = Vec::new();
    for _ in 0..120 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&address)).await
        {
            clients.push(stream);
        }
    }
    // Long enough for a spinning loop to log hundreds of thousands of lines.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = runner.log_text();
    let lines = log.lines().filter(|l| l.contains("accepting a connection failed")).count();
    assert!(lines >= 1, "the descriptors never ran out; the test proves nothing: {log}");
    assert!(lines <= 3, "{lines} lines about failed accepts in 3 s");
    drop(clients);

    let answered = Instant::now() + Duration::from_secs(30);
    loop {
        let response =
            primer_shared::test_util::http_get(format!("{}/api/profile/options", runner.base)).await;
        if response.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(Instant::now() < answered, "the runner did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kill -9` of the runner while it streams an answer: the question stays stored and claimed,
/// and its model call's tokens reserved. A retry on the next runner is told when the claim
/// lapses (shortly after the streamed function's timeout, here 8 s), and once it has, the retry
/// answers and the dead call's tokens are given back.
#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn a_retry_after_kill_9_mid_stream_answers_once_the_dead_claim_lapses(pool: PgPool) {
    let slow = StreamScript::chunks(60, Duration::from_millis(100));
    let quick = StreamScript::chunks(3, Duration::from_millis(5));
    let stub = StreamingModel::start(vec![slow, quick.clone()]).await;
    let env = [
        ("MODEL_API_KEY", "sk-test".to_owned()),
        ("MODEL_BASE_URL", stub.base_url().to_string()),
        ("MODEL_NAME", "tutor-small".to_owned()),
        ("MODEL_TIMEOUT_SECS", "2".to_owned()),
        ("MODEL_TOTAL_TIMEOUT_SECS", "3".to_owned()),
        ("MODEL_STREAM_IDLE_SECS", "2".to_owned()),
        ("MODEL_STREAM_TIMEOUT_SECS", "6".to_owned()),
        ("PERSONALIZE_BUDGET_SECS", "1".to_owned()),
        ("FUNCTION_TIMEOUT_SECS", "10".to_owned()),
        ("STREAM_FUNCTION_TIMEOUT_SECS", "8".to_owned()),
    ];
    let mut runner = Runner::start(&pool, &env, None).await;
    let body = json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"});
    let (status, signed_up) =
        runner.call(reqwest::Method::POST, "/api/auth/register", None, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{signed_up}");
    let token = signed_up["session"]["access_token"].as_str().unwrap().to_owned();
    let (_, created) =
        runner.call(reqwest::Method::POST, "/api/conversations", Some(&token), Some(json!({}))).await;
    let conversation = created["conversation"]["id"].as_str().unwrap().to_owned();

    let response = primer_shared::test_util::http_client()
        .build()
        .unwrap()
        .post(format!("{}/api/conversations/{conversation}/messages", runner.base))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .json(&json!({"content": "What is a topic?"}))
        .send()
        .await
        .unwrap();
    let mut events = EventReader::new(axum::http::Response::from(response).into_body());
    let question = events.next().await.unwrap().data["id"].as_str().unwrap().to_owned();
    assert_eq!(events.next().await.unwrap().name, "delta", "the answer is streaming");
    runner.kill();

    let left = sqlx::query!(
        r#"SELECT (SELECT reply_lease_until > now() FROM messages WHERE id = $1::uuid) AS "claimed!",
                (SELECT count(*) FROM token_reservations) AS "reserved!""#,
        uuid::Uuid::parse_str(&question).unwrap(),
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(left.claimed && left.reserved == 1, "the dead runner left its claim and its reservation");

    let runner = Runner::start(&pool, &env, None).await;
    let retry_path = format!("/api/conversations/{conversation}/messages/{question}/retry");
    let answered_by = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let (status, body) = runner.call(reqwest::Method::POST, &retry_path, Some(&token), None).await;
        match status {
            StatusCode::CREATED => break body,
            StatusCode::SERVICE_UNAVAILABLE => {
                // Told to wait for the claim: at most its lease (8 s and the margin).
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
            }
            other => panic!("{other}: {body}"),
        }
        assert!(Instant::now() < answered_by, "the retry never answered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(reply["reply"]["content"], quick.text());
    let (_, usage) = runner.call(reqwest::Method::GET, "/api/usage", Some(&token), None).await;
    assert_eq!(usage["tokens"]["used"], 42 + 3, "only the retry's tokens: the dead call's were given back");
    let reserved: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM token_reservations"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reserved, 0);
}
