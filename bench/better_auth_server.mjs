// The reference of bench/run: Better-Auth (the version tests/better-auth pins) serving its
// HTTP handler on 127.0.0.1, over its own pg pool of 10 connections, as a Node app would run it.
//
//   DATABASE_URL=... BETTER_AUTH_SECRET=... node bench/better_auth_server.mjs
//
// It creates its tables (Better-Auth's own migration) in DATABASE_URL's database, signs one
// user up and in, starts listening on a free port, and prints one JSON line on stdout:
// {"port", "email", "cookie", "token"}; then serves until it is stopped. `cookie` is the value
// of the signed session cookie, as a browser sends it to GET /api/auth/get-session.
// The packages come from tests/better-auth/node_modules (`npm ci` there first).
import http from "node:http";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const packages = createRequire(new URL("../tests/better-auth/package.json", import.meta.url));
const load = (name) => import(pathToFileURL(packages.resolve(name)).href);
const { betterAuth } = await load("better-auth");
const { toNodeHandler } = await load("better-auth/node");
const { getMigrations } = await load("better-auth/db/migration");
const pg = (await load("pg")).default;

const SESSION_COOKIE = "better-auth.session_token";
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address();
const baseURL = `http://127.0.0.1:${port}`;

const auth = betterAuth({
  database: new pg.Pool({ connectionString: env("DATABASE_URL"), max: 10 }),
  secret: env("BETTER_AUTH_SECRET"),
  baseURL,
  emailAndPassword: { enabled: true },
  // Its own limiter would answer the load with 429s; primer's runner has none on these routes.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  logger: { disabled: true },
});

const context = await auth.$context;
await (await getMigrations(context.options)).runMigrations();

const email = `bench-${Date.now()}@example.com`;
const password = "correct horse battery";
await auth.api.signUpEmail({ body: { email, password, name: "Bench" } });
const signedIn = await auth.api.signInEmail({ body: { email, password }, returnHeaders: true });
const setCookie = signedIn.headers.get("set-cookie") ?? "";
const match = setCookie.match(new RegExp(`(?:^|[,\\s])${SESSION_COOKIE.replace(".", "\\.")}=([^;]+)`));
if (!match) throw new Error(`no ${SESSION_COOKIE} in Set-Cookie: ${setCookie}`);

server.on("request", toNodeHandler(auth));
process.stdout.write(`${JSON.stringify({ port, email, cookie: match[1], token: signedIn.response.token })}\n`);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
