//! The personalization cache: each reader's chapters as objects in the blob store, indexed by
//! `personalized_chapters` rows keyed by `(user, chapter, profile_hash, chapter_version)`.
//!
//! Invariants: the object is written before its row, so no row points at a missing object;
//! concurrent misses for one key generate once (they queue on a transaction-scoped advisory
//! lock on the key); a failed store write leaves no row. An object that disappears anyway (the
//! bucket's lifecycle rule) is regenerated on the next read.

use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::{Engine, ModelEngine, ReaderProfile, personalize, reader_profile};
use crate::app::AppState;
use crate::blob::{BlobStore, KeyPrefix, ObjectKey};
use crate::book::{self, Chapter, ChapterId};
use crate::error::{Error, Result};

/// The media type of stored chapters.
pub const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// A reader's chapter, as served.
#[derive(Debug, Clone)]
pub struct PersonalizedChapter {
    /// The chapter.
    pub chapter_id: ChapterId,
    /// The chapter version it was made from.
    pub chapter_version: i32,
    /// The profile it was made for.
    pub profile_hash: String,
    /// Who made it.
    pub engine: Engine,
    /// True when it came from the store, false when this request made it.
    pub cached: bool,
    /// Where it is stored.
    pub key: ObjectKey,
    /// The markdown.
    pub markdown: String,
}

/// Where a user's objects live: everything under it goes with their account.
pub fn user_prefix(user_id: &str) -> Result<KeyPrefix> {
    KeyPrefix::parse(&format!("personalized/{user_id}/")).map_err(Error::internal)
}

/// Removes every stored chapter of a user, before their account goes (the rows go with the
/// user row, by cascade). Returns how many objects there were.
pub async fn delete_user_objects(blobs: &dyn BlobStore, user_id: &str) -> Result<u64> {
    Ok(blobs.delete_prefix(&user_prefix(user_id)?).await?)
}

/// `personalized/{user_id}/{chapter_id}/v{version}-{profile_hash}.md`
pub fn object_key(user_id: &str, chapter: ChapterId, version: i32, profile_hash: &str) -> Result<ObjectKey> {
    ObjectKey::parse(&format!("personalized/{user_id}/{chapter}/v{version}-{profile_hash}.md"))
        .map_err(Error::internal)
}

/// The caller's personalized chapter: from the store when it was made before for this profile
/// and chapter version, else made now and stored. 404 without the chapter, 409
/// `profile_incomplete` without an onboarded profile, 503 when the store fails.
pub async fn personalized_chapter(
    state: &AppState,
    user_id: &str,
    id: ChapterId,
) -> Result<PersonalizedChapter> {
    let chapter = book::by_id(&state.pool, id).await?.ok_or(Error::NotFound)?;
    let profile = reader_profile(&state.pool, user_id).await?.ok_or_else(|| Error::Conflict {
        code: "profile_incomplete",
        message: "complete your profile (onboarding) to read personalized chapters".into(),
    })?;
    let key = object_key(user_id, id, chapter.version, &profile.profile_hash)?;

    // The common case, without locks: the row and its object are there.
    if let Some(engine) = engine_of(&state.pool, &key).await?
        && let Some(markdown) = read(state.blobs.as_ref(), &key).await?
    {
        return Ok(served(&chapter, &profile, key, engine, true, markdown));
    }

    let mut tx = state.pool.begin().await?;
    lock(&mut tx, &key).await?;
    // Whoever held the lock before us may have made it meanwhile.
    if let Some(engine) = engine_of(&mut *tx, &key).await? {
        if let Some(markdown) = read(state.blobs.as_ref(), &key).await? {
            tx.commit().await?;
            return Ok(served(&chapter, &profile, key, engine, true, markdown));
        }
        tracing::warn!(key = %key, "a personalized chapter's object is gone; making it again");
        sqlx::query("DELETE FROM personalized_chapters WHERE storage_path = $1")
            .bind(key.as_str())
            .execute(&mut *tx)
            .await?;
    }

    let model =
        state.model.as_deref().map(|client| ModelEngine { client, budget: state.config.personalize_budget });
    let made = personalize(&chapter.source_markdown, &profile.reader, model).await;
    // Object first: if the write fails, the transaction rolls back and no row is left.
    state.blobs.put(&key, made.markdown.clone().into_bytes(), MARKDOWN).await?;
    let inserted = sqlx::query(
        "INSERT INTO personalized_chapters (user_id, chapter_id, profile_hash, chapter_version, storage_path, engine)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user_id)
    .bind(id)
    .bind(&profile.profile_hash)
    .bind(chapter.version)
    .bind(key.as_str())
    .bind(made.engine.as_str())
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        // Best effort: an orphan object is harmless (the lifecycle rule sweeps it), a row
        // without one is not.
        let _ = state.blobs.delete(&key).await;
        return Err(e.into());
    }
    tx.commit().await?;
    tracing::info!(chapter_id = %id, engine = made.engine.as_str(), "personalized a chapter");
    Ok(served(&chapter, &profile, key, made.engine, false, made.markdown))
}

fn served(
    chapter: &Chapter,
    profile: &ReaderProfile,
    key: ObjectKey,
    engine: Engine,
    cached: bool,
    markdown: String,
) -> PersonalizedChapter {
    PersonalizedChapter {
        chapter_id: chapter.id,
        chapter_version: chapter.version,
        profile_hash: profile.profile_hash.clone(),
        engine,
        cached,
        key,
        markdown,
    }
}

/// Serializes everyone working on `key` until the transaction ends.
async fn lock(conn: &mut PgConnection, key: &ObjectKey) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

async fn engine_of(db: impl PgExecutor<'_>, key: &ObjectKey) -> Result<Option<Engine>> {
    let engine: Option<String> =
        sqlx::query_scalar("SELECT engine FROM personalized_chapters WHERE storage_path = $1")
            .bind(key.as_str())
            .fetch_optional(db)
            .await?;
    engine
        .map(|e| Engine::parse(&e).ok_or_else(|| Error::internal(format!("unknown engine {e:?}"))))
        .transpose()
}

async fn read(blobs: &dyn BlobStore, key: &ObjectKey) -> Result<Option<String>> {
    match blobs.get(key).await? {
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(Error::internal),
        None => Ok(None),
    }
}

/// A personalized chapter that nobody can be served any more: made for a profile hash that is
/// no longer its user's, or for a chapter version that is no longer current.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleCopy {
    /// The row.
    pub id: Uuid,
    /// Its object's key.
    pub storage_path: String,
}

/// Up to `limit` stale copies with ids after `after`, in id order (a cursor, so copies whose
/// removal failed are not offered again in the same sweep).
pub async fn stale_copies(
    db: impl PgExecutor<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<StaleCopy>> {
    // STALE is a constant: nothing of the caller's reaches the SQL text.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT pc.id, pc.storage_path FROM personalized_chapters pc {STALE} AND pc.id > $1
         ORDER BY pc.id LIMIT $2"
    )))
    .bind(after.unwrap_or(Uuid::nil()))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The join and condition that make a copy stale; no profile at all counts as another hash.
const STALE: &str = "JOIN chapters c ON c.id = pc.chapter_id
    LEFT JOIN user_profiles up ON up.user_id = pc.user_id
    WHERE (up.profile_hash IS DISTINCT FROM pc.profile_hash OR c.version <> pc.chapter_version)";

/// Removes a stale copy, object first, then row, under the key's lock so that no reader is
/// making it at the same moment. Returns false when it turned out to be live again (the
/// profile went back to that hash) and was left alone.
pub async fn remove_stale(pool: &PgPool, blobs: &dyn BlobStore, copy: &StaleCopy) -> Result<bool> {
    let key = ObjectKey::parse(&copy.storage_path).map_err(Error::internal)?;
    let mut tx = pool.begin().await?;
    lock(&mut tx, &key).await?;
    let still_stale: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pc.id FROM personalized_chapters pc {STALE} AND pc.id = $1 FOR UPDATE OF pc"
    )))
    .bind(copy.id)
    .fetch_optional(&mut *tx)
    .await?;
    if still_stale.is_none() {
        return Ok(false);
    }
    blobs.delete(&key).await?;
    sqlx::query("DELETE FROM personalized_chapters WHERE id = $1").bind(copy.id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let hash = "0f".repeat(32);
        let key = object_key("user-1", ChapterId::parse("3").unwrap(), 2, &hash).unwrap();
        assert_eq!(key.as_str(), format!("personalized/user-1/3/v2-{hash}.md"));
        assert!(key.as_str().starts_with(user_prefix("user-1").unwrap().as_str()));
        assert!(object_key("../etc", ChapterId::parse("3").unwrap(), 2, &hash).is_err());
    }
}
