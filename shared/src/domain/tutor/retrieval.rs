//! Finding the passages of the book that answer a question: PostgreSQL full-text search over
//! `chapter_sections.search_vector` (a generated `tsvector` with a GIN index).
//!
//! A question is rarely phrased in the book's words, so demanding every word
//! (`websearch_to_tsquery`'s AND) finds too little, and accepting any word finds too much. A
//! section qualifies when it holds the whole question as a web search reads it, or enough of
//! the question's key terms, weighted by rarity: a term in every section says little, a rare
//! one says what the question is about, and a term the book never uses weighs as much as its
//! rarest one, so a question about something else cannot qualify on a common word. Sections
//! are ranked by that match, then `ts_rank`. Words that only ask ("explain", "please") are no
//! key terms.

use sqlx::PgExecutor;

use crate::domain::conversations::Citation;
use crate::error::Result;

/// A section of the book that matches a question.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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

impl Passage {
    /// The citation that points at this passage.
    pub fn citation(&self) -> Citation {
        Citation {
            chapter_id: self.chapter_id,
            section: self.heading.clone(),
            title: self.chapter_title.clone(),
            anchor: self.anchor.clone(),
        }
    }
}

/// Words that ask for an answer without saying what about; PostgreSQL's English stop words
/// (what, how, is, ...) are dropped by the search itself.
const ASKING_WORDS: &[&str] = &[
    "explain",
    "explains",
    "explained",
    "describe",
    "describes",
    "tell",
    "please",
    "mean",
    "means",
    "meaning",
    "define",
    "definition",
    "example",
    "examples",
    "understand",
    "know",
    "help",
    "question",
    "work",
    "works",
    "working",
    "use",
    "using",
    "used",
    "could",
    "would",
    "should",
    "thing",
    "things",
    "something",
    "anything",
    "difference",
    "different",
    "detail",
    "details",
    "simple",
    "simply",
    "briefly",
    "exactly",
    "actually",
    "really",
    "want",
    "need",
    "like",
];

/// The question without its asking words; punctuation stays, so a quoted phrase stays one.
pub fn key_terms(question: &str) -> String {
    let mut kept = String::with_capacity(question.len());
    let mut word = String::new();
    let flush = |word: &mut String, kept: &mut String| {
        if !ASKING_WORDS.contains(&word.to_lowercase().as_str()) {
            kept.push_str(word);
        }
        word.clear();
    };
    for c in question.chars() {
        if c.is_alphanumeric() || c == '\'' {
            word.push(c);
        } else {
            flush(&mut word, &mut kept);
            kept.push(c);
        }
    }
    flush(&mut word, &mut kept);
    kept
}

/// The part of a question searched for: a long message is mostly pasted code or logs, and
/// thousands of terms would make every section a weak match and the search slow.
const MAX_QUESTION_CHARS: usize = 2_000;

/// The `limit` sections that best answer `question`, best first; none when the book holds
/// nothing on it.
pub async fn best_passages(db: impl PgExecutor<'_>, question: &str, limit: i64) -> Result<Vec<Passage>> {
    let passages = sqlx::query_as(
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
           SELECT chapter_id, chapter_title, heading, anchor, content, exact, coverage,
                  ts_headline('english', content, any_term,
                      'MaxFragments=2, MaxWords=32, MinWords=12, StartSel=**, StopSel=**, FragmentDelimiter=" … "')
                      AS excerpt
           FROM best
           ORDER BY exact DESC, coverage DESC, rank DESC, chapter_id, position"#,
    )
    .bind(key_terms(&question.chars().take(MAX_QUESTION_CHARS).collect::<String>()))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(passages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_words_go_and_the_topic_stays() {
        assert_eq!(key_terms("Can you explain what a ROS 2 topic is?"), "Can you  what a ROS 2 topic is?");
        assert_eq!(key_terms("\"launch file\" -xml"), "\"launch file\" -xml");
        assert_eq!(key_terms("Please TELL me"), "  me");
    }
}
