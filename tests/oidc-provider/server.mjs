// A real OpenID provider (npm oidc-provider) on 127.0.0.1 for primer's sign-in tests
// (functions/auth/tests/oauth.rs), started by the test kit (primer_shared::test_util::oidc).
//
//   node server.mjs '<json config>'
//
// config: {
//   "clients": [{"client_id", "client_secret", "redirect_uris": [...],
//                "id_token_signed_response_alg"?: "RS256" | "ES256",
//                "token_endpoint_auth_method"?: "client_secret_basic" | "client_secret_post"}],
//   "accounts": {"<sub>": {"email", "email_verified", "name"?}},
//   "claims_in_id_token"?: false   (true: the profile goes into the ID token, not only UserInfo)
// }
//
// Prints one line of JSON, {"issuer": "http://127.0.0.1:PORT"}, once it listens, then reads
// commands on stdin, one per line, answering each with one line of JSON on stdout:
//   tamper <mode>   the next token response's ID token is re-made: wrong_aud, wrong_iss,
//                   expired, wrong_nonce (re-signed with the provider's own key),
//                   unknown_kid (signed with a key it never publishes), rotated (signed with a
//                   held-back key that its JWKS publishes from then on), none (`alg: none`),
//                   hs256 (HS256 keyed with the published RSA key's PEM)      -> {"ok": true}
//   stats           {"jwks": JWKS requests served, "token": token requests served}
// It exits when stdin closes (the test ended, however it ended).
//
// The login and consent pages are this script's (oidc-provider leaves them to its host):
// GET /interaction/<uid> answers a page with one form; the login form posts `login` (an
// account id of config.accounts) to /interaction/<uid>/login, the consent form posts to
// /interaction/<uid>/confirm, and a second form to /interaction/<uid>/abort declines.
import { createHmac, createPublicKey } from "node:crypto";
import http from "node:http";
import readline from "node:readline";

import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from "jose";
import Provider from "oidc-provider";

const config = JSON.parse(process.argv[2] ?? "{}");
const accounts = config.accounts ?? {};

/** A key pair for `alg` as a private JWK (for oidc-provider) and its public half. */
async function key(alg, kid) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const meta = { kid, alg, use: "sig" };
  return { alg, kid, privateKey, privateJwk: { ...(await exportJWK(privateKey)), ...meta }, publicJwk: { ...(await exportJWK(publicKey)), ...meta } };
}
const rsa = await key("RS256", "rsa-1");
const ec = await key("ES256", "ec-1");
const heldBack = await key("RS256", "rsa-2");
const stranger = await key("RS256", "unknown-1");

/** The keys the JWKS endpoint publishes; `rotated` adds the held-back one. */
const published = [rsa.publicJwk, ec.publicJwk];
const stats = { jwks: 0, token: 0 };
let tamper = null;

const b64 = (value) => Buffer.from(value).toString("base64url");

/** The ID token, re-made as the pending tamper mode says. */
async function remake(idToken, mode) {
  const header = decodeProtectedHeader(idToken);
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  const own = header.alg === "ES256" ? ec : rsa;
  const sign = (signer, payload) =>
    new SignJWT(payload).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: header.typ }).sign(signer.privateKey);
  switch (mode) {
    case "wrong_aud":
      return sign(own, { ...claims, aud: "someone-else" });
    case "wrong_iss":
      return sign(own, { ...claims, iss: "http://evil.example" });
    case "expired":
      return sign(own, { ...claims, iat: now - 3600, exp: now - 1800 });
    case "wrong_nonce":
      return sign(own, { ...claims, nonce: "not-this-sign-in" });
    case "unknown_kid":
      return sign(stranger, claims);
    case "rotated":
      published.push(heldBack.publicJwk);
      return sign(heldBack, claims);
    case "none":
      return `${b64(JSON.stringify({ alg: "none", kid: rsa.kid }))}.${b64(JSON.stringify(claims))}.`;
    case "hs256": {
      const pem = createPublicKey({ key: rsa.publicJwk, format: "jwk" }).export({ type: "spki", format: "pem" });
      const signed = `${b64(JSON.stringify({ alg: "HS256", kid: rsa.kid }))}.${b64(JSON.stringify(claims))}`;
      return `${signed}.${createHmac("sha256", pem).update(signed).digest("base64url")}`;
    }
    default:
      throw new Error(`unknown tamper mode ${mode}`);
  }
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  jwks: { keys: [rsa.privateJwk, ec.privateJwk] },
  async findAccount(_ctx, sub) {
    const account = accounts[sub];
    return account && { accountId: sub, claims: async () => ({ sub, ...account }) };
  },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name", "picture"] },
  conformIdTokenClaims: !config.claims_in_id_token,
  cookies: { keys: ["primer-test-cookie-key-primer-test-cookie-key"] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // primer sends PKCE on every sign-in; requiring it here makes a sign-in without it fail.
  pkce: { required: () => true },
  responseTypes: ["code"],
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;

// The test controls: count the key and token requests, re-make the next ID token.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === "/jwks" && ctx.status === 200) {
    stats.jwks += 1;
    ctx.body = { keys: published };
  }
  if (ctx.path === "/token") {
    stats.token += 1;
    if (tamper && ctx.body?.id_token) {
      const mode = tamper;
      tamper = null;
      ctx.body = { ...ctx.body, id_token: await remake(ctx.body.id_token, mode) };
    }
  }
});

const page = (title, body) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

async function form(req) {
  let text = "";
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

async function interaction(req, res, path) {
  const [, , uid, action] = path.split("/");
  if (req.method === "GET" && !action) {
    const details = await provider.interactionDetails(req, res);
    res.setHeader("content-type", "text/html; charset=utf-8");
    if (details.prompt.name === "login") {
      res.end(page("Sign in", `<form method="post" action="/interaction/${uid}/login"><input name="login"><button>Sign in</button></form>`));
    } else {
      res.end(
        page(
          "Consent",
          `<form method="post" action="/interaction/${uid}/confirm"><button>Allow</button></form>` +
            `<form method="post" action="/interaction/${uid}/abort"><button>Deny</button></form>`,
        ),
      );
    }
    return;
  }
  if (req.method === "POST" && action === "login") {
    const login = (await form(req)).get("login");
    if (!accounts[login]) {
      res.statusCode = 400;
      res.end(page("Sign in", "unknown account"));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === "POST" && action === "confirm") {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === "POST" && action === "abort") {
    await provider.interactionFinished(
      req,
      res,
      { error: "access_denied", error_description: "End-User aborted interaction" },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  res.statusCode = 404;
  res.end();
}

const callback = provider.callback();
server.on("request", async (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  try {
    if (path.startsWith("/interaction/")) await interaction(req, res, path);
    else callback(req, res);
  } catch (error) {
    res.statusCode = 500;
    res.end(String(error?.message ?? error));
  }
});

const answer = (value) => process.stdout.write(JSON.stringify(value) + "\n");
answer({ issuer });

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  const [command, argument] = line.trim().split(/\s+/);
  if (command === "tamper") {
    tamper = argument;
    answer({ ok: true });
  } else if (command === "stats") {
    answer(stats);
  } else {
    answer({ error: `unknown command ${command}` });
  }
});
commands.on("close", () => process.exit(0));
