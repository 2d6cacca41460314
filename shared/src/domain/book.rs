//! The book: chapter files parsed and imported into `chapters` and `chapter_sections`, and the
//! queries that read them back.
//!
//! A chapter is a markdown file named `NN-slug.md` (`01-ros2-nodes-and-topics.md` is chapter 1,
//! slug `ros2-nodes-and-topics`) whose first heading is its title. Its personalization
//! directives are described in [`markup`].

pub mod markup;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::error::{Error, Result};
use markup::{Line, scan};

/// A chapter's number: 1, 2, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ChapterId(i32);

impl ChapterId {
    /// Parses a positive number, as in a file name or a URL path.
    pub fn parse(s: &str) -> Option<Self> {
        let digits = s.trim();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|&n| n > 0).map(Self)
    }

    /// The number.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl std::fmt::Display for ChapterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A chapter file that does not follow the book's rules.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's name or content breaks a rule.
    #[error("{file}: {message}")]
    Invalid {
        /// The file's name.
        file: String,
        /// What is wrong, with a line number where there is one.
        message: String,
    },
    /// Saving the chapters failed.
    #[error("saving the chapters failed")]
    Store(#[from] Error),
}

/// A chapter as its source file has it, checked: the name, a title, balanced directives.
#[derive(Debug, Clone)]
pub struct ChapterSource {
    /// From the file name's number.
    pub id: ChapterId,
    /// From the file name, after the number.
    pub slug: String,
    /// The first `#` heading.
    pub title: String,
    /// The file's content.
    pub markdown: String,
    /// SHA-256 of the content, hex: a change bumps the chapter's version.
    pub sha256: String,
}

impl ChapterSource {
    /// Checks a chapter file: `NN-slug.md`, a `#` title, and directives that parse and
    /// balance outside code blocks.
    pub fn parse(file_name: &str, markdown: String) -> Result<Self, BookError> {
        let invalid = |message: String| BookError::Invalid { file: file_name.to_owned(), message };
        let (id, slug) = parse_file_name(file_name)
            .ok_or_else(|| invalid("a chapter file is named NN-slug.md, e.g. 01-ros2-basics.md".into()))?;
        let mut title = None;
        let mut open: Vec<usize> = Vec::new();
        for line in scan(&markdown) {
            match line.kind {
                Line::Heading { level: 1, text } if title.is_none() && !text.is_empty() => {
                    title = Some(text.to_owned())
                }
                Line::Open(Err(e)) => return Err(invalid(format!("line {}: {e}", line.number))),
                Line::Open(Ok(_)) | Line::OpenOther => open.push(line.number),
                Line::Close => {
                    open.pop()
                        .ok_or_else(|| invalid(format!("line {}: ':::' closes nothing", line.number)))?;
                }
                _ => {}
            }
        }
        if let Some(line) = open.last() {
            return Err(invalid(format!("line {line}: the directive opened here is never closed")));
        }
        let title = title.ok_or_else(|| invalid("the chapter has no '# Title' heading".into()))?;
        if title.chars().count() > 200 {
            return Err(invalid("the title is longer than 200 characters".into()));
        }
        let sha256 = hex::encode(Sha256::digest(markdown.as_bytes()));
        Ok(Self { id, slug: slug.to_owned(), title, markdown, sha256 })
    }

    /// The chapter split at its `##` and `###` headings, for the tutor's search. Text before
    /// the first of them is a section under the chapter's title. Directive lines are left
    /// out; the text of every variant stays, so any reader's question can find it.
    pub fn sections(&self) -> Vec<Section> {
        let mut sections = Vec::new();
        let mut anchors = Anchors::default();
        let mut heading = self.title.clone();
        let mut content = String::new();
        let mut flush = |heading: &str, content: &mut String, sections: &mut Vec<Section>| {
            let text = content.trim();
            // The title alone, with no intro under it, is no section.
            if !(sections.is_empty() && heading == self.title && text.is_empty()) {
                sections.push(Section {
                    position: sections.len() as i32,
                    heading: heading.to_owned(),
                    anchor: anchors.next(heading),
                    content: text.to_owned(),
                });
            }
            content.clear();
        };
        for line in scan(&self.markdown) {
            match line.kind {
                Line::Heading { level: 2 | 3, text } => {
                    flush(&heading, &mut content, &mut sections);
                    heading = text.to_owned();
                }
                Line::Heading { level: 1, text } if text == self.title => {}
                // Container markers, ours and others' alike, are noise to a search.
                Line::Open(_) | Line::OpenOther | Line::Close => {}
                _ => content.push_str(line.raw),
            }
        }
        flush(&heading, &mut content, &mut sections);
        sections
    }
}

/// `NN-slug.md` → (NN, slug).
fn parse_file_name(name: &str) -> Option<(ChapterId, &str)> {
    let stem = name.strip_suffix(".md")?;
    let (number, slug) = stem.split_once('-')?;
    let slug_ok = !slug.is_empty()
        && slug.split('-').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    Some((ChapterId::parse(number)?, slug)).filter(|_| slug_ok)
}

/// One part of a chapter under a `##` or `###` heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// 0-based order in the chapter.
    pub position: i32,
    /// The heading's text.
    pub heading: String,
    /// The heading's anchor as a docs site makes it (`#quality-of-service`), unique in the
    /// chapter.
    pub anchor: String,
    /// The markdown under the heading, up to the next one.
    pub content: String,
}

/// Anchors as GitHub and Docusaurus make them: lower-case, punctuation dropped, spaces to
/// hyphens, and `-1`, `-2` for repeats.
#[derive(Default)]
struct Anchors {
    seen: HashMap<String, usize>,
}

impl Anchors {
    fn next(&mut self, heading: &str) -> String {
        let base: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = self.seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 { base.clone() } else { format!("{base}-{count}") };
        *count += 1;
        anchor
    }
}

/// What importing one chapter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new chapter, at version 1.
    Created,
    /// The source changed: the version went up and the sections were rebuilt.
    Updated {
        /// The new version.
        version: i32,
    },
    /// Same source as stored; nothing was written.
    Unchanged {
        /// The stored version.
        version: i32,
    },
}

/// Upserts one chapter: the version goes up only when the source's SHA-256 changes, and the
/// sections are rebuilt then.
pub async fn import_chapter(conn: &mut PgConnection, source: &ChapterSource) -> Result<ImportOutcome> {
    let stored = sqlx::query!(
        "SELECT version, source_sha256, slug FROM chapters WHERE id = $1 FOR UPDATE",
        source.id as ChapterId,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let outcome = match stored {
        None => {
            sqlx::query!(
                "INSERT INTO chapters (id, slug, title, source_markdown, source_sha256)
                 VALUES ($1, $2, $3, $4, $5)",
                source.id as ChapterId,
                &source.slug,
                &source.title,
                &source.markdown,
                &source.sha256,
            )
            .execute(&mut *conn)
            .await?;
            ImportOutcome::Created
        }
        Some(stored) if stored.source_sha256 == source.sha256 => {
            if stored.slug != source.slug {
                // A renamed file is the same chapter: readers' copies stay valid.
                sqlx::query!(
                    "UPDATE chapters SET slug = $2, updated_at = now() WHERE id = $1",
                    source.id as ChapterId,
                    &source.slug,
                )
                .execute(&mut *conn)
                .await?;
            }
            return Ok(ImportOutcome::Unchanged { version: stored.version });
        }
        Some(_) => {
            let version = sqlx::query_scalar!(
                "UPDATE chapters SET slug = $2, title = $3, source_markdown = $4, source_sha256 = $5,
                        version = version + 1, updated_at = now()
                 WHERE id = $1 RETURNING version",
                source.id as ChapterId,
                &source.slug,
                &source.title,
                &source.markdown,
                &source.sha256,
            )
            .fetch_one(&mut *conn)
            .await?;
            ImportOutcome::Updated { version }
        }
    };
    replace_sections(conn, source.id, &source.sections()).await?;
    Ok(outcome)
}

async fn replace_sections(conn: &mut PgConnection, chapter: ChapterId, sections: &[Section]) -> Result<()> {
    sqlx::query!("DELETE FROM chapter_sections WHERE chapter_id = $1", chapter as ChapterId)
        .execute(&mut *conn)
        .await?;
    let column = |f: fn(&Section) -> String| sections.iter().map(f).collect::<Vec<_>>();
    sqlx::query!(
        "INSERT INTO chapter_sections (chapter_id, position, heading, anchor, content)
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[])",
        chapter as ChapterId,
        &sections.iter().map(|s| s.position).collect::<Vec<_>>(),
        &column(|s| s.heading.clone()),
        &column(|s| s.anchor.clone()),
        &column(|s| s.content.clone()),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One chapter file's import, for the admin's report.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The chapter.
    pub id: ChapterId,
    /// Its slug.
    pub slug: String,
    /// What happened.
    pub outcome: ImportOutcome,
}

/// Imports every `NN-slug.md` file of `dir` in one transaction: all of them or none. Other
/// files (a README) are skipped; two files with one number are an error.
pub async fn import_dir(pool: &PgPool, dir: &Path) -> Result<Vec<Imported>, BookError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BookError::Io { path, source }
    };
    let mut sources: Vec<ChapterSource> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if !name.ends_with(".md") || !name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let markdown = std::fs::read_to_string(&path).map_err(io(&path))?;
        let source = ChapterSource::parse(name, markdown)?;
        if let Some(twin) = sources.iter().find(|s| s.id == source.id) {
            return Err(BookError::Invalid {
                file: name.to_owned(),
                message: format!("chapter {} is also {}.md", source.id, twin.slug),
            });
        }
        sources.push(source);
    }
    sources.sort_by_key(|s| s.id);
    let mut tx = pool.begin().await.map_err(Error::from)?;
    let mut imported = Vec::with_capacity(sources.len());
    for source in &sources {
        let outcome = import_chapter(&mut tx, source).await?;
        imported.push(Imported { id: source.id, slug: source.slug.clone(), outcome });
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(imported)
}

/// A chapter in the book's table of contents.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"id": 1, "slug": "ros2-nodes-and-topics", "title": "ROS 2 Nodes and Topics", "version": 1})))]
pub struct ChapterSummary {
    /// Its number.
    #[schema(value_type = i32, minimum = 1)]
    pub id: ChapterId,
    /// URL-friendly name.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Bumped whenever the source changes.
    pub version: i32,
}

/// Every chapter, in order.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<ChapterSummary>> {
    Ok(sqlx::query_as!(
        ChapterSummary,
        r#"SELECT id AS "id: ChapterId", slug, title, version FROM chapters ORDER BY id"#
    )
    .fetch_all(db)
    .await?)
}

/// A chapter with its source.
#[derive(Debug, Clone)]
pub struct Chapter {
    /// Its number.
    pub id: ChapterId,
    pub title: String,
    /// The current version.
    pub version: i32,
    /// The markdown as imported.
    pub source_markdown: String,
    /// Its SHA-256 (an ETag for the source).
    pub source_sha256: String,
}

/// The chapter, if there is one with this number.
pub async fn by_id(db: impl PgExecutor<'_>, id: ChapterId) -> Result<Option<Chapter>> {
    Ok(sqlx::query_as!(
        Chapter,
        r#"SELECT id AS "id: ChapterId", title, version, source_markdown, source_sha256 FROM chapters WHERE id = $1"#,
        id as ChapterId,
    )
    .fetch_optional(db)
    .await?)
}

/// A section of the book that matches a question.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// The chapter's id.
    pub chapter_id: i32,
    /// The chapter's title.
    pub chapter_title: String,
    /// The section's heading.
    pub heading: String,
    /// The section's anchor in the chapter.
    pub anchor: String,
    /// The section's markdown.
    pub content: String,
    /// The section's best fragments for the question, matched words in `**bold**`.
    pub excerpt: String,
    /// True when the section holds the whole question, as a web search would read it.
    pub exact: bool,
    /// The share of the question's key terms the section holds, weighted by rarity (0 to 1).
    pub coverage: f64,
}

/// The `limit` sections that best answer a question of key terms `terms` (the tutor's
/// [`crate::domain::tutor::retrieval`] says how it reads a question), best first: those that hold
/// the whole question as a web search reads it, or at least 0.6 of its terms weighted by
/// rarity (inverse section frequency; a term the book lacks weighs as much as its rarest), by
/// that match, then `ts_rank`. None when the book holds nothing on it.
pub async fn search_sections(db: impl PgExecutor<'_>, terms: &str, limit: i64) -> Result<Vec<Passage>> {
    // Every output column comes out of a CTE, which hides its NOT NULL: `!` restates it (the
    // coverage too, as every section found holds at least one term of positive weight).
    let passages = sqlx::query_as!(
        Passage,
        r#"WITH question AS (
               SELECT websearch_to_tsquery('english', $1) AS whole,
                      array(SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', $1)))) AS terms
           ), weights AS (
               -- Inverse section frequency; a term the book lacks counts as found once.
               SELECT t AS term,
                      ln((book.sections + 1)::float8 / (greatest(
                          (SELECT count(*) FROM chapter_sections s
                           WHERE s.search_vector @@ plainto_tsquery('simple', t)), 1) + 0.5)) AS weight
               FROM question, unnest(question.terms) AS t,
                    (SELECT count(*) AS sections FROM chapter_sections) AS book
           ), query AS (
               -- The terms are stemmed already, so 'simple' only joins them with OR.
               SELECT whole, websearch_to_tsquery('simple', array_to_string(terms, ' or ')) AS any_term,
                      (SELECT sum(weight) FROM weights) AS total_weight
               FROM question
           ), scored AS (
               SELECT s.chapter_id, c.title AS chapter_title, s.heading, s.anchor, s.content, s.position,
                      q.any_term,
                      s.search_vector @@ q.whole AS exact,
                      (SELECT sum(w.weight) FROM weights w
                       WHERE s.search_vector @@ plainto_tsquery('simple', w.term)) / q.total_weight AS coverage,
                      ts_rank(s.search_vector, q.any_term, 1) AS rank
               FROM query q
               JOIN chapter_sections s ON s.search_vector @@ q.any_term
               JOIN chapters c ON c.id = s.chapter_id
           ), best AS (
               SELECT * FROM scored
               WHERE exact OR coverage >= 0.6
               ORDER BY exact DESC, coverage DESC, rank DESC, chapter_id, position
               LIMIT $2
           )
           SELECT chapter_id AS "chapter_id!", chapter_title AS "chapter_title!", heading AS "heading!",
                  anchor AS "anchor!", content AS "content!", exact AS "exact!", coverage AS "coverage!",
                  ts_headline('english', content, any_term,
                      'MaxFragments=2, MaxWords=32, MinWords=12, StartSel=**, StopSel=**, FragmentDelimiter=" … "')
                      AS "excerpt!"
           FROM best
           ORDER BY exact DESC, coverage DESC, rank DESC, chapter_id, position"#,
        terms,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(passages)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAPTER: &str = "# Moving Robots\n\nIntro text.\n\n:::only{level=\"beginner\"}\n## What is a robot?\nBasics.\n:::\n\n## Moving Robots: the API\n\n```bash\n## not a heading\n```\n\n### Details\nMore.\n\n## Details\nAgain.\n";

    #[test]
    fn file_names_give_number_and_slug() {
        let source = ChapterSource::parse("03-moving-robots.md", CHAPTER.into()).unwrap();
        assert_eq!((source.id.get(), source.slug.as_str()), (3, "moving-robots"));
        assert_eq!(source.title, "Moving Robots");
        assert_eq!(source.sha256.len(), 64);
        for bad in ["3.md", "x3-a.md", "03-.md", "03-Big.md", "03-a--b.md", "00-zero.md", "03-a.txt"] {
            assert!(ChapterSource::parse(bad, CHAPTER.into()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn chapters_with_broken_directives_are_refused_with_the_line() {
        let err = |text: &str| ChapterSource::parse("01-a.md", text.into()).unwrap_err().to_string();
        assert!(
            err("# T\n:::only{level=\"beginner\"}\nx\n")
                .contains("line 2: the directive opened here is never closed")
        );
        assert!(err("# T\nx\n:::\n").contains("line 3: ':::' closes nothing"));
        assert!(err("# T\n:::only{level=\"guru\"}\n:::\n").contains("line 2: unknown level"));
        assert!(err("# T\n\n:::only{goal=\"flying\"}\n:::\n").contains("line 3: unknown goal \"flying\""));
        assert!(
            err("# T\n:::except{skill=\"Cobol:beginner\"}\n:::\n")
                .contains("line 2: unknown skill \"Cobol\"")
        );
        assert!(
            err("# T\n:::only{constraint=\"NoGPU|NoToaster\"}\n:::\n").contains("line 2: unknown constraint")
        );
        assert!(err("# T\n:::only{colour=\"red\"}\n:::\n").contains("line 2: unknown key \"colour\""));
        // Every key refuses a value its catalog does not have, with the line.
        for key in markup::KEYS {
            let refused = err(&format!("# T\n\n:::only{{{key}=\"zzz\"}}\n:::\n"));
            assert!(refused.contains("line 3: unknown") && refused.contains("\"zzz\""), "{key}: {refused}");
        }
        assert!(err("no title\n").contains("no '# Title'"));
        // Inside a code block, `:::` is just text.
        assert!(ChapterSource::parse("01-a.md", "# T\n```\n:::\n```\n".into()).is_ok());
    }

    #[test]
    fn sections_split_at_h2_and_h3_outside_code() {
        let source = ChapterSource::parse("03-moving-robots.md", CHAPTER.into()).unwrap();
        let sections = source.sections();
        let headings: Vec<(&str, &str)> =
            sections.iter().map(|s| (s.heading.as_str(), s.anchor.as_str())).collect();
        assert_eq!(
            headings,
            vec![
                ("Moving Robots", "moving-robots"),
                ("What is a robot?", "what-is-a-robot"),
                ("Moving Robots: the API", "moving-robots-the-api"),
                ("Details", "details"),
                ("Details", "details-1"),
            ]
        );
        assert_eq!(sections[0].content, "Intro text.");
        assert_eq!(sections[1].content, "Basics.", "directive lines are left out");
        assert!(sections[2].content.contains("## not a heading"));
        assert_eq!(sections.iter().map(|s| s.position).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn chapter_ids_are_positive_numbers() {
        assert_eq!(ChapterId::parse("7").map(ChapterId::get), Some(7));
        for bad in ["0", "-1", "+1", "1.0", "", "99999999999", "abc"] {
            assert_eq!(ChapterId::parse(bad), None, "{bad}");
        }
    }
}
