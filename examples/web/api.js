// A browser client of primer's HTTP API, with no dependencies: what a textbook site needs to sign
// readers in and keep them signed in, call the API from another origin, read the headers the
// API exposes to pages (x-request-id, Retry-After), and read a streamed tutor reply as it comes.
// docs/frontend.md explains each choice.

import { readEvents } from "./sse.js";

/** An error answer: the API's `{"error": {code, message, request_id, details?}}` and its headers. */
export class ApiError extends Error {
  constructor(response, body) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${response.status}`);
    this.status = response.status;
    this.code = error.code ?? "unknown";
    this.details = error.details;
    // Readable by the page because the API's CORS exposes x-request-id: quote it in a bug report.
    this.requestId = response.headers.get("x-request-id") ?? error.request_id ?? null;
    // Seconds to wait after a 429 or a 503 (exposed by CORS too); null when not sent.
    const retryAfter = response.headers.get("retry-after");
    this.retryAfter = retryAfter === null ? null : Number(retryAfter);
  }
}

/**
 * No answer reached the page: the network failed, or the browser refused the answer because the
 * API's CORS does not allow this page's origin (the page cannot tell which: both are a TypeError).
 */
export class NetworkError extends Error {}

const SESSION_KEY = "primer.session";

export class PrimerClient {
  /**
   * @param {object} options
   * @param {string} options.apiUrl the API's base URL: the stack output `ApiUrl` when deployed, the
   *   local runner's URL in development (no trailing `/`; routes start with `/api`).
   * @param {string} [options.streamUrl] where streamed replies are posted: the stack output
   *   `StreamUrl` (API Gateway's HTTP API cannot stream); `apiUrl` when not given.
   * @param {"bearer"|"cookie"} [options.session] `bearer`: primer's own access and refresh tokens,
   *   kept in `storage`; `cookie`: a Better-Auth session cookie, sent with `credentials: "include"`.
   * @param {Storage} [options.storage] where bearer tokens are kept (shared by the site's tabs).
   * @param {() => void} [options.onSignedOut] called when the session ended (refresh refused).
   */
  constructor({ apiUrl, streamUrl, session = "bearer", storage = window.localStorage, onSignedOut }) {
    this.apiUrl = apiUrl.replace(/\/+$/, "");
    this.streamUrl = (streamUrl || apiUrl).replace(/\/+$/, "");
    this.mode = session;
    this.storage = storage;
    this.onSignedOut = onSignedOut ?? (() => {});
    /** The x-request-id of the latest answer. */
    this.lastRequestId = null;
    this.refreshing = null;
  }

  /** primer's tokens, as the last login or refresh (in any tab) stored them. */
  get session() {
    const stored = this.storage.getItem(SESSION_KEY);
    return stored ? JSON.parse(stored) : null;
  }

  set session(session) {
    if (session) this.storage.setItem(SESSION_KEY, JSON.stringify(session));
    else this.storage.removeItem(SESSION_KEY);
  }

  /**
   * Sends a request and returns the Response of a 2xx. A 401 with a bearer token refreshes the
   * session once (or takes the tokens another tab just stored) and sends the request again.
   */
  async send(method, path, { body, accept = "application/json", base = this.apiUrl, contentType } = {}) {
    for (let attempt = 0; ; attempt++) {
      const token = this.mode === "bearer" ? this.session?.access_token : null;
      const headers = { accept };
      if (body !== undefined) headers["content-type"] = contentType ?? "application/json";
      if (token) headers.authorization = `Bearer ${token}`;
      let response;
      try {
        response = await fetch(base + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          // Cookies cross origins only when asked for, and only to an API that allows this origin
          // with credentials (explicit CORS origins, never `*`).
          credentials: this.mode === "cookie" ? "include" : "omit",
        });
      } catch (e) {
        throw new NetworkError(
          `no answer from ${base}: the network failed, or the API does not allow this page's origin (${location.origin}) (${e.message})`,
        );
      }
      this.lastRequestId = response.headers.get("x-request-id");
      if (response.status === 401 && token && attempt === 0 && (await this.renewed(token))) continue;
      if (!response.ok) throw new ApiError(response, await response.json().catch(() => null));
      return response;
    }
  }

  /** `send`, then the JSON body (null for a 204). */
  async request(method, path, options) {
    const response = await this.send(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  /**
   * After a 401 for `refusedToken`: true when there are new tokens to try. Another tab may have
   * refreshed already (its tokens are in the shared storage); else this one refreshes, once for
   * all the requests that failed together.
   */
  async renewed(refusedToken) {
    if (this.session && this.session.access_token !== refusedToken) return true;
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** POST /api/auth/refresh: rotates the refresh token. False (signed out) when refused. */
  async refresh() {
    const refreshToken = this.session?.refresh_token;
    if (!refreshToken) return false;
    const response = await fetch(`${this.apiUrl}/api/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    if (response.ok) {
      this.session = (await response.json()).session;
      return true;
    }
    if (response.status >= 500 || response.status === 429) {
      // The session may still be good: keep it and let the caller see the failure.
      throw new ApiError(response, await response.json().catch(() => null));
    }
    this.session = null;
    this.onSignedOut();
    return false;
  }

  // Accounts (primer's own; a Better-Auth site signs in with Better-Auth instead: better-auth.js).

  async register({ email, password, name }) {
    const { user, session } = await this.request("POST", "/api/auth/register", { body: { email, password, name } });
    this.session = session;
    return user;
  }

  async login({ email, password }) {
    const { user, session } = await this.request("POST", "/api/auth/login", { body: { email, password } });
    this.session = session;
    return user;
  }

  /** GET /api/auth/oauth/providers: the providers a reader may sign in with (none configured: []). */
  async signInProviders() {
    const { providers } = await this.request("GET", "/api/auth/oauth/providers");
    return providers;
  }

  /**
   * Where a "Sign in with ..." button leads: the API starts the sign-in with `provider` and, once
   * the reader is back, sends them to `returnTo` (a page of an origin in the API's SITE_ORIGINS or
   * FRONTEND_URL) with `#code=...` or `#error=...`.
   */
  signInUrl(provider, returnTo) {
    const start = `${this.apiUrl}/api/auth/oauth/${encodeURIComponent(provider)}/start`;
    return `${start}?redirect_to=${encodeURIComponent(returnTo)}`;
  }

  /** POST /api/auth/oauth/exchange: a finished sign-in's one-time code for a session. */
  async exchangeSignInCode(code) {
    const { user, session } = await this.request("POST", "/api/auth/oauth/exchange", { body: { code } });
    this.session = session;
    return user;
  }

  /** Ends this session on the server, then forgets it here whatever the server said. */
  async logout() {
    try {
      if (this.session) await this.request("POST", "/api/auth/logout");
    } finally {
      this.session = null;
    }
  }

  /** The signed-in reader, or null when there is none (401). */
  async me() {
    if (this.mode === "bearer" && !this.session) return null;
    try {
      return (await this.request("GET", "/api/auth/me")).user;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return null;
      throw e;
    }
  }

  // Profile, chapters, usage.

  profileOptions() {
    return this.request("GET", "/api/profile/options");
  }

  /** The reader's profile, or null when they have none yet. */
  async profile() {
    try {
      return (await this.request("GET", "/api/profile")).profile;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }

  async saveProfile(profile) {
    return (await this.request("PUT", "/api/profile", { body: profile })).profile;
  }

  async chapters() {
    return (await this.request("GET", "/api/chapters")).chapters;
  }

  personalizedChapter(id) {
    return this.request("GET", `/api/chapters/${encodeURIComponent(id)}/personalized?format=json`);
  }

  usage() {
    return this.request("GET", "/api/usage");
  }

  // The tutor.

  async createConversation(title) {
    return (await this.request("POST", "/api/conversations", { body: title ? { title } : {} })).conversation;
  }

  /**
   * Posts a message and yields the reply's events as they arrive (`user_message`, `delta`...,
   * `citations`, `done`, or `error`), each `{event, id, data}` with `data` parsed. A refusal before
   * anything is stored (401, 404, 422, 429 ...) throws an ApiError, as any other request.
   */
  async *streamMessage(conversationId, content, { onChunk } = {}) {
    const response = await this.send("POST", `/api/conversations/${encodeURIComponent(conversationId)}/messages`, {
      body: { content },
      accept: "text/event-stream",
      base: this.streamUrl,
    });
    for await (const event of readEvents(response.body, onChunk)) {
      yield { ...event, data: JSON.parse(event.data) };
    }
  }
}
