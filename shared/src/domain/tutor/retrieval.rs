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

use crate::domain::book;
pub use crate::domain::book::Passage;
use crate::domain::conversations::Citation;
use crate::error::Result;

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
    let terms = key_terms(&question.chars().take(MAX_QUESTION_CHARS).collect::<String>());
    book::search_sections(db, &terms, limit).await
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
