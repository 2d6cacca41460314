//! Better-Auth interoperability: a frontend that runs Better-Auth (TypeScript) on the same
//! database signs people in itself, and its sessions are callers here too.
//!
//! Better-Auth keeps its session tokens in plain in `session.token` (32 letters and digits)
//! and gives browsers the cookie `better-auth.session_token` (`__Secure-` prefixed over
//! https) holding `token.base64(HMAC-SHA256(secret, token))`, URL-encoded. primer's own
//! sessions store `sha256:<hex>` in that column, which no Better-Auth token can look like,
//! so neither kind of token ever finds the other's rows.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use sqlx::PgExecutor;

use crate::domain::user::{self, SessionUser};
use crate::error::{Error, Result};

/// Better-Auth's session cookie.
pub const SESSION_COOKIE: &str = "better-auth.session_token";

/// The same cookie as Better-Auth names it when its base URL is https.
pub const SECURE_SESSION_COOKIE: &str = "__Secure-better-auth.session_token";

/// A Better-Auth session token, as `session.token` stores it; never printed.
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

impl SessionToken {
    /// Better-Auth's `generateId(32)` makes 32; a little slack in case a release changes it.
    const CHARS: std::ops::RangeInclusive<usize> = 16..=128;

    /// A token in the raw form Better-Auth stores: ASCII letters and digits only, so a
    /// primer row (`sha256:...`) can never be named by one.
    pub fn parse_raw(raw: &str) -> Option<Self> {
        let ok = Self::CHARS.contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Self(raw.to_owned()))
    }

    /// A token in the signed form `token.signature`, possibly URL-encoded; `None` unless the
    /// signature is the HMAC-SHA256 of the token under `secret` (checked in constant time).
    pub fn parse_signed(value: &str, secret: &SecretString) -> Option<Self> {
        let decoded = percent_decode(value)?;
        let (token, signature) = decoded.rsplit_once('.')?;
        let token = Self::parse_raw(token)?;
        // Cookies carry standard base64 with padding; Better-Auth's bearer plugin also takes
        // the URL-safe alphabet. The MAC decides, so any spelling of the bytes may pass here.
        let signature: String = signature
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let signature = STANDARD_NO_PAD.decode(signature).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
        mac.update(token.0.as_bytes());
        mac.verify_slice(&signature).ok().map(|()| token)
    }

    /// The session token a request presents, in Better-Auth's terms: a Bearer token, raw or
    /// signed (as its bearer plugin accepts), else a signed session cookie. A Bearer token that
    /// is present decides alone: a bad one is not rescued by a cookie.
    pub fn presented(presented: &Presented<'_>, secret: &SecretString) -> Option<Self> {
        if let Some(bearer) = presented.bearer {
            return Self::parse_raw(bearer).or_else(|| Self::parse_signed(bearer, secret));
        }
        presented.cookie.and_then(|value| Self::parse_signed(value, secret))
    }
}

/// What a request presents that may be a Better-Auth session: its Bearer token, and the value
/// of its session cookie ([`SECURE_SESSION_COOKIE`], else [`SESSION_COOKIE`]). The HTTP layer
/// reads them from the headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The token of an `Authorization: Bearer` header.
    pub bearer: Option<&'a str>,
    /// The session cookie's value, as sent.
    pub cookie: Option<&'a str>,
}

/// `%XX` escapes decoded (what browsers and `encodeURIComponent` make of `+`, `/`, `=`);
/// `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    if !value.contains('%') {
        return Some(value.to_owned());
    }
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let mut escaped = [0u8; 1];
            hex::decode_to_slice(tail.get(..2)?, &mut escaped).ok()?;
            bytes.push(escaped[0]);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The live session, and its user, behind the Better-Auth session token a request presents: 401 without a valid, live session; 403 when the account is disabled. The session
/// row's id is the caller's session, so logging out through primer deletes it.
pub async fn authenticate(
    db: impl PgExecutor<'_>,
    presented: Presented<'_>,
    secret: &SecretString,
) -> Result<SessionUser> {
    let token = SessionToken::presented(&presented, secret).ok_or(Error::Unauthorized)?;
    let live = user::by_session_token(db, &token.0).await?.ok_or(Error::Unauthorized)?;
    if !live.user.is_active {
        return Err(Error::AccountDisabled);
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cookie made by better-auth 1.7.25 with the secret `"s" * 40`
    /// (`node tests/better-auth/interop.mjs sign-up-and-in ...`).
    const TOKEN: &str = "NVOQ4Qfzje4GEgDGz90cWsU78cO0Uplp";
    const COOKIE_VALUE: &str =
        "NVOQ4Qfzje4GEgDGz90cWsU78cO0Uplp.ObF03DOXrhWPHbtn212ARl9hKYUhpOfiaItj9MROMA8%3D";

    fn secret() -> SecretString {
        "s".repeat(40).into()
    }

    fn found(bearer: Option<&str>, cookie: Option<&str>) -> Option<String> {
        SessionToken::presented(&Presented { bearer, cookie }, &secret()).map(|t| t.0)
    }

    #[test]
    fn better_auths_own_cookie_verifies_in_every_spelling() {
        let decoded = COOKIE_VALUE.replace("%3D", "=");
        let url_safe = decoded.trim_end_matches('=').to_owned();
        for value in [COOKIE_VALUE, decoded.as_str(), url_safe.as_str()] {
            assert_eq!(
                SessionToken::parse_signed(value, &secret()).map(|t| t.0).as_deref(),
                Some(TOKEN),
                "{value}"
            );
        }
    }

    #[test]
    fn a_signature_under_another_secret_or_of_another_token_fails() {
        assert!(SessionToken::parse_signed(COOKIE_VALUE, &"t".repeat(40).into()).is_none());
        let other_token = COOKIE_VALUE.replacen('N', "M", 1);
        assert!(SessionToken::parse_signed(&other_token, &secret()).is_none());
        assert!(SessionToken::parse_signed(TOKEN, &secret()).is_none(), "unsigned");
        for broken in ["%zz", "%+1", "%2", "%"] {
            assert!(
                SessionToken::parse_signed(&format!("{TOKEN}.{broken}"), &secret()).is_none(),
                "{broken}"
            );
        }
    }

    #[test]
    fn raw_tokens_must_look_like_better_auths() {
        assert!(SessionToken::parse_raw(TOKEN).is_some());
        for raw in ["", "short", "sha256:0123456789abcdef0123456789abcdef", "a.b", &"x".repeat(129)] {
            assert!(SessionToken::parse_raw(raw).is_none(), "{raw}");
        }
    }

    #[test]
    fn bearer_takes_raw_or_signed_and_cookies_only_signed() {
        assert_eq!(found(Some(TOKEN), None).as_deref(), Some(TOKEN));
        assert_eq!(found(Some(COOKIE_VALUE), None).as_deref(), Some(TOKEN));
        assert_eq!(found(None, Some(COOKIE_VALUE)).as_deref(), Some(TOKEN));
        assert_eq!(found(None, Some(TOKEN)), None, "unsigned");
        // A bad Bearer token is not rescued by a good cookie.
        assert_eq!(found(Some("not-a-token"), Some(COOKIE_VALUE)), None);
    }
}
