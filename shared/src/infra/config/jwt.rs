//! The keys access and guest tokens are signed with (`JWT_SECRET`, `JWT_PREVIOUS_SECRETS`).
//! `domain::auth::tokens` signs and verifies with them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// An HS256 secret and its key id. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct JwtKey {
    pub(crate) id: String,
    pub(crate) secret: SecretString,
    /// The secret as jsonwebtoken verifies with it, made once.
    pub(crate) decoding: DecodingKey,
}

impl JwtKey {
    /// The key of `secret`. Its id is the first 64 bits of an HMAC of a fixed label under the
    /// secret, in base64url: the same secret always has the same id, and the id tells nothing
    /// about the secret that a token's own signature does not.
    pub fn new(secret: SecretString) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length")
            .chain_update(b"primer/jwt-key-id")
            .finalize()
            .into_bytes();
        let decoding = DecodingKey::from_secret(secret.expose_secret().as_bytes());
        Self { id: URL_SAFE_NO_PAD.encode(&mac[..8]), secret, decoding }
    }

    /// The key id tokens signed with this key carry (`kid`).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        Hmac::new_from_slice(self.secret.expose_secret().as_bytes()).expect("HMAC takes a key of any length")
    }
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey({})", self.id)
    }
}

/// A deployment's token keys: the one that signs, and those that only verify what they signed
/// before a rotation.
#[derive(Debug, Clone, Default)]
pub struct JwtKeys {
    signing: Option<JwtKey>,
    previous: Vec<JwtKey>,
}

impl JwtKeys {
    /// `signing` (`JWT_SECRET`) signs and verifies; `previous` (`JWT_PREVIOUS_SECRETS`) verify.
    pub fn new(signing: SecretString, previous: impl IntoIterator<Item = SecretString>) -> Self {
        Self {
            signing: Some(JwtKey::new(signing)),
            previous: previous.into_iter().map(JwtKey::new).collect(),
        }
    }

    /// No key: a function that handles no token (the janitor). It cannot sign one, and none
    /// verifies.
    pub fn none() -> Self {
        Self::default()
    }

    /// The key new tokens are signed with.
    pub fn signing(&self) -> Option<&JwtKey> {
        self.signing.as_ref()
    }

    /// Every key that verifies, the signing key first.
    pub fn verifying(&self) -> impl Iterator<Item = &JwtKey> {
        self.signing.iter().chain(&self.previous)
    }
}
