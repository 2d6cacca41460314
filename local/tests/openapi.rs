//! openapi.json, at the repository's root, is the document the code generates
//! (`local::openapi`, from the handlers and their types): what is committed, served by the
//! chapters function and read by schemathesis cannot drift from the code.

use std::path::Path;

const REGENERATE: &str = "PRIMER_WRITE_OPENAPI=1 cargo test -p local --test integration openapi:: \
                          (or: cargo run -p local --bin admin -- openapi > openapi.json)";

#[test]
fn the_committed_openapi_json_is_the_generated_document() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json");
    let generated = local::openapi::json();
    if std::env::var_os("PRIMER_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    if committed != generated {
        let (line, (was, is)) = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (was, is))| was != is)
            .unwrap_or((committed.lines().count().min(generated.lines().count()), ("(end)", "(end)")));
        panic!(
            "openapi.json is not the document the code generates; write it again with\n  {REGENERATE}\n\
             first difference, line {}:\n  committed: {was}\n  generated: {is}",
            line + 1
        );
    }
}

#[test]
fn every_operation_has_an_id_a_tag_and_its_error_responses() {
    let document = local::openapi::document();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let what = format!("{method} {path}");
            assert!(operation["operationId"].is_string() && operation["tags"][0].is_string(), "{what}");
            let responses = operation["responses"].as_object().unwrap();
            for status in ["500", "503"] {
                assert!(responses.contains_key(status), "{what} documents no {status}");
            }
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(responses.contains_key("401"), "{what} needs a token but documents no 401");
            }
            if operation.get("requestBody").is_some() {
                assert!(responses.contains_key("415"), "{what} takes a body but documents no 415");
            }
        }
    }
    assert_eq!(operations, 41);
}

/// A `$ref` to a named response, followed.
fn resolved<'a>(document: &'a serde_json::Value, response: &'a serde_json::Value) -> &'a serde_json::Value {
    match response["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/responses/")) {
        Some(name) => &document["components"]["responses"][name],
        None => response,
    }
}

#[test]
fn every_response_declares_the_headers_it_sends() {
    let document = local::openapi::document();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let headers = &resolved(&document, response)["headers"];
                let what = format!("{method} {path} {status}");
                assert_eq!(headers["x-request-id"]["$ref"], "#/components/headers/RequestId", "{what}");
                // What primer_shared::error sends it with: every 429 and every 503.
                if status == "429" || status == "503" {
                    assert_eq!(headers["Retry-After"]["required"], true, "{what}");
                    assert_eq!(headers["Retry-After"]["schema"]["type"], "integer", "{what}");
                }
            }
        }
    }
    assert_eq!(document["components"]["headers"]["RequestId"]["required"], true);
}

#[test]
fn every_body_has_an_example_and_one_content_type() {
    let document = local::openapi::document();
    let mut examples = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            if let Some(content) = operation["requestBody"]["content"].as_object() {
                // One schema under two content types gives generators a body of two identical types.
                assert_eq!(content.len(), 1, "{what}: {:?}", content.keys());
                examples += content.values().filter(|media| media.get("example").is_some()).count();
                assert!(content.values().all(|media| media.get("example").is_some()), "{what} request");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !status.starts_with('2') {
                    continue;
                }
                for (media_type, media) in response["content"].as_object().into_iter().flatten() {
                    assert!(media.get("example").is_some(), "{what} {status} {media_type}");
                    examples += 1;
                }
            }
        }
    }
    assert!(examples >= 40, "{examples} examples");
}

#[test]
fn the_servers_are_the_local_runner_the_http_api_and_for_streams_the_function_url() {
    let document = local::openapi::document();
    let urls = |servers: &serde_json::Value| -> Vec<String> {
        servers.as_array().unwrap().iter().map(|s| s["url"].as_str().unwrap().to_owned()).collect()
    };
    let local_runner = format!("http://127.0.0.1:{}", local::DEFAULT_PORT);
    let http_api = "https://{apiId}.execute-api.{region}.amazonaws.com";
    let stream_url = "https://{urlId}.lambda-url.{region}.on.aws";
    assert_eq!(urls(&document["servers"]), [local_runner.as_str(), http_api]);
    for variable in ["apiId", "region"] {
        assert!(document["servers"][1]["variables"][variable]["default"].is_string(), "{variable}");
    }
    let mut streamed = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let streams = operation["responses"]
                .as_object()
                .unwrap()
                .values()
                .any(|r| r["content"].get("text/event-stream").is_some());
            match operation.get("servers") {
                Some(servers) => {
                    assert!(streams, "{method} {path} has servers of its own but does not stream");
                    assert_eq!(urls(servers), [local_runner.as_str(), stream_url, http_api]);
                    streamed.push(path.as_str());
                }
                None => assert!(!streams, "{method} {path} streams but names no stream URL"),
            }
        }
    }
    assert_eq!(
        streamed,
        ["/api/conversations/{id}/messages", "/api/conversations/{id}/messages/{message_id}/retry"]
    );
}
