//! The model-based engine: a language model adapts the rule-based chapter's depth, examples and
//! hardware notes to the reader. Its answer is checked before anyone sees it.

use crate::book::markup::{Line, scan};
use crate::model::{ChatMessage, ModelClient, ModelError, Spend};

use super::Reader;
use super::rules::Filtered;

/// Why the model's chapter was not used.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The model gave no answer.
    #[error("the model failed")]
    Model(#[from] ModelError),
    /// The answer holds no text.
    #[error("the model's chapter is empty")]
    Empty,
    /// The answer lost a heading, so anchors into the chapter (the tutor's citations) break.
    #[error("the model's chapter lost the heading {0:?}")]
    LostHeading(String),
}

const INSTRUCTIONS: &str = "You adapt one chapter of a robotics textbook to one reader. \
Adjust the depth of explanations to their level, prefer examples in the languages they write, \
and add short practical notes for the hardware they have. Keep every heading exactly as written \
and in the same order; you may add text under any heading. Keep code correct and in fenced \
blocks. Do not invent APIs. Answer with the chapter's markdown only: no preamble, no closing \
remarks, no fence around the whole answer.";

/// What the model is sent to adapt `chapter` for `reader`.
pub fn messages(reader: &Reader, chapter: &str) -> [ChatMessage; 2] {
    [
        ChatMessage::system(INSTRUCTIONS),
        ChatMessage::user(format!("The reader: {}.\n\nThe chapter:\n\n{chapter}", reader.describe())),
    ]
}

/// Asks the model to adapt `chapter` for `reader` in at most `max_tokens`, and checks what
/// comes back; also returns what the call cost, whether its answer is used or not.
pub async fn rewrite(
    client: &ModelClient,
    reader: &Reader,
    chapter: &str,
    max_tokens: u32,
) -> (Spend, Result<String, RewriteError>) {
    match client.complete(client.default_model(), &messages(reader, chapter), max_tokens).await {
        Ok(answer) => (Spend::of(&answer), checked(chapter, &answer.text).map(str::to_owned)),
        Err(e) => (e.spend(), Err(e.into())),
    }
}

/// The answer, unwrapped from a fence around the whole of it, if it is non-empty and keeps
/// every heading of `chapter` in order.
fn checked<'a>(chapter: &str, answer: &'a str) -> Result<&'a str, RewriteError> {
    let answer = unwrap_fence(answer.trim());
    if answer.is_empty() {
        return Err(RewriteError::Empty);
    }
    let mut found = headings(answer);
    for wanted in headings(chapter) {
        // In order: each heading is looked for after the previous one.
        if !found.any(|h| h == wanted) {
            return Err(RewriteError::LostHeading(wanted.to_owned()));
        }
    }
    Ok(answer)
}

fn headings(markdown: &str) -> impl Iterator<Item = &str> {
    scan(markdown).filter_map(|line| match line.kind {
        Line::Heading { text, .. } => Some(text),
        _ => None,
    })
}

/// Models like to wrap a markdown answer in ```` ```markdown ```` ... ```` ``` ````.
fn unwrap_fence(answer: &str) -> &str {
    let Some(first_line_end) = answer.find('\n') else { return answer };
    let opening = &answer[..first_line_end];
    let is_markdown_fence = ["```", "```markdown", "```md"].contains(&opening.trim_end());
    match answer[first_line_end..].trim_end().strip_suffix("```") {
        Some(inner) if is_markdown_fence => inner.trim(),
        _ => answer,
    }
}

/// The note of a model-made chapter.
pub fn note(reader: &Reader, filtered: &Filtered) -> String {
    let left_out = match filtered.dropped {
        0 => String::new(),
        1 => " One passage meant for another background is left out.".into(),
        n => format!(" {n} passages meant for other backgrounds are left out."),
    };
    format!(
        "> **Tailored for you.** A language model adapted the depth, examples and hardware notes of \
         this chapter for {}.{left_out}",
        reader.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAPTER: &str =
        "# Walking\n\nIntro.\n\n## Balance\n\nText.\n\n```bash\n# not a heading\n```\n\n### ZMP\n";

    #[test]
    fn an_answer_keeping_every_heading_passes() {
        let answer = "# Walking\n\nA gentler intro.\n\n## Balance\n\nMore.\n\n## Extra for you\n\n### ZMP\n";
        assert_eq!(checked(CHAPTER, answer).unwrap(), answer.trim());
    }

    #[test]
    fn a_fenced_answer_is_unwrapped() {
        let answer = "```markdown\n# Walking\n## Balance\n### ZMP\n```\n";
        assert_eq!(checked(CHAPTER, answer).unwrap(), "# Walking\n## Balance\n### ZMP");
    }

    #[test]
    fn empty_answers_and_lost_or_reordered_headings_fail() {
        assert!(matches!(checked(CHAPTER, "  \n"), Err(RewriteError::Empty)));
        let lost = "# Walking\n## Balance\n";
        assert!(matches!(checked(CHAPTER, lost), Err(RewriteError::LostHeading(h)) if h == "ZMP"));
        let reordered = "# Walking\n### ZMP\n## Balance\n";
        assert!(matches!(checked(CHAPTER, reordered), Err(RewriteError::LostHeading(_))));
    }
}
