//! A real OpenID provider for a test: npm `oidc-provider` (tests/oidc-provider/server.mjs,
//! installed by `scripts/test` from its lock file) on 127.0.0.1, in a Node process of its own
//! that ends with the test. The test drives it through its own login and consent pages, and
//! through commands: re-make the next ID token (a wrong audience, an expired token, a
//! stranger's key, ...) or count the requests it served.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The running provider; the Node process ends when this is dropped.
pub struct OidcProvider {
    /// Its issuer URL, `http://127.0.0.1:<port>`.
    pub issuer: String,
    child: Child,
    pipes: Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
    log: PathBuf,
}

impl OidcProvider {
    /// Starts the provider with `config` (server.mjs's: its clients and accounts); panics with
    /// its log when it does not come up.
    pub async fn start(config: Value) -> Self {
        let dir = std::env::var_os("PRIMER_OIDC_PROVIDER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc-provider"));
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}/node_modules: run scripts/test, which installs it \
             (or `npm ci --prefix tests/oidc-provider`)",
            dir.display()
        );
        let log = std::env::temp_dir().join(format!("primer-oidc-provider-{}.log", uuid::Uuid::new_v4()));
        let stderr = std::fs::File::create(&log).expect("a log file for the provider");
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg("server.mjs")
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (Node.js 20 or later is needed): {e}"));
        let pipes = (child.stdin.take().unwrap(), BufReader::new(child.stdout.take().unwrap()));
        let mut provider = Self { issuer: String::new(), child, pipes: Arc::new(Mutex::new(pipes)), log };
        let ready = provider.read_line().await;
        provider.issuer = ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("oidc-provider did not start: {ready}\n{}", provider.log_text()))
            .to_owned();
        provider
    }

    /// What the provider wrote to its log (stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Makes the next token response's ID token a forgery of `mode` (see server.mjs).
    pub async fn tamper_next_id_token(&self, mode: &str) {
        let answer = self.command(&format!("tamper {mode}")).await;
        assert_eq!(answer["ok"], true, "{answer}");
    }

    /// How many JWKS requests the provider has served.
    pub async fn jwks_requests(&self) -> u64 {
        self.command("stats").await["jwks"].as_u64().expect("a count")
    }

    /// How many token requests the provider has served.
    pub async fn token_requests(&self) -> u64 {
        self.command("stats").await["token"].as_u64().expect("a count")
    }

    async fn command(&self, line: &str) -> Value {
        {
            let mut pipes = self.pipes.lock().unwrap();
            writeln!(pipes.0, "{line}").expect("the provider reads its commands");
        }
        self.read_line().await
    }

    async fn read_line(&self) -> Value {
        let pipes = self.pipes.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            pipes.lock().unwrap().1.read_line(&mut line).map(|_| line)
        });
        // A provider that hangs fails the test (and is killed with it), rather than hanging it.
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), reading)
            .await
            .unwrap_or_else(|_| panic!("the provider did not answer within 20 s\n{}", self.log_text()))
            .unwrap()
            .expect("the provider's output");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the provider said {line:?} ({e})\n{}", self.log_text()))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
