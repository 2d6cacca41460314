//! What the chapters tests share: the fixture chapter, readers, and where their copies go.

#![allow(dead_code)] // each test file uses its own part of this

use primer_shared::domain::book::{self, ChapterId};
use primer_shared::domain::ids::UserId;
use primer_shared::domain::personalize::cache::object_key;
use primer_shared::domain::personalize::{Engine, reader_profile};
use primer_shared::infra::blob::ObjectKey;
use primer_shared::test_util::{TestApp, TestUser, set_reader_profile};
use sqlx::PgPool;
use std::path::{Path, PathBuf};

/// The folder holding the fixture chapter (`01-first-steps.md`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The sample book at content/book.
pub fn sample_book() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/book")
}

/// Imports the fixture chapter; it is chapter 1.
pub async fn import_fixture(pool: &PgPool) -> ChapterId {
    book::import_dir(pool, &fixtures()).await.expect("the fixture chapter imports");
    ChapterId::parse("1").unwrap()
}

/// A signed-up user with an onboarded profile: an intermediate Python reader working in
/// simulation, with a Jetson. Returns the user and their profile hash.
pub async fn python_reader(app: &TestApp, email: &str) -> (TestUser, String) {
    let user = app.signed_up(email).await;
    let hash =
        set_reader_profile(app.pool(), &user.id, "Intermediate", "simulation_only", &["Python"], &["Jetson"])
            .await;
    (user, hash)
}

/// Where the rule-based engine stores `user_id`'s copy of `chapter` for their current profile
/// and the chapter's current version: the documented key, computed independently of the
/// request that made it.
pub async fn rule_key(pool: &PgPool, user_id: &str, chapter: ChapterId) -> ObjectKey {
    let user_id = &UserId::from(user_id);
    let profile = reader_profile(pool, user_id).await.unwrap().expect("an onboarded reader");
    let chapter = book::by_id(pool, chapter).await.unwrap().expect("the chapter");
    let directives = primer_shared::domain::personalize::rules::Directives::of(&chapter.source_markdown);
    let fingerprint = profile.fingerprint(&directives, chapter.version, Engine::Rule);
    object_key(user_id, chapter.id, chapter.version, &fingerprint).unwrap()
}

/// How many personalized-chapter rows there are.
pub async fn copies(pool: &PgPool) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM personalized_chapters"#)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Files under `dir`, recursively (0 when it does not exist).
pub fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { files_under(&p) } else { 1 }).sum()
}
