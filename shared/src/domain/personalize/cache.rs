//! The personalization cache: each reader's chapters as objects in the blob store, indexed by
//! `personalized_chapters` rows keyed by `(user, chapter, chapter_version, fingerprint)`.
//!
//! The [`Fingerprint`] hashes what the copy depends on: the rule-based engine's decisions for
//! the reader (which of the chapter's blocks it keeps, and the reader's values of what the kept
//! ones read) when it is the engine tried first, the whole profile when a model is. So an edit
//! of the profile that changes no decision (a new learning goal, for a chapter without `goal`
//! directives; Vim instead of VSCode, for a chapter whose only tool passage is for Docker)
//! finds the copy made before it, and one that changes a decision misses. The row also records the `profile_hash` it was made from.
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
//!
//! A claim lasts no longer than its work can: the work is cut at [`RULES_WORK`] (the rules, the
//! store's write, the row), with the model's budget on top when a model is configured, and
//! never past the chapters function's own timeout; the claim lapses [`CLAIM_MARGIN`] after that.
//! So a request that died mid-way holds up the next one by seconds, and the tokens reserved for
//! its model call lapse with its claim. A request dropped while it holds a claim gives it up.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use std::collections::{BTreeSet, HashMap};

use super::rules::Directives;
use super::{Engine, Fingerprint, ModelEngine, ReaderProfile, personalize_within_quota};
use crate::domain::book::{self, Chapter, ChapterId};
use crate::domain::claim::{self, CLAIM_MARGIN};
use crate::domain::ids::UserId;
use crate::domain::profile::{HardwareContextInput, ProfileHash, SoftwareContextInput};
use crate::error::{Error, ErrorChain, Result, ResultExt};
use crate::infra::blob::{BlobStore, KeyPrefix, ObjectKey};
pub use crate::infra::config::RULES_WORK;
use crate::infra::config::UsageLimits;
use crate::infra::model::ModelClient;
use crate::{domain::profile, infra::deadline};

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
    pub profile_hash: ProfileHash,
    /// What it was made from: the key it is stored under.
    pub fingerprint: Fingerprint,
    /// Who made it.
    pub engine: Engine,
    /// True when it came from the store, false when this request made it.
    pub cached: bool,
    /// Where it is stored; `None` for a chapter the rules made while the model's allowance is
    /// spent, which is served but not stored.
    pub key: Option<ObjectKey>,
    /// The markdown.
    pub markdown: String,
}

/// Where a user's objects live: everything under it goes with their account.
pub fn user_prefix(user_id: &UserId) -> Result<KeyPrefix> {
    KeyPrefix::parse(&format!("personalized/{user_id}/")).map_err(Error::internal)
}

/// Removes every stored chapter of a user, before their account goes (the rows go with the
/// user row, by cascade). Returns how many objects there were.
pub async fn delete_user_objects(blobs: &dyn BlobStore, user_id: &UserId) -> Result<u64> {
    Ok(blobs.delete_prefix(&user_prefix(user_id)?).await?)
}

/// `personalized/{user_id}/{chapter_id}/v{version}-{fingerprint}.md`
pub fn object_key(
    user_id: &UserId,
    chapter: ChapterId,
    version: i32,
    fingerprint: &Fingerprint,
) -> Result<ObjectKey> {
    ObjectKey::parse(&format!("personalized/{user_id}/{chapter}/v{version}-{fingerprint}.md"))
        .map_err(Error::internal)
}

/// What finding and making personalized chapters needs: the database, the store, the model
/// when one is configured, and its limits.
#[derive(Clone, Copy)]
pub struct Personalizer<'a> {
    pub pool: &'a PgPool,
    pub blobs: &'a dyn BlobStore,
    pub model: Option<&'a ModelClient>,
    /// How long making one chapter may take, the model's call included.
    pub budget: Duration,
    pub usage: &'a UsageLimits,
    /// How long the function serving the request may run (template.yaml's `Timeout`).
    pub timeout: Duration,
}

/// The engine a deployment tries first: the model when one is configured.
fn first_engine(deps: &Personalizer<'_>) -> Engine {
    if deps.model.is_some() { Engine::Model } else { Engine::Rule }
}

/// The caller's personalized chapter: from the store when it was made before from what this
/// chapter version's text depends on in their profile, else made now and stored. 404 without
/// the chapter, 409 `profile_incomplete` without an onboarded profile, 503 when the store
/// fails.
pub async fn personalized_chapter(
    deps: &Personalizer<'_>,
    user_id: &UserId,
    id: ChapterId,
) -> Result<PersonalizedChapter> {
    find_or_make(deps, user_id, id, true).await
}

/// Where the caller's personalized chapter is stored, made first if need be, without reading
/// it: for handing out a presigned URL. `None` when the chapter made now is not stored (the
/// rules standing in for a spent model allowance): the caller serves it another way.
pub async fn personalized_key(
    deps: &Personalizer<'_>,
    user_id: &UserId,
    id: ChapterId,
) -> Result<Option<ObjectKey>> {
    Ok(find_or_make(deps, user_id, id, false).await?.key)
}

/// [`personalized_chapter`]; on a hit the object is read only when `read_body` (without it,
/// `markdown` is empty). A hit costs one query (after the caller's authentication) and the
/// object's read.
async fn find_or_make(
    deps: &Personalizer<'_>,
    user_id: &UserId,
    id: ChapterId,
    read_body: bool,
) -> Result<PersonalizedChapter> {
    let Some(found) = look_up(deps.pool, user_id, id).await? else {
        // No onboarded profile or no chapter: which one, off the hot path.
        book::by_id(deps.pool, id).await?.ok_or(Error::NotFound)?;
        return Err(profile_incomplete());
    };
    let profile = ReaderProfile::of(found.profile.into_profile()?).ok_or_else(profile_incomplete)?;
    let version = found.chapter_version;
    let directives = directives_of(deps.pool, id, &found.source_sha256).await?;
    let fingerprint = profile.fingerprint(&directives, version, first_engine(deps));
    let key = object_key(user_id, id, version, &fingerprint)?;
    let served = |engine, cached, markdown| PersonalizedChapter {
        chapter_id: id,
        chapter_version: version,
        profile_hash: profile.profile_hash.clone(),
        fingerprint: fingerprint.clone(),
        engine,
        cached,
        key: Some(key.clone()),
        markdown,
    };

    // The common case: the row is there, and so its object.
    if let Some(copy) = found.copies.iter().find(|copy| copy.storage_path == key.as_str()) {
        let engine = Engine::parse(&copy.engine).ok_or_else(|| Error::internal("unknown engine"))?;
        if !read_body {
            return Ok(served(engine, true, String::new()));
        }
        if let Some(markdown) = read(deps.blobs, &key).await? {
            return Ok(served(engine, true, markdown));
        }
    }
    let chapter = book::by_id(deps.pool, id).await?.ok_or(Error::NotFound)?;
    // The request must be done by its function's timeout; the work within what it needs.
    let until = Instant::now() + deps.timeout;
    let needs = RULES_WORK + if deps.model.is_some() { deps.budget } else { Duration::ZERO };
    let mut pause = Duration::from_millis(20);
    loop {
        let work_ends = (Instant::now() + needs).min(until);
        let lease = work_ends.saturating_duration_since(Instant::now()) + CLAIM_MARGIN;
        // A second's grace: a request that just arrived has its whole timeout, less a moment.
        let has_time = until.saturating_duration_since(Instant::now()) + Duration::from_secs(1) >= needs;
        if has_time && claim(deps.pool, &key, lease).await? {
            let held = Claim { pool: deps.pool, key: &key, lapses_at: Instant::now() + lease, held: true };
            let making = make(deps, user_id, &chapter, &profile, &fingerprint, &key, lease);
            let made = tokio::time::timeout_at(work_ends.into(), making).await.unwrap_or_else(|_| {
                Err(Error::Unavailable("making the chapter took longer than its claim lasts".into()))
            });
            held.give_up().await;
            return Ok(match made? {
                Made::Stored { engine, cached, markdown } => served(engine, cached, markdown),
                Made::StandingIn { markdown } => {
                    PersonalizedChapter { key: None, ..served(Engine::Rule, false, markdown) }
                }
            });
        }
        if until.saturating_duration_since(Instant::now()) <= pause {
            let lapses_in = claim_left(deps.pool, &key).await?;
            return Err(Error::Busy {
                what: "another request is still making this chapter",
                retry_after_secs: lapses_in.map_or(1, |left| left.as_secs() + 1),
            });
        }
        deadline::exempt(tokio::time::sleep(pause)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
        if let Some((engine, markdown)) = cached(deps, &key).await? {
            return Ok(served(engine, true, markdown));
        }
    }
}

/// A claim this request holds on a key: ended when the chapter is made (or making it failed),
/// and given up from a task of its own when the request is dropped first or ending it fails.
struct Claim<'a> {
    pool: &'a PgPool,
    key: &'a ObjectKey,
    /// When the claim lapses by itself.
    lapses_at: Instant,
    held: bool,
}

impl Claim<'_> {
    /// Ends the claim now. Until that has succeeded the claim is still held, so that one that
    /// fails, or is cut short with the request, is given up from a task of its own as it drops
    /// ([`claim::give_up_in_background`]).
    async fn give_up(mut self) {
        match end_claim(self.pool, self.key).await {
            Ok(()) => self.held = false,
            Err(e) => {
                tracing::warn!(key = %self.key, error = %ErrorChain(&e), "ending a personalization claim failed; trying again")
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.held {
            let (pool, key) = (self.pool.clone(), self.key.clone());
            claim::give_up_in_background("a personalization claim", self.lapses_at.into(), move || {
                let (pool, key) = (pool.clone(), key.clone());
                async move { end_claim(&pool, &key).await }
            });
        }
    }
}

/// How long the claim on `key` has left; `None` when nobody holds one.
async fn claim_left(db: impl PgExecutor<'_>, key: &ObjectKey) -> Result<Option<Duration>> {
    // Not NULL: the row has an expiry, or is not found.
    let left = sqlx::query_scalar!(
        r#"SELECT extract(epoch FROM expires_at - clock_timestamp())::float8 AS "left!"
           FROM personalization_claims WHERE storage_path = $1 AND expires_at > clock_timestamp()"#,
        key.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(left.map(|secs| Duration::from_secs_f64(secs.max(0.0))))
}

fn profile_incomplete() -> Error {
    Error::Conflict {
        code: crate::error::Code::ProfileIncomplete,
        message: "complete your profile (onboarding) to read personalized chapters".into(),
    }
}

/// What a cache lookup needs, in one round trip: the reader's profile, the chapter's current
/// version, and the reader's stored copies of that version.
struct Lookup {
    profile: profile::StoredProfile,
    chapter_version: i32,
    source_sha256: String,
    copies: sqlx::types::Json<Vec<StoredRef>>,
}

/// A stored copy, as a lookup lists it.
#[derive(Debug, serde::Deserialize)]
struct StoredRef {
    storage_path: String,
    engine: String,
}

/// The reader's profile, chapter `id`'s current version and the reader's copies of it; `None`
/// without either the profile or the chapter. One statement across three owners' tables (the
/// profile's, the book's and this cache's): a cache hit is this one round trip
/// (docs/data-model.md, "Joins across owners").
async fn look_up(pool: &PgPool, user_id: &UserId, id: ChapterId) -> Result<Option<Lookup>> {
    // The subquery hides the profile columns' NOT NULL from PostgreSQL's description: `!`
    // restates it.
    let found = sqlx::query!(
        r#"SELECT p.software_context AS "software_context!: Json<SoftwareContextInput>",
                  p.hardware_context AS "hardware_context!: Json<HardwareContextInput>",
                  p.python_proficiency, p.developer_role, p.robotics_experience,
                  p.learning_goals AS "learning_goals!: Json<Vec<String>>", p.is_onboarded AS "is_onboarded!",
                  p.profile_hash AS "profile_hash!: ProfileHash", p.created_at AS "created_at!", p.updated_at AS "updated_at!",
                  c.version AS chapter_version, c.source_sha256,
                  coalesce((SELECT jsonb_agg(jsonb_build_object('storage_path', pc.storage_path, 'engine', pc.engine))
                            FROM personalized_chapters pc
                            WHERE pc.user_id = $1 AND pc.chapter_id = c.id AND pc.chapter_version = c.version),
                           '[]'::jsonb) AS "copies!: Json<Vec<StoredRef>>"
           FROM (SELECT software_context, hardware_context, python_proficiency, developer_role, robotics_experience,
                        learning_goals, is_onboarded, profile_hash, created_at, updated_at
                 FROM user_profiles WHERE user_id = $1) p
           CROSS JOIN chapters c WHERE c.id = $2"#,
        user_id as &UserId,
        id as ChapterId,
    )
    .fetch_optional(pool)
    .await?;
    Ok(found.map(|row| Lookup {
        profile: profile::StoredProfile {
            software_context: row.software_context,
            hardware_context: row.hardware_context,
            python_proficiency: row.python_proficiency,
            developer_role: row.developer_role,
            robotics_experience: row.robotics_experience,
            learning_goals: row.learning_goals,
            is_onboarded: row.is_onboarded,
            profile_hash: row.profile_hash,
            created_at: row.created_at,
            updated_at: row.updated_at,
        },
        chapter_version: row.chapter_version,
        source_sha256: row.source_sha256,
        copies: row.copies,
    }))
}

/// The directives of chapter `id`, for its text of SHA-256 `source_sha256`: read once per text
/// and instance (keyed by the text's digest, so any database's chapter with that text shares
/// them), so a cache hit needs no chapter text.
async fn directives_of(pool: &PgPool, id: ChapterId, source_sha256: &str) -> Result<Arc<Directives>> {
    static KNOWN: LazyLock<Mutex<HashMap<String, Arc<Directives>>>> = LazyLock::new(Default::default);
    if let Some(directives) = KNOWN.lock().unwrap_or_else(|e| e.into_inner()).get(source_sha256) {
        return Ok(directives.clone());
    }
    let chapter = book::by_id(pool, id).await?.ok_or(Error::NotFound)?;
    let directives = Arc::new(Directives::of(&chapter.source_markdown));
    KNOWN.lock().unwrap_or_else(|e| e.into_inner()).insert(chapter.source_sha256, directives.clone());
    Ok(directives)
}

/// The stored copy under `key`, when its row and its object are both there.
async fn cached(deps: &Personalizer<'_>, key: &ObjectKey) -> Result<Option<(Engine, String)>> {
    let Some(engine) = engine_of(deps.pool, key).await? else { return Ok(None) };
    Ok(read(deps.blobs, key).await?.map(|markdown| (engine, markdown)))
}

/// What [`make`] did.
enum Made {
    /// Stored under the key (or found there): who made it, whether it was there already.
    Stored { engine: Engine, cached: bool, markdown: String },
    /// Made by the rules in the model's stead, its allowance spent: served, never stored.
    StandingIn { markdown: String },
}

/// Makes and stores the chapter under `key`, which the caller has claimed for `lease`: object
/// first, then row.
async fn make(
    deps: &Personalizer<'_>,
    user_id: &UserId,
    chapter: &Chapter,
    profile: &ReaderProfile,
    fingerprint: &Fingerprint,
    key: &ObjectKey,
    lease: Duration,
) -> Result<Made> {
    // The claim's previous holder may have finished between our look and our claim.
    if let Some(engine) = engine_of(deps.pool, key).await? {
        if let Some(markdown) = read(deps.blobs, key).await? {
            return Ok(Made::Stored { engine, cached: true, markdown });
        }
        tracing::warn!(key = %key, "a personalized chapter's object is gone; making it again");
        sqlx::query!("DELETE FROM personalized_chapters WHERE storage_path = $1", key.as_str())
            .execute(deps.pool)
            .await?;
    }

    let model = deps.model.map(|client| ModelEngine {
        client,
        budget: deps.budget,
        max_tokens: deps.usage.personalize_max_tokens,
    });
    let (pool, limits) = (deps.pool, deps.usage);
    let made =
        personalize_within_quota(pool, limits, user_id, &chapter.source_markdown, profile, model, lease)
            .await?;
    if made.standing_in.is_some() {
        return Ok(Made::StandingIn { markdown: made.markdown });
    }
    let usage = made.spend.usage();
    // Object first: if the write fails, no row is written.
    deps.blobs.put(key, made.markdown.clone().into_bytes(), MARKDOWN).await?;
    let inserted = sqlx::query!(
        "INSERT INTO personalized_chapters
             (user_id, chapter_id, profile_hash, chapter_version, fingerprint, storage_path, engine,
              prompt_tokens, completion_tokens)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (storage_path) DO NOTHING",
        user_id as &UserId,
        chapter.id as ChapterId,
        &profile.profile_hash as &ProfileHash,
        chapter.version,
        fingerprint as &Fingerprint,
        key.as_str(),
        made.engine.as_str(),
        usage.map(|u| i32::try_from(u.prompt_tokens).unwrap_or(i32::MAX)),
        usage.map(|u| i32::try_from(u.completion_tokens).unwrap_or(i32::MAX)),
    )
    .execute(deps.pool)
    .await
    // The account was deleted while its chapter was being made: there is nobody to serve.
    .on_constraint("personalized_chapters_user_id_fkey", |_| Error::NotFound);
    if let Err(e) = inserted {
        // Best effort: an orphan object is harmless (the lifecycle rule sweeps it), a row
        // without one is not.
        let _ = deps.blobs.delete(key).await;
        return Err(e);
    }
    tracing::info!(chapter_id = %chapter.id, engine = made.engine.as_str(), "personalized a chapter");
    Ok(Made::Stored { engine: made.engine, cached: false, markdown: made.markdown })
}

/// Claims `key` for `lease`: true when the caller may make (or remove) its copy now. One
/// statement, so of any number of claimants at once exactly one wins; a lapsed claim is taken
/// over.
async fn claim(db: impl PgExecutor<'_>, key: &ObjectKey, lease: Duration) -> Result<bool> {
    let claimed = sqlx::query!(
        "INSERT INTO personalization_claims AS c (storage_path, expires_at)
         VALUES ($1, clock_timestamp() + make_interval(secs => $2))
         ON CONFLICT (storage_path) DO UPDATE SET expires_at = EXCLUDED.expires_at
         WHERE c.expires_at < clock_timestamp()",
        key.as_str(),
        lease.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

async fn end_claim(db: impl PgExecutor<'_>, key: &ObjectKey) -> Result<()> {
    sqlx::query!("DELETE FROM personalization_claims WHERE storage_path = $1", key.as_str())
        .execute(db)
        .await?;
    Ok(())
}

async fn engine_of(db: impl PgExecutor<'_>, key: &ObjectKey) -> Result<Option<Engine>> {
    let engine =
        sqlx::query_scalar!("SELECT engine FROM personalized_chapters WHERE storage_path = $1", key.as_str())
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

/// What one [`remove_stale_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleBatch {
    /// Copies removed, object and row.
    pub removed: u64,
    /// Copies whose object could not be removed: they stay, row and all, for the next run.
    pub failed: u64,
    /// Where the next batch starts (`None`: this batch was short, so nothing is left after it).
    pub next: Option<Uuid>,
}

/// A stored copy, with what deciding whether it is stale needs.
#[derive(Debug, Clone)]
struct StoredCopy {
    id: Uuid,
    storage_path: String,
    user_id: UserId,
    chapter_id: ChapterId,
    chapter_version: i32,
    fingerprint: Option<Fingerprint>,
    current_version: i32,
}

/// A statement checked by the compiler that reads [`StoredCopy`]s: the copies, each with its
/// chapter's current version (a join with the book's table, listed in docs/data-model.md,
/// "Joins across owners"), then `$rest` (a string literal: the `WHERE` and what follows), with
/// `$args` for its parameters.
macro_rules! select_copies {
    ($rest:literal, $($args:tt)*) => {
        sqlx::query_as!(
            StoredCopy,
            r#"SELECT pc.id, pc.storage_path, pc.user_id AS "user_id: UserId",
                      pc.chapter_id AS "chapter_id: ChapterId", pc.chapter_version,
                      pc.fingerprint AS "fingerprint: Fingerprint", c.version AS current_version
               FROM personalized_chapters pc JOIN chapters c ON c.id = pc.chapter_id "# + $rest,
            $($args)*
        )
    };
}

/// Removes the stale ones of the `limit` copies with ids after `after` (a cursor, in id order).
///
/// A copy is stale when nobody can be served it any more: its fingerprint is not one its user's
/// current profile gives the chapter's current version (with either engine, so that a
/// deployment that turns its model on or off, or a janitor configured apart from the chapters
/// function, never removes a copy that is still served), or it was made for an older version,
/// or its user has no onboarded profile, or it predates fingerprints.
///
/// One statement claims every stale key not being made right now (a reader's claim is
/// respected; that copy is left for the next run); under the claims the copies are read and
/// judged again; one `DeleteObjects`-style request per thousand objects removes them; one
/// statement deletes the rows whose objects went, one releases the claims. Objects go before
/// rows, so no row ever points at a missing object, and an interrupted run leaves only rows
/// with their objects (or orphan objects the bucket's lifecycle rule expires) for the next.
pub async fn remove_stale_batch(
    pool: &PgPool,
    blobs: &dyn BlobStore,
    after: Option<Uuid>,
    limit: i64,
) -> Result<StaleBatch> {
    let copies =
        select_copies!("WHERE pc.id > $1 ORDER BY pc.id LIMIT $2", after.unwrap_or(Uuid::nil()), limit)
            .fetch_all(pool)
            .await?;
    let next = copies.last().map(|c| c.id).filter(|_| copies.len() as i64 == limit);
    let stale = stale_among(pool, copies).await?;
    if stale.is_empty() {
        return Ok(StaleBatch { next, ..StaleBatch::default() });
    }
    let paths: Vec<&str> = stale.iter().map(|c| c.storage_path.as_str()).collect();
    let claimed = sqlx::query_scalar!(
        "INSERT INTO personalization_claims AS cl (storage_path, expires_at)
         SELECT path, clock_timestamp() + make_interval(secs => $2) FROM unnest($1::text[]) AS path
         ON CONFLICT (storage_path) DO UPDATE SET expires_at = EXCLUDED.expires_at
         WHERE cl.expires_at < clock_timestamp()
         RETURNING storage_path",
        &paths as &[&str],
        REMOVAL_LEASE.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?;
    if claimed.is_empty() {
        return Ok(StaleBatch { next, ..StaleBatch::default() });
    }
    let outcome = async {
        // Judged again under the claims: a profile may have gone back to what a copy was made
        // from.
        let ids: Vec<Uuid> =
            stale.iter().filter(|c| claimed.contains(&c.storage_path)).map(|c| c.id).collect();
        let current = select_copies!("WHERE pc.id = ANY($1)", &ids).fetch_all(pool).await?;
        let still_stale = stale_among(pool, current).await?;
        let keys = still_stale
            .iter()
            .map(|c| ObjectKey::parse(&c.storage_path).map_err(Error::internal))
            .collect::<Result<Vec<_>>>()?;
        let refused = blobs.delete_many(&keys).await?;
        let gone: Vec<Uuid> = still_stale
            .iter()
            .zip(&keys)
            .filter(|(_, key)| !refused.contains(key))
            .map(|(copy, _)| copy.id)
            .collect();
        sqlx::query!("DELETE FROM personalized_chapters WHERE id = ANY($1)", &gone).execute(pool).await?;
        Ok(StaleBatch { removed: gone.len() as u64, failed: refused.len() as u64, next })
    }
    .await;
    if let Err(e) = sqlx::query!("DELETE FROM personalization_claims WHERE storage_path = ANY($1)", &claimed)
        .execute(pool)
        .await
    {
        tracing::warn!(error = %ErrorChain(&e), "ending the janitor's claims failed; they lapse by themselves");
    }
    outcome
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
    let mut users: Vec<UserId> = undecided.iter().map(|c| c.user_id.clone()).collect();
    users.sort();
    users.dedup();
    let readers: HashMap<UserId, ReaderProfile> = profile::find_all(pool, &users)
        .await?
        .into_iter()
        .filter_map(|(user, stored)| Some((user, ReaderProfile::of(stored)?)))
        .collect();
    // Each chapter's current version and its directives.
    let ids: BTreeSet<ChapterId> = undecided.iter().map(|c| c.chapter_id).collect();
    let mut chapters: HashMap<ChapterId, (i32, Directives)> = HashMap::new();
    for id in ids {
        if let Some(chapter) = book::by_id(pool, id).await? {
            chapters.insert(id, (chapter.version, Directives::of(&chapter.source_markdown)));
        }
    }
    let is_live = |copy: &StoredCopy| {
        let (Some(reader), Some((version, directives))) =
            (readers.get(&copy.user_id), chapters.get(&copy.chapter_id))
        else {
            return false;
        };
        let live =
            [Engine::Rule, Engine::Model].map(|engine| reader.fingerprint(directives, *version, engine));
        *version == copy.chapter_version && live.iter().any(|f| copy.fingerprint.as_ref() == Some(f))
    };
    undecided.retain(|copy| !is_live(copy));
    stale.append(&mut undecided);
    Ok(stale)
}

/// How long the janitor's claim on a batch lasts: a thousand store deletes and a row delete.
const REMOVAL_LEASE: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let example = crate::domain::profile::examples::api_example();
        let profile: crate::domain::profile::ProfileInput = serde_json::from_value(example).unwrap();
        let fingerprint = Fingerprint::of_model(2, &profile.parse().unwrap().hash());
        let hash = fingerprint.as_str();
        let user = UserId::from("user-1");
        let key = object_key(&user, ChapterId::parse("3").unwrap(), 2, &fingerprint).unwrap();
        assert_eq!(key.as_str(), format!("personalized/user-1/3/v2-{hash}.md"));
        assert!(key.as_str().starts_with(user_prefix(&user).unwrap().as_str()));
        assert!(
            object_key(&UserId::from("../etc"), ChapterId::parse("3").unwrap(), 2, &fingerprint).is_err()
        );
    }
}
