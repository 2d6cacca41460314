// A textbook site's Better-Auth server, for the browser test (tests/browser/site_flow.py): the
// version this folder's lock file pins, its HTTP handler on 127.0.0.1, on primer's database
// (primer's migrations created Better-Auth's tables), with the bearer plugin and CORS for the
// site's origin, as a site whose pages and auth server live on different origins sets it up.
//
//   DATABASE_URL=... BETTER_AUTH_SECRET=... SITE_ORIGIN=http://127.0.0.1:PORT node site-server.mjs
//
// It listens on a free port, prints one JSON line on stdout, {"url"}, and serves until stopped.
// The session cookie it sets is host-only for 127.0.0.1, HttpOnly, SameSite=Lax, not Secure
// (http): a browser sends it to primer on another port of 127.0.0.1, same site though another
// origin, when the page asks with `credentials: "include"`.
import http from "node:http";
import { betterAuth } from "better-auth";
import { toNodeHandler } from "better-auth/node";
import { bearer } from "better-auth/plugins";
import pg from "pg";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const siteOrigin = env("SITE_ORIGIN");

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const url = `http://127.0.0.1:${server.address().port}`;

const database = new pg.Pool({ connectionString: env("DATABASE_URL"), max: 4 });
const auth = betterAuth({
  database,
  secret: env("BETTER_AUTH_SECRET"),
  baseURL: url,
  // Better-Auth refuses cookie-carrying requests from origins it does not trust (CSRF).
  trustedOrigins: [siteOrigin],
  emailAndPassword: { enabled: true },
  plugins: [bearer()],
  telemetry: { enabled: false },
  logger: { disabled: true },
});
const handler = toNodeHandler(auth);

server.on("request", (request, response) => {
  // CORS for the site's origin only, with credentials so that its Set-Cookie is kept.
  if (request.headers.origin === siteOrigin) {
    response.setHeader("Access-Control-Allow-Origin", siteOrigin);
    response.setHeader("Access-Control-Allow-Credentials", "true");
    response.setHeader("Vary", "Origin");
  }
  if (request.method === "OPTIONS") {
    if (request.headers.origin === siteOrigin) {
      response.setHeader("Access-Control-Allow-Methods", "GET, POST");
      response.setHeader("Access-Control-Allow-Headers", "content-type, authorization");
      response.setHeader("Access-Control-Max-Age", "7200");
    }
    response.writeHead(204).end();
    return;
  }
  handler(request, response);
});

process.stdout.write(`${JSON.stringify({ url })}\n`);
const stop = () => server.close(() => database.end().then(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
