//! The API's error shape over HTTP: each [`ErrorKind`] answered with its status, the body
//! `{"error": {"code", "message", "request_id", "details"?}}` (the `Error` schema), and
//! `Retry-After` where the error knows when to try again.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{Code, Error, ErrorChain, ErrorKind, FieldError, QuotaDetails};
use crate::infra::telemetry::current_request_id;

/// A request id as the examples show it.
pub(crate) const REQUEST_ID: &str = "3f1c2a7e-5b7d-4e0a-9a55-0c8e4c1d2b6f";

/// The `Error` schema's example: a 422 naming a field.
pub fn error_example() -> Value {
    json!({"error": {
        "code": Code::ValidationFailed,
        "message": "invalid profile",
        "request_id": REQUEST_ID,
        "details": [{"field": "software_context.languages[1]", "message": "unknown value 'Cobol'"}],
    }})
}

/// The body of every error response (the `Error` schema).
#[derive(Serialize, ToSchema)]
#[schema(as = Error, examples(error_example))]
pub(crate) struct Body<'a> {
    #[schema(inline)]
    error: BodyInner<'a>,
}

#[derive(Serialize, ToSchema)]
struct BodyInner<'a> {
    #[schema(inline)]
    code: Code,
    /// Human readable.
    message: String,
    /// The request's id, as in the `x-request-id` header and the log.
    request_id: String,
    /// Every bad field (422), or the quota that is used up (429 `quota_exceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(inline, nullable = false)]
    details: Option<Details<'a>>,
}

/// `details`: the invalid fields of a 422, or the quota of a `quota_exceeded`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum Details<'a> {
    /// Every bad field (422).
    Fields(&'a [FieldError]),
    Quota(&'a QuotaDetails),
}

/// The status that answers each kind of error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::UpstreamFailed => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        status_of(self.kind())
    }

    /// The error for a bare `status` that another layer produced, with what it `said` (kept
    /// for a client error, where it can only describe the request; dropped for a server error).
    /// A 413 names `body_limit`, the limit that layer enforces.
    pub fn from_status(status: StatusCode, said: String, body_limit: usize) -> Self {
        let said =
            if said.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { said };
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit: body_limit },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => Self::Unavailable(said.into()),
            s if s.is_client_error() => Self::BadRequest(said),
            _ => Self::Internal(said.into()),
        }
    }

    fn body(&self, request_id: Option<String>) -> Body<'_> {
        let status = self.status();
        if status.is_server_error() {
            // The chain goes to the log only; the body says nothing internal.
            tracing::error!(error = %ErrorChain(self), code = %self.code(), "request failed");
        }
        let details = match self {
            Error::Validation(fields) => Some(Details::Fields(fields.as_slice())),
            Error::QuotaExceeded(quota) => Some(Details::Quota(quota)),
            _ => None,
        };
        Body {
            error: BodyInner {
                code: self.code(),
                message: self.to_string(),
                request_id: request_id.unwrap_or_default(),
                details,
            },
        }
    }

    /// The error shape as JSON, for a failure that cannot be a response of its own (one in
    /// the middle of a stream of events), under the request id it happened in. Logged as a
    /// response would be.
    pub fn to_json(&self, request_id: Option<String>) -> serde_json::Value {
        serde_json::to_value(self.body(request_id)).unwrap_or_default()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.body(current_request_id()))).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldErrors;
    use http_body_util::BodyExt;

    async fn render(e: Error) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = e.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[tokio::test]
    async fn validation_lists_every_field() {
        let mut errors = FieldErrors::new();
        errors.add("email", "not an email address");
        errors.add("password", "must be at least 8 characters");
        let (status, body, _) = render(errors.finish().unwrap_err()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["details"][1]["field"], "password");
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_internal() {
        let (status, body, _) = render(Error::internal("secret table xyz is on fire")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["message"], "internal error");
        assert!(!body.to_string().contains("xyz"));
    }

    #[tokio::test]
    async fn an_unavailable_backend_is_a_503_with_retry_after() {
        for e in [sqlx::Error::PoolTimedOut, sqlx::Error::Protocol("unexpected end of stream".into())] {
            let (status, body, retry) = render(e.into()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(body["error"]["code"], "unavailable");
            assert_eq!(retry.as_deref(), Some("2"));
        }
    }

    #[tokio::test]
    async fn a_bare_status_from_another_layer_gets_the_error_shape() {
        let (status, body, _) = render(Error::from_status(
            StatusCode::BAD_REQUEST,
            "Invalid URL: Invalid UTF-8 in `id`".into(),
            1024,
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!(body["error"]["message"], "Invalid URL: Invalid UTF-8 in `id`");
        let (status, body, _) =
            render(Error::from_status(StatusCode::BAD_GATEWAY, "upstream x".into(), 1024)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["message"], "internal error");
    }

    #[tokio::test]
    async fn an_exceeded_quota_names_it_and_says_when_it_renews() {
        let resets_at = chrono::Utc::now() + chrono::Duration::seconds(3600);
        let quota = QuotaDetails { quota: "messages", limit: 10, used: 10, period: "day", resets_at };
        let (status, body, retry) = render(Error::QuotaExceeded(quota)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "quota_exceeded");
        assert_eq!(body["error"]["details"]["quota"], "messages");
        assert_eq!(body["error"]["details"]["limit"], 10);
        let retry: i64 = retry.unwrap().parse().unwrap();
        assert!((3590..=3600).contains(&retry), "{retry}");
    }

    #[tokio::test]
    async fn rate_limit_sends_retry_after() {
        let (status, body, retry) = render(Error::RateLimited { retry_after_secs: 42 }).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(retry.as_deref(), Some("42"));
    }
}
