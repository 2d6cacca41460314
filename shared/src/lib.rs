//! The core crate of primer: what two or more functions need, written once, in three layers.
//!
//! - [`http`]: the HTTP frame every function shares: the app and its one request layer, the
//!   extractors (JSON bodies, the authenticated caller), the error responses, the OpenAPI frame.
//! - [`domain`]: the product by resource: accounts and sessions, users, profiles, the book,
//!   conversations and the tutor, personalized chapters, usage. It sees no HTTP type; its
//!   errors carry an [`ErrorKind`] that [`http`] maps to a status.
//! - [`infra`]: what the domain stands on: configuration, the database pool and migrations, the
//!   blob store, the model client, mail, deadlines and tracing.
//!
//! A layer uses only the layers below it (`http` → `domain` → `infra` → [`error`]). The crate
//! owns no routes: each function crate builds its router on [`AppState`] and hands it to
//! [`http::app::service`]. docs/architecture.md draws the layers and a request's path.

pub mod domain;
pub mod error;
pub mod http;
pub mod infra;
#[cfg(test)]
mod layers;
pub mod schema;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use error::{Error, FieldErrors, QuotaDetails, Result};
pub use http::app::AppState;
pub use infra::config::Config;
