-- Abuse limits and cost control. Every limit here is enforced by reserving a slot before the
-- expensive or risky work, in a short transaction or a single statement, so that requests
-- arriving at once can never pass it together (and nothing outlives the transaction, as
-- Neon's pooler in transaction mode requires).

-- Password checks that failed, or are in flight. A login (or a password re-check) first
-- inserts its row here, under a transaction-scoped lock on the account and on the client
-- address, and only if the counts allow; a check that succeeds deletes its row again. So the
-- rows are the checks an account or an address spent on wrong passwords, and parallel guesses
-- cannot outrun the count. Replaces login_failures, which recorded a failure only after the
-- check and so let parallel guesses through.
DROP TABLE login_failures;
CREATE TABLE password_checks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- `user:<id>` for an account, `email:<address>` for an address no account has (those are
    -- limited alike, so a 429 tells nothing about whether an account exists).
    account text NOT NULL,
    -- API Gateway's sourceIp (the peer address locally); NULL when unknown.
    address text,
    checked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Set when the account then signed in from this address: the typos were its owner's, so
    -- they stop counting against the (shared) address, and still count against the account.
    forgiven_for_address boolean NOT NULL DEFAULT false
);
CREATE INDEX password_checks_account_idx ON password_checks (account, checked_at);
CREATE INDEX password_checks_address_idx ON password_checks (address, checked_at)
    WHERE NOT forgiven_for_address;
CREATE INDEX password_checks_checked_at_idx ON password_checks (checked_at);

-- Admissions through an anonymous entry point (registration, guest tokens), per client
-- address and sliding window. A row is written only for an admitted request, under a
-- transaction-scoped lock on (scope, address), so at most the limit get through at once.
CREATE TABLE address_admissions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('register', 'guest')),
    address text NOT NULL,
    admitted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX address_admissions_idx ON address_admissions (scope, address, admitted_at);
CREATE INDEX address_admissions_admitted_at_idx ON address_admissions (admitted_at);

-- What a user or a guest used of the model on one (UTC) day: messages posted, and model
-- tokens (settled calls plus calls in flight, which reserve an estimate first and settle the
-- real usage after). Quotas are checked in the UPDATE that counts, so concurrent requests
-- cannot exceed them.
CREATE TABLE usage_daily (
    day date NOT NULL,
    user_id text REFERENCES "user" ("id") ON DELETE CASCADE,
    guest_id uuid,
    messages integer NOT NULL DEFAULT 0 CHECK (messages >= 0),
    tokens bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT usage_daily_one_subject CHECK ((user_id IS NULL) <> (guest_id IS NULL)),
    UNIQUE (user_id, day),
    UNIQUE (guest_id, day)
);
CREATE INDEX usage_daily_day_idx ON usage_daily (day);

-- The deployment's model tokens per (UTC) day, in all and by guests alone: the operator's
-- budget, reserved and settled like a reader's quota. Once spent, the offline engines answer.
CREATE TABLE model_budget_daily (
    day date NOT NULL,
    pool text NOT NULL CHECK (pool IN ('all', 'guests')),
    tokens bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    PRIMARY KEY (day, pool)
);

-- What each model call cost, from the API's `usage` field (NULL for the offline engines, or
-- when the endpoint did not say).
ALTER TABLE messages
    ADD COLUMN prompt_tokens integer CHECK (prompt_tokens >= 0),
    ADD COLUMN completion_tokens integer CHECK (completion_tokens >= 0);
ALTER TABLE personalized_chapters
    ADD COLUMN prompt_tokens integer CHECK (prompt_tokens >= 0),
    ADD COLUMN completion_tokens integer CHECK (completion_tokens >= 0);

-- Guests may not instruct the model: only a signed-in user's conversation has a system
-- prompt. Guest conversations that had one lose it.
UPDATE conversations SET system_prompt = NULL WHERE user_id IS NULL AND system_prompt IS NOT NULL;
ALTER TABLE conversations
    ADD CONSTRAINT conversations_guests_have_no_system_prompt CHECK (user_id IS NOT NULL OR system_prompt IS NULL);
