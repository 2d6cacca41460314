//! The integration tests of the auth function: one module per file, all in one binary, so a
//! change links one test executable, not one per file. One file's tests:
//! `cargo test --workspace --test integration <module>::`.

mod abuse_limits;
mod account_flows;
mod auth_api;
mod better_auth;
mod credentials;
mod email_verification;
mod faults;
mod guest_claim;
mod key_rotation;
mod lambda_events;
mod oauth;
mod recovery;
mod round_trips;
mod ses;
