//! The HTTP client of the calls to sign-in providers: hyper-util's client over rustls with ring
//! and Mozilla's root certificates compiled in (webpki-roots), the stack the AWS SDK's client
//! and the database's TLS link into the auth function already. reqwest, the workspace's other
//! client, would bring a second stack: the auth bootstrap was 333 KB larger with it.
//!
//! Every call has a connect time-out (3 s) and a total one (10 s, the answer included), reads
//! at most 1 MiB, and follows no redirect. The client is built on the first call, so a cold
//! start that signs nobody in with a provider pays nothing for it.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use axum::http::{HeaderName, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use url::Url;

/// Why a call to a provider has no answer to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// No answer in time, none at all, a server error or a 429: the provider is unavailable.
    Unavailable,
    /// An answer over the size limit, or a call that cannot be sent: the provider misbehaves.
    Misbehaved,
}

/// The status of a provider's answer, as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// 5xx.
    pub fn is_server_error(self) -> bool {
        (500..600).contains(&self.0)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The most of an answer that is read.
const MAX_ANSWER_BYTES: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One call's bound, connect included. A callback makes at most four calls (discovery, token,
/// keys, user or e-mails), so it ends within the function's 29 s even when each call runs out.
const CALL_TIMEOUT: Duration = Duration::from_secs(6);

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client, built on first use.
#[derive(Default)]
pub struct ProviderHttp {
    client: OnceLock<Option<HttpsClient>>,
}

/// One request to a provider, as it is built.
pub struct Call {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, String)>,
    body: Bytes,
}

impl Call {
    /// `GET url`, asking for JSON.
    pub fn get(url: &Url) -> Self {
        Self {
            method: Method::GET,
            url: url.clone(),
            headers: vec![(ACCEPT, "application/json".into())],
            body: Bytes::new(),
        }
    }

    /// `POST url` with a form (`application/x-www-form-urlencoded`), asking for JSON.
    pub fn post_form(url: &Url, form: String) -> Self {
        let headers = vec![
            (ACCEPT, "application/json".into()),
            (CONTENT_TYPE, "application/x-www-form-urlencoded".into()),
        ];
        Self { method: Method::POST, url: url.clone(), headers, body: Bytes::from(form) }
    }

    /// With `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.with(AUTHORIZATION, format!("Bearer {token}"))
    }

    /// With a header (replacing the `Accept` set at the start, when it is that); `name` in
    /// lower case.
    pub fn header(self, name: &'static str, value: impl Into<String>) -> Self {
        self.with(HeaderName::from_static(name), value)
    }

    fn with(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
}

impl ProviderHttp {
    fn client(&self) -> Option<&HttpsClient> {
        self.client
            .get_or_init(|| {
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls = HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(provider)
                    .inspect_err(|e| tracing::error!(error = %e, "no TLS for sign-in providers"))
                    .ok()?;
                let mut tcp = HttpConnector::new();
                tcp.enforce_http(false);
                tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
                // Plain http only reaches providers on loopback: the settings refuse it elsewhere.
                let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
                Some(
                    Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(20))
                        .build(connector),
                )
            })
            .as_ref()
    }

    /// Sends `call`: the answer's status and body. No answer in time, or none at all, is the
    /// provider being unavailable; an answer over the size limit is it misbehaving.
    pub async fn send(&self, call: Call) -> Result<(Status, Bytes), CallFailure> {
        let client = self.client().ok_or(CallFailure::Unavailable)?;
        let mut request =
            Request::builder().method(call.method).uri(call.url.as_str()).header(USER_AGENT, "primer");
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        // A value that is no header value (a token with a line break) names no provider call.
        let request = request.body(Full::new(call.body)).map_err(|_| CallFailure::Misbehaved)?;
        let exchange = async {
            let response = client.request(request).await.map_err(|e| {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "a sign-in provider did not answer");
                CallFailure::Unavailable
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CallFailure::Misbehaved
                } else {
                    CallFailure::Unavailable
                }
            })?;
            Ok((Status(status.as_u16()), body.to_bytes()))
        };
        // Bounded here, so it does not count against the request's work deadline.
        crate::infra::deadline::exempt(tokio::time::timeout(CALL_TIMEOUT, exchange)).await.unwrap_or_else(
            |_| {
                tracing::warn!("a sign-in provider did not answer in time");
                Err(CallFailure::Unavailable)
            },
        )
    }

    /// Sends `call` and reads its JSON answer: the status, and the body when it parses as `T`.
    /// A 5xx or a 429 is the provider being unavailable.
    pub async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<(Status, Option<T>), CallFailure> {
        let (status, body) = self.send(call).await?;
        if status.is_server_error() || status.0 == StatusCode::TOO_MANY_REQUESTS.as_u16() {
            tracing::warn!(%status, "a sign-in provider failed");
            return Err(CallFailure::Unavailable);
        }
        Ok((status, serde_json::from_slice(&body).ok()))
    }
}
