//! Users: their domain values and their rows in Better-Auth's `user` and `account` tables.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;
use uuid::Uuid;

use crate::domain::ids::UserId;
use crate::error::{Error, FieldErrors, Result, ResultExt};

/// An email address for a new account: NFKC-normalised, trimmed and lower-cased, without
/// invisible or direction-changing characters and without mixed scripts in one label, so that
/// no look-alike of an existing address can become a second account. Once one exists it is
/// valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address a person gives for a new account (registration, or a new address):
    /// one `@`, a dotted domain, no spaces, no look-alikes, and (in a function that sends
    /// e-mail, built with the `mail` feature) an address the mail sender accepts, by lettre's
    /// own parsing, which the outbox and SES both go through: mail can be sent to it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = normalise(raw);
        check_shape(&email)?;
        if email.chars().any(is_invisible) {
            return Err("must not contain invisible or text-direction characters".into());
        }
        let (local, domain) = email.split_once('@').unwrap_or_default();
        if !std::iter::once(local).chain(domain.split('.')).all(|label| label.is_single_script()) {
            return Err("must not mix scripts (such as Latin and Cyrillic) in one part".into());
        }
        if !crate::infra::email::can_send_to(&email) {
            return Err("is not an address e-mail can be sent to".into());
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An address someone signs in with. Only its shape is checked, so that accounts stored
/// before addresses were normalised keep working: it is looked up in its normalised form and
/// as typed (trimmed and lower-cased, as such accounts were stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInEmail {
    normalised: String,
    as_typed: String,
}

impl SignInEmail {
    /// Parses an address given to sign in.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let normalised = normalise(raw);
        check_shape(&normalised)?;
        Ok(Self { normalised, as_typed: raw.trim().to_lowercase() })
    }

    /// The normalised address, as a new account would store it.
    pub fn as_str(&self) -> &str {
        &self.normalised
    }
}

/// NFKC (full-width letters become ASCII ones, ligatures their letters), trimmed, lower-cased.
fn normalise(raw: &str) -> String {
    let folded: String = raw.nfkc().collect();
    folded.trim().to_lowercase().nfkc().collect()
}

fn check_shape(email: &str) -> Result<(), String> {
    let invalid = || Err("is not a valid email address".to_owned());
    if email.is_empty() {
        return Err("is required".into());
    }
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid();
    }
    let Some((local, domain)) = email.split_once('@') else { return invalid() };
    let domain_ok = domain.contains('.')
        && !domain.contains('@')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return invalid();
    }
    Ok(())
}

/// Characters that show nothing or turn the text's direction: zero-width spaces and joiners,
/// the byte-order mark, soft hyphens, and the bidirectional marks, embeddings, overrides and
/// isolates.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{E0000}'..='\u{E0FFF}')
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// Parses a display name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        match name.chars().count() {
            0 => Err("is required".into()),
            n if n > 100 => Err("must be at most 100 characters".into()),
            _ if name.chars().any(char::is_control) => Err("must not contain control characters".into()),
            _ => Ok(Self(name.to_owned())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user as the API shows it: never a hash.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(examples(crate::schema::examples::user))]
pub struct User {
    /// Id (a UUID for users created here; Better-Auth's own ids are 32 characters).
    #[schema(value_type = String)]
    pub id: UserId,
    /// Normalised email.
    #[schema(format = Email)]
    pub email: String,
    /// Display name.
    pub name: String,
    /// Avatar URL.
    #[schema(required)]
    pub image: Option<String>,
    /// Whether the email was verified.
    pub email_verified: bool,
    /// False when the account is disabled.
    pub is_active: bool,
    /// UI preferences (theme, default model, ...).
    #[schema(value_type = Object)]
    pub preferences: serde_json::Value,
    /// Last successful login.
    #[schema(required)]
    pub last_login: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// [`sqlx::query_as!`] of a [`User`]: the statement is `$head`, the `user` columns of `u` as
/// [`User`] reads them, then `$tail` (string literals, so the macro sees one statement).
macro_rules! query_user {
    ($head:tt, $tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(User, $head + r#"u.id AS "id: UserId", u.email, u.name, u.image, u."emailVerified" AS email_verified, u.is_active, u.preferences, u.last_login, u."createdAt" AS created_at, u."updatedAt" AS updated_at"# + $tail $(, $arg)*)
    };
}

/// [`sqlx::query!`] of a row with the user's columns as [`query_user!`] reads them and others
/// (`$head` names those before, `$tail` those after); [`user_of!`] makes the [`User`].
macro_rules! query_with_user {
    ($head:tt, $tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query!($head + r#"u.id AS "id: UserId", u.email, u.name, u.image, u."emailVerified" AS email_verified, u.is_active, u.preferences, u.last_login, u."createdAt" AS created_at, u."updatedAt" AS updated_at"# + $tail $(, $arg)*)
    };
}

/// The [`User`] of a row [`query_with_user!`] read.
macro_rules! user_of {
    ($row:ident) => {
        User {
            id: $row.id,
            email: $row.email,
            name: $row.name,
            image: $row.image,
            email_verified: $row.email_verified,
            is_active: $row.is_active,
            preferences: $row.preferences,
            last_login: $row.last_login,
            created_at: $row.created_at,
            updated_at: $row.updated_at,
        }
    };
}

// Provider accounts (GitHub, Google, OpenID Connect): the `account` rows of signing in without
// a password. After the macros above, which it uses.
#[cfg(feature = "oauth")]
pub mod linked;

/// Creates a user with a password account, in the caller's transaction. A taken email, in
/// any case, is a 409.
pub async fn create_with_password(
    conn: &mut PgConnection,
    email: &Email,
    name: &UserName,
    password_hash: &str,
) -> Result<User> {
    let id = Uuid::new_v4().to_string();
    let user: User = query_user!(
        r#"INSERT INTO "user" AS u (id, name, email, "emailVerified", "createdAt", "updatedAt")
           VALUES ($1, $2, $3, false, now(), now()) RETURNING "#,
        "",
        id,
        name.as_str(),
        email.as_str(),
    )
    .fetch_one(&mut *conn)
    .await
    .on_constraint("user_email_key", email_taken)
    .on_constraint("user_email_lower_key", email_taken)?;
    // Better-Auth's credential account: accountId is the user id.
    sqlx::query!(
        r#"INSERT INTO "account" (id, "accountId", "providerId", "userId", password, "createdAt", "updatedAt")
           VALUES ($1, $2, 'credential', $2, $3, now(), now())"#,
        Uuid::new_v4().to_string(),
        id,
        password_hash,
    )
    .execute(&mut *conn)
    .await?;
    Ok(user)
}

pub(crate) fn email_taken(_: &sqlx::Error) -> Error {
    Error::Conflict {
        code: crate::error::Code::EmailTaken,
        message: "an account with this email already exists".into(),
    }
}

/// A user and their stored password hash, for a login.
#[derive(Debug)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// The credential account's hash; `None` for a user who only signs in through SSO.
    pub password_hash: Option<String>,
}

/// The user with this email and their password hash: the account stored under the
/// normalised address, or one stored before normalisation under the address as typed (which
/// wins when both exist, as the closer match).
pub async fn credentials_by_email(
    db: impl PgExecutor<'_>,
    email: &SignInEmail,
) -> Result<Option<Credentials>> {
    let row = query_with_user!(
        "SELECT ",
        r#", a.password AS "password_hash?" FROM "user" u
           LEFT JOIN "account" a ON a."userId" = u.id AND a."providerId" = 'credential'
           WHERE lower(u.email) IN ($1, $2)
           ORDER BY lower(u.email) = $2 DESC LIMIT 1"#,
        email.normalised,
        email.as_typed,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| Credentials { password_hash: row.password_hash, user: user_of!(row) }))
}

/// The user with this id and their password hash.
pub async fn credentials_by_id(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Option<Credentials>> {
    let row = query_with_user!(
        "SELECT ",
        r#", a.password AS "password_hash?" FROM "user" u
           LEFT JOIN "account" a ON a."userId" = u.id AND a."providerId" = 'credential'
           WHERE u.id = $1"#,
        user_id.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| Credentials { password_hash: row.password_hash, user: user_of!(row) }))
}

/// The user with this id.
pub async fn by_id(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Option<User>> {
    Ok(query_user!("SELECT ", r#" FROM "user" u WHERE u.id = $1"#, user_id.as_str())
        .fetch_optional(db)
        .await?)
}

/// The user of session `session_id` when that session is live and belongs to `user_id`: the
/// one query an authenticated request makes, liveness check and caller in one round trip.
pub async fn by_live_session(
    db: impl PgExecutor<'_>,
    session_id: &str,
    user_id: &UserId,
) -> Result<Option<User>> {
    Ok(query_user!(
        "SELECT ",
        r#" FROM "session" s JOIN "user" u ON u.id = s."userId"
           WHERE s.id = $1 AND s."userId" = $2 AND s."expiresAt" > now()"#,
        session_id,
        user_id.as_str(),
    )
    .fetch_optional(db)
    .await?)
}

/// A live session's id and its user.
#[derive(Debug)]
pub struct SessionUser {
    /// The session row's id.
    pub session_id: String,
    /// Its user.
    pub user: User,
}

/// The live session whose stored token is `token` (a Better-Auth session) and its user.
pub async fn by_session_token(db: impl PgExecutor<'_>, token: &str) -> Result<Option<SessionUser>> {
    let row = query_with_user!(
        "SELECT s.id AS session_id, ",
        r#" FROM "session" s JOIN "user" u ON u.id = s."userId"
           WHERE s.token = $1 AND s."expiresAt" > now()"#,
        token,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| SessionUser { session_id: row.session_id, user: user_of!(row) }))
}

/// Replaces the password hash of the user's credential account.
pub async fn set_password_hash(db: impl PgExecutor<'_>, user_id: &UserId, hash: &str) -> Result<()> {
    sqlx::query!(
        r#"UPDATE "account" SET password = $2, "updatedAt" = now()
           WHERE "userId" = $1 AND "providerId" = 'credential'"#,
        user_id.as_str(),
        hash,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Sets the user's password: replaces the credential account's hash, or creates the credential
/// account of a user who had none (one who signed in through another provider), as
/// Better-Auth's own reset does.
pub async fn set_or_create_password(db: impl PgExecutor<'_>, user_id: &UserId, hash: &str) -> Result<()> {
    sqlx::query!(
        r#"INSERT INTO "account" (id, "accountId", "providerId", "userId", password, "createdAt", "updatedAt")
           VALUES ($3, $1, 'credential', $1, $2, now(), now())
           ON CONFLICT ("userId") WHERE "providerId" = 'credential'
           DO UPDATE SET password = EXCLUDED.password, "updatedAt" = now()"#,
        user_id.as_str(),
        hash,
        Uuid::new_v4().to_string(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records that the user's address reached its owner.
pub async fn mark_email_verified(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<()> {
    sqlx::query!(
        r#"UPDATE "user" SET "emailVerified" = true, "updatedAt" = now() WHERE id = $1 AND NOT "emailVerified""#,
        user_id.as_str(),
    )
    .execute(db)
        .await?;
    Ok(())
}

/// Stamps a successful login and returns the user as it now is.
pub async fn record_login(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<User> {
    Ok(query_user!(
        r#"UPDATE "user" u SET last_login = now() WHERE u.id = $1 RETURNING "#,
        "",
        user_id.as_str()
    )
    .fetch_one(db)
    .await?)
}

/// A change to the user's own details; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    /// New display name.
    pub name: Option<UserName>,
    /// New avatar URL, or `Some(None)` to remove it.
    pub image: Option<Option<String>>,
    /// Preferences to merge in (top-level keys replace, others stay).
    pub preferences: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The longest avatar URL.
const MAX_IMAGE_URL: usize = 2048;
/// The most preferences, as JSON.
const MAX_PREFERENCES_BYTES: usize = 8 * 1024;

impl UserChanges {
    /// Checks a change as a client sent it, every field's problem at once (422): a name that
    /// is not blank, an http(s) image URL of at most 2048 characters (`Some(None)` removes it), and
    /// preferences that are a JSON object of at most 8 KiB without NUL characters.
    pub fn parse(
        name: Option<String>,
        image: Option<Option<String>>,
        preferences: Option<serde_json::Value>,
    ) -> Result<Self> {
        let mut errors = FieldErrors::new();
        let name = name.and_then(|n| errors.check("name", UserName::parse(&n)));
        let image = image.map(|image| image.and_then(|url| errors.check("image", Self::image(&url))));
        let preferences = preferences.and_then(|p| errors.check("preferences", Self::preferences(p)));
        errors.finish()?;
        Ok(Self { name, image, preferences })
    }

    /// At most [`MAX_IMAGE_URL`] characters as sent (the contract's `maxLength`), then trimmed.
    fn image(raw: &str) -> Result<String, String> {
        let url = raw.trim();
        let ok = raw.chars().count() <= MAX_IMAGE_URL
            && (url.starts_with("https://") || url.starts_with("http://"))
            && !url.contains(char::is_control);
        ok.then(|| url.to_owned())
            .ok_or_else(|| format!("must be an http(s) URL of at most {MAX_IMAGE_URL} characters"))
    }

    fn preferences(value: serde_json::Value) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let serde_json::Value::Object(map) = value else { return Err("must be an object".into()) };
        let json = serde_json::to_string(&map).map_err(|e| e.to_string())?;
        // jsonb cannot hold NUL characters (serde_json writes them as \u0000).
        if json.contains("\\u0000") {
            return Err("must not contain NUL characters".into());
        }
        if json.len() > MAX_PREFERENCES_BYTES {
            return Err(format!("must be at most {MAX_PREFERENCES_BYTES} bytes of JSON"));
        }
        Ok(map)
    }
}

/// Applies `changes` and returns the user as it now is.
pub async fn update(db: impl PgExecutor<'_>, user_id: &UserId, changes: UserChanges) -> Result<User> {
    Ok(query_user!(
        r#"UPDATE "user" u SET
             name = coalesce($2, u.name),
             image = CASE WHEN $3 THEN $4 ELSE u.image END,
             preferences = u.preferences || coalesce($5, '{}'::jsonb),
             "updatedAt" = now()
           WHERE u.id = $1 RETURNING "#,
        "",
        user_id.as_str(),
        changes.name.as_ref().map(UserName::as_str),
        changes.image.is_some(),
        changes.image.flatten(),
        changes.preferences.map(serde_json::Value::Object),
    )
    .fetch_one(db)
    .await?)
}

/// Deletes the user; every row of theirs that has a foreign key to them goes with it
/// (cascades). Rows that name the user by text go with [`crate::domain::auth::delete_account`].
pub async fn delete(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<bool> {
    let done = sqlx::query!(r#"DELETE FROM "user" WHERE id = $1"#, user_id.as_str()).execute(db).await?;
    Ok(done.rows_affected() > 0)
}

/// Records a password login, inside the caller's transaction, if the user's password hash is
/// still `verified` (the one the login just checked), replacing it with `upgrade` when given;
/// `None` when the password changed meanwhile, and then the login must fail. One statement. The
/// account row stays locked until the transaction ends, so a password change that commits later
/// revokes the session this transaction opens.
pub async fn record_password_login(
    conn: &mut PgConnection,
    user_id: &UserId,
    verified: &str,
    upgrade: Option<&str>,
) -> Result<Option<User>> {
    Ok(query_user!(
        r#"WITH still AS (
             UPDATE "account" SET password = coalesce($3, password),
                    "updatedAt" = CASE WHEN $3 IS NULL THEN "updatedAt" ELSE now() END
             WHERE "userId" = $1 AND "providerId" = 'credential' AND password = $2
             RETURNING 1)
           UPDATE "user" u SET last_login = now() WHERE u.id = $1 AND EXISTS (SELECT 1 FROM still)
           RETURNING "#,
        "",
        user_id.as_str(),
        verified,
        upgrade,
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Whether user `id`'s e-mail address is verified; `None` when there is no such user.
pub async fn email_verified(
    db: impl PgExecutor<'_>,
    id: &crate::domain::ids::UserId,
) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT "emailVerified" FROM "user" WHERE id = $1"#,
        id as &crate::domain::ids::UserId
    )
    .fetch_optional(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
    }

    #[test]
    fn look_alikes_normalise_to_the_original_or_are_refused() {
        // Full-width letters and an ideographic space are NFKC-folded.
        assert_eq!(Email::parse("\u{3000}ＡＤＡ@example.com").unwrap().as_str(), "ada@example.com");
        for (raw, why) in [
            ("\u{0430}da@example.com", "mix scripts"), // Cyrillic а next to Latin
            ("ada@ex\u{0430}mple.com", "mix scripts"), // in the domain
            ("a\u{200B}da@example.com", "invisible"),  // zero-width space
            ("ada\u{200D}@example.com", "invisible"),  // zero-width joiner
            ("ada\u{202E}moc@example.com", "invisible"), // right-to-left override
            ("ada\u{2066}@example.com", "invisible"),  // left-to-right isolate
            ("ad\u{00AD}a@example.com", "invisible"),  // soft hyphen
        ] {
            let err = Email::parse(raw).unwrap_err();
            assert!(err.contains(why), "{raw:?}: {err}");
        }
        // One script per label is fine, whatever the script.
        assert!(Email::parse("\u{0430}\u{0434}\u{0430}@example.com").is_ok(), "all Cyrillic");
        assert!(Email::parse("ada@例え.jp").is_ok());
    }

    #[test]
    fn sign_in_addresses_keep_their_typed_form_for_older_rows() {
        let email = SignInEmail::parse(" ＡＤＡ@Example.com ").unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
        assert_eq!(email.as_typed, "ａｄａ@example.com");
        // Only the shape is checked: an account stored before the rules can still sign in.
        assert!(SignInEmail::parse("\u{0430}da@example.com").is_ok());
        assert!(SignInEmail::parse("not-an-email").is_err());
    }

    #[test]
    fn bad_emails_are_refused() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@-x.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[cfg(feature = "mail")]
    #[test]
    fn addresses_mail_cannot_be_sent_to_are_refused() {
        for raw in [
            r#"new1@example.com.()'")(.,("#,
            "ada..lovelace@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "ada(comment)@example.com",
            "ada@example..com",
            "a\"b@example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
            assert!(raw.parse::<lettre::Address>().is_err(), "lettre takes {raw:?}");
        }
        assert_eq!(
            Email::parse(r#"new1@example.com.()'")(.,("#).unwrap_err(),
            "is not an address e-mail can be sent to",
            "a shape that passed the first checks"
        );
        for fine in ["ada+book@example.com", "o'brien@example.ie", "ada@例え.jp", "ada@sub.example.co.uk"] {
            assert!(Email::parse(fine).is_ok(), "{fine:?} was refused");
            assert!(fine.parse::<lettre::Address>().is_ok());
        }
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(UserName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"n".repeat(101)).is_err());
        assert!(UserName::parse("a\u{0}b").is_err());
    }
}
