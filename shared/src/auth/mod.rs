//! Identity: passwords, tokens, sessions and the login rate limit.

pub mod password;
pub mod rate_limit;
pub mod sessions;
pub mod tokens;
