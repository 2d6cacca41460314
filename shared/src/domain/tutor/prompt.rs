//! What the model is sent for one question: a system message first (the tutor's brief, the
//! conversation's own instructions, the passages of the book found for the question), then as
//! much of the conversation as fits a budget, newest kept, then the question.

use super::retrieval::Passage;
use crate::domain::conversations::{Message, Sender, SystemPrompt};
use crate::infra::model::{ChatMessage, Role};

/// The characters of earlier messages sent along (about 3,000 tokens): enough to follow the
/// thread, bounded so a long conversation neither overflows the context nor costs more each turn.
pub const HISTORY_BUDGET_CHARS: usize = 12_000;

/// The most earlier messages read from the database for one prompt.
pub const MAX_HISTORY_MESSAGES: i64 = 40;

/// The characters of one passage sent along.
const PASSAGE_CHARS: usize = 2_500;

const TUTOR: &str = "You are the tutor of primer, a textbook on physical AI and humanoid robotics. \
     Answer the reader's questions clearly and briefly, at the reader's level.";

const GROUNDING: &str = "Ground your answer in the passages of the book below, and name the sections \
     you use, e.g. (Simulation, \"Physics\"). If they do not cover the question, say first that the \
     book does not cover it, then answer from general knowledge.";

/// The messages for the model. `history` is the conversation before the question, newest
/// first, as [`crate::domain::conversations::history_before`] returns it.
pub fn build(
    system_prompt: Option<&str>,
    passages: &[Passage],
    history: &[Message],
    question: &str,
) -> Vec<ChatMessage> {
    let mut system = String::from(TUTOR);
    if let Some(instructions) = system_prompt {
        system.push_str("\n\nThe reader's instructions for this conversation:\n");
        // Prompts stored under an older, higher bound are cut to today's.
        system.extend(instructions.chars().take(SystemPrompt::MAX_CHARS));
    }
    system.push_str("\n\n");
    system.push_str(GROUNDING);
    if passages.is_empty() {
        system.push_str("\n\nNo passage of the book matches this question.");
    }
    for (n, passage) in passages.iter().enumerate() {
        let text: String = passage.content.chars().take(PASSAGE_CHARS).collect();
        system.push_str(&format!(
            "\n\n[{}] {}, \"{}\"\n{}",
            n + 1,
            passage.chapter_title,
            passage.heading,
            text
        ));
    }

    let mut kept = Vec::new();
    let mut spent = 0;
    for message in history {
        spent += message.content.chars().count();
        if spent > HISTORY_BUDGET_CHARS {
            break;
        }
        match message.sender {
            Sender::User => kept.push(ChatMessage::user(&message.content)),
            Sender::Ai => kept.push(ChatMessage::assistant(&message.content)),
            Sender::System => {}
        }
    }

    // An answer whose question did not fit would read as the model talking to itself.
    if kept.last().is_some_and(|oldest: &ChatMessage| oldest.role == Role::Assistant) {
        kept.pop();
    }

    let mut messages = Vec::with_capacity(kept.len() + 2);
    messages.push(ChatMessage::system(system));
    messages.extend(kept.into_iter().rev());
    messages.push(ChatMessage::user(question));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sqlx::types::Json;
    use uuid::Uuid;

    use crate::domain::ids::{ConversationId, MessageId};

    fn message(sender: Sender, content: &str) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::from(Uuid::nil()),
            sender,
            content: content.into(),
            ai_model: None,
            reply_to: None,
            is_error: false,
            error_details: None,
            citations: Json(Vec::new()),
            created_at: Utc::now(),
            content_hash: String::new(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    fn passage() -> Passage {
        Passage {
            chapter_id: 1,
            chapter_title: "ROS 2 Nodes and Topics".into(),
            heading: "Topics and messages".into(),
            anchor: "topics-and-messages".into(),
            content: "A topic is a named channel.".into(),
            excerpt: String::new(),
            exact: true,
            coverage: 1.0,
        }
    }

    #[test]
    fn the_system_message_comes_first_with_the_instructions_and_passages() {
        let messages = build(Some("Answer in French."), &[passage()], &[], "What is a topic?");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].role, Role::System);
        assert!(messages[0].content.contains("Answer in French."));
        assert!(messages[0].content.contains("[1] ROS 2 Nodes and Topics, \"Topics and messages\""));
        assert!(messages[0].content.contains("A topic is a named channel."));
        assert_eq!(messages[1], ChatMessage::user("What is a topic?"));
    }

    #[test]
    fn an_old_long_system_prompt_is_cut_to_the_bound() {
        let long = format!("{}{}", "p".repeat(SystemPrompt::MAX_CHARS), "TAIL");
        let messages = build(Some(&long), &[], &[], "?");
        assert!(messages[0].content.contains(&"p".repeat(SystemPrompt::MAX_CHARS)));
        assert!(!messages[0].content.contains("TAIL"));
    }

    #[test]
    fn history_keeps_the_newest_messages_within_the_budget_in_order() {
        let long = "x".repeat(HISTORY_BUDGET_CHARS / 2 - 10);
        // Newest first, as the database returns it.
        let history = [
            message(Sender::Ai, "newest answer"),
            message(Sender::User, &long),
            message(Sender::Ai, &long),
            message(Sender::User, "the oldest question, over budget"),
        ];
        let messages = build(None, &[], &history, "next?");
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        // The oldest answer that fits is left out: its question did not fit.
        assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::User]);
        assert_eq!(messages[1].content, long);
        assert_eq!(messages[2].content, "newest answer");
        assert!(!messages.iter().any(|m| m.content.contains("oldest")));
        assert!(messages[0].content.contains("No passage of the book matches"));
    }
}
