//! The offline tutor: the embedded default when no model is configured. It writes nothing of
//! its own; it quotes the passages of the book that match the question best, cites them, and
//! says plainly when the book has nothing on the question instead of guessing.

use super::retrieval::Passage;
use crate::domain::conversations::NewReply;
use crate::domain::usage::Exhausted;

/// The model id of the offline tutor, as conversations and replies name it.
pub const OFFLINE_TUTOR: &str = "offline-tutor";

/// The most passages one answer quotes.
const MAX_QUOTES: usize = 3;

/// The answer to a question, given the passages found for it (best first) and the titles of
/// the book's chapters (to point somewhere useful when nothing matched).
pub fn answer(passages: &[Passage], chapter_titles: &[String]) -> NewReply {
    let Some(best) = passages.first() else {
        return reply(nothing_found(chapter_titles), Vec::new());
    };
    // Only passages as good as the best one: a weaker match next to a strong one is noise.
    let quoted: Vec<&Passage> = passages
        .iter()
        .filter(|p| p.exact == best.exact && best.coverage - p.coverage < 1e-9)
        .take(MAX_QUOTES)
        .collect();
    let mut text = String::from("Here is what the book says about this.\n");
    for passage in &quoted {
        text.push_str(&format!(
            "\n> {}\n>\n> — *{}*, section “{}”\n",
            clean_excerpt(&passage.excerpt),
            passage.chapter_title,
            passage.heading
        ));
    }
    text.push_str(
        "\nI am the offline tutor: I quote the book rather than write explanations of my own, so \
         open the cited sections for the whole story.",
    );
    reply(text, quoted.iter().map(|p| p.citation()).collect())
}

/// The first paragraph of an offline answer given because a model allowance is spent.
pub fn standing_in_note(why: Exhausted) -> &'static str {
    match why {
        Exhausted::Reader => {
            "*You have used today's allowance of the language model, so the offline tutor answers \
             until it renews at midnight UTC.*"
        }
        Exhausted::Deployment => {
            "*The language model has reached today's budget, so the offline tutor answers until it \
             renews at midnight UTC.*"
        }
    }
}

fn nothing_found(chapter_titles: &[String]) -> String {
    if chapter_titles.is_empty() {
        return "The book has not been loaded yet, so I have nothing to answer from.".into();
    }
    format!(
        "I could not find anything about that in the book, and I will not guess. The book covers: {}. \
         Ask about one of those, ideally in the words the book would use.",
        chapter_titles.join("; ")
    )
}

fn reply(content: String, citations: Vec<crate::domain::conversations::Citation>) -> NewReply {
    NewReply { content, ai_model: OFFLINE_TUTOR.into(), citations, error: None, usage: None }
}

/// The parts a streamed offline answer is sent in: sentences and lines, each with the spaces
/// after it, so that the parts joined are the answer exactly.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (part, tail) = rest.split_at(sentence_end(rest));
        rest = tail;
        Some(part)
    })
}

/// Where the first sentence or line of `text` ends, spaces after it included.
fn sentence_end(text: &str) -> usize {
    let mut after_stop = false;
    for (i, c) in text.char_indices() {
        if c == '\n' || (after_stop && c.is_whitespace()) {
            return i + text[i..].find(|c: char| !c.is_whitespace()).unwrap_or(text.len() - i);
        }
        after_stop = matches!(c, '.' | '!' | '?' | '…');
    }
    text.len()
}

/// One line of prose for a quote: code fences and line breaks would break the block quote.
fn clean_excerpt(excerpt: &str) -> String {
    let text = excerpt.replace("```", " ");
    let words: Vec<&str> = text.split_whitespace().filter(|w| !w.chars().all(|c| c == '#')).collect();
    format!("…{}…", words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(chapter_id: i32, heading: &str, excerpt: &str, coverage: f64) -> Passage {
        Passage {
            chapter_id,
            chapter_title: format!("Chapter {chapter_id}"),
            heading: heading.into(),
            anchor: heading.to_lowercase().replace(' ', "-"),
            content: String::new(),
            excerpt: excerpt.into(),
            exact: coverage == 1.0,
            coverage,
        }
    }

    #[test]
    fn it_quotes_and_cites_the_best_passages_only() {
        let passages = [
            passage(1, "Topics and messages", "A **topic** is a named\n```\nchannel", 1.0),
            passage(1, "Launch files", "start **topics** together", 1.0),
            passage(2, "Bridging", "a **ROS** bridge", 0.7),
        ];
        let reply = answer(&passages, &[]);
        assert!(reply.content.contains("> …A **topic** is a named channel…"), "{}", reply.content);
        assert!(reply.content.contains("*Chapter 1*, section “Topics and messages”"));
        assert!(!reply.content.contains("bridge"), "a weaker match is left out");
        assert_eq!(reply.citations.len(), 2);
        assert_eq!(reply.citations[0].section, "Topics and messages");
        assert_eq!(reply.ai_model, OFFLINE_TUTOR);
        assert!(reply.error.is_none());
    }

    #[test]
    fn an_answer_streams_in_sentences_that_join_to_it() {
        let text = "Here is what the book says.\n\n> …A topic is a channel… Nodes use it!\nThe end.";
        let parts: Vec<&str> = sentences(text).collect();
        assert_eq!(
            parts,
            ["Here is what the book says.\n\n", "> …A topic is a channel… ", "Nodes use it!\n", "The end."]
        );
        assert_eq!(parts.concat(), text);
        assert_eq!(sentences("").count(), 0);
    }

    #[test]
    fn it_says_so_when_the_book_has_nothing() {
        let reply = answer(&[], &["ROS 2 Nodes and Topics".into(), "Simulation".into()]);
        assert!(reply.content.contains("could not find anything about that in the book"));
        assert!(reply.content.contains("ROS 2 Nodes and Topics; Simulation"));
        assert!(reply.citations.is_empty());
    }
}
