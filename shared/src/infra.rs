//! The infrastructure the domain stands on: configuration, the database, the blob store, the
//! model client, mail, deadlines and tracing.

#[cfg(any(feature = "s3", feature = "ses"))]
pub(crate) mod aws_https;
pub mod blob;
pub mod config;
pub mod db;
pub mod deadline;
pub mod email;
pub mod model;
#[cfg(feature = "oauth")]
pub mod provider_http;
pub(crate) mod sockets;
pub mod telemetry;
