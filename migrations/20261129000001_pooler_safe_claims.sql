-- Neon's pooled URL is PgBouncer in transaction mode: nothing session-scoped survives a
-- transaction, and a transaction held open across a model call or an S3 request pins one of a
-- few server connections. So work that takes seconds is guarded by short-lived claims stored in
-- rows, taken and released by single statements, instead of session advisory locks or long
-- transactions.

-- Until when somebody is answering a user message. A post or retry claims the message by
-- moving `reply_lease_until` forward where it had lapsed (an UPDATE of this row, so of two
-- claimants one waits for the other and then finds the lease taken); the reply is stored in the
-- transaction that clears it. A claimant that dies leaves a lease that lapses, and the next
-- post or retry takes over.
ALTER TABLE messages
    ADD COLUMN reply_lease_until timestamptz,
    ADD CONSTRAINT messages_only_questions_are_claimed CHECK (sender = 'user' OR reply_lease_until IS NULL);

-- Who is making a personalized chapter (keyed by its object key) and until when: concurrent
-- misses of one chapter generate once, without a transaction held across the generation. A
-- row whose lease lapsed is taken over; the janitor claims a key before removing its copy.
CREATE TABLE personalization_claims (
    storage_path text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- Bounds for every statement and transaction on this database, so that nothing holds a pooled
-- server connection or a lock for long: new sessions (and so every PgBouncer server
-- connection) start with them. Where the role may not alter the database, the migration goes
-- on without them and says so.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '15s');
    EXECUTE format('ALTER DATABASE %I SET lock_timeout = %L', current_database(), '5s');
    EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '30s');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not allowed to set the database''s time-outs; set them for the role instead';
END
$$;
