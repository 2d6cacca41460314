-- primer's additions to the identity tables. Better-Auth ignores columns and tables it does
-- not know, so these live beside its schema without disturbing it.

-- Seed 004's account state on the user row.
ALTER TABLE "user"
    ADD COLUMN is_active boolean NOT NULL DEFAULT true,
    ADD COLUMN preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN last_login timestamptz,
    -- preferences is a bag of settings (theme, default model): always an object.
    ADD CONSTRAINT user_preferences_is_object CHECK (jsonb_typeof(preferences) = 'object');

-- Emails compare case-insensitively: one user per address whatever its case, even if a
-- writer forgets to lower-case it. Registration maps this violation to 409.
CREATE UNIQUE INDEX user_email_lower_key ON "user" (lower("email"));

-- A user has at most one password; other providers (SSO) are further rows.
CREATE UNIQUE INDEX account_one_credential_per_user ON "account" ("userId")
    WHERE "providerId" = 'credential';

-- The janitor deletes expired sessions and verifications by expiry.
CREATE INDEX session_expires_at_idx ON "session" ("expiresAt");
CREATE INDEX verification_expires_at_idx ON "verification" ("expiresAt");

-- Refresh tokens already rotated away. Presenting one again means the token leaked, so the
-- whole session is revoked (deleting the session deletes these rows too).
CREATE TABLE refresh_token_spent (
    token_hash text PRIMARY KEY,
    session_id text NOT NULL REFERENCES "session" ("id") ON DELETE CASCADE,
    spent_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_token_spent_session_idx ON refresh_token_spent (session_id);

-- Failed logins, counted per email and per client IP over a window. In the database, not in
-- memory, because every Lambda instance must see the same counts.
CREATE TABLE login_failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    ip_address text,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email_idx ON login_failures (email, failed_at);
CREATE INDEX login_failures_ip_idx ON login_failures (ip_address, failed_at);
CREATE INDEX login_failures_failed_at_idx ON login_failures (failed_at);
