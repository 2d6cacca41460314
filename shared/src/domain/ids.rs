//! The ids of the product's rows, as types: a function that takes a [`UserId`] cannot be handed
//! a session id or a conversation's. Each is what its column holds (`text` for Better-Auth's
//! user ids, `uuid` for ours), encoded and decoded as that column's type, serialized as the
//! bare value. [`crate::domain::book::ChapterId`], [`crate::domain::profile::ProfileHash`] and
//! [`crate::domain::personalize::Fingerprint`] live with the resource they name.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user's id: Better-Auth's `"user"."id"` (text; ours are UUIDs, Better-Auth's its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct UserId(String);

impl UserId {
    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, given up as a string (for a token's `sub`, a response body).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<String> for UserId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for UserId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares a row id held in a `uuid` column.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random (v4) id, for a row made here rather than by the database's default.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The UUID.
            pub fn get(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

uuid_id!(
    /// A conversation's id (`conversations.id`).
    ConversationId
);
uuid_id!(
    /// A message's id (`messages.id`).
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_their_bare_value() {
        let user = UserId::from("3c9b2f1e");
        assert_eq!(serde_json::to_string(&user).unwrap(), r#""3c9b2f1e""#);
        let uuid = Uuid::nil();
        assert_eq!(serde_json::to_string(&ConversationId::from(uuid)).unwrap(), format!(r#""{uuid}""#));
        assert_eq!(serde_json::from_str::<MessageId>(&format!(r#""{uuid}""#)).unwrap().get(), uuid);
    }
}
