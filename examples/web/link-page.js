// What the two pages e-mailed links open share: the token read from the link (and taken out of
// the address bar, so that it stays out of the history), a client of the API, and a line that
// says what happened.

import { ApiError, PrimerClient } from "./api.js";

export function openLink() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  history.replaceState(null, "", location.pathname);
  const client = new PrimerClient({ apiUrl: params.get("api") || location.origin });
  const result = document.querySelector("#result");
  const say = (state, text) => {
    result.dataset.state = state;
    result.textContent = text;
  };
  if (!token) say("failed", "This link has no token: open the link from the e-mail as it is.");
  return { token, client, say };
}

/** What to tell the reader when the API refused the token (`invalidLink` for a bad link). */
export function refusal(e, invalidLink) {
  if (e instanceof ApiError && e.code === "invalid_token") return invalidLink;
  if (e instanceof ApiError && e.retryAfter !== null) return `Too many attempts: try again in ${e.retryAfter} s.`;
  return `${e.message}${e.requestId ? ` (request id ${e.requestId})` : ""}`;
}
