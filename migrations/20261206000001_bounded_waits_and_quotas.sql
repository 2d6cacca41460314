-- Hostile clients and sick dependencies: reservations that lapse with their claims, a daily
-- quota of conversations, password checks counted per place, and tighter time-outs.

-- A model call's reserved tokens, until it settles them. The counters in usage_daily and
-- model_budget_daily include every row here; settling deletes the row and books what the call
-- cost (never more than it reserved). A reservation whose process died lapses with the claim
-- of the work it was made for (`expires_at`): the next reservation, or the janitor, deletes it
-- and gives its tokens back.
CREATE TABLE token_reservations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The counters' day (UTC) it was reserved on.
    day date NOT NULL,
    user_id text REFERENCES "user" ("id") ON DELETE CASCADE,
    guest_id uuid,
    tokens bigint NOT NULL CHECK (tokens >= 0),
    expires_at timestamptz NOT NULL,
    CONSTRAINT token_reservations_one_subject CHECK ((user_id IS NULL) <> (guest_id IS NULL))
);
CREATE INDEX token_reservations_expires_at_idx ON token_reservations (expires_at);
CREATE INDEX token_reservations_user_id_idx ON token_reservations (user_id);

-- Conversations created per reader and day, counted (and refused past the quota) by the
-- statement that counts, as messages are.
ALTER TABLE usage_daily ADD COLUMN conversations integer NOT NULL DEFAULT 0 CHECK (conversations >= 0);

-- Where each account signed in with its password, and when last: a reader signing in from such
-- a place is counted against that place's own failures, never against failures from elsewhere.
CREATE TABLE sign_in_places (
    user_id text NOT NULL REFERENCES "user" ("id") ON DELETE CASCADE,
    address text NOT NULL,
    signed_in_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, address)
);
CREATE INDEX sign_in_places_signed_in_at_idx ON sign_in_places (signed_in_at);

-- A password check's source: `place:<address>` (an address the account signed in from
-- before), `session:<id>` (a signed-in reader re-proving their password) or `elsewhere`; each
-- source of an account has its own budget of failures. `failed` is set when the password was
-- wrong; a row without it is a check in flight (or one whose process died: it counts as a
-- failure once it is older than a check can take). Rows from before are failures.
ALTER TABLE password_checks ADD COLUMN source text NOT NULL DEFAULT 'elsewhere';
ALTER TABLE password_checks ADD COLUMN failed boolean NOT NULL DEFAULT true;
ALTER TABLE password_checks ALTER COLUMN failed SET DEFAULT false;
CREATE INDEX password_checks_source_idx ON password_checks (account, source, checked_at);

-- Statements end within the time a request waits for them (the client gives up after 5 s of
-- its own work), a lock wait sooner, and a transaction left idle by a client that stalled
-- or died gives its locks and its pooled server connection back within 10 s. Where the role
-- may not alter the database, the migration goes on without them and says so.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '5s');
    EXECUTE format('ALTER DATABASE %I SET lock_timeout = %L', current_database(), '3s');
    EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '10s');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not allowed to set the database''s time-outs; set them for the role instead';
END
$$;
