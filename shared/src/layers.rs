//! The layers hold: each top-level module uses only those below it, and the domain sees no HTTP
//! type (read from the source, comments left out).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/<dir>` (and `src/<dir>.rs`), with its text, comments removed.
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![root.join(dir)];
    let mut files = vec![root.join(format!("{dir}.rs"))];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter(|path| path.exists())
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, without_comments(&text))
        })
        .collect()
}

/// The text without `//` and `/* */` comments (a `//` inside a string goes too: that can only
/// hide a use, never invent one).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |end| &rest[end..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The places in `dir` that name one of `forbidden` as a path's first segment.
fn uses_of(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(dir) {
        for (n, line) in text.lines().enumerate() {
            for name in forbidden {
                let mut at = 0;
                while let Some(i) = line[at..].find(name).map(|i| i + at) {
                    let before = line[..i].chars().next_back();
                    let starts_path = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                        && !line[..i].ends_with("::")
                        || line[..i].ends_with("crate::") && name.starts_with("crate::");
                    if starts_path && line[i + name.len()..].starts_with("::") {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                    at = i + name.len();
                }
            }
        }
    }
    found
}

const HTTP_CRATES: &[&str] = &["axum", "http", "lambda_http", "hyper", "hyper_util", "tower", "http_body"];

#[test]
fn the_domain_sees_no_http_type() {
    let found = uses_of("domain", HTTP_CRATES);
    assert!(found.is_empty(), "HTTP types in the domain:\n{}", found.join("\n"));
}

#[test]
fn each_layer_uses_only_those_below_it() {
    let layers: [(&str, &[&str]); 4] = [
        ("error", &["crate::domain", "crate::http", "crate::infra", "crate::test_util"]),
        ("schema", &["crate::domain", "crate::error", "crate::http", "crate::infra", "crate::test_util"]),
        ("infra", &["crate::domain", "crate::http", "crate::test_util"]),
        ("domain", &["crate::http", "crate::test_util"]),
    ];
    for (layer, above) in layers {
        let found = uses_of(layer, above);
        assert!(found.is_empty(), "{layer} uses a layer above it:\n{}", found.join("\n"));
    }
}

#[test]
fn the_check_sees_a_use() {
    let text =
        without_comments("use axum::Json; // http::StatusCode\n/* hyper::Body */ let x = crate::http::app;");
    assert!(text.contains("axum::Json") && text.contains("crate::http::app"));
    assert!(!text.contains("StatusCode") && !text.contains("hyper"));
}
