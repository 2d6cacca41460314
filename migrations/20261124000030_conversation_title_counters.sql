-- `Untitled N` titles count up per owner. A counter row per owner, bumped by an upsert in the
-- transaction that creates the conversation, gives two simultaneous creates different numbers
-- (counting existing titles would not), and a number is never handed out twice, even after a
-- conversation is deleted or renamed.
CREATE TABLE conversation_title_counters (
    user_id text UNIQUE REFERENCES "user" ("id") ON DELETE CASCADE,
    -- A guest's counter goes when the guest's conversations are claimed by a user.
    guest_id uuid UNIQUE,
    last_number integer NOT NULL CHECK (last_number > 0),
    -- The janitor drops a guest's counter once no guest token can use it any more.
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversation_title_counters_one_owner CHECK ((user_id IS NULL) <> (guest_id IS NULL))
);
