//! The HTTP layer: what turns a request into a call of the domain and its result into an
//! answer, the same way in every function.

pub mod app;
pub mod error;
pub mod extract;
pub mod openapi;
