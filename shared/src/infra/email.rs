//! E-mail: the messages primer sends (password-reset and address-verification links) and how
//! they leave.
//!
//! One port, [`EmailSender`], with two adapters: `SesSender` (Amazon SES, v2 API; the `ses`
//! feature) in the cloud and [`Outbox`] (a folder of `.eml` files) on a laptop and in tests.
//! Both get the same bytes: a [`Mail`] is rendered once into an RFC 5322 message with a
//! plain-text and an HTML part (lettre's builder does the MIME: encoded headers, transfer
//! encodings, the boundary), which SES sends as raw data and the outbox writes to a file a mail
//! client opens.
//!
//! The bodies come from the templates in `shared/templates/email/`. Their only variable parts
//! are the link, how long it works, the recipient's own address and the sender's name: never
//! text a user typed, since a name chosen at sign-up would otherwise let anyone put words of
//! their choosing into someone else's inbox. Values are HTML-escaped in the HTML part.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "ses")]
use aws_sdk_sesv2::{
    config::Region,
    config::timeout::TimeoutConfig,
    primitives::Blob,
    types::{Destination, EmailContent, RawMessage},
};
#[cfg(feature = "mail")]
use lettre::message::header::{HeaderName, HeaderValue};
#[cfg(feature = "mail")]
use lettre::message::{Mailbox, MultiPart};

use crate::error::Error;
use crate::infra::config::EmailConfig;
#[cfg(feature = "ses")]
use crate::infra::config::SesConfig;
use crate::infra::deadline;

/// What every sender method returns: a boxed future, so the trait stays object-safe.
pub type EmailFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EmailError>> + Send + 'a>>;

/// Hands e-mail over for delivery.
pub trait EmailSender: Send + Sync {
    /// Delivers `mail`, or hands it to a service that will; `Ok` means it was accepted.
    fn send<'a>(&'a self, mail: &'a Mail) -> EmailFuture<'a, ()>;
}

/// Sending failed: the service is unreachable or refused the message.
#[derive(Debug, thiserror::Error)]
#[error("e-mail: {operation} failed")]
pub struct EmailError {
    operation: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl EmailError {
    /// `operation` failed because of `source`.
    pub fn new(operation: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { operation, source: source.into() }
    }
}

impl From<EmailError> for Error {
    /// The caller may retry later: a 503, never a 500.
    fn from(e: EmailError) -> Self {
        Error::Unavailable(Box::new(e))
    }
}

/// What an e-mail is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// A link that sets a new password.
    PasswordReset,
    /// A link that confirms the account's address.
    VerifyEmail,
}

impl MailKind {
    /// The name used in file names and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password-reset",
            Self::VerifyEmail => "verify-email",
        }
    }
}

/// One e-mail, rendered. Its `Debug` shows neither the link nor the bodies, which carry a
/// credential.
#[derive(Clone)]
pub struct Mail {
    /// What it is for.
    pub kind: MailKind,
    /// The sender's address.
    pub from_address: String,
    /// The sender's display name.
    pub from_name: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// The link the reader is asked to open.
    pub link: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

const RESET_TEXT: &str = include_str!("../../templates/email/password-reset.txt");
const RESET_HTML: &str = include_str!("../../templates/email/password-reset.html");
const VERIFY_TEXT: &str = include_str!("../../templates/email/verify-email.txt");
const VERIFY_HTML: &str = include_str!("../../templates/email/verify-email.html");

impl Mail {
    /// The e-mail that carries a password-reset `token` to `to`.
    pub fn password_reset(config: &EmailConfig, to: &str, token: &str) -> Self {
        let link = format!("{}/reset-password?token={token}", config.frontend_url);
        Self::render(config, MailKind::PasswordReset, to, link, config.reset_ttl)
    }

    /// The e-mail that carries an address-verification `token` to `to`.
    pub fn verify_email(config: &EmailConfig, to: &str, token: &str) -> Self {
        let link = format!("{}/verify-email?token={token}", config.frontend_url);
        Self::render(config, MailKind::VerifyEmail, to, link, config.verify_ttl)
    }

    fn render(config: &EmailConfig, kind: MailKind, to: &str, link: String, valid_for: Duration) -> Self {
        let (subject, text, html) = match kind {
            MailKind::PasswordReset => ("Reset your password", RESET_TEXT, RESET_HTML),
            MailKind::VerifyEmail => ("Confirm your e-mail address", VERIFY_TEXT, VERIFY_HTML),
        };
        let valid_for = spell_duration(valid_for);
        let values = [
            ("link", link.as_str()),
            ("email", to),
            ("valid_for", valid_for.as_str()),
            ("sender", config.from_name.as_str()),
        ];
        Self {
            kind,
            from_address: config.from_address.clone(),
            from_name: config.from_name.clone(),
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: fill(text, &values, |v| v.to_owned()),
            html: fill(html, &values, escape_html),
            link,
        }
    }

    /// The message as RFC 5322 bytes (CRLF line ends), multipart/alternative with the text
    /// part first, as a mail client or SES takes it. The `mail` feature.
    #[cfg(feature = "mail")]
    pub fn to_rfc5322(&self) -> Result<Vec<u8>, EmailError> {
        let address = |a: &str| a.parse().map_err(|e| EmailError::new("address", e));
        let from = Mailbox::new(Some(self.from_name.clone()), address(&self.from_address)?);
        let domain = self.from_address.rsplit_once('@').map_or("localhost", |(_, d)| d);
        let mut message = lettre::Message::builder()
            .from(from)
            .to(Mailbox::new(None, address(&self.to)?))
            .subject(&self.subject)
            .message_id(Some(format!("<{}@{domain}>", uuid::Uuid::new_v4().simple())))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(self.text.clone(), self.html.clone()))
            .map_err(|e| EmailError::new("build", e))?;
        // RFC 3834: a machine wrote it, so auto-responders stay quiet.
        message.headers_mut().insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
        Ok(message.formatted())
    }

    /// A function built without the `mail` feature sends no e-mail (only auth's flows do, and
    /// it has the feature): it links no MIME builder, and rendering is an error.
    #[cfg(not(feature = "mail"))]
    pub fn to_rfc5322(&self) -> Result<Vec<u8>, EmailError> {
        Err(EmailError::new("render", "built without the `mail` feature: this function sends no e-mail"))
    }
}

/// `template` with each `{{key}}` replaced by its value, passed through `encode`.
fn fill(template: &str, values: &[(&str, &str)], encode: impl Fn(&str) -> String) -> String {
    values.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), &encode(value))
    })
}

fn escape_html(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// "1 hour", "24 hours", "30 minutes": how long a link works, for a person.
fn spell_duration(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    let (n, unit) = if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

/// A folder of RFC 5322 files, one per e-mail (`<time>-<kind>-<id>.eml`): the embedded default,
/// so that a laptop works offline. Each file's path is logged, and in development its link.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    log_links: bool,
}

impl Outbox {
    /// An outbox in `dir` (created on the first mail); `log_links` puts each link in the log.
    pub fn new(dir: impl Into<PathBuf>, log_links: bool) -> Self {
        Self { dir: dir.into(), log_links }
    }

    /// The folder mail goes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl EmailSender for Outbox {
    fn send<'a>(&'a self, mail: &'a Mail) -> EmailFuture<'a, ()> {
        Box::pin(deadline::exempt(async move {
            let bytes = mail.to_rfc5322()?;
            let fail = |e: std::io::Error| EmailError::new("outbox write", e);
            tokio::fs::create_dir_all(&self.dir).await.map_err(fail)?;
            let id = uuid::Uuid::new_v4().simple().to_string();
            let name = format!(
                "{}-{}-{}.eml",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
                mail.kind.as_str(),
                &id[..12]
            );
            let path = self.dir.join(name);
            // Written aside and renamed into place, so a reader never sees half a message.
            let partial = self.dir.join(format!(".{id}.partial"));
            tokio::fs::write(&partial, bytes).await.map_err(fail)?;
            if let Err(e) = tokio::fs::rename(&partial, &path).await {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(fail(e));
            }
            if self.log_links {
                tracing::info!(kind = mail.kind.as_str(), path = %path.display(), link = %mail.link,
                    "e-mail written to the outbox (development: follow the link)");
            } else {
                tracing::warn!(kind = mail.kind.as_str(), path = %path.display(),
                    "e-mail written to the outbox, not delivered: set EMAIL_DELIVERY=ses to send it");
            }
            Ok(())
        }))
    }
}

/// Amazon SES through its v2 API: the message goes as raw data, so it is byte for byte what
/// the outbox would write. The `ses` feature.
#[cfg(feature = "ses")]
#[derive(Debug, Clone)]
pub struct SesSender {
    client: aws_sdk_sesv2::Client,
    configuration_set: Option<String>,
}

#[cfg(feature = "ses")]
impl SesSender {
    /// A sender from the SDK's shared configuration (region, credentials, its HTTPS client
    /// when it has one) and `ses`'s configuration set, region and endpoint.
    pub fn new(sdk: &aws_config::SdkConfig, ses: &SesConfig) -> Self {
        let mut builder = aws_sdk_sesv2::config::Builder::from(sdk)
            // A service that hangs must not hold the request (and the Lambda) with it.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(region) = &ses.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &ses.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if sdk.http_client().is_none() {
            builder = builder.http_client(crate::infra::aws_https::client());
        }
        Self {
            client: aws_sdk_sesv2::Client::from_conf(builder.build()),
            configuration_set: ses.configuration_set.clone(),
        }
    }

    /// The SDK client, for what the port does not cover (e.g. creating an identity in a test).
    pub fn client(&self) -> &aws_sdk_sesv2::Client {
        &self.client
    }
}

#[cfg(feature = "ses")]
impl EmailSender for SesSender {
    fn send<'a>(&'a self, mail: &'a Mail) -> EmailFuture<'a, ()> {
        Box::pin(deadline::exempt(async move {
            let raw = RawMessage::builder()
                .data(Blob::new(mail.to_rfc5322()?))
                .build()
                .map_err(|e| EmailError::new("build", e))?;
            let sent = self
                .client
                .send_email()
                .from_email_address(&mail.from_address)
                .destination(Destination::builder().to_addresses(&mail.to).build())
                .content(EmailContent::builder().raw(raw).build())
                .set_configuration_set_name(self.configuration_set.clone())
                .send()
                .await
                .map_err(|e| {
                    EmailError::new("SES SendEmail", aws_sdk_sesv2::error::DisplayErrorContext(e).to_string())
                })?;
            tracing::info!(
                kind = mail.kind.as_str(),
                message_id = sent.message_id().unwrap_or_default(),
                "e-mail handed to SES"
            );
            Ok(())
        }))
    }
}

/// Whether the mail sender accepts `email` as a recipient: lettre's `Address` (RFC 5321's
/// dot-atom or quoted local part, a domain of valid labels, IDNA for the others, or an address
/// literal).
#[cfg(feature = "mail")]
pub fn can_send_to(email: &str) -> bool {
    email.parse::<lettre::Address>().is_ok()
}

/// A function built without `mail` sends no e-mail, and creates no account (only auth does,
/// and it is built with `mail`).
#[cfg(not(feature = "mail"))]
pub fn can_send_to(_: &str) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EmailConfig {
        EmailConfig::outbox("/unused")
    }

    #[test]
    fn every_placeholder_of_every_template_is_filled() {
        for mail in [
            Mail::password_reset(&config(), "ada@example.com", "tok.en"),
            Mail::verify_email(&config(), "ada@example.com", "tok.en"),
        ] {
            for body in [&mail.text, &mail.html] {
                assert!(!body.contains("{{"), "{:?}: {body}", mail.kind);
                assert!(body.contains("ada@example.com"), "{:?}", mail.kind);
                assert!(body.contains(&mail.link), "{:?}", mail.kind);
            }
        }
        let reset = Mail::password_reset(&config(), "ada@example.com", "tok.en");
        assert_eq!(reset.link, "http://127.0.0.1:8790/reset-password?token=tok.en");
        assert!(reset.text.contains("within 1 hour"), "{}", reset.text);
        let verify = Mail::verify_email(&config(), "ada@example.com", "tok.en");
        assert_eq!(verify.link, "http://127.0.0.1:8790/verify-email?token=tok.en");
        assert!(verify.text.contains("within 24 hours"), "{}", verify.text);
    }

    #[test]
    fn values_cannot_inject_html() {
        let mut config = config();
        config.from_name = "<script>alert(1)</script> & co".into();
        let mail = Mail::verify_email(&config, "ada@example.com", "x");
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(mail.text.contains("<script>"), "the text part is text");
    }

    #[test]
    fn a_duration_is_spelled_for_people() {
        assert_eq!(spell_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(spell_duration(Duration::from_secs(86400)), "24 hours");
        assert_eq!(spell_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(spell_duration(Duration::from_secs(61)), "61 seconds");
    }

    /// Sends one mail through an outbox in a new folder; returns the folder's `.eml` files and
    /// what was logged.
    async fn through_outbox(log_links: bool, mail: &Mail) -> (Vec<PathBuf>, String) {
        let dir = std::env::temp_dir().join(format!("primer-outbox-test-{}", uuid::Uuid::new_v4()));
        let captured = crate::infra::telemetry::CapturedLog::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        Outbox::new(&dir, log_links).send(mail).await.unwrap();
        let files = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        let log = captured.text();
        let _ = std::fs::remove_dir_all(&dir);
        (files, log)
    }

    #[tokio::test]
    async fn the_outbox_writes_one_eml_and_logs_its_path_and_in_development_the_link() {
        let mail = Mail::password_reset(&config(), "ada@example.com", "sel.secret-part");
        let (files, log) = through_outbox(true, &mail).await;
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".eml") && name.contains("-password-reset-"), "{name}");
        assert!(log.contains(&files[0].display().to_string()), "{log}");
        assert!(log.contains("http://127.0.0.1:8790/reset-password?token=sel.secret-part"), "{log}");

        // On Lambda the path is logged, the link (a credential) is not.
        let (files, log) = through_outbox(false, &mail).await;
        assert!(log.contains(&files[0].display().to_string()), "{log}");
        assert!(!log.contains("secret-part"), "{log}");
    }

    #[test]
    fn the_message_is_multipart_rfc_5322() {
        let mut config = config();
        config.from_name = "Primer Bücher".into();
        let mail = Mail::password_reset(&config, "ada@example.com", "abc.def");
        let text = String::from_utf8(mail.to_rfc5322().unwrap()).unwrap();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        for header in [
            "From: ",
            "To: ada@example.com",
            "Subject: Reset your password",
            "Date: ",
            "Message-ID: <",
            "MIME-Version: 1.0",
            "Auto-Submitted: auto-generated",
        ] {
            assert!(head.contains(header), "{header:?} missing from\n{head}");
        }
        // A non-ASCII display name is encoded (RFC 2047), never sent raw.
        assert!(head.is_ascii(), "{head}");
        assert!(head.contains("@primer.localhost>"), "{head}");
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("text/plain") && text.contains("text/html"));
        assert!(text.lines().all(|line| line.len() <= 998), "RFC 5322's line limit");
        assert!(format!("{mail:?}").find("abc.def").is_none(), "Debug shows no token");
    }
}
