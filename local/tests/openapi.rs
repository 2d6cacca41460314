//! openapi.json, at the repository's root, is the document the code generates
//! (`local::openapi`, from the handlers and their types): what is committed, served by the
//! chapters function and read by schemathesis cannot drift from the code.

use std::path::Path;

const REGENERATE: &str = "PRIMER_WRITE_OPENAPI=1 cargo test -p local --test openapi \
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
