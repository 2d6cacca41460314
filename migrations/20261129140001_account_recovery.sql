-- Account recovery: password-reset and address-verification links sent by e-mail.
--
-- The tokens live in Better-Auth's own `verification` table, which needs no change: primer's
-- rows are told apart by their identifier, `primer:reset-password:<user id>` or
-- `primer:verify-email:<user id>`, with the row id as the token's public half and, in
-- `value`, only a hash of its secret half. Better-Auth's rows (`reset-password:<token>`,
-- value = the user id) never start with `primer:`, and each side looks its rows up by exact
-- identifier or id, so neither can consume the other's.

-- Admissions gain three scopes: forgot-password requests per client address, and the
-- e-mails sent to one account per kind. For the two mail scopes `address` holds the account's
-- key (`user:<id>`, or `email:<address>` for an address without an account, counted alike so
-- that a refusal tells nothing about whether an account exists).
ALTER TABLE address_admissions DROP CONSTRAINT address_admissions_scope_check;
ALTER TABLE address_admissions ADD CONSTRAINT address_admissions_scope_check
    CHECK (scope IN ('register', 'guest', 'password-forgot', 'mail:password-reset', 'mail:verify-email'));

-- password_checks.account also holds `recovery:user:<id>` (a reset or verification token
-- checked against that account) and `token:<selector>` (a token naming no account).
COMMENT ON COLUMN password_checks.account IS
    'user:<id> | email:<address> (password checks); recovery:user:<id> | token:<selector> (recovery tokens)';
