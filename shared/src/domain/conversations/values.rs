//! The checked values of conversations and messages: titles, system prompts, model names,
//! message content and its hash.

use sha2::{Digest, Sha256};

use crate::error::Error;

/// A conversation's title: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(pub(super) String);

impl Title {
    /// Parses a title someone typed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let title = raw.trim();
        match title.chars().count() {
            0 => Err("must not be empty".into()),
            n if n > 200 => Err("must be at most 200 characters".into()),
            _ if title.chars().any(char::is_control) => Err("must not contain control characters".into()),
            _ => Ok(Self(title.to_owned())),
        }
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A signed-in user's instructions for the model in one conversation: at most 2,000
/// characters as sent (the contract's `maxLength`; about 500 tokens, sent with every question
/// and paid from the user's quota), then trimmed. Guests cannot give any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPrompt(pub(super) String);

impl SystemPrompt {
    /// The longest system prompt a conversation may have. Prompts stored under an older, higher
    /// bound are cut to it when sent.
    pub const MAX_CHARS: usize = 2000;

    /// Parses a system prompt; a blank one means none.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let prompt = raw.trim();
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if prompt.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        Ok((!prompt.is_empty()).then(|| Self(prompt.to_owned())))
    }

    /// The prompt.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model a conversation may use: one of the configured ones, as
/// [`crate::domain::tutor::ModelCatalog::parse`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiModel(pub(super) String);

impl AiModel {
    /// A model the catalog has checked.
    pub(crate) fn checked(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The model's id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a message's content was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentError {
    /// Nothing but whitespace.
    Blank,
    /// Over [`MessageContent::MAX_BYTES`].
    TooLarge,
    /// Holds a NUL character, which PostgreSQL cannot store.
    Nul,
}

impl From<ContentError> for Error {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::Blank => Error::invalid("content", "must not be empty"),
            ContentError::TooLarge => Error::PayloadTooLarge { limit: MessageContent::MAX_BYTES },
            ContentError::Nul => Error::invalid("content", "must not contain NUL characters"),
        }
    }
}

/// What a person says to the tutor: not blank, at most 32 KiB (docs/api.md). Kept exactly as sent,
/// since leading spaces may be code indentation; its SHA-256 is what duplicates are found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(pub(super) String);

impl MessageContent {
    /// The largest message content, in bytes of UTF-8.
    pub const MAX_BYTES: usize = 32 * 1024;

    /// Parses a message's content.
    pub fn parse(raw: String) -> Result<Self, ContentError> {
        if raw.len() > Self::MAX_BYTES {
            Err(ContentError::TooLarge)
        } else if raw.trim().is_empty() {
            Err(ContentError::Blank)
        } else if raw.contains('\0') {
            Err(ContentError::Nul)
        } else {
            Ok(Self(raw))
        }
    }

    /// The content.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `content_hash` of this content.
    pub fn hash(&self) -> String {
        content_hash(&self.0)
    }
}

/// SHA-256 of a message's content, in lower-case hex.
pub fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_content_is_bounded_and_not_blank() {
        assert_eq!(MessageContent::parse(" \n ".into()), Err(ContentError::Blank));
        assert_eq!(MessageContent::parse("x".repeat(32 * 1024 + 1)), Err(ContentError::TooLarge));
        assert_eq!(MessageContent::parse("a\0b".into()), Err(ContentError::Nul));
        assert!(SystemPrompt::parse("be\0brief").is_err());
        let content = MessageContent::parse("What is a topic?".into()).unwrap();
        assert_eq!(content.hash(), hex::encode(Sha256::digest(b"What is a topic?")));
    }

    #[test]
    fn titles_and_prompts_parse() {
        assert_eq!(Title::parse("  ROS notes ").unwrap().as_str(), "ROS notes");
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"t".repeat(201)).is_err());
        assert_eq!(SystemPrompt::parse("  ").unwrap(), None);
        assert!(SystemPrompt::parse(&"p".repeat(2001)).is_err());
        assert!(SystemPrompt::parse(&"p".repeat(2000)).is_ok());
        // The bound is on what was sent (schemathesis found a padded prompt accepted).
        assert!(SystemPrompt::parse(&format!(" {}", "p".repeat(2000))).is_err());
    }
}
