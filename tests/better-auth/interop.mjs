// A real Better-Auth on primer's database, driven by functions/auth/tests/better_auth.rs.
//
//   DATABASE_URL=... BETTER_AUTH_SECRET=... node interop.mjs <command> '<json input>'
//
// Each command prints one JSON document on stdout; a failure exits non-zero with the reason
// on stderr. Better-Auth is configured as a frontend sharing the database would configure it:
// the Kysely/pg adapter on a pg Pool, email and password enabled with the password settings
// docs/better-auth.md gives for sharing users with primer (primer's argon2id hashes verify here
// too) and its own password reset (the "e-mail" is kept in memory, for the command to print the
// token),
// GitHub as a social provider (never called: `oauth-sign-in` starts where its callback has
// learnt who the reader is), the defaults otherwise.
import { betterAuth } from "better-auth";
import { verifyPassword } from "better-auth/crypto";
import { getMigrations } from "better-auth/db/migration";
import { handleOAuthUserInfo } from "better-auth/oauth2";
import { argon2Verify } from "hash-wasm";
import pg from "pg";

const SESSION_COOKIE = "better-auth.session_token";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

/** The token of the last reset e-mail Better-Auth "sent". */
let resetToken = null;

const options = {
  database: new pg.Pool({ connectionString: env("DATABASE_URL"), max: 2 }),
  secret: env("BETTER_AUTH_SECRET"),
  baseURL: "http://localhost:3000",
  emailAndPassword: {
    enabled: true,
    password: {
      // Better-Auth's own scrypt for the hashes it makes; primer's argon2id (over the NFKC
      // password, as primer hashes) for the users primer made or upgraded.
      verify: ({ hash, password }) =>
        hash.startsWith("$argon2")
          ? argon2Verify({ password: password.normalize("NFKC"), hash })
          : verifyPassword({ hash, password }),
    },
    sendResetPassword: async ({ token }) => {
      resetToken = token;
    },
  },
  socialProviders: { github: { clientId: "better-auth-github-client", clientSecret: "unused" } },
  telemetry: { enabled: false },
  logger: { disabled: true },
};
const auth = betterAuth(options);

/** The value Better-Auth set for its session cookie, as a browser would send it back. */
function sessionCookie(headers) {
  const setCookie = headers.get("set-cookie") ?? "";
  const match = setCookie.match(new RegExp(`(?:^|[,\\s])${SESSION_COOKIE.replace(".", "\\.")}=([^;]+)`));
  if (!match) throw new Error(`no ${SESSION_COOKIE} in Set-Cookie: ${setCookie}`);
  return match[1];
}

const commands = {
  /** Signs a user up, then in: {user_id, session_id, token, cookie}. */
  async "sign-up-and-in"({ email, password, name }) {
    await auth.api.signUpEmail({ body: { email, password, name } });
    const signedIn = await auth.api.signInEmail({ body: { email, password }, returnHeaders: true });
    const token = signedIn.response.token;
    const session = await auth.api.getSession({
      headers: new Headers({ cookie: `${SESSION_COOKIE}=${sessionCookie(signedIn.headers)}` }),
    });
    return {
      user_id: signedIn.response.user.id,
      session_id: session.session.id,
      token,
      cookie: sessionCookie(signedIn.headers),
    };
  },

  /** Signs an existing user in: {user_id, token}, or {error} when Better-Auth refuses. */
  async "sign-in"({ email, password }) {
    try {
      const signedIn = await auth.api.signInEmail({ body: { email, password } });
      return { user_id: signedIn.user.id, token: signedIn.token };
    } catch (error) {
      return { error: error?.body?.code ?? String(error) };
    }
  },

  /** What Better-Auth's getSession makes of a session cookie: {session_id, user_id} or null. */
  async "get-session"({ cookie }) {
    const found = await auth.api.getSession({
      headers: new Headers({ cookie: `${SESSION_COOKIE}=${cookie}` }),
      query: { disableCookieCache: true },
    });
    return found && { session_id: found.session.id, user_id: found.user.id };
  },

  /** Better-Auth's own forgot-password flow: {token} of the reset e-mail, or {token: null}. */
  async "request-password-reset"({ email }) {
    await auth.api.requestPasswordReset({ body: { email } });
    return { token: resetToken };
  },

  /** Better-Auth's own reset: {ok: true}, or {ok: false, code} with its error code. */
  async "reset-password"({ token, new_password }) {
    try {
      await auth.api.resetPassword({ body: { token, newPassword: new_password } });
      return { ok: true };
    } catch (error) {
      return { ok: false, code: error?.body?.code ?? String(error?.message ?? error) };
    }
  },

  /**
   * Better-Auth's own OAuth sign-in, from the point where its callback knows who the reader is
   * (handleOAuthUserInfo: the account's owner, else a user with the address, linked when its
   * rules allow, else a new user; then a session): {user_id, session_id, is_register} or
   * {error}.
   */
  async "oauth-sign-in"({ provider_id, account_id, email, email_verified, name, scope }) {
    const context = await auth.$context;
    const result = await handleOAuthUserInfo(
      { context },
      {
        userInfo: { id: account_id, email, emailVerified: email_verified, name },
        account: { providerId: provider_id, accountId: account_id, scope },
        callbackURL: "/",
      },
    );
    if (result.error) return { error: result.error };
    return { user_id: result.data.user.id, session_id: result.data.session.id, is_register: result.isRegister };
  },

  /** The accounts Better-Auth finds for a user: [{provider_id, account_id, scope, access_token}]. */
  async "list-accounts"({ user_id }) {
    const context = await auth.$context;
    const accounts = await context.internalAdapter.findAccounts(user_id);
    return accounts.map((a) => ({
      provider_id: a.providerId,
      account_id: a.accountId,
      scope: a.scope ?? null,
      access_token: a.accessToken ?? null,
    }));
  },

  /** Password hashes made by Better-Auth's own hasher: [{password, hash}]. */
  async "hash-passwords"({ passwords }) {
    const context = await auth.$context;
    return Promise.all(passwords.map(async (password) => ({ password, hash: await context.password.hash(password) })));
  },

  /** Better-Auth's own migration, as `npx auth migrate` runs it: the tables it created. */
  async migrate() {
    const context = await auth.$context;
    const plan = await getMigrations(context.options);
    await plan.runMigrations();
    return { created: plan.toBeCreated.map((t) => t.table) };
  },

  /** What Better-Auth's migration planner would still create or add to this database. */
  async "plan-migrations"() {
    const context = await auth.$context;
    const plan = await getMigrations(context.options);
    return {
      to_be_created: plan.toBeCreated.map((t) => t.table),
      to_be_added: plan.toBeAdded.map((t) => ({ table: t.table, fields: Object.keys(t.fields) })),
    };
  },
};

const [command, input = "{}"] = process.argv.slice(2);
try {
  if (!commands[command]) throw new Error(`unknown command ${command}; one of ${Object.keys(commands).join(", ")}`);
  const output = await commands[command](JSON.parse(input));
  process.stdout.write(JSON.stringify(output) + "\n");
} catch (error) {
  process.stderr.write(`${command}: ${error?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await options.database.end();
}
