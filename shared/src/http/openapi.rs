//! The parts of the OpenAPI document (openapi.json) that every function shares: the error body
//! and its responses, the bearer scheme, the document's info. Each function derives its own
//! operations from its handlers (`#[utoipa::path]`) and types (`ToSchema`); the local runner
//! assembles them into the one document (`local::openapi`).

use serde_json::{Value, json};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::{Server, ServerBuilder, ServerVariableBuilder};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::error::Code;
use crate::http::error::{Body, REQUEST_ID};

pub use crate::schema::{Strings, examples, one_of_strings};

/// The name of the bearer scheme in `components.securitySchemes`, as operations cite it.
pub const BEARER: &str = "bearerAuth";

/// An error response: `description`, the `Error` body, an example with `code` and `message`.
fn error_response(description: &str, code: Code, message: &str) -> ResponseBuilder {
    let example = json!({"error": {"code": code, "message": message, "request_id": REQUEST_ID}});
    error_response_with(description, example)
}

fn error_response_with(description: &str, example: Value) -> ResponseBuilder {
    let content = ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("Error")))
        .example(Some(example));
    ResponseBuilder::new().description(description).content("application/json", content.build())
}

/// The `Retry-After` header of a 429 or a 503, counting seconds from `minimum`.
fn retry_after(description: &str, minimum: i64) -> utoipa::openapi::Header {
    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(minimum));
    HeaderBuilder::new().schema(seconds).description(Some(description)).build()
}

/// Declares a named error response (`components.responses`), cited by the handlers'
/// `responses(...)` as `response = Name`.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $response:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), $response.build().into())
            }
        }
    )*};
}

/// Declares a group of named error responses that every operation of a kind answers with,
/// cited once in a handler's `responses(...)` instead of one line per status.
macro_rules! response_groups {
    ($($(#[$doc:meta])* $group:ident => [$($status:literal => $name:ident),*];)*) => {$(
        $(#[$doc])*
        pub struct $group;

        impl utoipa::IntoResponses for $group {
            fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
                [$(($status.to_owned(), utoipa::openapi::Ref::from_response_name(stringify!($name)).into())),*]
                    .into_iter()
                    .collect()
            }
        }
    )*};
}

response_groups! {
    /// 500 and 503: every operation.
    ServerErrors => ["500" => Internal, "503" => Unavailable];
    /// 400, 413 and 415: every operation that reads a JSON body.
    JsonBodyErrors => ["400" => BadRequest, "413" => PayloadTooLarge, "415" => UnsupportedMediaType];
    /// 401 and 403 `account_disabled`: every operation that needs a signed-in caller.
    SignedInErrors => ["401" => Unauthorized, "403" => AccountDisabled];
}

error_responses! {
    /// 400 `bad_request`.
    BadRequest => error_response("Malformed JSON, wrong types, or unknown query parameter values.", Code::BadRequest, "malformed JSON body");
    /// 401 `unauthorized`.
    Unauthorized => error_response("No, invalid or expired token; revoked session; deleted user.", Code::Unauthorized, "missing or invalid token");
    /// 403 `account_disabled`.
    AccountDisabled => error_response("The account is disabled (`is_active = false`).", Code::AccountDisabled, "account disabled");
    /// 403 `account_disabled` or `email_unverified`.
    AccountDisabledOrEmailUnverified => error_response(
        "`account_disabled`, or `email_unverified`: with `REQUIRE_VERIFIED_EMAIL` and a model configured, what the model serves needs a verified address (`POST /api/auth/email/verify/send`).",
        Code::EmailUnverified,
        "verify your e-mail address first: POST /api/auth/email/verify/send sends a new link",
    );
    /// 404 `not_found`.
    NotFound => error_response("No such resource, or a resource of another user.", Code::NotFound, "not found");
    /// 409 `conflict` or a more specific code.
    Conflict => error_response("Conflict: `conflict` (e.g. duplicate email) or a more specific code such as `immutable_field`.", Code::Conflict, "email already in use");
    /// 409 `profile_incomplete`.
    ProfileIncomplete => error_response("No onboarded profile to personalize for.", Code::ProfileIncomplete, "complete your profile first");
    /// 409 `email_already_verified`.
    EmailAlreadyVerified => error_response("The address is already verified.", Code::EmailAlreadyVerified, "this account's e-mail address is already verified");
    /// 400 `invalid_token`.
    InvalidToken => error_response(
        "The token is unknown, expired, already used or forged (one answer for all).",
        Code::InvalidToken,
        "this link is invalid, has expired or was already used; ask for a new one",
    );
    /// 400 `invalid_code`.
    InvalidCode => error_response(
        "The one-time sign-in code is unknown, expired or already redeemed (one answer for all).",
        Code::InvalidCode,
        "this sign-in code is invalid, has expired or was already used; sign in again",
    );
    /// 404 `unknown_provider`.
    UnknownProvider => error_response("No sign-in provider is configured under this id.", Code::UnknownProvider, "no sign-in provider is configured under this id");
    /// 409 `last_sign_in_method`.
    LastSignInMethod => error_response(
        "It is the account's only way to sign in.",
        Code::LastSignInMethod,
        "this is the account's only way to sign in: add another first",
    );
    /// 413 `payload_too_large`.
    PayloadTooLarge => error_response("Body over the limit (64 KiB; message content 32 KiB).", Code::PayloadTooLarge, "body too large");
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType => error_response("The body is not JSON.", Code::UnsupportedMediaType, "expected application/json");
    /// 422 `validation_failed`.
    ValidationFailed => error_response("Well-formed but invalid values; `details` lists every bad field.", Code::ValidationFailed, "invalid request");
    /// 429 `rate_limited`.
    RateLimited => error_response("Too many requests.", Code::RateLimited, "too many requests")
        .header("Retry-After", retry_after("Seconds to wait before retrying.", 0));
    /// 429 `quota_exceeded`.
    QuotaExceeded => error_response_with(
        "The caller's daily quota of messages or model tokens is used up (`details` says which); nothing was stored.",
        json!({"error": {
            "code": Code::QuotaExceeded,
            "message": "your daily messages quota is used up; it renews at 00:00 UTC",
            "request_id": REQUEST_ID,
            "details": {"quota": "messages", "limit": 10, "used": 10, "period": "day", "resets_at": "2026-11-30T00:00:00Z"},
        }}),
    )
    .header("Retry-After", retry_after("Seconds until the quota renews (the next UTC midnight).", 1));
    /// 502 `model_unavailable`.
    ModelUnavailable => error_response("The language model failed and no fallback applies.", Code::ModelUnavailable, "model unavailable");
    /// 503 `unavailable`.
    Unavailable => error_response("Database or storage unreachable, a connection the database ended, a statement or lock time-out.", Code::Unavailable, "a backing service is unavailable")
        .header("Retry-After", retry_after("Seconds to wait before retrying: a restarting database or a full pool is back within seconds.", 1));
    /// 500 `internal`.
    Internal => error_response("A bug; the message says nothing internal.", Code::Internal, "internal error");
}

/// The document's frame: info, servers, tags, the bearer scheme, the error body and
/// responses. The functions' operations are merged into it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "primer",
        version = "0.1.0",
        description = "primer is the serverless backend of a personalized textbook with an AI tutor: people sign up, describe their software and hardware background once, read chapters rewritten for that background, and chat with a tutor that answers from the book with citations. All routes live under `/api`; bodies are JSON unless stated; authenticated routes take `Authorization: Bearer <access_token>` (conversation routes also accept a guest token); times are RFC 3339 UTC strings; every error has the shape of the `Error` schema.",
        license(name = "MIT", identifier = "MIT"),
    ),
    tags(
        (name = "auth", description = "Accounts, sessions and tokens [auth]."),
        (name = "profile", description = "The learner's background [profile]."),
        (name = "conversations", description = "Chat with the tutor [conversations]."),
        (name = "chapters", description = "The book, plain and personalized [chapters]."),
        (name = "meta", description = "This document."),
    ),
    components(
        schemas(Body),
        responses(
            BadRequest, Unauthorized, AccountDisabled, AccountDisabledOrEmailUnverified, NotFound, Conflict,
            ProfileIncomplete, EmailAlreadyVerified, InvalidToken, InvalidCode, UnknownProvider, LastSignInMethod,
            PayloadTooLarge, UnsupportedMediaType,
            ValidationFailed, RateLimited, QuotaExceeded, ModelUnavailable, Unavailable, Internal,
        ),
    ),
    modifiers(&BearerScheme, &Servers),
)]
pub struct Frame;

/// Marks the request body of `POST <path>` optional: the handler takes a bare POST
/// (`extract::OptionalJsonBody`), but a body it has is the documented schema (not `null`),
/// which `#[utoipa::path]` cannot say.
pub struct OptionalPostBody(pub &'static str);

impl Modify for OptionalPostBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let operation = openapi.paths.paths.get_mut(self.0).and_then(|item| item.post.as_mut());
        if let Some(body) = operation.and_then(|operation| operation.request_body.as_mut()) {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// The local runner (`scripts/run`): every route, streamed replies included.
fn local_runner() -> Server {
    ServerBuilder::new()
        .url(crate::infra::config::LOCAL_RUNNER_URL)
        .description(Some("The local runner (`scripts/run`): every route, streamed replies included."))
        .build()
}

/// A deployed stack's HTTP API (its output `ApiUrl`): every route, replies never streamed.
fn http_api() -> Server {
    ServerBuilder::new()
        .url("https://{apiId}.execute-api.{region}.amazonaws.com")
        .description(Some("A deployed stack's HTTP API: its output `ApiUrl`. Every route; replies are never streamed here (API Gateway buffers whole responses)."))
        .parameter("apiId", variable("abcde12345", "The HTTP API's id, as in the stack output `ApiUrl`."))
        .parameter("region", variable("us-east-1", "The stack's AWS region."))
        .build()
}

/// A deployed stack's function URL for streamed replies (its output `StreamUrl`).
fn stream_url() -> Server {
    ServerBuilder::new()
        .url("https://{urlId}.lambda-url.{region}.on.aws")
        .description(Some("A deployed stack's function URL for streamed replies: its output `StreamUrl`. Only posting and retrying a message, answered as JSON or, with `Accept: text/event-stream`, streamed."))
        .parameter("urlId", variable("abcdefghijklmnopqrstuvwxyz012345", "The function URL's id, as in the stack output `StreamUrl`."))
        .parameter("region", variable("us-east-1", "The stack's AWS region."))
        .build()
}

/// The servers of the operations whose replies can stream: the local runner, then the function
/// URL that streams them when deployed, then the HTTP API (JSON only).
pub fn streaming_servers() -> Vec<Server> {
    vec![local_runner(), stream_url(), http_api()]
}

fn variable(default: &str, description: &str) -> utoipa::openapi::server::ServerVariable {
    ServerVariableBuilder::new().default_value(default).description(Some(description)).build()
}

/// `servers`: the local runner, then a deployed stack's HTTP API.
struct Servers;

impl Modify for Servers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.servers = Some(vec![local_runner(), http_api()]);
    }
}

/// `components.securitySchemes.bearerAuth`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("A user's access token (JWT from register, login or refresh). The conversation routes and `GET /api/models` also accept a guest token from `POST /api/auth/guest`."))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}
