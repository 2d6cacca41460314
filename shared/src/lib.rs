//! The core crate of primer: what two or more functions need, written once.
//!
//! It owns configuration, the database pool and the migrations, the [`Error`] type that
//! renders the API's error shape, the request extractors (JSON bodies, the authenticated
//! caller), tracing, passwords and tokens, and the repositories over the schema. It owns no
//! routes: each function crate builds its router on [`AppState`] and hands it to
//! [`app::service`].

pub mod app;
pub mod auth;
#[cfg(any(feature = "s3", feature = "ses"))]
mod aws_https;
pub mod blob;
pub mod book;
pub mod claim;
pub mod config;
pub mod conversations;
pub mod db;
pub mod deadline;
pub mod email;
pub mod error;
pub mod extract;
pub mod model;
pub mod openapi;
pub mod owner;
pub mod personalize;
pub mod profile;
pub mod telemetry;
pub mod tutor;
pub mod usage;
pub mod user;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use app::AppState;
pub use config::Config;
pub use error::{Error, FieldErrors, QuotaDetails, Result};
