-- login_failures was the first login limit's table; password_checks (20261129100001) replaced
-- it and nothing reads or writes it any more.
DROP TABLE IF EXISTS login_failures;
