//! The integration tests of the conversations function: one module per file, all in one binary, so a
//! change links one test executable, not one per file. One file's tests:
//! `cargo test --workspace --test integration <module>::`.

mod claims;
mod common;
mod concurrency;
mod conversations_api;
mod faults;
mod lambda_events;
mod lambda_stream;
mod messages_api;
mod offline_tutor;
mod quotas;
mod streaming;
mod usage_locks;
