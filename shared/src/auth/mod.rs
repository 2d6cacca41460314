//! Identity: passwords, tokens, sessions, the login rate limit, and Better-Auth's sessions.

pub mod better_auth;
#[cfg(feature = "passwords")]
pub mod password;
pub mod rate_limit;
pub mod sessions;
pub mod tokens;
