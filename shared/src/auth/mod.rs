//! Identity: passwords, tokens, sessions, the login rate limit, account recovery by e-mail,
//! and Better-Auth's sessions.

pub mod better_auth;
#[cfg(feature = "passwords")]
pub mod password;
pub mod rate_limit;
pub mod recovery;
pub mod sessions;
pub mod tokens;
