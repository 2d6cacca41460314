//! The personalization cache: each reader's chapters as objects in the blob store, indexed by
//! `personalized_chapters` rows keyed by `(user, chapter, chapter_version, fingerprint)`.
//!
//! The [`Fingerprint`] hashes what the copy depends on: the reader's values of the facets the
//! chapter's directives mention when the rule-based engine is the one tried first, the whole
//! profile when a model is. So an edit of the profile that cannot change a chapter (a new
//! learning goal, for a chapter without `goal` directives) finds the copy made before it, and
//! one that can change it misses. The row also records the `profile_hash` it was made from.
//!
//! Invariants: the object is written before its row, so no row points at a missing object;
//! concurrent misses for one key generate once; a failed store write leaves no row. An object
//! that disappears anyway (the bucket's lifecycle rule) is regenerated on the next read.
//!
//! Generating takes seconds (the model, then the store), so it is guarded by a claim row in
//! `personalization_claims`, taken by one statement, instead of a lock in a transaction held
//! across the work: under Neon's pooler (PgBouncer, transaction mode) an open transaction pins
//! a server connection. Whoever wins the claim generates; the others poll for the row, holding
//! no connection in between, and take the claim over if its lease lapses.

use std::time::{Duration, Instant};

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use std::collections::{BTreeSet, HashMap};

use super::{Engine, Fingerprint, ModelEngine, ReaderProfile, personalize, reader_profile, rules};
use crate::app::AppState;
use crate::blob::{BlobStore, KeyPrefix, ObjectKey};
use crate::book::markup::Facet;
use crate::book::{self, Chapter, ChapterId};
use crate::error::{Error, ErrorChain, Result, ResultExt};
use crate::profile;

/// The media type of stored chapters.
pub const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// A reader's chapter, as served.
#[derive(Debug, Clone)]
pub struct PersonalizedChapter {
    /// The chapter.
    pub chapter_id: ChapterId,
    /// The chapter version it was made from.
    pub chapter_version: i32,
    /// The reader's current profile hash.
    pub profile_hash: String,
    /// What it was made from: the key it is stored under.
    pub fingerprint: Fingerprint,
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

/// `personalized/{user_id}/{chapter_id}/v{version}-{fingerprint}.md`
pub fn object_key(
    user_id: &str,
    chapter: ChapterId,
    version: i32,
    fingerprint: &Fingerprint,
) -> Result<ObjectKey> {
    ObjectKey::parse(&format!("personalized/{user_id}/{chapter}/v{version}-{fingerprint}.md"))
        .map_err(Error::internal)
}

/// The engine a deployment tries first: the model when one is configured.
fn first_engine(state: &AppState) -> Engine {
    if state.model.is_some() { Engine::Model } else { Engine::Rule }
}

/// The caller's personalized chapter: from the store when it was made before from what this
/// chapter version's text depends on in their profile, else made now and stored. 404 without
/// the chapter, 409 `profile_incomplete` without an onboarded profile, 503 when the store
/// fails.
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
    let fingerprint = profile.fingerprint(&chapter.source_markdown, chapter.version, first_engine(state));
    let key = object_key(user_id, id, chapter.version, &fingerprint)?;

    // The common case: the row and its object are there.
    if let Some((engine, markdown)) = cached(state, &key).await? {
        return Ok(served(&chapter, &profile, &fingerprint, key, engine, true, markdown));
    }
    let lease = state.config.personalize_budget + GENERATION_MARGIN;
    let deadline = Instant::now() + lease + GENERATION_MARGIN;
    let mut pause = Duration::from_millis(20);
    loop {
        if claim(&state.pool, &key, lease).await? {
            let made = make(state, user_id, &chapter, &profile, &fingerprint, &key).await;
            release(&state.pool, &key).await;
            let (engine, cached, markdown) = made?;
            return Ok(served(&chapter, &profile, &fingerprint, key, engine, cached, markdown));
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable("another request is still making this chapter".into()));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
        if let Some((engine, markdown)) = cached(state, &key).await? {
            return Ok(served(&chapter, &profile, &fingerprint, key, engine, true, markdown));
        }
    }
}

/// What a generation may take beyond the personalization budget: the store's write and the
/// row's insert.
const GENERATION_MARGIN: Duration = Duration::from_secs(10);

/// The stored copy under `key`, when its row and its object are both there.
async fn cached(state: &AppState, key: &ObjectKey) -> Result<Option<(Engine, String)>> {
    let Some(engine) = engine_of(&state.pool, key).await? else { return Ok(None) };
    Ok(read(state.blobs.as_ref(), key).await?.map(|markdown| (engine, markdown)))
}

/// Makes and stores the chapter under `key`, which the caller has claimed: object first, then
/// row. Returns who made it, whether it was in fact there already, and the markdown.
async fn make(
    state: &AppState,
    user_id: &str,
    chapter: &Chapter,
    profile: &ReaderProfile,
    fingerprint: &Fingerprint,
    key: &ObjectKey,
) -> Result<(Engine, bool, String)> {
    // The claim's previous holder may have finished between our look and our claim.
    if let Some(engine) = engine_of(&state.pool, key).await? {
        if let Some(markdown) = read(state.blobs.as_ref(), key).await? {
            return Ok((engine, true, markdown));
        }
        tracing::warn!(key = %key, "a personalized chapter's object is gone; making it again");
        sqlx::query("DELETE FROM personalized_chapters WHERE storage_path = $1")
            .bind(key.as_str())
            .execute(&state.pool)
            .await?;
    }

    let model =
        state.model.as_deref().map(|client| ModelEngine { client, budget: state.config.personalize_budget });
    let made = personalize(&chapter.source_markdown, profile, model).await;
    // Object first: if the write fails, no row is written.
    state.blobs.put(key, made.markdown.clone().into_bytes(), MARKDOWN).await?;
    let inserted = sqlx::query(
        "INSERT INTO personalized_chapters
             (user_id, chapter_id, profile_hash, chapter_version, fingerprint, storage_path, engine)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (storage_path) DO NOTHING",
    )
    .bind(user_id)
    .bind(chapter.id)
    .bind(&profile.profile_hash)
    .bind(chapter.version)
    .bind(fingerprint.as_str())
    .bind(key.as_str())
    .bind(made.engine.as_str())
    .execute(&state.pool)
    .await
    // The account was deleted while its chapter was being made: there is nobody to serve.
    .on_constraint("personalized_chapters_user_id_fkey", |_| Error::NotFound);
    if let Err(e) = inserted {
        // Best effort: an orphan object is harmless (the lifecycle rule sweeps it), a row
        // without one is not.
        let _ = state.blobs.delete(key).await;
        return Err(e);
    }
    tracing::info!(chapter_id = %chapter.id, engine = made.engine.as_str(), "personalized a chapter");
    Ok((made.engine, false, made.markdown))
}

/// Claims `key` for `lease`: true when the caller may make (or remove) its copy now. One
/// statement, so of any number of claimants at once exactly one wins; a lapsed claim is taken
/// over.
async fn claim(db: impl PgExecutor<'_>, key: &ObjectKey, lease: Duration) -> Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO personalization_claims AS c (storage_path, expires_at)
         VALUES ($1, clock_timestamp() + make_interval(secs => $2))
         ON CONFLICT (storage_path) DO UPDATE SET expires_at = EXCLUDED.expires_at
         WHERE c.expires_at < clock_timestamp()",
    )
    .bind(key.as_str())
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Ends a claim. Should that fail, the claim lapses by itself.
async fn release(db: impl PgExecutor<'_>, key: &ObjectKey) {
    let released = sqlx::query("DELETE FROM personalization_claims WHERE storage_path = $1")
        .bind(key.as_str())
        .execute(db)
        .await;
    if let Err(e) = released {
        tracing::warn!(key = %key, error = %ErrorChain(&e), "ending a personalization claim failed");
    }
}

fn served(
    chapter: &Chapter,
    profile: &ReaderProfile,
    fingerprint: &Fingerprint,
    key: ObjectKey,
    engine: Engine,
    cached: bool,
    markdown: String,
) -> PersonalizedChapter {
    PersonalizedChapter {
        chapter_id: chapter.id,
        chapter_version: chapter.version,
        profile_hash: profile.profile_hash.clone(),
        fingerprint: fingerprint.clone(),
        engine,
        cached,
        key,
        markdown,
    }
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

/// A personalized chapter that nobody can be served any more: its fingerprint is not one its
/// user's current profile gives the chapter's current version (with either engine, so that a
/// deployment that turns its model on or off, or a janitor configured apart from the chapters
/// function, never removes a copy that is still served), or it was made for an older version,
/// or its user has no onboarded profile, or it predates fingerprints.
#[derive(Debug, Clone)]
pub struct StaleCopy {
    /// The row.
    pub id: Uuid,
    /// Its object's key.
    pub storage_path: String,
}

/// One page of the janitor's walk through the copies.
#[derive(Debug, Clone, Default)]
pub struct CopyPage {
    /// The stale copies of the page.
    pub stale: Vec<StaleCopy>,
    /// The id to continue after; `None` when the walk is over.
    pub last: Option<Uuid>,
}

/// A stored copy, with what deciding whether it is stale needs.
#[derive(Debug, Clone, sqlx::FromRow)]
struct StoredCopy {
    id: Uuid,
    storage_path: String,
    user_id: String,
    chapter_id: ChapterId,
    chapter_version: i32,
    fingerprint: Option<String>,
    current_version: i32,
}

/// The copies, with their chapter's current version; a `WHERE` follows.
const COPIES: &str = "SELECT pc.id, pc.storage_path, pc.user_id, pc.chapter_id, pc.chapter_version,
        pc.fingerprint, c.version AS current_version
    FROM personalized_chapters pc JOIN chapters c ON c.id = pc.chapter_id";

/// The next `limit` copies with ids after `after`, in id order (a cursor, so copies whose
/// removal failed are not offered again in the same sweep), and which of them are stale.
pub async fn stale_copies(pool: &PgPool, after: Option<Uuid>, limit: i64) -> Result<CopyPage> {
    // COPIES is a constant: nothing of the caller's reaches the SQL text.
    let copies: Vec<StoredCopy> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{COPIES} WHERE pc.id > $1 ORDER BY pc.id LIMIT $2")))
            .bind(after.unwrap_or(Uuid::nil()))
            .bind(limit)
            .fetch_all(pool)
            .await?;
    let last = copies.last().map(|c| c.id);
    let stale = stale_among(pool, copies)
        .await?
        .into_iter()
        .map(|c| StaleCopy { id: c.id, storage_path: c.storage_path })
        .collect();
    Ok(CopyPage { stale, last })
}

/// The stale ones of `copies`. The fingerprint is computed, not stored anywhere SQL could
/// compare it: the profiles and chapters involved are read once for all of them.
async fn stale_among(pool: &PgPool, copies: Vec<StoredCopy>) -> Result<Vec<StoredCopy>> {
    // No fingerprint (made before there were any) or an old version: stale whatever the profile.
    let (mut undecided, mut stale): (Vec<StoredCopy>, Vec<StoredCopy>) =
        copies.into_iter().partition(|c| c.fingerprint.is_some() && c.chapter_version == c.current_version);
    if undecided.is_empty() {
        return Ok(stale);
    }
    let mut users: Vec<String> = undecided.iter().map(|c| c.user_id.clone()).collect();
    users.sort();
    users.dedup();
    let readers: HashMap<String, ReaderProfile> = profile::find_all(pool, &users)
        .await?
        .into_iter()
        .filter_map(|(user, stored)| Some((user, ReaderProfile::of(stored)?)))
        .collect();
    // Each chapter's current version and the facets its directives mention.
    let ids: BTreeSet<ChapterId> = undecided.iter().map(|c| c.chapter_id).collect();
    let mut chapters: HashMap<ChapterId, (i32, BTreeSet<Facet>)> = HashMap::new();
    for id in ids {
        if let Some(chapter) = book::by_id(pool, id).await? {
            chapters.insert(id, (chapter.version, rules::facets(&chapter.source_markdown)));
        }
    }
    let is_live = |copy: &StoredCopy| {
        let (Some(reader), Some((version, facets))) =
            (readers.get(&copy.user_id), chapters.get(&copy.chapter_id))
        else {
            return false;
        };
        let live = [
            Fingerprint::of_rules(*version, facets, &reader.reader),
            Fingerprint::of_model(*version, &reader.profile_hash),
        ];
        *version == copy.chapter_version
            && live.iter().any(|f| Some(f.as_str()) == copy.fingerprint.as_deref())
    };
    undecided.retain(|copy| !is_live(copy));
    stale.append(&mut undecided);
    Ok(stale)
}

/// Removes a stale copy, object first, then row, under the key's claim so that no reader is
/// making it at the same moment. Returns false when it turned out to be live again (the
/// profile went back to what it was made from) or a reader is making it, and was left alone.
pub async fn remove_stale(pool: &PgPool, blobs: &dyn BlobStore, copy: &StaleCopy) -> Result<bool> {
    let key = ObjectKey::parse(&copy.storage_path).map_err(Error::internal)?;
    if !claim(pool, &key, REMOVAL_LEASE).await? {
        return Ok(false);
    }
    let removed = async {
        let current: Option<StoredCopy> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{COPIES} WHERE pc.id = $1")))
                .bind(copy.id)
                .fetch_optional(pool)
                .await?;
        let Some(current) = current else { return Ok(false) };
        if stale_among(pool, vec![current]).await?.is_empty() {
            return Ok(false);
        }
        blobs.delete(&key).await?;
        sqlx::query("DELETE FROM personalized_chapters WHERE id = $1").bind(copy.id).execute(pool).await?;
        Ok(true)
    }
    .await;
    release(pool, &key).await;
    removed
}

/// How long the janitor's claim on one copy lasts: a store delete and a row delete.
const REMOVAL_LEASE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let fingerprint = Fingerprint::of_model(2, &"0f".repeat(32));
        let hash = fingerprint.as_str();
        let key = object_key("user-1", ChapterId::parse("3").unwrap(), 2, &fingerprint).unwrap();
        assert_eq!(key.as_str(), format!("personalized/user-1/3/v2-{hash}.md"));
        assert!(key.as_str().starts_with(user_prefix("user-1").unwrap().as_str()));
        assert!(object_key("../etc", ChapterId::parse("3").unwrap(), 2, &fingerprint).is_err());
    }
}
