//! Who owns conversations and whose day the quotas count: a signed-in user or a guest.

use uuid::Uuid;

use crate::domain::ids::UserId;

/// A reader, signed in or a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A signed-in user, by id.
    User(UserId),
    /// A guest, by the guest id of their token.
    Guest(Uuid),
}

impl Owner {
    /// The user id, for a `user_id` parameter (NULL for a guest).
    pub(crate) fn user_id(&self) -> Option<&UserId> {
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
