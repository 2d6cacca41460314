-- Signing in with GitHub, Google and OpenID Connect providers.
--
-- A provider account is an `account` row as Better-Auth writes one (providerId, accountId =
-- the provider's id of the reader, userId, scope, timestamps; no tokens: primer keeps none).
-- One provider account belongs to one user: Better-Auth's own look-ups refuse duplicates
-- ("Multiple accounts match the same accountId"), and here two sign-ins racing to create or
-- link the same provider account must not both succeed. The password accounts
-- (`credential`, accountId = the user id) are unique per user already.
CREATE UNIQUE INDEX account_provider_account_key ON "account" ("providerId", "accountId");

-- The pending sign-ins (state, PKCE verifier, nonce, where to return) and the one-time codes
-- that hand a finished sign-in to the site live in Better-Auth's `verification` table, under
-- identifiers of their own: `primer:oauth-state:<sha256 of the state>` and
-- `primer:oauth-code:<sha256 of the code>`. The janitor removes them once expired.

-- Starting a sign-in and returning from the provider are admitted per client address.
ALTER TABLE address_admissions DROP CONSTRAINT address_admissions_scope_check;
ALTER TABLE address_admissions ADD CONSTRAINT address_admissions_scope_check
    CHECK (scope IN ('register', 'guest', 'password-forgot', 'mail:password-reset', 'mail:verify-email',
                     'oauth-start', 'oauth-callback'));
