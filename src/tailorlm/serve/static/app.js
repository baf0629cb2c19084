// tailorlm workbench: plain JavaScript (an ES module) over the JSON API under /v1, no build step.
// Every piece of user data is put on the page as text (render.js, el()), never as HTML.
import {
  $, clearUserPanels, el, renderAnswers, renderOverview, renderPreferences, showPartial, startAnswers, stopAnswers,
} from "./render.js";
import { readEvents } from "./sse.js";

const KEY_STORAGE = "tailorlm.apiKey";
const MAX_LISTED_USERS = 300; // a long list stays fast; the filter finds the rest
const DEFAULT_METHOD = "rag-bm25+profile"; // the server's default for /compare
const state = { key: null, users: [], userId: null, last: null, cancel: null };

function setStatus(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// ---- API access -----------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function errorText(data, status) {
  if (data && typeof data === "object") {
    const detail = data.detail ?? data.error?.message ?? data.error ?? data.message;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    if (detail) return typeof detail === "string" ? detail : JSON.stringify(detail);
  }
  return typeof data === "string" && data ? data : `HTTP ${status}`;
}

function parsed(raw) {
  try {
    return raw ? JSON.parse(raw) : null;
  } catch {
    return raw; // not JSON: keep the text for the error message
  }
}

/** The response of an API call, unread; an ApiError (with the server's message) if it failed. */
async function send(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(path, { method, headers, body: payload, signal });
  if (!response.ok) {
    const data = parsed(await response.text());
    if (response.status === 401) showKeyPanel("The server did not accept that key. Enter another one.");
    throw new ApiError(response.status, errorText(data, response.status));
  }
  return response;
}

async function api(path, options = {}) {
  return parsed(await (await send(path, options)).text());
}

const userPath = (userId, rest = "") => `/v1/users/${encodeURIComponent(userId)}${rest}`;

/** Lists may come bare or wrapped ({data: [...]}, {users: [...]}, ...). */
function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (data && Array.isArray(data[key])) return data[key];
  return [];
}

// ---- API key ----------------------------------------------------------------------------

function takeKeyFromFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const key = params.get("key");
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  // The key must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

function showKeyPanel(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  $("workspace").hidden = true;
  $("forget-key").hidden = true;
  $("key-state").textContent = "";
  $("key-panel").hidden = false;
  $("key-input").value = "";
  $("key-input").focus();
  if (message) setStatus(message, true);
}

async function start() {
  state.key = sessionStorage.getItem(KEY_STORAGE);
  if (!state.key) return showKeyPanel();
  $("key-panel").hidden = true;
  $("workspace").hidden = false;
  $("forget-key").hidden = false;
  $("key-state").textContent = "Key set for this tab";
  try {
    const [users, models] = await Promise.all([api("/v1/users?limit=10000"), api("/v1/models")]);
    state.users = listOf(users, "users", "data", "items").map((u) => (typeof u === "string" ? u : u.user_id));
    fillMethods(listOf(models, "data", "models"));
    renderUserList();
    setStatus(`${state.users.length} users loaded.`);
    if (state.users.length === 1) chooseUser(state.users[0]); // e.g. a user-scoped key
  } catch (err) {
    if (err.status !== 401) setStatus(`Could not load users: ${err.message}`, true);
  }
}

// ---- users ------------------------------------------------------------------------------

function fillMethods(models) {
  const select = $("method");
  select.replaceChildren();
  const names = models.map((m) => (typeof m === "string" ? m : m.id)).filter((id) => id && id.startsWith("tailorlm/"));
  for (const id of names) {
    const spec = id.slice("tailorlm/".length);
    select.append(el("option", { value: spec }, spec));
  }
  if (names.includes(`tailorlm/${DEFAULT_METHOD}`)) select.value = DEFAULT_METHOD;
  if (!names.length) select.append(el("option", { value: "" }, "server default"));
}

function renderUserList() {
  const needle = $("user-filter").value.trim().toLowerCase();
  const matches = state.users.filter((u) => u.toLowerCase().includes(needle));
  const shown = matches.slice(0, MAX_LISTED_USERS);
  $("user-list").replaceChildren(
    ...shown.map((userId) =>
      el("li", {}, el("button", {
        type: "button",
        class: "user-button",
        "aria-pressed": String(userId === state.userId),
        onclick: () => chooseUser(userId),
      }, userId)),
    ),
  );
  const more = matches.length > shown.length ? `, showing ${shown.length}: refine the filter` : "";
  $("user-count").textContent = `${matches.length} of ${state.users.length} users${more}`;
}

async function chooseUser(userId) {
  state.cancel?.(); // a running compare must not fill in this user's panels
  state.userId = userId;
  state.last = null;
  renderUserList();
  $("results").hidden = true;
  $("empty-state").hidden = true;
  $("user-panel").hidden = false;
  $("user-title").textContent = userId;
  clearUserPanels(); // never show the previous user's data under this user's name
  setUserActions(false);
  setStatus(`Loading ${userId}…`);
  if (await refreshUser(userId)) {
    setUserActions(true);
    setStatus(`Showing ${userId}.`);
  } else if (state.userId === userId) {
    $("user-title").textContent = `${userId} (could not be loaded)`;
  }
}

/** Delete and compare act on the loaded user only: off while loading and after a failed load. */
function setUserActions(enabled) {
  $("delete-user").disabled = !enabled;
  $("send").disabled = !enabled;
}

/** (Re)load the overview and preferences of a user; false if that failed. */
async function refreshUser(userId) {
  try {
    const [overview, prefs] = await Promise.all([api(userPath(userId, "/overview")), api(userPath(userId, "/preferences"))]);
    if (state.userId !== userId) return false; // another user was chosen meanwhile
    renderOverview(overview);
    renderPreferences(listOf(prefs, "preferences", "data", "items"));
    return true;
  } catch (err) {
    if (err.status !== 401) setStatus(`Could not load ${userId}: ${err.message}`, true);
    return false;
  }
}

async function deleteUser() {
  const userId = state.userId;
  if (!userId) return;
  if (!window.confirm(`Delete all data of user ${userId}? This cannot be undone.`)) return;
  try {
    await api(userPath(userId), { method: "DELETE" });
  } catch (err) {
    return setStatus(`Could not delete ${userId}: ${err.message}`, true);
  }
  state.users = state.users.filter((u) => u !== userId);
  state.userId = null;
  $("user-panel").hidden = true;
  $("empty-state").hidden = false;
  renderUserList();
  setStatus(`Deleted all data of ${userId}.`);
}

// ---- chat and preferences ---------------------------------------------------------------

/**
 * POST the compare with "stream": true and fill both answers in as they are decoded; the whole
 * result ({personalized: {text, tailorlm}, baseline: {text}}) once both are done.
 */
async function streamCompare(userId, body, signal) {
  const path = userPath(userId, "/compare");
  const response = await send(path, { method: "POST", body: { ...body, stream: true }, signal, accept: "text/event-stream" });
  const texts = { personalized: "", baseline: "" };
  const result = {};
  for await (const event of readEvents(response)) {
    if (state.userId !== userId) throw new DOMException("another user was chosen", "AbortError");
    if (event.error) {
      const side = event.side ? `the ${event.side} answer failed: ` : "";
      throw new ApiError(0, side + (event.error.message || "unknown error"));
    }
    if (!Object.hasOwn(texts, event.side)) continue; // an event this page does not know
    if (event.type === "delta") {
      texts[event.side] += event.delta;
      showPartial(event.side, texts[event.side]);
    } else if (event.type === "done") {
      result[event.side] = { text: event.text, tailorlm: event.tailorlm };
      showPartial(event.side, event.text);
    }
  }
  if (!result.personalized || !result.baseline) throw new ApiError(0, "the stream ended before both answers were done");
  return result;
}

async function compare(event) {
  event.preventDefault();
  const userId = state.userId;
  const message = $("message").value.trim();
  if (!userId || !message) return;
  const body = { message, max_tokens: Number($("max-tokens").value) || 96 };
  if ($("method").value) body.method = $("method").value;
  // Generation can take a while on a CPU: the answers fill in as they are decoded, the status
  // shows the elapsed time, and Cancel closes the request (both rows stop on the server).
  const controller = new AbortController();
  const cancel = () => controller.abort();
  const started = Date.now();
  const seconds = () => Math.round((Date.now() - started) / 1000);
  const tick = () => setStatus(`Generating both answers… ${seconds()} s`);
  tick();
  const timer = setInterval(tick, 1000);
  state.cancel = cancel;
  state.last = null;
  $("send").disabled = true;
  $("cancel").hidden = false;
  startAnswers(body.method);
  $("results").setAttribute("aria-busy", "true");
  try {
    const result = await streamCompare(userId, body, controller.signal);
    state.last = { userId, message, personalized: result.personalized.text, baseline: result.baseline.text };
    renderAnswers(result, body.method);
    setStatus(`Both answers are ready (${seconds()} s).`);
  } catch (err) {
    if (state.userId !== userId) return; // another user is shown now: nothing of this compare
    if (err.name === "AbortError") {
      stopAnswers("cancelled");
      setStatus(`Cancelled after ${seconds()} s: the answers stopped and nothing was stored.`);
    } else {
      stopAnswers("failed");
      if (err.status !== 401) setStatus(`Could not compare: ${err.message}`, true);
    }
  } finally {
    clearInterval(timer);
    if (state.cancel === cancel) state.cancel = null;
    $("cancel").hidden = true;
    if (state.userId === userId) $("send").disabled = false;
    $("results").setAttribute("aria-busy", "false");
  }
}

async function prefer(side) {
  const last = state.last;
  if (!last) return;
  const other = side === "personalized" ? "baseline" : "personalized";
  const body = {
    prompt: last.message,
    chosen: last[side],
    rejected: last[other],
    dimension: null,
    source: "workbench",
    timestamp: Math.floor(Date.now() / 1000),
  };
  setPreferButtons(false);
  try {
    await api(userPath(last.userId, "/preferences"), { method: "POST", body });
  } catch (err) {
    setPreferButtons(true);
    return setStatus(`Could not store the preference: ${err.message}`, true);
  }
  $("pref-state").textContent = `Saved: you preferred the ${side === "personalized" ? "personalized" : "baseline"} answer.`;
  setStatus("Preference stored.");
  if (state.userId === last.userId) await refreshUser(last.userId);
}

function setPreferButtons(enabled) {
  for (const button of document.querySelectorAll("button.prefer")) button.disabled = !enabled;
}

// ---- wiring -----------------------------------------------------------------------------

function init() {
  takeKeyFromFragment();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    setStatus("");
    start();
  });
  $("forget-key").addEventListener("click", () => {
    showKeyPanel();
    setStatus("Key forgotten.");
  });
  $("user-filter").addEventListener("input", renderUserList);
  $("delete-user").addEventListener("click", deleteUser);
  $("cancel").addEventListener("click", () => state.cancel?.());
  $("chat-form").addEventListener("submit", compare);
  for (const button of document.querySelectorAll("button.prefer")) {
    button.addEventListener("click", () => prefer(button.dataset.side));
  }
  start();
}

document.addEventListener("DOMContentLoaded", init);
