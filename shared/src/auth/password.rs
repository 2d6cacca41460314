//! Password hashing: argon2id with OWASP's parameters (m = 19456 KiB, t = 2, p = 1), stored as
//! PHC strings in `account.password`.
//!
//! Hashing and verifying cost tens of milliseconds of CPU, so both run on the blocking pool.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// A password as the reader typed it; never printed, never logged.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Shortest accepted new password, in characters.
    pub const MIN_CHARS: usize = 8;
    /// Longest accepted new password, in characters.
    pub const MAX_CHARS: usize = 128;

    /// A new password: 8 to 128 characters.
    pub fn parse_new(raw: String) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Self(raw.into()))
    }

    /// A password offered to prove identity: only required to be present, since an old
    /// account may predate today's rules.
    pub fn parse_presented(raw: String) -> Result<Self, String> {
        if raw.is_empty() { Err("is required".into()) } else { Ok(Self(raw.into())) }
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wrong password, or a hash in a format we do not accept.
    Mismatch,
    /// Right password, hash already current.
    Match,
    /// Right password, but the hash should be replaced by a current argon2id one.
    MatchNeedsRehash,
}

impl Verdict {
    /// True for either kind of match.
    pub fn matched(self) -> bool {
        self != Self::Mismatch
    }
}

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id recommendation; any change makes old hashes "need rehash".
    let params = Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string.
pub async fn hash(password: &Password) -> Result<String, Error> {
    let password = password.clone();
    blocking(move || hash_blocking(password.bytes())).await?
}

fn hash_blocking(password: &[u8]) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher().hash_password(password, &salt).map_err(Error::internal)?.to_string())
}

/// Checks a password against a stored hash. Unknown formats fail closed.
pub async fn verify(password: &Password, stored: &str) -> Result<Verdict, Error> {
    let (password, stored) = (password.clone(), stored.to_owned());
    blocking(move || verify_blocking(password.bytes(), &stored)).await
}

/// Spends the same effort as [`verify`] and always answers `Mismatch`: for logins with an
/// unknown email, so they cannot be told apart by their timing.
pub async fn verify_dummy(password: &Password) -> Result<Verdict, Error> {
    let password = password.clone();
    blocking(move || {
        verify_blocking(password.bytes(), &DUMMY_HASH);
        Verdict::Mismatch
    })
    .await
}

/// A hash of a random password with the current parameters, made once per cold start.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random: [u8; 32] = rand::random();
    hash_blocking(&random).expect("hashing random bytes cannot fail")
});

/// Makes the dummy hash now, so the first unknown-email login is not cheaper or dearer.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

fn verify_blocking(password: &[u8], stored: &str) -> Verdict {
    let Ok(parsed) = PasswordHash::new(stored) else { return Verdict::Mismatch };
    if parsed.algorithm != argon2::ARGON2ID_IDENT
        && parsed.algorithm != argon2::ARGON2I_IDENT
        && parsed.algorithm != argon2::ARGON2D_IDENT
    {
        return Verdict::Mismatch;
    }
    if hasher().verify_password(password, &parsed).is_err() {
        return Verdict::Mismatch;
    }
    let current = parsed.algorithm == argon2::ARGON2ID_IDENT
        && Params::try_from(&parsed).is_ok_and(|p| {
            let want = hasher();
            let want = want.params();
            (p.m_cost(), p.t_cost(), p.p_cost()) == (want.m_cost(), want.t_cost(), want.p_cost())
        });
    if current { Verdict::Match } else { Verdict::MatchNeedsRehash }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse_new(s.into()).unwrap()
    }

    #[tokio::test]
    async fn hash_is_argon2id_with_owasp_parameters() {
        let phc = hash(&pw("correct horse battery")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(verify(&pw("correct horse battery"), &phc).await.unwrap(), Verdict::Match);
        assert_eq!(verify(&pw("correct horse batterx"), &phc).await.unwrap(), Verdict::Mismatch);
    }

    #[tokio::test]
    async fn weaker_argon2_hash_matches_but_needs_rehash() {
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap());
        let salt = SaltString::generate(&mut OsRng);
        let phc = weak.hash_password(b"old password", &salt).unwrap().to_string();
        assert_eq!(verify(&pw("old password"), &phc).await.unwrap(), Verdict::MatchNeedsRehash);
    }

    #[tokio::test]
    async fn unknown_formats_fail_closed() {
        for stored in ["", "plaintext", "$md5$abc", "deadbeef:cafe"] {
            assert_eq!(verify(&pw("whatever123"), stored).await.unwrap(), Verdict::Mismatch, "{stored}");
        }
    }

    #[test]
    fn new_password_length_is_bounded() {
        assert!(Password::parse_new("short".into()).is_err());
        assert!(Password::parse_new("x".repeat(129)).is_err());
        assert!(Password::parse_new("ünïcödé!".into()).is_ok());
        assert!(Password::parse_presented(String::new()).is_err());
    }

    #[test]
    fn debug_does_not_show_the_password() {
        assert_eq!(format!("{:?}", pw("hunter2hunter2")), "Password(..)");
    }
}
