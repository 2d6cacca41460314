//! Listing conversations a page at a time, with opaque keyset cursors taken as of the first
//! page, so a list neither skips nor repeats what changes between fetches.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Conversation, Owner};
use crate::domain::ids::{ConversationId, UserId};
use crate::error::{Error, Result};

/// One page of a list and the cursor of the next, if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts.
    pub next_cursor: Option<String>,
}

/// How many items a page holds: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u16);

impl PageSize {
    /// Parses `?limit=`, with `default` when absent.
    pub fn parse(raw: Option<u32>, default: u16) -> Result<Self> {
        match raw {
            None => Ok(Self(default)),
            Some(n @ 1..=100) => Ok(Self(n as u16)),
            Some(_) => Err(Error::BadRequest("limit must be between 1 and 100".into())),
        }
    }

    pub(super) fn fetch(self) -> i64 {
        // One more than asked tells whether another page follows.
        i64::from(self.0) + 1
    }
}

/// A position in a list: the sort key of the last item seen, and for conversations the moment
/// the first page was read (`as_of`), so that later pages sort by the activity of that moment
/// and a conversation that gets a message between two fetches is neither skipped nor repeated.
/// Opaque to clients (base64 of `pinned:micros:id[:as_of_micros]`); one that does not parse is
/// a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(super) pinned: bool,
    pub(super) at: DateTime<Utc>,
    pub(super) id: Uuid,
    pub(super) as_of: Option<DateTime<Utc>>,
}

impl Cursor {
    /// Parses a cursor a client sent back.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = || Error::BadRequest("the cursor is not one this API issued".into());
        // Within what `timestamptz` holds (and what this service ever wrote), so a forged
        // cursor is a 400, not a database error.
        let time = |micros: &str| {
            micros
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .filter(|at| (1970..=9999).contains(&at.year()))
                .ok_or_else(bad)
        };
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split(':').collect();
        let (pinned, micros, id, as_of) = match parts[..] {
            [pinned, micros, id] => (pinned, micros, id, None),
            [pinned, micros, id, as_of] => (pinned, micros, id, Some(time(as_of)?)),
            _ => return Err(bad()),
        };
        Ok(Self {
            pinned: match pinned {
                "1" => true,
                "0" => false,
                _ => return Err(bad()),
            },
            at: time(micros)?,
            id: id.parse().map_err(|_| bad())?,
            as_of,
        })
    }

    fn encode(&self) -> String {
        let mut text = format!("{}:{}:{}", u8::from(self.pinned), self.at.timestamp_micros(), self.id);
        if let Some(as_of) = self.as_of {
            text.push_str(&format!(":{}", as_of.timestamp_micros()));
        }
        URL_SAFE_NO_PAD.encode(text)
    }
}

/// Which conversations a list shows.
#[derive(Debug, Clone, Copy)]
pub struct ConversationQuery {
    /// Archived ones, or the others.
    pub archived: bool,
    /// Page size.
    pub limit: PageSize,
    /// Where to continue.
    pub after: Option<Cursor>,
}

/// A listed conversation, with its place in the list.
struct ListedConversation {
    id: ConversationId,
    title: String,
    ai_model: String,
    system_prompt: Option<String>,
    is_archived: bool,
    is_pinned: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_message_at: Option<DateTime<Utc>>,
    activity: DateTime<Utc>,
    as_of: DateTime<Utc>,
}

/// The caller's conversations: pinned first, then by latest activity (the newest message, or
/// the creation for an empty one), as of the first page's moment: later pages leave out
/// conversations created since and sort by the newest message up to that moment, so paging
/// while messages arrive neither skips nor repeats a conversation. (Pinning or archiving one
/// between two fetches still moves it.)
pub async fn list(
    db: impl PgExecutor<'_>,
    owner: &Owner,
    query: ConversationQuery,
) -> Result<Page<Conversation>> {
    // The CTE hides the columns' NOT NULL from PostgreSQL's description: `!` restates it.
    let rows = sqlx::query_as!(
        ListedConversation,
        r#"WITH snapshot AS (SELECT coalesce($8::timestamptz, statement_timestamp()) AS as_of),
           listed AS (
             SELECT c.*, s.as_of,
                    CASE WHEN c.last_message_at IS NULL THEN c.created_at
                         WHEN c.last_message_at <= s.as_of THEN c.last_message_at
                         ELSE coalesce((SELECT max(m.created_at) FROM messages m
                                        WHERE m.conversation_id = c.id AND m.created_at <= s.as_of),
                                       c.created_at)
                    END AS activity
             FROM conversations c CROSS JOIN snapshot s
             WHERE (c.user_id = $1 OR (c.user_id IS NULL AND c.guest_id = $2))
               AND c.is_archived = $3 AND c.created_at <= s.as_of
           )
           SELECT c.id AS "id!: ConversationId", c.title AS "title!", c.ai_model AS "ai_model!",
                  c.system_prompt, c.is_archived AS "is_archived!", c.is_pinned AS "is_pinned!",
                  c.created_at AS "created_at!", c.updated_at AS "updated_at!", c.last_message_at,
                  c.activity AS "activity!", c.as_of AS "as_of!"
           FROM listed c
           WHERE ($4::boolean IS NULL OR (c.is_pinned, c.activity, c.id) < ($4, $5, $6))
           ORDER BY c.is_pinned DESC, c.activity DESC, c.id DESC
           LIMIT $7"#,
        owner.user_id() as Option<&UserId>,
        owner.guest_id(),
        query.archived,
        query.after.map(|c| c.pinned),
        query.after.map(|c| c.at),
        query.after.map(|c| c.id),
        query.limit.fetch(),
        query.after.and_then(|c| c.as_of),
    )
    .fetch_all(db)
    .await?;
    Ok(paginate(rows, query.limit, |row| Cursor {
        pinned: row.is_pinned,
        at: row.activity,
        id: row.id.get(),
        as_of: Some(row.as_of),
    })
    .map(|row| Conversation {
        id: row.id,
        title: row.title,
        ai_model: row.ai_model,
        system_prompt: row.system_prompt,
        is_archived: row.is_archived,
        is_pinned: row.is_pinned,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_message_at: row.last_message_at,
    }))
}

pub(super) fn paginate<R>(mut rows: Vec<R>, limit: PageSize, cursor_of: impl Fn(&R) -> Cursor) -> Page<R> {
    let more = rows.len() > usize::from(limit.0);
    rows.truncate(usize::from(limit.0));
    let next_cursor = if more { rows.last().map(|row| cursor_of(row).encode()) } else { None };
    Page { items: rows, next_cursor }
}

impl<T> Page<T> {
    fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_the_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_795_514_400_123_456).unwrap();
        for as_of in [None, Some(at)] {
            let cursor = Cursor { pinned: true, at, id: Uuid::new_v4(), as_of };
            assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        }
        for garbage in ["", "!!", "bm90IGEgY3Vyc29y", &URL_SAFE_NO_PAD.encode("2:1:x")] {
            assert_eq!(
                Cursor::parse(garbage).unwrap_err().code(),
                crate::error::Code::BadRequest,
                "{garbage}"
            );
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageSize::parse(None, 20).unwrap(), PageSize(20));
        assert!(PageSize::parse(Some(0), 20).is_err());
        assert!(PageSize::parse(Some(101), 20).is_err());
    }
}
