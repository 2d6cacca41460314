//! The HTTPS client of the AWS SDK's clients (the `s3` and `ses` features): rustls with ring,
//! the crypto library the database's TLS links already. The SDK's default client would link
//! aws-lc-rs as a second one, a bigger bootstrap and a longer build for nothing.

/// A new HTTPS client (its own connection pool) for the SDK.
pub(crate) fn client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}
