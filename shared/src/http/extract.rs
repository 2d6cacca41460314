//! Extractors: a handler names what it needs in its signature and gets it parsed, or the
//! request is refused with the contract's error.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, USER_AGENT};
use axum::http::request::Parts;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use crate::domain::auth::sessions::ClientMeta;
use crate::domain::auth::{better_auth, tokens};
use crate::domain::conversations::Owner;
use crate::domain::ids::UserId;
use crate::domain::user::{self, User};
use crate::error::Error;
use crate::http::app::{AppState, BODY_LIMIT};

/// A JSON body whose rejections are the contract's errors: 415 when it is not JSON, 400 when
/// it is malformed or of the wrong shape, 413 when it is too large.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: a request with no body at all (no `Content-Type`, nothing sent) reads
/// as `T::default()`, so a route whose body's fields are all optional takes a bare POST; any
/// body that is sent is read as [`JsonBody`] reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        if request.headers().contains_key(CONTENT_TYPE) {
            return JsonBody::from_request(request, state).await.map(|JsonBody(value)| Self(value));
        }
        let bytes =
            axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
                match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit: BODY_LIMIT },
                    _ => Error::BadRequest(rejection.body_text()),
                }
            })?;
        // Something sent without saying it is JSON: refused as `JsonBody` refuses it.
        if bytes.is_empty() { Ok(Self(T::default())) } else { Err(Error::UnsupportedMediaType) }
    }
}

/// For `#[serde(default, deserialize_with = "nullable")]` on an `Option<Option<T>>` field of a
/// PATCH body: an explicit `null` (`Some(None)`, clear it) differs from an absent field (`None`).
pub fn nullable<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<T>` field that may be
/// left out but is never `null`: an explicit `null` is the 400 of a wrong shape, as the schema
/// says, instead of reading as "left out".
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn json_rejection(rejection: JsonRejection) -> Error {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit: BODY_LIMIT },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType,
        _ => match rejection {
            JsonRejection::JsonDataError(e) => {
                Error::wrong_shape(e.body_text().rsplit(": ").next().unwrap_or_default())
            }
            JsonRejection::JsonSyntaxError(_) => Error::BadRequest("the body is not valid JSON".into()),
            other => Error::BadRequest(other.body_text()),
        },
    }
}

/// The signed-in user behind a Bearer access token whose session is still live, or behind a
/// Better-Auth session token or cookie when `BETTER_AUTH_SECRET` is configured.
///
/// Every request checks the session in the database, so logout, logout-all and a password
/// change take effect at once; a disabled account gets 403. The same query reads the user, so
/// a handler that shows the caller (`GET /api/auth/me`) needs no second round trip.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id.
    pub user_id: UserId,
    /// The session the token belongs to.
    pub session_id: String,
    /// The user, as of this request.
    pub user: User,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let verified = bearer(&parts.headers)
            .ok_or(Error::Unauthorized)
            .and_then(|token| tokens::verify_access(&state.config.jwt, token));
        let claims = match (verified, &state.config.better_auth_secret) {
            (Ok(claims), _) => claims,
            // Not one of our access tokens: perhaps a session of a Better-Auth frontend.
            (Err(_), Some(secret)) => {
                let live = better_auth::authenticate(&state.pool, presented(&parts.headers), secret).await?;
                return Ok(Self {
                    user_id: live.user.id.clone(),
                    session_id: live.session_id,
                    user: live.user,
                });
            }
            (Err(e), None) => return Err(e),
        };
        let user_id = UserId::from(claims.sub);
        let user =
            user::by_live_session(&state.pool, &claims.sid, &user_id).await?.ok_or(Error::Unauthorized)?;
        if !user.is_active {
            return Err(Error::AccountDisabled);
        }
        Ok(Self { user_id, session_id: claims.sid, user })
    }
}

/// Who calls a route that guests may use too (the conversations): a signed-in user, checked
/// exactly as [`AuthUser`], or a guest with a token from `POST /api/auth/guest`.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A signed-in user.
    User(AuthUser),
    /// A guest (the guest-chat model), who owns conversations until signing up or logging in.
    Guest {
        /// The guest id the token was issued for.
        guest_id: Uuid,
    },
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        // A guest token is told apart by its audience alone, without a database round trip.
        let guest = bearer(&parts.headers).map(|token| tokens::verify_guest(&state.config.jwt, token));
        if let Some(Ok(guest)) = guest {
            return Ok(Self::Guest { guest_id: guest.sub });
        }
        AuthUser::from_request_parts(parts, state).await.map(Self::User)
    }
}

impl From<Caller> for Owner {
    fn from(caller: Caller) -> Self {
        match caller {
            Caller::User(user) => Self::User(user.user_id),
            Caller::Guest { guest_id } => Self::Guest(guest_id),
        }
    }
}

/// Whether the caller asked for Server-Sent Events (`Accept: text/event-stream`) rather than
/// the route's JSON. A wildcard or an absent `Accept` means JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantsEventStream(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for WantsEventStream {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let asked =
            parts.headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(names_event_stream);
        Ok(Self(asked))
    }
}

/// True when an `Accept` value lists `text/event-stream` without refusing it (`q=0`).
fn names_event_stream(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut params = range.split(';').map(str::trim);
        let media_type = params.next().unwrap_or_default();
        let refused = params.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f64>() == Ok(0.0)
            })
        });
        media_type.eq_ignore_ascii_case("text/event-stream") && !refused
    })
}

/// Query parameters whose rejection is the contract's 400, e.g. for `?archived=maybe`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let reason = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                Err(Error::BadRequest(format!("invalid query parameters: {reason}")))
            }
        }
    }
}

/// Where a request comes from, read from the request (API Gateway's `sourceIp` on Lambda, the
/// peer address locally; the `User-Agent` header).
impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Only addresses the platform vouches for: a client-sent X-Forwarded-For could
        // dodge the per-IP login limit.
        let ip = match parts.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        }
        .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()));
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        Ok(Self { ip, user_agent })
    }
}

/// The token of an `Authorization: Bearer ...` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What the headers present that may be a Better-Auth session: the Bearer token, and the
/// session cookie (the `__Secure-` one first).
fn presented(headers: &HeaderMap) -> better_auth::Presented<'_> {
    better_auth::Presented {
        bearer: bearer(headers),
        cookie: [better_auth::SECURE_SESSION_COOKIE, better_auth::SESSION_COOKIE]
            .into_iter()
            .find_map(|name| cookie(headers, name)),
    }
}

/// The first value of the cookie `name` in the `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_event_stream_is_asked_for() {
        for accept in [
            "text/event-stream",
            "application/json, Text/Event-Stream;q=0.9",
            " text/event-stream ;charset=utf-8",
        ] {
            assert!(names_event_stream(accept), "{accept}");
        }
        for accept in ["*/*", "application/json", "text/*", "text/event-stream;q=0", ""] {
            assert!(!names_event_stream(accept), "{accept}");
        }
    }

    #[test]
    fn a_better_auth_session_is_read_from_the_bearer_header_or_its_cookie() {
        use better_auth::{SECURE_SESSION_COOKIE, SESSION_COOKIE};
        let headers = |pairs: &[(axum::http::HeaderName, &str)]| -> HeaderMap {
            pairs.iter().map(|(name, value)| (name.clone(), value.parse().unwrap())).collect()
        };
        let only_bearer = headers(&[(AUTHORIZATION, "Bearer abc")]);
        assert_eq!((presented(&only_bearer).bearer, presented(&only_bearer).cookie), (Some("abc"), None));
        for name in [SESSION_COOKIE, SECURE_SESSION_COOKIE] {
            let jar = headers(&[(COOKIE, &format!("theme=dark; {name}=\"v.s\"; other=1"))]);
            assert_eq!((presented(&jar).bearer, presented(&jar).cookie), (None, Some("v.s")), "{name}");
        }
        let both = headers(&[
            (COOKIE, &format!("{SESSION_COOKIE}=plain")),
            (COOKIE, &format!("{SECURE_SESSION_COOKIE}=secure")),
        ]);
        assert_eq!(presented(&both).cookie, Some("secure"), "the __Secure- cookie first");
        assert_eq!(bearer(&headers(&[(AUTHORIZATION, "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[(AUTHORIZATION, "bearer  ")])), None);
    }
}
