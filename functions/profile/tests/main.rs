//! The integration tests of the profile function: one module per file, all in one binary, so a
//! change links one test executable, not one per file. One file's tests:
//! `cargo test --workspace --test integration <module>::`.

mod common;
mod lambda_events;
mod profile_api;
