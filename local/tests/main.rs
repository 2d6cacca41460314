//! The integration tests of the local runner: one module per file, all in one binary, so a
//! change links one test executable, not one per file. One file's tests:
//! `cargo test --workspace --test integration <module>::`.

mod cors;
mod malformed;
mod openapi;
mod routes;
mod runner_process;
mod site;
mod streaming;
mod wire;
