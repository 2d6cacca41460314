//! Who owns conversations and whose day the quotas count: a signed-in user or a guest.

use uuid::Uuid;

/// A reader, signed in or a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A signed-in user, by id.
    User(String),
    /// A guest, by the guest id of their token.
    Guest(Uuid),
}

impl Owner {
    /// The column that holds this kind of owner's id.
    pub(crate) fn column(&self) -> &'static str {
        match self {
            Self::User(_) => "user_id",
            Self::Guest(_) => "guest_id",
        }
    }

    /// The user id, for a `user_id` parameter (NULL for a guest).
    pub(crate) fn user_id(&self) -> Option<&str> {
        match self {
            Self::User(id) => Some(id),
            Self::Guest(_) => None,
        }
    }

    /// The guest id, for a `guest_id` parameter (NULL for a user).
    pub(crate) fn guest_id(&self) -> Option<Uuid> {
        match self {
            Self::User(_) => None,
            Self::Guest(id) => Some(*id),
        }
    }

    pub(crate) fn is_guest(&self) -> bool {
        matches!(self, Self::Guest(_))
    }
}
