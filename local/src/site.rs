//! The example site (`examples/web`), served beside the API for development: a reader's whole
//! journey in plain HTML and JavaScript modules at `/`, and the two pages e-mailed links lead
//! to when `FRONTEND_URL` is not set, `/verify-email` and `/reset-password`, so that the link
//! the runner logs at sign-up works when followed. Nothing here is deployed: on AWS the
//! readers' site is the textbook's own.
//!
//! The files are read from the source tree at each request, so an edit shows on a reload.

use std::path::PathBuf;

use axum::Router;
use primer_shared::AppState;
use tower_http::services::{ServeDir, ServeFile};

/// `examples/web` of this source tree.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/web"))
}

/// `/` (the example site), its files by name (`/app.js`), and the pages of e-mailed links.
pub fn routes() -> Router<AppState> {
    let dir = dir();
    Router::new()
        .route_service("/", ServeFile::new(dir.join("index.html")))
        .route_service("/verify-email", ServeFile::new(dir.join("verify-email.html")))
        .route_service("/reset-password", ServeFile::new(dir.join("reset-password.html")))
        // One path segment: the site is flat, and `/api/...` never reaches the files.
        .route_service("/{file}", ServeDir::new(dir))
}
