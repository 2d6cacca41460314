//! The fan-out bench's driver (bench/fanout.py runs it): N bootstraps at once, each behind its
//! own local Lambda Runtime API, fed one event after another as Lambda feeds an instance.
//!
//! It reads one JSON spec on stdin,
//! `{"instances": [{"name", "binary", "event"}], "env", "log", "warm_up_s", "window_s",
//! "timeout_s"}`, spawns every instance with Lambda's variables plus `env` (its output appended
//! to `log`), prints `ready` once each has asked for its first event (or an `{"error": …}` line
//! and exits 1 if one exits or has not asked within 30 s), and on a line from stdin (`go`) feeds
//! them: each gets its next event as soon as it asks, for `warm_up_s` + `window_s`. Then it stops
//! handing events, waits for the answers in flight (at most `timeout_s`), kills the instances
//! and prints one JSON line: `{"instances", "counts", "errors", "samples", "rps", "p50_ms",
//! "p99_ms"}`.
//!
//! Each answer is one kind: `served` (a 2xx), `refused` (a 503 with `Retry-After`), `status N`,
//! `invalid answer` (no API Gateway response), `error` (the error route), `init_error`,
//! `timeout` (no answer within `timeout_s`, found while waiting) or `exited` (the bootstrap
//! ended; once per instance). Served and refused count only for events handed over after the
//! warm-up; every other kind counts at any time. Latency: the event handed over (the answer to
//! `/next`) to its response received, of the served answers.
//!
//! The whole driver runs on one thread (a current-thread runtime): its work per invocation is a
//! few small HTTP messages and a JSON parse, far less than a bootstrap's, and one thread spends
//! no CPU handing wake-ups between workers; on a machine of two cores every cycle it takes is
//! one the instances and the pooler do not get.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

const API_PREFIX: &str = "/2018-06-01/runtime";
const REGION: &str = "us-east-1";
const ACCOUNT_ID: &str = "123456789012";
const MEMORY_MB: u32 = 256;
/// How long every instance has to ask for its first event (its cold start).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often overdue invocations and ended bootstraps are looked for: a hang is found within
/// `timeout_s` + this. (A poll, not tokio's process support: that feature, unified into the
/// workspace's builds, would rebuild every crate on tokio for this one.)
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// The first bytes of each kind's first answer that the result keeps as its sample.
const SAMPLE_BYTES: usize = 300;

#[derive(Deserialize)]
struct Spec {
    instances: Vec<InstanceSpec>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    log: PathBuf,
    warm_up_s: f64,
    window_s: f64,
    timeout_s: f64,
}

#[derive(Deserialize)]
struct InstanceSpec {
    name: String,
    binary: PathBuf,
    event: String,
}

/// The fed period: events handed over from `measure_from` on count; none is handed from `stop_at`.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Instant,
}

/// What every instance's answers added up to.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    latencies_ms: Vec<f64>,
}

impl Tally {
    /// Counts one answer of `kind` to an event handed over at `handed_at` (None: no event, such
    /// as an instance that exited between two), `latency` later.
    fn record(
        &mut self,
        window: Option<Window>,
        kind: &str,
        handed_at: Option<Instant>,
        latency: Duration,
        body: &[u8],
    ) {
        let measured = matches!((window, handed_at), (Some(w), Some(at)) if at >= w.measure_from);
        if (kind == "served" || kind == "refused") && !measured {
            return;
        }
        *self.counts.entry(kind.to_owned()).or_default() += 1;
        if kind == "served" {
            self.latencies_ms.push(latency.as_secs_f64() * 1000.0);
        } else if !self.samples.contains_key(kind) {
            let sample = String::from_utf8_lossy(&body[..body.len().min(SAMPLE_BYTES)]).into_owned();
            self.samples.insert(kind.to_owned(), sample);
        }
    }

    fn result(&self, instances: usize, window_s: f64) -> Value {
        let served = self.counts.get("served").copied().unwrap_or(0);
        let errors: u64 = self
            .counts
            .iter()
            .filter(|(kind, _)| !matches!(kind.as_str(), "served" | "refused"))
            .map(|(_, n)| n)
            .sum();
        json!({
            "instances": instances,
            "counts": self.counts,
            "errors": errors,
            "samples": self.samples,
            "rps": served as f64 / window_s,
            "p50_ms": percentile(&self.latencies_ms, 50.0),
            "p99_ms": percentile(&self.latencies_ms, 99.0),
        })
    }
}

/// The kind of a buffered response: `served` (statusCode 2xx), `refused` (503 with a
/// `Retry-After` header, in any case), `status N`, or `invalid answer` (not an API Gateway
/// response).
fn classify(answer: &[u8]) -> String {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return "invalid answer".to_owned();
    };
    let Some(status) = answer.get("statusCode").and_then(Value::as_i64) else {
        return "invalid answer".to_owned();
    };
    let retry_after = answer
        .get("headers")
        .and_then(Value::as_object)
        .is_some_and(|headers| headers.keys().any(|name| name.eq_ignore_ascii_case("retry-after")));
    match status {
        200..=299 => "served".to_owned(),
        503 if retry_after => "refused".to_owned(),
        _ => format!("status {status}"),
    }
}

/// The nearest-rank percentile as bench/fanout.py computed it before (Python's `round`, which
/// rounds a half to even): `ordered[clamp(round(q / 100 * n + 0.5), 1, n) - 1]`.
fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut ordered = values.to_vec();
    ordered.sort_by(f64::total_cmp);
    let n = ordered.len();
    let rank = (q / 100.0 * n as f64 + 0.5).round_ties_even() as usize;
    Some(ordered[rank.clamp(1, n) - 1])
}

/// What the instances share: the fed period once `go` came, and the tally.
struct Run {
    window: watch::Receiver<Option<Window>>,
    tally: Mutex<Tally>,
    timeout: Duration,
    /// Set before the instances are killed: their exits then are not errors.
    stopping: Mutex<bool>,
}

impl Run {
    fn record(&self, kind: &str, handed_at: Option<Instant>, body: &[u8]) {
        let latency = handed_at.map_or(Duration::ZERO, |at| at.elapsed());
        let window = *self.window.borrow();
        self.tally.lock().unwrap().record(window, kind, handed_at, latency, body);
    }
}

/// One bootstrap and its Runtime API.
struct Instance {
    name: String,
    arn: String,
    index: usize,
    event: Bytes,
    run: Arc<Run>,
    state: Mutex<InstanceState>,
}

#[derive(Default)]
struct InstanceState {
    asked: bool,
    exited: Option<ExitStatus>,
    init_error: Option<String>,
    /// Events handed over and not answered yet (one at a time, unless the bootstrap misbehaves):
    /// request id → when it was handed over.
    in_flight: HashMap<String, Instant>,
    handed: u64,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: &'static str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

impl Instance {
    async fn serve(self: Arc<Self>, request: Request<Incoming>) -> Result<Reply, Infallible> {
        let route = request.uri().path().strip_prefix(API_PREFIX).unwrap_or("").to_owned();
        if request.method() == Method::GET && route == "/invocation/next" {
            return Ok(self.next().await);
        }
        if request.method() != Method::POST {
            return Ok(reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown route"}"#));
        }
        let error_type = request
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
            return Ok(reply(StatusCode::BAD_REQUEST, r#"{"errorMessage":"the body did not arrive"}"#));
        };
        if route == "/init/error" {
            let text = format!("{error_type}: {}", String::from_utf8_lossy(&body));
            self.run.record("init_error", None, text.as_bytes());
            self.state.lock().unwrap().init_error = Some(text);
            return Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
        }
        let answer = route.strip_prefix("/invocation/").and_then(|rest| rest.rsplit_once('/'));
        let (id, kind) = match answer {
            Some((id, "response")) => (id, classify(&body)),
            Some((id, "error")) => (id, "error".to_owned()),
            _ => return Ok(reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown route"}"#)),
        };
        let handed_at = self.state.lock().unwrap().in_flight.remove(id);
        let Some(handed_at) = handed_at else {
            // Timed out already, or never handed over.
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"unknown or finished request id"}"#,
            ));
        };
        self.run.record(&kind, Some(handed_at), &body);
        Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
    }

    /// The long poll: the next event once `go` came and until the window ends; after that the
    /// bootstrap waits here until it is killed, as an idle Lambda instance waits.
    async fn next(&self) -> Reply {
        self.state.lock().unwrap().asked = true;
        let mut window = self.run.window.clone();
        let Ok(fed) = window.wait_for(Option::is_some).await.map(|w| w.expect("waited for Some")) else {
            return std::future::pending().await;
        };
        let now = Instant::now();
        if now >= fed.stop_at {
            return std::future::pending().await;
        }
        let (id, seq) = {
            let mut state = self.state.lock().unwrap();
            state.handed += 1;
            let id = format!("{:08x}-{:04x}-4000-8000-{:012x}", std::process::id(), self.index, state.handed);
            state.in_flight.insert(id.clone(), now);
            (id, state.handed)
        };
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let deadline_ms = (epoch + self.run.timeout).as_millis();
        let trace = format!(
            "Root=1-{:08x}-{:08x}{seq:016x};Parent={seq:016x};Sampled=0",
            epoch.as_secs(),
            self.index
        );
        Response::builder()
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", id)
            .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
            .header("lambda-runtime-invoked-function-arn", &self.arn)
            .header("lambda-runtime-trace-id", trace)
            .body(Full::new(self.event.clone()))
            .expect("valid headers")
    }

    /// Counts the events handed over more than the time-out ago as `timeout`.
    fn expire(&self, now: Instant) {
        let timeout = self.run.timeout;
        let overdue: Vec<Instant> = {
            let mut state = self.state.lock().unwrap();
            let ids: Vec<String> = state
                .in_flight
                .iter()
                .filter(|(_, at)| now.duration_since(**at) >= timeout)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| state.in_flight.remove(id)).collect()
        };
        for handed_at in overdue {
            let text = format!("no answer within {} s", timeout.as_secs_f64());
            self.run.record("timeout", Some(handed_at), text.as_bytes());
        }
    }

    /// The bootstrap ended: one `exited` (unless the driver is stopping it), and its events in
    /// flight are answered by that.
    fn exited(&self, status: ExitStatus) {
        let handed_at = {
            let mut state = self.state.lock().unwrap();
            state.exited = Some(status);
            let first = state.in_flight.values().min().copied();
            state.in_flight.clear();
            first
        };
        if !*self.run.stopping.lock().unwrap() {
            let text = format!("{} exited ({status})", self.name);
            self.run.record("exited", handed_at, text.as_bytes());
        }
    }
}

/// Binds the instance's Runtime API and spawns its bootstrap.
async fn start(
    spec: &InstanceSpec,
    index: usize,
    env: &BTreeMap<String, String>,
    log: &File,
    run: &Arc<Run>,
) -> Result<(Arc<Instance>, Child), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("binding a Runtime API: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let binary = std::path::absolute(&spec.binary).map_err(|e| format!("{}: {e}", spec.binary.display()))?;
    let instance = Arc::new(Instance {
        name: spec.name.clone(),
        arn: format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{}", spec.name),
        index,
        event: Bytes::from(spec.event.clone()),
        run: run.clone(),
        state: Mutex::default(),
    });
    let api = instance.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Headers and body are separate writes: without this, Nagle's algorithm and the
            // client's delayed ACK would add ~40 ms to an answer.
            let _ = stream.set_nodelay(true);
            let api = api.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| api.clone().serve(request));
                // The runtime keeps its connection; an error is the bootstrap gone, which its exit reports.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // Lambda's own variables, then the function's; nothing leaks in from the caller's shell.
    let task_root = binary.parent().map(PathBuf::from).unwrap_or_default();
    let lambda_env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("AWS_LAMBDA_RUNTIME_API", address.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", spec.name)),
        ("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/[$LATEST]{:016x}{index:016x}", std::process::id())),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
        ("_HANDLER", "bootstrap".to_owned()),
    ];
    let output = |log: &File| log.try_clone().map(Stdio::from).map_err(|e| format!("the log: {e}"));
    let child = Command::new(&binary)
        .current_dir(&task_root)
        .env_clear()
        .envs(lambda_env)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(output(log)?)
        .stderr(output(log)?)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    Ok((instance, child))
}

/// The instances and their processes.
struct Fleet(Vec<(Arc<Instance>, Child)>);

impl Fleet {
    /// Reports the bootstraps that ended since the last look.
    fn reap(&mut self) {
        for (instance, child) in &mut self.0 {
            if instance.state.lock().unwrap().exited.is_none()
                && let Ok(Some(status)) = child.try_wait()
            {
                instance.exited(status);
            }
        }
    }

    fn instances(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.0.iter().map(|(instance, _)| instance)
    }
}

impl Drop for Fleet {
    /// Kills every bootstrap (on every way out of the run); these exits are not errors.
    fn drop(&mut self) {
        if let Some((instance, _)) = self.0.first() {
            *instance.run.stopping.lock().unwrap() = true;
        }
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    std::process::exit(1);
}

fn main() {
    let mut line = String::new();
    let stdin = std::io::stdin();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        fail(&format!("reading the spec: {e}"));
    }
    let spec: Spec = serde_json::from_str(&line).unwrap_or_else(|e| fail(&format!("the spec: {e}")));
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(drive(spec));
    match result {
        Ok(result) => println!("{result}"),
        Err(message) => fail(&message),
    }
    let _ = std::io::stdout().flush();
    // Not the runtime's drop: it would wait for the long polls the killed bootstraps left.
    std::process::exit(0);
}

async fn drive(spec: Spec) -> Result<Value, String> {
    if spec.instances.is_empty() {
        return Err("no instances".to_owned());
    }
    if let Some(folder) = spec.log.parent() {
        std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| format!("{}: {e}", spec.log.display()))?;
    let (set_window, window) = watch::channel(None);
    let run = Arc::new(Run {
        window,
        tally: Mutex::default(),
        timeout: Duration::from_secs_f64(spec.timeout_s),
        stopping: Mutex::new(false),
    });
    let mut fleet = Fleet(Vec::new());
    for (index, instance) in spec.instances.iter().enumerate() {
        fleet.0.push(start(instance, index, &spec.env, &log, &run).await?);
    }

    // Ready once every instance asked for its first event.
    let started = Instant::now();
    loop {
        fleet.reap();
        let not_ready = fleet.instances().find_map(|i| {
            let state = i.state.lock().unwrap();
            match (state.asked, state.exited) {
                (true, _) => None,
                (false, Some(status)) => Some(Err(format!(
                    "{} exited ({status}) before asking for an event{}",
                    i.name,
                    state.init_error.as_ref().map(|e| format!("; init error {e}")).unwrap_or_default()
                ))),
                (false, None) => Some(Ok(i.name.clone())),
            }
        });
        match not_ready {
            None => break,
            Some(Err(message)) => return Err(message),
            Some(Ok(name)) if started.elapsed() > START_TIMEOUT => {
                return Err(format!("{name} did not ask for an event within {} s", START_TIMEOUT.as_secs()));
            }
            Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await;
    if !matches!(&go, Ok(Ok(line)) if line.trim() == "go") {
        return Err("no `go` on stdin".to_owned());
    }

    let measure_from = Instant::now() + Duration::from_secs_f64(spec.warm_up_s);
    let stop_at = measure_from + Duration::from_secs_f64(spec.window_s);
    set_window.send_replace(Some(Window { measure_from, stop_at }));
    // Hangs and exits are found while waiting, not at the end. From stop_at no event is handed
    // over; each in flight is answered, expires or its bootstrap exits.
    let drained_by = stop_at + run.timeout + 2 * WATCH_EVERY;
    loop {
        let now = Instant::now();
        for instance in fleet.instances() {
            instance.expire(now);
        }
        fleet.reap();
        let in_flight = fleet.instances().any(|i| !i.state.lock().unwrap().in_flight.is_empty());
        if now >= drained_by || (now >= stop_at && !in_flight) {
            break;
        }
        let next_look =
            if now < stop_at { (now + WATCH_EVERY).min(stop_at) } else { now + Duration::from_millis(5) };
        tokio::time::sleep_until(next_look.into()).await;
    }
    drop(fleet);
    let result = run.tally.lock().unwrap().result(spec.instances.len(), spec.window_s);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({ "statusCode": status, "headers": headers, "body": "{}", "isBase64Encoded": false }),
        )
        .unwrap()
    }

    #[test]
    fn classify_reads_the_api_gateway_answer() {
        assert_eq!(classify(&answer(200, json!({}))), "served");
        assert_eq!(classify(&answer(204, json!(null))), "served");
        assert_eq!(classify(&answer(503, json!({ "Retry-After": "2" }))), "refused");
        assert_eq!(classify(&answer(503, json!({ "retry-after": "2" }))), "refused");
        assert_eq!(classify(&answer(503, json!({ "content-type": "application/json" }))), "status 503");
        assert_eq!(classify(&answer(429, json!({ "retry-after": "2" }))), "status 429");
        assert_eq!(classify(&answer(401, json!({}))), "status 401");
        assert_eq!(classify(&answer(500, json!({}))), "status 500");
        assert_eq!(classify(b"hello"), "invalid answer");
        assert_eq!(classify(br#"{"body": "no status"}"#), "invalid answer");
    }

    #[test]
    fn percentile_is_the_former_nearest_rank_rule() {
        // Values from Python: sorted(v)[max(1, min(n, round(q / 100 * n + 0.5))) - 1].
        let ten: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&ten, 50.0), Some(6.0));
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        let four = [4.0, 1.0, 3.0, 2.0];
        // round(2.5) is 2 in Python (a half rounds to even).
        assert_eq!(percentile(&four, 50.0), Some(2.0));
        assert_eq!(percentile(&[7.0, 8.0], 50.0), Some(8.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        // round(99.5) is 100.
        assert_eq!(percentile(&hundred, 99.0), Some(100.0));
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn served_and_refused_count_in_the_window_errors_always() {
        let start = Instant::now();
        let window =
            Window { measure_from: start + Duration::from_secs(2), stop_at: start + Duration::from_secs(10) };
        let warm = Some(start + Duration::from_secs(1));
        let measured = Some(start + Duration::from_secs(3));
        let mut tally = Tally::default();
        let ms = Duration::from_millis;
        tally.record(Some(window), "served", warm, ms(1), b"");
        tally.record(Some(window), "refused", warm, ms(1), b"early");
        tally.record(Some(window), "status 500", warm, ms(1), b"the first 500");
        tally.record(Some(window), "served", measured, ms(4), b"");
        tally.record(Some(window), "served", measured, ms(2), b"");
        tally.record(Some(window), "served", measured, ms(3), b"");
        tally.record(Some(window), "refused", measured, ms(1), b"retry");
        tally.record(Some(window), "status 500", measured, ms(1), b"the second 500");
        tally.record(None, "exited", None, ms(0), &[b'x'; 400]);
        let result = tally.result(3, 8.0);
        assert_eq!(result["counts"], json!({ "served": 3, "refused": 1, "status 500": 2, "exited": 1 }));
        assert_eq!(result["errors"], 3);
        assert_eq!(result["rps"], 0.375);
        assert_eq!(result["p50_ms"], 3.0);
        assert_eq!(result["p99_ms"], 4.0);
        assert_eq!(result["samples"]["status 500"], "the first 500");
        assert_eq!(result["samples"]["refused"], "retry");
        assert_eq!(result["samples"]["exited"].as_str().unwrap().len(), SAMPLE_BYTES);
        assert!(result["samples"].get("served").is_none());
    }
}
