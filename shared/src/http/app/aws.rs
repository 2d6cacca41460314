//! The AWS clients of a cold start: the bucket store (the `s3` feature) and the SES sender (the
//! `ses` feature), built over one read of the SDK's configuration (region, credentials).
//!
//! A function built without the feature a client needs has none: a bucket or SES configured
//! for it is a deployment mistake, refused at cold start rather than ignored. A function with
//! neither feature links no AWS SDK at all.

use std::sync::Arc;

use crate::infra::blob::BlobStore;
use crate::infra::config::{Config, ConfigError, EmailDelivery, S3Config, SesConfig};
use crate::infra::email::EmailSender;

/// The clients the configuration asks for; `None` where it asks for none.
pub(super) struct Clients {
    /// The bucket, when `PRIMER_BUCKET` names one.
    pub blobs: Option<Arc<dyn BlobStore>>,
    /// SES, when `EMAIL_DELIVERY=ses`.
    pub mail: Option<Arc<dyn EmailSender>>,
}

impl Clients {
    /// The clients `config` asks for. The SDK's configuration is read only when it asks for one.
    pub async fn for_config(config: &Config) -> Result<Self, ConfigError> {
        let ses = match &config.email.delivery {
            EmailDelivery::Ses(ses) => Some(ses),
            EmailDelivery::Outbox { .. } => None,
        };
        if config.blob.s3.is_none() && ses.is_none() {
            return Ok(Self { blobs: None, mail: None });
        }
        let sdk = sdk_config().await;
        Ok(Self {
            blobs: config.blob.s3.as_ref().map(|s3| bucket_store(&sdk, s3)).transpose()?,
            mail: ses.map(|ses| ses_sender(&sdk, ses)).transpose()?,
        })
    }
}

/// The SDK's shared configuration.
#[cfg(any(feature = "s3", feature = "ses"))]
type SdkConfig = aws_config::SdkConfig;

/// Nothing: a function without AWS clients reads no SDK configuration.
#[cfg(not(any(feature = "s3", feature = "ses")))]
type SdkConfig = ();

/// The SDK's configuration from the environment (on Lambda: the region and the function's role).
#[cfg(any(feature = "s3", feature = "ses"))]
async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::infra::aws_https::client())
        .load()
        .await
}

#[cfg(not(any(feature = "s3", feature = "ses")))]
async fn sdk_config() -> SdkConfig {}

/// The bucket store of `s3`.
#[cfg(feature = "s3")]
fn bucket_store(sdk: &SdkConfig, s3: &S3Config) -> Result<Arc<dyn BlobStore>, ConfigError> {
    Ok(Arc::new(crate::infra::blob::S3Store::new(sdk, s3)))
}

#[cfg(not(feature = "s3"))]
fn bucket_store(_: &SdkConfig, _: &S3Config) -> Result<Arc<dyn BlobStore>, ConfigError> {
    Err(not_built("PRIMER_BUCKET", "s3", "stores no objects"))
}

/// The SES sender of `ses`.
#[cfg(feature = "ses")]
fn ses_sender(sdk: &SdkConfig, ses: &SesConfig) -> Result<Arc<dyn EmailSender>, ConfigError> {
    Ok(Arc::new(crate::infra::email::SesSender::new(sdk, ses)))
}

#[cfg(not(feature = "ses"))]
fn ses_sender(_: &SdkConfig, _: &SesConfig) -> Result<Arc<dyn EmailSender>, ConfigError> {
    Err(not_built("EMAIL_DELIVERY", "ses", "sends no e-mail through SES"))
}

#[cfg(not(all(feature = "s3", feature = "ses")))]
fn not_built(name: &'static str, feature: &str, so: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: format!("this function is built without the {feature} feature and {so}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "s3", feature = "ses"))]
    fn sdk() -> SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build()
    }

    #[cfg(not(any(feature = "s3", feature = "ses")))]
    fn sdk() -> SdkConfig {}

    /// Asserts that `built` is a client exactly when the feature is on, else the refusal of
    /// the variable `name`.
    fn built_with_its_feature<T>(built: Result<T, ConfigError>, feature_on: bool, name: &str) {
        match built {
            Ok(_) => assert!(feature_on, "{name}: a client without its feature"),
            Err(e) => {
                assert!(!feature_on, "{name}: refused with its feature on: {e}");
                assert!(e.to_string().starts_with(&format!("{name} is invalid")), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn a_bucket_is_served_only_with_the_s3_feature() {
        let built = bucket_store(&sdk(), &S3Config::new("primer-staging", None, false));
        built_with_its_feature(built, cfg!(feature = "s3"), "PRIMER_BUCKET");
    }

    #[tokio::test]
    async fn ses_is_used_only_with_the_ses_feature() {
        let built = ses_sender(&sdk(), &SesConfig::default());
        built_with_its_feature(built, cfg!(feature = "ses"), "EMAIL_DELIVERY");
    }
}
