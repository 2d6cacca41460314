//! Configuration, read once per cold start from the environment.

use std::time::Duration;

use secrecy::SecretString;

/// Everything a function needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where PostgreSQL is (Neon's pooled URL in the cloud).
    pub database_url: SecretString,
    /// Connections per instance: Lambda serves one request at a time, so 1-2 suffice.
    pub db_max_connections: u32,
    /// How access tokens are signed and checked.
    pub jwt: JwtConfig,
}

/// The HS256 signing key and the claims every access token must carry.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Shared HMAC key, at least 32 bytes.
    pub secret: SecretString,
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim of access tokens.
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Lifetime of a session (and of its refresh token) since its last refresh.
    pub session_ttl: Duration,
    /// Lifetime of a guest token.
    pub guest_ttl: Duration,
}

/// A configuration value is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The environment variable.
        name: &'static str,
        /// What it should hold.
        hint: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
}

const MIN_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name| lookup(name).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL").ok_or(ConfigError::Missing {
            name: "DATABASE_URL",
            hint: "a PostgreSQL URL such as postgres://user@host:5432/primer",
        })?;
        let secret = get("JWT_SECRET").ok_or(ConfigError::Missing {
            name: "JWT_SECRET",
            hint: "a random secret of at least 32 bytes that signs access tokens",
        })?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: format!("it has {} bytes; use at least {MIN_SECRET_BYTES}", secret.len()),
            });
        }
        Ok(Self {
            database_url: database_url.into(),
            db_max_connections: parse_or(&get, "DB_MAX_CONNECTIONS", 2)?,
            jwt: JwtConfig {
                secret: secret.into(),
                issuer: get("JWT_ISSUER").unwrap_or_else(|| "primer".into()),
                audience: get("JWT_AUDIENCE").unwrap_or_else(|| "primer-api".into()),
                access_ttl: Duration::from_secs(parse_or(&get, "ACCESS_TOKEN_TTL_SECS", 15 * 60)?),
                session_ttl: Duration::from_secs(parse_or(&get, "SESSION_TTL_SECS", 30 * 24 * 3600)?),
                guest_ttl: Duration::from_secs(parse_or(&get, "GUEST_TOKEN_TTL_SECS", 7 * 24 * 3600)?),
            },
        })
    }
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = Config::from_lookup(lookup(&[("JWT_SECRET", &"x".repeat(32))])).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL is not set"), "{err}");
    }

    #[test]
    fn short_secret_is_refused() {
        let err = Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", "short")]))
            .unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let secret = "s".repeat(40);
        let config =
            Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", &secret)]))
                .unwrap();
        assert_eq!(config.db_max_connections, 2);
        assert_eq!(config.jwt.access_ttl, Duration::from_secs(900));
        assert_eq!(config.jwt.audience, "primer-api");
    }

    #[test]
    fn unparsable_number_is_refused() {
        let secret = "s".repeat(40);
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", &secret),
            ("DB_MAX_CONNECTIONS", "many"),
        ]))
        .unwrap_err();
        assert!(err.to_string().starts_with("DB_MAX_CONNECTIONS is invalid"), "{err}");
    }
}
