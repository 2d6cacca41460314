//! Signing in with another provider: GitHub (OAuth 2.0 and its user API), Google and any
//! OpenID Connect issuer, for a single-page site.
//!
//! The flow, in a browser: the site links to `start`, which stores a pending sign-in (state,
//! PKCE verifier, nonce, where to return) and sends the reader to the provider; the provider
//! sends them back to the callback with a code, which is exchanged for tokens (with the PKCE
//! verifier; for OpenID Connect the ID token's signature, issuer, audience, expiry and nonce
//! are checked); the reader is then signed in and returned to the site with a one-time code
//! in the URL's fragment (`#code=...`, a minute, once), which the site redeems for the tokens
//! a login answers. A failure returns them with `#error=<code>` instead, never a server error.
//!
//! Who the reader is: the user who owns the provider account (provider, account id); else the
//! user with the address the provider reports, if the provider verified it (and, by default,
//! that user verified it too: see [`settings::SignInSettings::require_local_email_verified`]),
//! to whom the account is then linked; else a new user. An unverified address never links:
//! anyone can claim an address at a provider that does not check it. A signed-in reader may
//! also link a provider on purpose, whatever address it reports: their session is the proof.
//!
//! Provider tokens are not kept. primer reads who the reader is during the callback and never
//! calls the provider for them afterwards, so a stored token (encrypted or not) would only be
//! a credential to the reader's GitHub or Google account waiting to leak; and Better-Auth could
//! not read a token encrypted by primer anyway. The `account` rows carry the provider, the
//! account id and the scopes, as Better-Auth writes them.
//!
//! Configuration is always read ([`settings`]); the flows, the HTTP client (`infra::provider_http`) and the RSA
//! and EC signature checks are built with the `oauth` feature only, which the auth function and
//! the local runner turn on.

pub use crate::infra::config::sign_in as settings;

#[cfg(feature = "oauth")]
pub mod id_token;
#[cfg(feature = "oauth")]
mod pending;
#[cfg(feature = "oauth")]
pub mod providers;

#[cfg(feature = "oauth")]
mod flows;
#[cfg(feature = "oauth")]
pub use flows::*;
