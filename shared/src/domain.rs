//! The domain, by resource: each module owns its tables (every statement that touches one lives
//! there) and sees no HTTP type.

pub mod auth;
pub mod book;
pub mod claim;
pub mod conversations;
pub mod ids;
pub mod owner;
pub mod personalize;
pub mod profile;
pub mod tutor;
pub mod usage;
pub mod user;
