// Signing in with a Better-Auth server instead of primer's own auth: Better-Auth sets its session
// cookie (`better-auth.session_token`, HttpOnly, SameSite=Lax) and primer reads that cookie when
// the page calls it with `credentials: "include"` (PrimerClient's `session: "cookie"`), provided
// primer shares Better-Auth's database and BETTER_AUTH_SECRET (docs/frontend.md).
//
// A site built with a bundler would use Better-Auth's own client (`createAuthClient` from
// "better-auth/client", with `fetchOptions: {credentials: "include"}` when it runs on another
// origin); these few calls are its REST endpoints, so that this example needs no build step.

async function call(authUrl, path, body) {
  const response = await fetch(`${authUrl.replace(/\/+$/, "")}/api/auth${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body ?? {}),
    // Without it, a cross-origin answer's Set-Cookie is ignored and no cookie is sent.
    credentials: "include",
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(data?.message ?? `Better-Auth answered ${response.status}`);
  }
  // With Better-Auth's bearer plugin (and `set-auth-token` exposed by its CORS), the session token
  // is readable too, for clients that send `Authorization: Bearer` instead of the cookie.
  return { data, bearerToken: response.headers.get("set-auth-token") };
}

export const signUp = (authUrl, { email, password, name }) => call(authUrl, "/sign-up/email", { email, password, name });

export const signIn = (authUrl, { email, password }) => call(authUrl, "/sign-in/email", { email, password });

export const signOut = (authUrl) => call(authUrl, "/sign-out");
