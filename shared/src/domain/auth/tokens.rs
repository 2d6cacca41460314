//! Tokens: HS256 access tokens and guest tokens (JWT, algorithm pinned), and opaque refresh
//! tokens that are stored only as a hash.
//!
//! Keys rotate without signing anybody out: a token names its key in its header (`kid`, derived
//! from the secret, so no key id is configured), `JWT_SECRET` signs, and the secrets of
//! `JWT_PREVIOUS_SECRETS` still verify the tokens they signed until those expire. A token
//! without a `kid` (signed before key ids) is tried with each key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::ids::UserId;
use crate::error::Error;
use crate::infra::config::JwtConfig;
pub use crate::infra::config::{JwtKey, JwtKeys};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The session id: checked on every request, so revocation is immediate.
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

/// The claims of a guest token: a stranger who may chat before signing up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestClaims {
    /// The guest id, which owns the guest's conversations until they are claimed.
    pub sub: Uuid,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// The guest audience, which no access-token check accepts.
    pub aud: String,
}

/// A freshly issued token and how long it lives.
#[derive(Debug)]
pub struct Issued<T> {
    /// The encoded token.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Its claims.
    pub claims: T,
}

fn guest_audience(jwt: &JwtConfig) -> String {
    format!("{}#guest", jwt.audience)
}

/// Issues an access token for a session.
pub fn issue_access(
    jwt: &JwtConfig,
    user_id: &UserId,
    session_id: &str,
) -> Result<Issued<AccessClaims>, Error> {
    issue_access_at(jwt, user_id, session_id, Utc::now().timestamp())
}

/// Issues an access token for a session as of `iat` (Unix seconds): the same arguments give
/// the same token, which is how a refresh within the reuse interval repeats its answer.
pub fn issue_access_at(
    jwt: &JwtConfig,
    user_id: &UserId,
    session_id: &str,
    iat: i64,
) -> Result<Issued<AccessClaims>, Error> {
    let expires_in = jwt.access_ttl.as_secs() as i64;
    let claims = AccessClaims {
        sub: user_id.to_string(),
        sid: session_id.to_owned(),
        iat,
        exp: iat + expires_in,
        iss: jwt.issuer.clone(),
        aud: jwt.audience.clone(),
    };
    Ok(Issued { token: encode(jwt, &claims)?, expires_in, claims })
}

/// Checks signature, algorithm, expiry, issuer and audience. Every failure is the same 401.
pub fn verify_access(jwt: &JwtConfig, token: &str) -> Result<AccessClaims, Error> {
    decode(jwt, token, &jwt.audience)
}

/// Issues a token for a new guest.
pub fn issue_guest(jwt: &JwtConfig) -> Result<Issued<GuestClaims>, Error> {
    let iat = Utc::now().timestamp();
    let expires_in = jwt.guest_ttl.as_secs() as i64;
    let claims = GuestClaims {
        sub: Uuid::new_v4(),
        iat,
        exp: iat + expires_in,
        iss: jwt.issuer.clone(),
        aud: guest_audience(jwt),
    };
    Ok(Issued { token: encode(jwt, &claims)?, expires_in, claims })
}

/// Checks a guest token as strictly as an access token.
pub fn verify_guest(jwt: &JwtConfig, token: &str) -> Result<GuestClaims, Error> {
    decode(jwt, token, &guest_audience(jwt))
}

/// jsonwebtoken's cryptography, reduced to what primer signs and accepts. Its own providers
/// bring RSA, ECDSA and EdDSA signing and verifying (0.6 MB of every bootstrap, for tokens that
/// are refused before any signature is checked); this one makes an HMAC-SHA256 signer or
/// verifier for primer's own tokens, and with the `oauth` feature (the auth function only) an
/// RS256 or ES256 verifier for a sign-in provider's ID tokens (`auth::oauth::id_token`, on the
/// ring that TLS links already). It refuses to make anything else.
static PRIMER_JWT_CRYPTO: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key| Ok(Box::new(Hs256::new(*algorithm, key.try_get_hmac_secret()?)?)),
    verifier_factory: |algorithm, key| match algorithm {
        #[cfg(feature = "oauth")]
        Algorithm::RS256 | Algorithm::ES256 => super::oauth::id_token::verifier(*algorithm, key),
        _ => Ok(Box::new(Hs256::new(*algorithm, key.try_get_hmac_secret()?)?)),
    },
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes [`PRIMER_JWT_CRYPTO`] jsonwebtoken's provider for this process, before its first
/// token (the first one installed stays). Tests that sign tokens with jsonwebtoken itself call
/// it first.
pub fn install_jwt_crypto() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = PRIMER_JWT_CRYPTO.install_default();
    });
}

struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(algorithm: Algorithm, secret: &[u8]) -> jsonwebtoken::errors::Result<Self> {
        if algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Ok(Self(Hmac::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat)?))
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.clone().chain_update(message).finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        // In constant time.
        self.0.clone().chain_update(message).verify_slice(signature).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn encode(jwt: &JwtConfig, claims: &impl Serialize) -> Result<String, Error> {
    install_jwt_crypto();
    let key = signing_key(jwt)?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.id.clone());
    let encoding = EncodingKey::from_secret(key.secret.expose_secret().as_bytes());
    jsonwebtoken::encode(&header, claims, &encoding).map_err(Error::internal)
}

fn signing_key(jwt: &JwtConfig) -> Result<&JwtKey, Error> {
    jwt.keys.signing().ok_or_else(|| Error::internal("no JWT_SECRET: this function signs no token"))
}

/// Checks `token` with the key its `kid` names (a `kid` no key has is refused), or, for a token
/// without one, with each key in turn.
fn decode<T: serde::de::DeserializeOwned>(jwt: &JwtConfig, token: &str, audience: &str) -> Result<T, Error> {
    install_jwt_crypto();
    let names = |header: &Header, key: &JwtKey| header.kid.as_deref().is_none_or(|kid| kid == key.id);
    with_validation(&jwt.issuer, audience, |validation| {
        let mut verifying = jwt.keys.verifying();
        let checked = match (verifying.next(), verifying.next()) {
            // One key, as between rotations: jsonwebtoken reads the header as it checks the
            // token, so its `kid` is compared afterwards rather than the header parsed twice.
            (Some(key), None) => jsonwebtoken::decode::<T>(token, &key.decoding, validation)
                .ok()
                .filter(|data| names(&data.header, key)),
            _ => jsonwebtoken::decode_header(token).ok().and_then(|header| {
                jwt.keys
                    .verifying()
                    .filter(|key| names(&header, key))
                    .find_map(|key| jsonwebtoken::decode::<T>(token, &key.decoding, validation).ok())
            }),
        };
        checked.map(|data| data.claims).ok_or(Error::Unauthorized)
    })
}

/// Calls `check` with what a token of `issuer` for `audience` is checked against. Built once per
/// thread, issuer and audience, not per request: jsonwebtoken's `Validation` holds the issuer
/// and audience as hash sets, allocated anew each time it is built.
fn with_validation<R>(issuer: &str, audience: &str, check: impl FnOnce(&Validation) -> R) -> R {
    thread_local! {
        static BUILT: std::cell::RefCell<Vec<(String, String, Validation)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUILT.with_borrow_mut(|built| {
        let found = built.iter().position(|(i, a, _)| i == issuer && a == audience);
        let index = found.unwrap_or_else(|| {
            // A deployment has one issuer and two audiences (access, guest); tests have more.
            if built.len() >= 8 {
                built.clear();
            }
            // Only HS256: a token claiming `none` or an asymmetric algorithm is refused outright.
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
            validation.leeway = 5;
            built.push((issuer.to_owned(), audience.to_owned(), validation));
            built.len() - 1
        });
        check(&built[index].2)
    })
}

/// An opaque refresh token: 256 random (or, for a successor, keyed pseudo-random) bits, shown
/// to the client once. Its `Debug` shows nothing of it.
pub struct RefreshToken(String);

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(..)")
    }
}

impl RefreshToken {
    /// A new random token.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The token as the client receives it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token that replaces `presented` when it is rotated: an HMAC of it under the signing
    /// key, so a second presentation moments later can be given the same successor without
    /// the database ever holding a usable token.
    pub fn successor(jwt: &JwtConfig, presented: &str) -> Result<Self, Error> {
        Ok(Self::successor_under(signing_key(jwt)?, presented))
    }

    /// The successors `presented` may have been given: under the signing key first, then under
    /// each previous key, for a presentation whose twin was rotated before the key was.
    pub fn possible_successors(jwt: &JwtConfig, presented: &str) -> Vec<Self> {
        jwt.keys.verifying().map(|key| Self::successor_under(key, presented)).collect()
    }

    fn successor_under(key: &JwtKey, presented: &str) -> Self {
        let mac = key.mac().chain_update(b"primer/refresh-successor\n").chain_update(presented.as_bytes());
        Self(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// What the database stores in `session.token` for this token.
    pub fn storage_hash(&self) -> String {
        storage_hash(&self.0)
    }
}

/// The stored form of a refresh token: `sha256:` and the hex digest. The prefix keeps it apart
/// from Better-Auth's plain 32-character session tokens sharing the column.
pub fn storage_hash(presented: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(presented.as_bytes())))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

    fn config() -> JwtConfig {
        JwtConfig {
            keys: JwtKeys::new(SECRET.into(), []),
            issuer: "primer".into(),
            audience: "primer-api".into(),
            access_ttl: Duration::from_secs(900),
            session_ttl: Duration::from_secs(3600),
            guest_ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn access_token_round_trips() {
        let jwt = config();
        let issued = issue_access(&jwt, &UserId::from("user-1"), "session-1").unwrap();
        let claims = verify_access(&jwt, &issued.token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("user-1", "session-1"));
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn guest_and_access_tokens_are_not_interchangeable() {
        let jwt = config();
        let guest = issue_guest(&jwt).unwrap();
        assert!(verify_access(&jwt, &guest.token).is_err());
        let access = issue_access(&jwt, &UserId::from("u"), "s").unwrap();
        assert!(verify_guest(&jwt, &access.token).is_err());
        assert_eq!(verify_guest(&jwt, &guest.token).unwrap().sub, guest.claims.sub);
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, b) = (RefreshToken::generate(), RefreshToken::generate());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43); // 32 bytes, base64url
        assert!(a.storage_hash().starts_with("sha256:"));
        assert!(!a.storage_hash().contains(a.expose()));
        assert_eq!(a.storage_hash(), storage_hash(a.expose()));
    }

    #[test]
    fn a_successor_is_the_same_for_the_same_token_and_key_only() {
        let jwt = config();
        let token = RefreshToken::generate();
        let successor = |jwt: &JwtConfig, presented: &str| RefreshToken::successor(jwt, presented).unwrap();
        let next = successor(&jwt, token.expose());
        assert_eq!(next.expose(), successor(&jwt, token.expose()).expose());
        assert_eq!(next.expose().len(), 43);
        assert_ne!(next.expose(), successor(&jwt, next.expose()).expose());
        let other_key = JwtConfig { keys: JwtKeys::new("o".repeat(32).into(), []), ..config() };
        assert_ne!(next.expose(), successor(&other_key, token.expose()).expose());
        assert_eq!(format!("{token:?}"), "RefreshToken(..)");
    }

    #[test]
    fn the_crypto_signs_and_checks_hs256_and_nothing_else() {
        install_jwt_crypto();
        let jwt = config();
        let hs256 = |text: &str| {
            let mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.chain_update(text.as_bytes()).finalize().into_bytes().to_vec()
        };
        let token = issue_access(&jwt, &UserId::from("u"), "s").unwrap().token;
        // The signature is HMAC-SHA256 of the first two parts, under the secret.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(signature).unwrap(), hs256(signed));

        let mut tampered = URL_SAFE_NO_PAD.decode(signature).unwrap();
        tampered[0] ^= 1;
        let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tampered));
        assert!(verify_access(&jwt, &tampered).is_err());

        let key = EncodingKey::from_secret(b"secret");
        let claims = serde_json::json!({"sub": "u"});
        for algorithm in
            [Algorithm::HS384, Algorithm::HS512, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        {
            assert!(jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).is_err(), "{algorithm:?}");
        }
        // A token that names another algorithm is refused, even signed with HMAC-SHA256 and the
        // right secret.
        let payload = token.split('.').nth(1).unwrap();
        let signed = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#));
        assert!(
            verify_access(&jwt, &format!("{signed}.{}", URL_SAFE_NO_PAD.encode(hs256(&signed)))).is_err()
        );
    }

    #[test]
    fn an_access_token_as_of_a_time_is_reproducible() {
        let jwt = config();
        let user = UserId::from("u");
        let a = issue_access_at(&jwt, &user, "s", 1_795_514_400).unwrap();
        let b = issue_access_at(&jwt, &user, "s", 1_795_514_400).unwrap();
        assert_eq!(a.token, b.token);
        assert_eq!(a.claims.exp, 1_795_514_400 + 900);
    }
}
