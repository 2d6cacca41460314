//! Profiles in `user_profiles`: reading one, and creating, replacing or merge-patching it under
//! a row lock so that concurrent writes and the onboarding rule cannot race.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::input::{HardwareContextInput, ProfileInput, SoftwareContextInput};
use super::{CatalogValue, Profile, ProfileHash};
use crate::domain::ids::UserId;
use crate::error::{Error, ErrorChain, Result, ResultExt};

/// A user's stored profile, as `GET /api/profile` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Profile, examples(super::examples::stored_example))]
pub struct UserProfile {
    /// The background itself.
    #[serde(flatten)]
    pub profile: Profile,
    /// True once `python_proficiency` and `developer_role` are both set; they are then immutable.
    pub is_onboarded: bool,
    /// SHA-256 of the canonical profile: software_context, hardware_context, python_proficiency, developer_role, robotics_experience and learning_goals, with arrays sorted and deduplicated. Not the timestamps, nor is_onboarded (it follows from the two answers).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub profile_hash: ProfileHash,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (a write that changes nothing keeps it).
    pub updated_at: DateTime<Utc>,
}

/// How a write changes the profile.
#[derive(Debug)]
pub enum Change {
    /// `PUT`: the whole profile, already parsed.
    Replace(Box<Profile>),
    /// `PATCH`: an RFC 7396 merge patch, applied to the stored profile (or to `{}` when there
    /// is none yet) and then parsed like a `PUT`.
    MergePatch(Value),
}

/// What a write did.
#[derive(Debug)]
pub enum Saved {
    /// There was no profile; this one is new.
    Created(UserProfile),
    /// The profile was replaced (or already was exactly this).
    Replaced(UserProfile),
}

/// [`sqlx::query_as!`] of a [`StoredProfile`]: the statement is `$head`, the columns it reads
/// (with their types), then `$tail`.
macro_rules! query_stored {
    ($head:tt, $tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            StoredProfile,
            $head
                + r#"software_context AS "software_context: Json<SoftwareContextInput>",
                     hardware_context AS "hardware_context: Json<HardwareContextInput>",
                     python_proficiency, developer_role, robotics_experience,
                     learning_goals AS "learning_goals: Json<Vec<String>>",
                     is_onboarded, profile_hash AS "profile_hash: ProfileHash", created_at, updated_at"#
                + $tail
            $(, $arg)*
        )
    };
}

/// A row as stored; it becomes a [`UserProfile`] through the same parser as a request.
#[derive(sqlx::FromRow)]
pub struct StoredProfile {
    pub(crate) software_context: Json<SoftwareContextInput>,
    pub(crate) hardware_context: Json<HardwareContextInput>,
    pub(crate) python_proficiency: Option<String>,
    pub(crate) developer_role: Option<String>,
    pub(crate) robotics_experience: Option<String>,
    pub(crate) learning_goals: Json<Vec<String>>,
    pub(crate) is_onboarded: bool,
    pub(crate) profile_hash: ProfileHash,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl StoredProfile {
    /// The profile, parsed as a request's would be.
    pub fn into_profile(self) -> Result<UserProfile> {
        let input = ProfileInput {
            software_context: Some(self.software_context.0),
            hardware_context: Some(self.hardware_context.0),
            python_proficiency: self.python_proficiency,
            developer_role: self.developer_role,
            robotics_experience: self.robotics_experience,
            learning_goals: Some(self.learning_goals.0),
            ..ProfileInput::default()
        };
        // Only parsed profiles are written, so this fails only if the catalog lost a value
        // that stored profiles still use: a missing data migration, hence a 500.
        let profile = input.parse().map_err(|e| match e {
            Error::Validation(fields) => {
                Error::internal(format!("a stored profile no longer parses: {fields:?}"))
            }
            other => Error::internal(format!("a stored profile no longer parses: {}", ErrorChain(&other))),
        })?;
        Ok(UserProfile {
            profile,
            is_onboarded: self.is_onboarded,
            profile_hash: self.profile_hash,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The profile of `user_id`, if they have one.
pub async fn find(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Option<UserProfile>> {
    let row = query_stored!("SELECT ", " FROM user_profiles WHERE user_id = $1", user_id.as_str())
        .fetch_optional(db)
        .await?;
    row.map(StoredProfile::into_profile).transpose()
}

/// The profiles of those of `user_ids` who have one, by user id.
pub async fn find_all(db: impl PgExecutor<'_>, user_ids: &[UserId]) -> Result<HashMap<UserId, UserProfile>> {
    let user_ids: Vec<String> = user_ids.iter().map(UserId::to_string).collect();
    let rows = sqlx::query!(
        r#"SELECT user_id AS "user_id: UserId", software_context AS "software_context: Json<SoftwareContextInput>",
                  hardware_context AS "hardware_context: Json<HardwareContextInput>",
                  python_proficiency, developer_role, robotics_experience,
                  learning_goals AS "learning_goals: Json<Vec<String>>",
                  is_onboarded, profile_hash AS "profile_hash: ProfileHash", created_at, updated_at
           FROM user_profiles WHERE user_id = ANY($1)"#,
        &user_ids,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let stored = StoredProfile {
                software_context: r.software_context,
                hardware_context: r.hardware_context,
                python_proficiency: r.python_proficiency,
                developer_role: r.developer_role,
                robotics_experience: r.robotics_experience,
                learning_goals: r.learning_goals,
                is_onboarded: r.is_onboarded,
                profile_hash: r.profile_hash,
                created_at: r.created_at,
                updated_at: r.updated_at,
            };
            Ok((r.user_id, stored.into_profile()?))
        })
        .collect()
}

/// Creates or changes the profile of `user_id`. Once onboarded, a change to either
/// onboarding answer is a 409 `immutable_field`; a merge patch that leaves an invalid profile
/// is a 422 like a `PUT`.
pub async fn save(pool: &PgPool, user_id: &UserId, change: Change) -> Result<Saved> {
    let mut tx = pool.begin().await?;
    // A second pass only when another request created the profile between our look and our
    // insert; the row lock then orders us after it.
    for _ in 0..2 {
        let current = find_for_update(&mut tx, user_id).await?;
        let next = match &change {
            Change::Replace(profile) => Profile::clone(profile),
            Change::MergePatch(patch) => {
                let mut document = current
                    .as_ref()
                    .map_or_else(|| Value::Object(Default::default()), |c| c.profile.to_document());
                json_patch::merge(&mut document, patch);
                // A merged document has no lines to point at: serde's reason alone.
                ProfileInput::deserialize(document).map_err(Error::wrong_shape)?.parse()?
            }
        };
        let hash = next.hash();
        let saved = match current {
            Some(current) => {
                current.profile.ensure_answers_kept(&next)?;
                if current.profile_hash == hash {
                    // Nothing that matters changed: keep updated_at, so nothing looks stale.
                    return Ok(Saved::Replaced(current));
                }
                Saved::Replaced(update(&mut tx, user_id, &next, &hash).await?)
            }
            None => match insert(&mut tx, user_id, &next, &hash).await? {
                Some(created) => Saved::Created(created),
                None => continue,
            },
        };
        tx.commit().await?;
        return Ok(saved);
    }
    Err(Error::conflict("the profile was changed by another request; try again"))
}

async fn find_for_update(conn: &mut PgConnection, user_id: &UserId) -> Result<Option<UserProfile>> {
    let row = query_stored!("SELECT ", " FROM user_profiles WHERE user_id = $1 FOR UPDATE", user_id.as_str())
        .fetch_optional(conn)
        .await?;
    row.map(StoredProfile::into_profile).transpose()
}

/// [`query_stored!`] of a statement that writes a profile and returns it: `$1` the user,
/// `$2..$9` the profile's columns in table order, then its hash.
macro_rules! write_stored {
    ($sql:tt, $user_id:expr, $profile:expr, $hash:expr) => {
        query_stored!(
            $sql,
            "",
            $user_id.as_str(),
            Json(&$profile.software_context) as _,
            Json(&$profile.hardware_context) as _,
            $profile.python_proficiency.map(CatalogValue::as_str),
            $profile.developer_role.map(CatalogValue::as_str),
            $profile.robotics_experience.map(CatalogValue::as_str),
            Json(&$profile.learning_goals) as _,
            $profile.is_onboarded(),
            $hash.as_str(),
        )
    };
}

/// Inserts the profile; `None` when one appeared concurrently.
async fn insert(
    conn: &mut PgConnection,
    user_id: &UserId,
    profile: &Profile,
    hash: &ProfileHash,
) -> Result<Option<UserProfile>> {
    let row = write_stored!(
        "INSERT INTO user_profiles (user_id, software_context, hardware_context, python_proficiency,
             developer_role, robotics_experience, learning_goals, is_onboarded, profile_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (user_id) DO NOTHING
         RETURNING ",
        user_id,
        profile,
        hash
    )
    .fetch_optional(conn)
    .await
    // The user was deleted while their token was still in flight.
    .on_constraint("user_profiles_user_id_fkey", |_| Error::Unauthorized)?;
    row.map(StoredProfile::into_profile).transpose()
}

async fn update(
    conn: &mut PgConnection,
    user_id: &UserId,
    profile: &Profile,
    hash: &ProfileHash,
) -> Result<UserProfile> {
    let row = write_stored!(
        "UPDATE user_profiles SET software_context = $2, hardware_context = $3, python_proficiency = $4,
             developer_role = $5, robotics_experience = $6, learning_goals = $7, is_onboarded = $8,
             profile_hash = $9, updated_at = now()
         WHERE user_id = $1
         RETURNING ",
        user_id,
        profile,
        hash
    )
    .fetch_one(conn)
    .await?;
    row.into_profile()
}

/// Stores `profile` as the user's, replacing any they had, and returns its hash. Unlike
/// [`save`] it lets the two onboarding answers change: for the test kit, which puts profiles
/// that differ in any one field before the same reader.
#[cfg(any(test, feature = "test-util"))]
pub async fn overwrite(db: impl PgExecutor<'_>, user_id: &UserId, profile: &Profile) -> Result<ProfileHash> {
    let hash = profile.hash();
    let stored = write_stored!(
        "INSERT INTO user_profiles (user_id, software_context, hardware_context, python_proficiency,
             developer_role, robotics_experience, learning_goals, is_onboarded, profile_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (user_id) DO UPDATE SET software_context = $2, hardware_context = $3,
             python_proficiency = $4, developer_role = $5, robotics_experience = $6,
             learning_goals = $7, is_onboarded = $8, profile_hash = $9, updated_at = now()
         RETURNING ",
        user_id,
        profile,
        hash
    )
    .fetch_one(db)
    .await?;
    Ok(stored.profile_hash)
}
