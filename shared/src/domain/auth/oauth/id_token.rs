//! ID tokens: an OpenID provider's signed statement of who the reader is, checked against the
//! issuer's published keys (its JWKS) before a word of it is believed.
//!
//! jsonwebtoken parses the token and checks the claims (`iss`, `aud`, `exp`, `nbf`); the
//! signature is checked by ring, the crypto library the functions link for TLS already, through
//! [`verifier`], which primer's jsonwebtoken provider (`auth::tokens`) calls for RS256 and
//! ES256. Only those two: the algorithm is the key's, never the token's choice, so a token
//! that names `none` or HS256 (an HMAC "signed" with the public key as the secret) is refused
//! before any key is used.

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, Validation};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::Deserialize;

/// Why an ID token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWT, an algorithm other than RS256 or ES256, a bad signature, another issuer or
    /// audience, a claim missing or of the wrong type.
    Invalid,
    /// Signed by a key the issuer does not publish (after fetching its keys again).
    UnknownKey,
    /// Past its `exp` (or before its `nbf`).
    Expired,
    /// Its `nonce` is not the one this sign-in sent.
    NonceMismatch,
}

/// What a token must say to be accepted.
#[derive(Debug)]
pub struct Expected<'a> {
    /// The issuer's spellings (`iss`).
    pub issuers: &'a [&'a str],
    /// This deployment's client id (`aud`, and `azp` when there are several audiences).
    pub client_id: &'a str,
    /// The nonce this sign-in sent.
    pub nonce: &'a str,
}

/// The claims primer reads from an ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// The reader's id at the issuer: the account id.
    pub sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
    /// Their address, if the token carries it.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the issuer verified it (some issuers send `"true"`, a string).
    #[serde(default)]
    pub email_verified: Option<Flag>,
    /// Their name.
    #[serde(default)]
    pub name: Option<String>,
    /// Their picture's URL.
    #[serde(default)]
    pub picture: Option<String>,
}

/// A boolean claim as issuers send it: `true`, or `"true"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    /// A JSON boolean.
    Bool(bool),
    /// A string; only `"true"` (any case) is true.
    #[serde(deserialize_with = "text_flag")]
    Text(bool),
}

impl Flag {
    /// The flag's value.
    pub fn is_set(self) -> bool {
        match self {
            Self::Bool(b) | Self::Text(b) => b,
        }
    }
}

fn text_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(String::deserialize(d)?.eq_ignore_ascii_case("true"))
}

/// One signing key an issuer publishes.
#[derive(Debug, Clone)]
struct SigningKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// An issuer's signing keys (its JWKS), as fetched at a time.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// When they were fetched.
    pub fetched_at: Instant,
}

/// A JSON Web Key, the members primer reads; the rest are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl Jwk {
    /// The key as one primer verifies with: RSA (2048 bits or more) for RS256, P-256 for ES256;
    /// `None` for encryption keys and every other kind.
    fn signing_key(self) -> Option<SigningKey> {
        if self.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let decode = |part: Option<String>| URL_SAFE_NO_PAD.decode(part?.trim_end_matches('=')).ok();
        let (algorithm, key) = match self.kty.as_str() {
            "RSA" => {
                let (n, e) = (decode(self.n)?, decode(self.e)?);
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                (bits >= 2048).then_some(())?;
                (Algorithm::RS256, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            "EC" if self.crv.as_deref() == Some("P-256") => {
                let (x, y) = (decode(self.x)?, decode(self.y)?);
                (x.len() == 32 && y.len() == 32).then_some(())?;
                let point = [&[0x04][..], &x, &y].concat();
                (Algorithm::ES256, DecodingKey::from_ec_der(&point))
            }
            _ => return None,
        };
        // A key published for another algorithm (RS512, PS256, ...) is not one of these.
        if self.alg.as_deref().is_some_and(|alg| alg != format!("{algorithm:?}")) {
            return None;
        }
        Some(SigningKey { kid: self.kid, algorithm, key })
    }
}

impl KeySet {
    /// The usable signing keys of a JWKS document (`{"keys": [...]}`); keys primer cannot use
    /// are skipped, a document that is not a JWKS is an error.
    pub fn parse(document: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(document)?;
        let keys = document
            .keys
            .into_iter()
            .filter_map(|key| serde_json::from_value::<Jwk>(key).ok()?.signing_key())
            .collect();
        Ok(Self { keys, fetched_at: Instant::now() })
    }

    /// The key the token's header names, for the algorithm it claims; `None` when the set has
    /// no such key. A header without `kid` is matched only when the set has exactly one key
    /// for the algorithm.
    fn key_for(&self, header: &jsonwebtoken::Header) -> Option<&SigningKey> {
        let mut candidates = self.keys.iter().filter(|k| k.algorithm == header.alg);
        match &header.kid {
            Some(kid) => candidates.find(|k| k.kid.as_deref() == Some(kid.as_str())),
            None => {
                let only = candidates.next()?;
                candidates.next().is_none().then_some(only)
            }
        }
    }

    /// True when `token` names a key (and an algorithm primer accepts) that the set does not
    /// have: the issuer may have rotated its keys, and the caller fetches them again. A token
    /// whose header is refused anyway is no reason to.
    pub fn lacks_key_of(&self, token: &str) -> bool {
        header_of(token).is_ok_and(|header| self.key_for(&header).is_none())
    }

    /// Verifies `token`: the signature with the key its header names, then issuer, audience,
    /// expiry and nonce.
    pub fn verify(&self, token: &str, expected: &Expected<'_>) -> Result<IdClaims, Rejection> {
        let header = header_of(token)?;
        let key = self.key_for(&header).ok_or(Rejection::UnknownKey)?;
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(expected.issuers);
        validation.set_audience(&[expected.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Clocks drift; a minute is what OpenID libraries commonly allow.
        validation.leeway = 60;
        crate::domain::auth::tokens::install_jwt_crypto();
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => Rejection::Expired,
                _ => Rejection::Invalid,
            })?
            .claims;
        // With several audiences, the token must have been issued to this client (OpenID
        // Connect Core 3.1.3.7).
        let audiences = claims.aud.as_array().map_or(1, Vec::len);
        if audiences > 1 && claims.azp.as_deref() != Some(expected.client_id) {
            return Err(Rejection::Invalid);
        }
        if claims.nonce.as_deref() != Some(expected.nonce) {
            return Err(Rejection::NonceMismatch);
        }
        Ok(claims)
    }
}

/// The token's header, when it names RS256 or ES256.
fn header_of(token: &str) -> Result<jsonwebtoken::Header, Rejection> {
    // `none` is no algorithm jsonwebtoken knows: such a header does not even parse.
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid)?;
    match header.alg {
        Algorithm::RS256 | Algorithm::ES256 => Ok(header),
        _ => Err(Rejection::Invalid),
    }
}

/// A verifier for an RS256 or ES256 signature under an issuer's public key, for primer's
/// jsonwebtoken provider; any other pairing of algorithm and key is refused.
pub fn verifier(
    algorithm: Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    match (algorithm, key.family(), key.kind()) {
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            Ok(Box::new(Rs256 { n: n.clone(), e: e.clone() }))
        }
        (Algorithm::ES256, AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            Ok(Box::new(Es256 { point: point.clone() }))
        }
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256, under a public key of 2048 to 8192 bits.
struct Rs256 {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Verifier<Vec<u8>> for Rs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        RsaPublicKeyComponents { n: &self.n, e: &self.e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// ECDSA over P-256 with SHA-256, the signature as JWS writes it (r and s, 64 bytes).
struct Es256 {
    /// The uncompressed point: `04`, x, y.
    point: Vec<u8>,
}

impl Verifier<Vec<u8>> for Es256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Es256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A P-256 key pair (ring makes those; an RSA one it cannot) and its JWK.
    fn ec_key(kid: &str) -> (EcdsaKeyPair, serde_json::Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                         "x": b64(&point[1..33]), "y": b64(&point[33..])});
        (pair, jwk)
    }

    fn sign(pair: &EcdsaKeyPair, header: serde_json::Value, claims: serde_json::Value) -> String {
        let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", b64(signature.as_ref()))
    }

    fn claims(nonce: &str, exp_in: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": "https://id.example", "aud": "primer", "sub": "u-1", "iat": now, "exp": now + exp_in,
               "nonce": nonce, "email": "ada@example.com", "email_verified": "true"})
    }

    const EXPECTED: Expected<'static> =
        Expected { issuers: &["https://id.example"], client_id: "primer", nonce: "n-1" };

    #[test]
    fn an_es256_token_verifies_and_its_claims_are_checked() {
        let (pair, jwk) = ec_key("k1");
        let keys =
            KeySet::parse(json!({"keys": [jwk, {"kty": "oct", "k": "c2VjcmV0"}]}).to_string().as_bytes())
                .unwrap();
        let header = json!({"alg": "ES256", "kid": "k1"});
        let token = sign(&pair, header.clone(), claims("n-1", 300));
        assert!(!keys.lacks_key_of(&token));
        let verified = keys.verify(&token, &EXPECTED).unwrap();
        assert_eq!((verified.sub.as_str(), verified.email.as_deref()), ("u-1", Some("ada@example.com")));
        assert!(verified.email_verified.unwrap().is_set(), "the string \"true\" counts");

        let mut other = claims("n-1", 300);
        other["aud"] = json!("someone-else");
        assert_eq!(
            keys.verify(&sign(&pair, header.clone(), other), &EXPECTED).unwrap_err(),
            Rejection::Invalid
        );
        let mut several = claims("n-1", 300);
        several["aud"] = json!(["primer", "someone-else"]);
        assert_eq!(
            keys.verify(&sign(&pair, header.clone(), several.clone()), &EXPECTED).unwrap_err(),
            Rejection::Invalid
        );
        several["azp"] = json!("primer");
        assert!(keys.verify(&sign(&pair, header.clone(), several), &EXPECTED).is_ok());
        let mut issuer = claims("n-1", 300);
        issuer["iss"] = json!("https://evil.example");
        assert_eq!(
            keys.verify(&sign(&pair, header.clone(), issuer), &EXPECTED).unwrap_err(),
            Rejection::Invalid
        );
        assert_eq!(
            keys.verify(&sign(&pair, header.clone(), claims("n-2", 300)), &EXPECTED).unwrap_err(),
            Rejection::NonceMismatch
        );
        assert_eq!(
            keys.verify(&sign(&pair, header.clone(), claims("n-1", -120)), &EXPECTED).unwrap_err(),
            Rejection::Expired
        );

        let mut tampered = token.clone().into_bytes();
        let at = token.find('.').unwrap() + 3;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.verify(&String::from_utf8(tampered).unwrap(), &EXPECTED).unwrap_err(),
            Rejection::Invalid
        );
    }

    #[test]
    fn the_key_decides_the_algorithm_and_unknown_keys_are_told_apart() {
        let (pair, jwk) = ec_key("k1");
        let (stranger, _) = ec_key("k2");
        let keys = KeySet::parse(json!({"keys": [jwk.clone()]}).to_string().as_bytes()).unwrap();
        let unknown = sign(&stranger, json!({"alg": "ES256", "kid": "k2"}), claims("n-1", 300));
        assert!(keys.lacks_key_of(&unknown));
        assert_eq!(keys.verify(&unknown, &EXPECTED).unwrap_err(), Rejection::UnknownKey);
        // Signed by another key under the known kid: a bad signature.
        let forged = sign(&stranger, json!({"alg": "ES256", "kid": "k1"}), claims("n-1", 300));
        assert_eq!(keys.verify(&forged, &EXPECTED).unwrap_err(), Rejection::Invalid);
        // One key for the algorithm: a header without kid finds it.
        let no_kid = sign(&pair, json!({"alg": "ES256"}), claims("n-1", 300));
        assert!(keys.verify(&no_kid, &EXPECTED).is_ok());

        // `alg: none`, and HS256 keyed with the published key: refused before any key is used.
        let payload = b64(claims("n-1", 300).to_string().as_bytes());
        let none = format!("{}.{payload}.", b64(br#"{"alg":"none","kid":"k1"}"#));
        assert_eq!(keys.verify(&none, &EXPECTED).unwrap_err(), Rejection::Invalid);
        let hs_signed = format!("{}.{payload}", b64(br#"{"alg":"HS256","kid":"k1"}"#));
        let secret = jwk.to_string();
        let mac = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(hs_signed.as_bytes());
            mac.finalize().into_bytes()
        };
        let hs256 = format!("{hs_signed}.{}", b64(&mac));
        assert!(!keys.lacks_key_of(&hs256), "no reason to fetch the keys again");
        assert_eq!(keys.verify(&hs256, &EXPECTED).unwrap_err(), Rejection::Invalid);
    }

    #[test]
    fn only_usable_signing_keys_are_kept() {
        let (_, ec) = ec_key("ec");
        let mut encryption = ec.clone();
        encryption["use"] = json!("enc");
        let mut other_alg = ec.clone();
        other_alg["alg"] = json!("ES384");
        let short_rsa = json!({"kty": "RSA", "kid": "short", "n": b64(&[0xab; 128]), "e": "AQAB"});
        let rsa = json!({"kty": "RSA", "kid": "rsa", "n": b64(&[0xab; 256]), "e": "AQAB"});
        let document = json!({"keys": [ec, encryption, other_alg, short_rsa, rsa, {"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "junk"]});
        let keys = KeySet::parse(document.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.keys.iter().map(|k| (k.kid.clone().unwrap(), k.algorithm)).collect();
        assert_eq!(kids, [("ec".to_owned(), Algorithm::ES256), ("rsa".to_owned(), Algorithm::RS256)]);
        assert!(KeySet::parse(b"{\"no\": \"keys\"}").is_err());
    }
}
