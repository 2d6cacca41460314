//! The driver end to end, on a stand-in bootstrap (tests/fake_bootstrap.py, which behaves as its
//! function name says): every kind is counted, a hang and an exit are reported and end the run,
//! and a bootstrap that exits at start fails the run at once.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn fake_bootstrap() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fake_bootstrap.py")
}

fn spec(names: &[&str], binary: &PathBuf, log: &str) -> String {
    let instances: Vec<Value> = names
        .iter()
        .map(|name| json!({ "name": name, "binary": binary, "event": json!({ "ping": name }).to_string() }))
        .collect();
    let spec = json!({
        "instances": instances,
        // The bootstrap checks it gets these and nothing from the test's own environment.
        "env": { "FAKE_SETTING": "from the spec", "PATH": std::env::var("PATH").unwrap() },
        "log": std::env::temp_dir().join(log),
        "warm_up_s": 0.3,
        "window_s": 1.0,
        "timeout_s": 1.0,
    });
    format!("{spec}\n")
}

#[test]
fn every_kind_is_counted_and_a_hang_ends() {
    let names = ["served", "served", "refused", "errors", "hangs", "exits"];
    let mut driver = Command::new(env!("CARGO_BIN_EXE_bench-fanout"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = driver.stdin.take().unwrap();
    let mut stdout = BufReader::new(driver.stdout.take().unwrap());
    stdin.write_all(spec(&names, &fake_bootstrap(), "bench-fanout-kinds.log").as_bytes()).unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    stdin.write_all(b"go\n").unwrap();
    line.clear();
    // Ends on its own: the hung instance's invocation expires after timeout_s.
    stdout.read_line(&mut line).unwrap();
    assert!(driver.wait().unwrap().success());
    let result: Value = serde_json::from_str(&line).unwrap();
    let counts = &result["counts"];
    assert_eq!(result["instances"], 6);
    assert!(counts["served"].as_u64().unwrap() > 0, "{result}");
    assert!(counts["refused"].as_u64().unwrap() > 0, "{result}");
    assert!(counts["error"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(counts["timeout"], 1, "{result}");
    assert_eq!(counts["exited"], 1, "{result}");
    // No other kind: in particular no 500 from the bootstrap's checks of what it was handed.
    let kinds: Vec<&String> = counts.as_object().unwrap().keys().collect();
    assert_eq!(kinds, ["error", "exited", "refused", "served", "timeout"], "{result}");
    let errors = counts["error"].as_u64().unwrap() + 2;
    assert_eq!(result["errors"], errors);
    assert_eq!(result["rps"], counts["served"].as_f64().unwrap() / 1.0);
    assert!(result["p50_ms"].as_f64().unwrap() <= result["p99_ms"].as_f64().unwrap());
    assert_eq!(result["samples"]["timeout"], "no answer within 1 s");
    assert_eq!(result["samples"]["exited"], "exits exited (exit status: 3)");
    assert!(result["samples"]["error"].as_str().unwrap().contains("the handler failed"), "{result}");
    assert_eq!(
        result["samples"]["refused"].as_str().unwrap(),
        r#"{"statusCode": 503, "headers": {"retry-after": "2"}, "body": "busy"}"#
    );
}

#[test]
fn a_bootstrap_that_exits_at_start_fails_the_run() {
    let driver = Command::new(env!("CARGO_BIN_EXE_bench-fanout"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = driver.stdin.as_ref().unwrap();
    stdin
        .write_all(spec(&["false"], &PathBuf::from("/bin/false"), "bench-fanout-false.log").as_bytes())
        .unwrap();
    let out = driver.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line, json!({ "error": "false exited (exit status: 1) before asking for an event" }));
}
