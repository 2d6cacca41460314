// The example site's page: a reader signs up or in, describes their background once (a form
// built from the API's catalog), reads a chapter written for that background, and asks the tutor,
// whose reply appears as the model writes it. Errors show the request id the API sent, and a 429
// says when to try again.

import { ApiError, NetworkError, PrimerClient } from "./api.js";
import * as betterAuth from "./better-auth.js";

const params = new URLSearchParams(location.search);
const apiUrl = params.get("api") || location.origin;
const authUrl = params.get("auth"); // a Better-Auth server, or null for primer's own auth

const client = new PrimerClient({
  apiUrl,
  streamUrl: params.get("stream") || apiUrl,
  session: authUrl ? "cookie" : "bearer",
  onSignedOut: () => refresh(),
});

const $ = (selector) => document.querySelector(selector);
let conversation = null;

// Notices

/** Shows what happened: a message, or an error with its request id and when to try again. */
function show(what) {
  const notice = $("#notice");
  notice.hidden = false;
  notice.className = what instanceof Error ? "error" : "info";
  notice.replaceChildren(what.message);
  delete notice.dataset.retryAfter;
  delete notice.dataset.requestId;
  if (what instanceof ApiError) {
    notice.dataset.code = what.code;
    if (what.requestId) {
      notice.dataset.requestId = what.requestId;
      notice.append(line(`Request id (for a bug report): ${what.requestId}`, "request-id"));
    }
    if (what.retryAfter !== null) {
      notice.dataset.retryAfter = String(what.retryAfter);
      notice.append(line(`Try again in ${spell(what.retryAfter)}.`, "retry-after"));
    }
    for (const { field, message } of Array.isArray(what.details) ? what.details : []) {
      notice.append(line(`${field}: ${message}`));
    }
  }
}

function line(text, className) {
  const p = document.createElement("p");
  p.textContent = text;
  if (className) p.className = className;
  return p;
}

/** 42 → "42 s", 300 → "5 min", 86399 → "23 h 59 min". */
function spell(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

/** Runs `action`, showing its error (and leaving the page usable) instead of throwing. */
async function attempt(action) {
  try {
    return await action();
  } catch (e) {
    if (e instanceof ApiError || e instanceof NetworkError) show(e);
    else show(new Error(`Unexpected: ${e.message}`));
    return undefined;
  }
}

// Account

function formValues(form) {
  return Object.fromEntries(new FormData(form));
}

$("#sign-up").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  attempt(async () => {
    if (authUrl) await betterAuth.signUp(authUrl, values);
    else await client.register(values);
    show({ message: "Welcome! A link to verify your e-mail address is on its way." });
    await refresh();
  });
});

$("#sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  attempt(async () => {
    if (authUrl) await betterAuth.signIn(authUrl, values);
    else await client.login(values);
    await refresh();
  });
});

$("#sign-out").addEventListener("click", () =>
  attempt(async () => {
    if (authUrl) await betterAuth.signOut(authUrl);
    else await client.logout();
    conversation = null;
    await refresh();
  }),
);

/** This page's address without its fragment: where a provider sign-in returns. */
function thisPage() {
  const url = new URL(location.href);
  url.hash = "";
  return url.toString();
}

/**
 * Sign-in options besides the e-mail form: one "Sign in with ..." link per provider the API
 * offers. A Better-Auth site offers its own (Better-Auth's socialProviders) instead.
 */
async function showSignInOptions() {
  const box = $("#sign-in-with");
  const providers = authUrl ? [] : ((await client.signInProviders().catch(() => [])) ?? []);
  box.replaceChildren(
    ...providers.map(({ id, name }) => {
      const link = Object.assign(document.createElement("a"), {
        href: client.signInUrl(id, thisPage()),
        textContent: `Sign in with ${name}`,
        className: "provider",
      });
      link.dataset.provider = id;
      return link;
    }),
  );
  box.hidden = providers.length === 0;
}

/**
 * Back from a provider: the API put `#code=...` (redeemed here for a session) or `#error=...`
 * in this page's fragment. The fragment is cleared first, so a reload does not redeem it again.
 */
async function finishProviderSignIn() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const code = fragment.get("code");
  const error = fragment.get("error");
  if (!code && !error) return;
  history.replaceState(null, "", thisPage());
  if (code) await attempt(() => client.exchangeSignInCode(code));
  else show(new Error(`The sign-in with the provider did not finish (${error.replaceAll("_", " ")}).`));
}

// Onboarding: the form is the catalog's fields, in its order.

function valueAt(object, path) {
  return path.split(".").reduce((value, key) => value?.[key], object);
}

function setAt(object, path, value) {
  const keys = path.split(".");
  const last = keys.pop();
  const parent = keys.reduce((node, key) => (node[key] ??= {}), object);
  parent[last] = value;
}

function select(options, value, disabled) {
  const element = document.createElement("select");
  element.append(new Option("—", ""));
  for (const option of options) element.append(new Option(option.label, option.value, false, option.value === value));
  element.disabled = disabled;
  return element;
}

function buildProfileForm(catalog, profile) {
  const container = $("#profile-fields");
  container.replaceChildren();
  for (const field of catalog.fields) {
    const fieldset = document.createElement("fieldset");
    fieldset.dataset.field = field.field;
    fieldset.dataset.kind = field.kind;
    const legend = document.createElement("legend");
    legend.textContent = field.label;
    fieldset.append(legend);
    const value = valueAt(profile, field.field);
    const locked = field.immutable_once_onboarded && Boolean(profile?.is_onboarded) && value != null;
    if (field.kind === "single") {
      fieldset.append(select(field.options, value ?? "", locked));
    } else if (field.kind === "multiple") {
      for (const option of field.options) {
        const label = document.createElement("label");
        const box = Object.assign(document.createElement("input"), { type: "checkbox", value: option.value });
        box.checked = Array.isArray(value) && value.includes(option.value);
        label.append(box, ` ${option.label}`);
        fieldset.append(label);
      }
    } else if (field.kind === "map") {
      for (const key of field.keys) {
        const label = document.createElement("label");
        const levels = select(field.options, value?.[key.value] ?? "", false);
        levels.dataset.key = key.value;
        label.append(`${key.label} `, levels);
        fieldset.append(label);
      }
    } else {
      const input = Object.assign(document.createElement("input"), { maxLength: field.max_length ?? 64 });
      input.value = value ?? "";
      fieldset.append(input);
    }
    container.append(fieldset);
  }
}

function readProfileForm() {
  const profile = { software_context: {}, hardware_context: {} };
  for (const fieldset of document.querySelectorAll("#profile-fields fieldset")) {
    const path = fieldset.dataset.field;
    const kind = fieldset.dataset.kind;
    if (kind === "single") {
      const value = fieldset.querySelector("select").value;
      if (value) setAt(profile, path, value);
    } else if (kind === "multiple") {
      setAt(profile, path, [...fieldset.querySelectorAll("input:checked")].map((box) => box.value));
    } else if (kind === "map") {
      const levels = {};
      for (const level of fieldset.querySelectorAll("select")) if (level.value) levels[level.dataset.key] = level.value;
      setAt(profile, path, levels);
    } else {
      const value = fieldset.querySelector("input").value.trim();
      if (value) setAt(profile, path, value);
    }
  }
  return profile;
}

$("#profile-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    const profile = await client.saveProfile(readProfileForm());
    show({ message: profile.is_onboarded ? "Saved: chapters are now written for you." : "Saved." });
    await showProfile(profile);
  });
});

async function showProfile(profile) {
  const catalog = await client.profileOptions();
  buildProfileForm(catalog, profile);
  $("#onboarding").hidden = false;
  $("#onboarding").dataset.onboarded = String(Boolean(profile?.is_onboarded));
}

// Chapters

async function showChapters() {
  const list = $("#chapters");
  list.replaceChildren();
  for (const chapter of await client.chapters()) {
    const item = document.createElement("li");
    const button = Object.assign(document.createElement("button"), { textContent: chapter.title });
    button.dataset.chapter = chapter.id;
    button.addEventListener("click", () => attempt(() => openChapter(chapter)));
    item.append(button);
    list.append(item);
  }
}

async function openChapter(chapter) {
  const personalized = await client.personalizedChapter(chapter.id);
  $("#chapter").hidden = false;
  $("#chapter").dataset.chapter = chapter.id;
  $("#chapter-meta").textContent = `${chapter.title}: written for your profile by the ${personalized.engine} engine${
    personalized.cached ? " (from the cache)" : ""
  }.`;
  // A real site renders the markdown (Docusaurus: MDX); plain text keeps this example small.
  $("#chapter-text").textContent = personalized.markdown;
}

// The tutor

$("#ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const content = form.content.value.trim();
  if (!content) return;
  attempt(async () => {
    conversation ??= await client.createConversation();
    await ask(content);
    form.content.value = "";
  }).finally(showUsage);
});

function bubble(sender, text) {
  const element = document.createElement("div");
  element.className = `message ${sender}`;
  element.textContent = text;
  $("#conversation").append(element);
  return element;
}

/** Posts the question and writes the reply into the page as its pieces arrive. */
async function ask(content) {
  let reply = null;
  let chunks = 0;
  const events = client.streamMessage(conversation.id, content, { onChunk: () => chunks++ });
  for await (const { event, data } of events) {
    if (event === "user_message") {
      bubble("user", data.content);
      reply = bubble("ai", "");
      reply.dataset.state = "streaming";
    } else if (event === "delta") {
      reply.textContent += data.text;
      reply.dataset.deltas = String(Number(reply.dataset.deltas ?? 0) + 1);
    } else if (event === "citations") {
      const sources = data.citations.map((c) => `${c.title} (chapter ${c.chapter_id})`);
      if (sources.length) reply.after(line(`Sources: ${sources.join("; ")}`, "citations"));
    } else if (event === "done" || event === "error") {
      // The pieces the network delivered before the one that ended the reply.
      reply.dataset.chunksBeforeEnd = String(chunks - 1);
      reply.dataset.state = event;
      if (event === "error") reply.textContent = data.error?.message ?? "The tutor could not answer; ask again.";
      else reply.textContent = data.content;
    }
  }
}

async function showUsage() {
  if ($("#usage").hidden) return;
  const usage = await client.usage().catch(() => null);
  if (!usage) return;
  const { messages, tokens } = usage;
  $("#usage-text").textContent =
    `Messages: ${messages.used} of ${messages.limit} used today (${messages.remaining} left). ` +
    `Model tokens: ${tokens.remaining} left. Renews ${new Date(usage.resets_at).toLocaleString()}.`;
  $("#usage-text").dataset.messagesUsed = String(messages.used);
}

// The page as the reader's state has it

async function refresh() {
  const user = await attempt(() => client.me());
  const signedIn = Boolean(user);
  $("#whoami").textContent = signedIn ? `Signed in as ${user.name} <${user.email}>` : "Not signed in";
  $("#whoami").dataset.state = signedIn ? "signed-in" : "signed-out";
  $("#signed-out").hidden = signedIn;
  $("#signed-in").hidden = !signedIn;
  for (const section of ["#onboarding", "#tutor", "#usage"]) $(section).hidden = !signedIn;
  if (!signedIn) {
    $("#conversation").replaceChildren();
    $("#chapter").hidden = true;
    showSignInOptions();
    return;
  }
  await attempt(async () => showProfile(await client.profile()));
  await showUsage();
}

$("#api-url").textContent = client.apiUrl;
$("#stream-url").textContent = client.streamUrl;
$("#session-mode").textContent = authUrl ? `Better-Auth cookie (${authUrl})` : "primer's bearer tokens";
attempt(showChapters);
finishProviderSignIn().then(refresh);
