//! Importing the book: versions, sections, and what the sample book gives two readers.

mod common;

use common::{import_fixture, sample_book};
use primer_shared::book::{self, ChapterId, ChapterSource, ImportOutcome};
use primer_shared::personalize::{ReaderProfile, personalize, reader_profile};
use primer_shared::test_util::{TestApp, set_reader_profile};
use sqlx::PgPool;

async fn sections(pool: &PgPool, chapter: i32) -> Vec<(String, String)> {
    sqlx::query_as("SELECT heading, anchor FROM chapter_sections WHERE chapter_id = $1 ORDER BY position")
        .bind(chapter)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn the_version_moves_only_when_the_source_changes(pool: PgPool) {
    import_fixture(&pool).await;
    let fixture = std::fs::read_to_string(common::fixtures().join("01-first-steps.md")).unwrap();
    let before = sections(&pool, 1).await;
    assert_eq!(
        before.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["First Steps", "Reading a sensor", "In Python", "In C++", "Acting"]
    );

    let mut conn = pool.acquire().await.unwrap();
    let same = ChapterSource::parse("01-first-steps.md", fixture.clone()).unwrap();
    assert_eq!(
        book::import_chapter(&mut conn, &same).await.unwrap(),
        ImportOutcome::Unchanged { version: 1 }
    );

    let revised =
        ChapterSource::parse("01-first-steps.md", format!("{fixture}\n## Going further\n\nMore.\n")).unwrap();
    assert_eq!(
        book::import_chapter(&mut conn, &revised).await.unwrap(),
        ImportOutcome::Updated { version: 2 }
    );
    let after = sections(&pool, 1).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last().unwrap(), &("Going further".to_owned(), "going-further".to_owned()));
    let stored = book::by_id(&mut *conn, ChapterId::parse("1").unwrap()).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.source_sha256), (2, revised.sha256));

    // Sections are searchable by the tutor.
    let found: String = sqlx::query_scalar(
        "SELECT heading FROM chapter_sections WHERE search_vector @@ plainto_tsquery('english', 'embedded board')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(found, "Acting");
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn the_sample_book_imports_once(pool: PgPool) {
    let first = book::import_dir(&pool, &sample_book()).await.unwrap();
    assert_eq!(first.len(), 6);
    assert!(first.iter().all(|i| i.outcome == ImportOutcome::Created), "{first:?}");
    assert_eq!(
        first.iter().map(|i| i.id.get()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6],
        "chapters are numbered by their files"
    );
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM chapter_sections").fetch_one(&pool).await.unwrap();
    assert!(count > 30, "only {count} sections");

    let again = book::import_dir(&pool, &sample_book()).await.unwrap();
    assert!(again.iter().all(|i| i.outcome == ImportOutcome::Unchanged { version: 1 }), "{again:?}");
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM chapters ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(versions, [1; 6]);
}

async fn reader(
    app: &TestApp,
    email: &str,
    level: &str,
    robotics: &str,
    languages: &[&str],
    devices: &[&str],
) -> ReaderProfile {
    let user = app.signed_up(email).await;
    set_reader_profile(app.pool(), &user.id, level, robotics, languages, devices).await;
    reader_profile(app.pool(), &user.id).await.unwrap().unwrap()
}

#[sqlx::test(migrator = "primer_shared::db::MIGRATOR")]
async fn two_readers_get_visibly_different_chapters(pool: PgPool) {
    let app = TestApp::new(pool, common::with_auth);
    book::import_dir(app.pool(), &sample_book()).await.unwrap();
    let newcomer = reader(&app, "new@example.com", "Beginner", "none", &["Python"], &["Simulation"]).await;
    let veteran =
        reader(&app, "vet@example.com", "Advanced", "real_hardware", &["Cpp"], &["Jetson", "Humanoid"]).await;

    let chapter = book::by_id(app.pool(), ChapterId::parse("1").unwrap()).await.unwrap().unwrap();
    let for_newcomer = personalize(&chapter.source_markdown, &newcomer, None).await.markdown;
    let for_veteran = personalize(&chapter.source_markdown, &veteran, None).await.markdown;

    let lines = |md: &str| md.lines().map(str::to_owned).collect::<std::collections::BTreeSet<_>>();
    let (a, b) = (lines(&for_newcomer), lines(&for_veteran));
    let only_newcomer = a.difference(&b).filter(|l| !l.trim().is_empty()).count();
    let only_veteran = b.difference(&a).filter(|l| !l.trim().is_empty()).count();
    assert!(only_newcomer > 20 && only_veteran > 20, "{only_newcomer} / {only_veteran} lines differ");
    // The Python reader sees Python code and not C++, the C++ reader the other way round.
    assert!(for_newcomer.contains("```python") && !for_newcomer.contains("```cpp"));
    assert!(for_veteran.contains("```cpp") && !for_veteran.contains("import rclpy"));
    for (md, level, robotics) in
        [(&for_newcomer, "beginner", "none yet"), (&for_veteran, "advanced", "real hardware")]
    {
        assert!(
            md.contains(&format!("Shaped by your Python level ({level}), robotics experience ({robotics})"))
        );
    }
    // Neither sees a directive line; both keep the book's own notes.
    for md in [&for_newcomer, &for_veteran] {
        assert!(!md.contains(":::only") && !md.contains(":::except"));
        assert!(md.contains(":::note"));
    }
}
