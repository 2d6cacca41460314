//! The integration tests of the chapters function: one module per file, all in one binary, so a
//! change links one test executable, not one per file. One file's tests:
//! `cargo test --workspace --test integration <module>::`.

mod account_deletion;
mod book;
mod chapters_api;
mod common;
mod facets;
mod faults;
mod lambda_events;
mod model_engine;
mod s3_store;
mod verified_email;
