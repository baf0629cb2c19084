// Rendering of API data into the workbench page. Everything goes through el(), which adds
// strings as text nodes: user data (documents, facts, answers) is never parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** Build an element; string children become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  const kept = children.filter((c) => c !== null && c !== undefined && c !== "");
  node.append(...kept.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

const isEmpty = (v) =>
  v === null || v === undefined || v === "" || (typeof v === "object" && Object.keys(v).length === 0);

const humanize = (key) => key.replaceAll("_", " ");

function show(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  if (Array.isArray(value)) return value.map(show).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Seconds since the epoch (as stored) -> YYYY-MM-DD; anything else as it is. A timestamp
 * beyond what a JavaScript Date holds (+-8.64e15 ms, the store allows 64-bit seconds) is
 * shown as the number it is rather than breaking the page. */
function day(timestamp) {
  if (typeof timestamp !== "number") return timestamp ?? null;
  const ms = Math.abs(timestamp) > 1e11 ? timestamp : timestamp * 1000;
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return `t=${timestamp}`;
  return date.toISOString().slice(0, 10);
}

/** Empty every panel of the user page (before a load, and when a load fails). */
export function clearUserPanels() {
  for (const id of ["attributes", "persona", "counts", "facts", "documents", "preferences"]) $(id).replaceChildren();
}

function snippet(text, limit = 280) {
  if (!text) return "";
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > limit ? `${flat.slice(0, limit - 1)}…` : flat;
}

function fillDl(dl, entries, emptyText) {
  const rows = entries.filter(([, v]) => !isEmpty(v));
  if (!rows.length) return dl.replaceChildren(el("div", {}, el("dd", { class: "muted" }, emptyText)));
  dl.replaceChildren(...rows.map(([k, v]) => el("div", {}, el("dt", {}, humanize(k)), el("dd", {}, show(v)))));
}

function fillList(list, items, render, emptyText) {
  if (!items.length) return list.replaceChildren(el("li", { class: "muted" }, emptyText));
  list.replaceChildren(...items.map(render));
}

// ---- user overview ----------------------------------------------------------------------

function userAttributes(user) {
  const { user_id: _id, kind: _kind, attributes, ...typed } = user || {};
  return [...Object.entries(typed), ...Object.entries(attributes || {})];
}

function personaEntries(overview) {
  const pooled = overview.pooled_context;
  return [
    ["served at", overview.scope],
    ["persona", overview.persona ?? "none"],
    ["pooled context", typeof pooled === "boolean" ? (pooled ? "on: other users may fill in" : "off: own data only") : null],
  ];
}

function documentItem(doc) {
  const meta = [doc.doc_kind ?? doc.kind, day(doc.timestamp), doc.item_id && `item ${doc.item_id}`];
  if (typeof doc.rating === "number") meta.push(`rated ${doc.rating}`);
  return el(
    "li",
    {},
    el("p", { class: "doc-meta" }, meta.filter(Boolean).join(" · ")),
    doc.title ? el("p", { class: "doc-title" }, doc.title) : null,
    el("p", { class: "doc-text" }, snippet(doc.text, 400)),
  );
}

function factItem(fact) {
  const since = day(fact.valid_from);
  return el("li", {}, fact.text ?? show(fact), since ? el("span", { class: "muted small" }, ` (since ${since})`) : null);
}

export function renderOverview(overview) {
  fillDl($("attributes"), userAttributes(overview.user), "No attributes stored.");
  fillDl($("persona"), personaEntries(overview), "No persona assigned (user scope).");
  fillDl($("counts"), Object.entries(overview.counts || {}), "No counts.");
  fillList($("facts"), overview.facts || [], factItem, "No facts remembered yet.");
  const docs = overview.documents ?? overview.recent_documents ?? [];
  rememberTexts(docs);
  fillList($("documents"), docs, documentItem, "No documents stored.");
}

export function renderPreferences(prefs) {
  const item = (p) =>
    el(
      "li",
      {},
      el("p", { class: "doc-meta" }, [p.source, day(p.timestamp), p.dimension].filter(Boolean).join(" · ")),
      el("p", {}, el("strong", {}, "Prompt: "), snippet(p.prompt, 160)),
      el("p", { class: "chosen" }, el("strong", {}, "Chosen: "), snippet(p.chosen, 200)),
      el("p", { class: "rejected" }, el("strong", {}, "Rejected: "), snippet(p.rejected, 200)),
    );
  fillList($("preferences"), prefs.slice().reverse(), item, "No preferences stored for this user.");
}

// ---- answers ----------------------------------------------------------------------------

function usageSummary(usage, method) {
  if (!usage) return method ? `method ${method}` : "";
  const parts = [
    (usage.methods || []).join(" + ") || method,
    usage.scope && `scope: ${usage.scope}`,
    usage.persona_id && `persona: ${usage.persona_id}`,
    usage.adapter && `adapter: ${usage.adapter}`,
    typeof usage.prompt_tokens === "number" && `${usage.prompt_tokens} prompt tokens`,
    usage.dropped_items ? `${usage.dropped_items} items cut by the token budget` : null,
  ];
  return parts.filter(Boolean).join(" · ");
}

// Texts of the user's documents shown in the overview, by id, for usage records whose
// retrieved items carry ids and scores but no text.
const knownTexts = new Map();

function rememberTexts(docs) {
  knownTexts.clear();
  for (const doc of docs) {
    if (!doc.doc_id || !doc.text) continue;
    knownTexts.set(doc.doc_id, doc.text);
    knownTexts.set(`doc:${doc.doc_id}`, doc.text);
  }
}

function retrievedRow(item, i) {
  const id = item.id ?? item.source_id ?? "";
  const score = typeof item.score === "number" ? item.score.toFixed(3) : show(item.score ?? "");
  const text = item.text ?? item.snippet ?? knownTexts.get(id) ?? "";
  return el(
    "tr",
    {},
    el("td", { class: "num" }, i + 1),
    el("td", {}, item.block ?? item.kind ?? ""),
    el("td", { class: "mono" }, id),
    el("td", { class: "num" }, score),
    el("td", {}, text ? snippet(text, 220) : el("span", { class: "muted" }, "(text not returned)")),
  );
}

export function renderAnswers(result, method) {
  const usage = result.personalized.tailorlm ?? null;
  $("pers-text").textContent = result.personalized.text;
  $("base-text").textContent = result.baseline.text;
  $("pers-meta").textContent = usageSummary(usage, method);
  $("base-meta").textContent = result.baseline.tailorlm
    ? usageSummary(result.baseline.tailorlm, "")
    : "the same model and message, without this user's data";
  const same = result.personalized.text === result.baseline.text;
  for (const button of document.querySelectorAll("button.prefer")) button.disabled = same;
  $("pref-state").textContent = same ? "The two answers are identical: there is no preference to record." : "";
  const retrieved = usage?.retrieved ?? [];
  $("retrieved").querySelector("tbody").replaceChildren(...retrieved.map(retrievedRow));
  $("retrieved").hidden = !retrieved.length;
  $("retrieved-empty").textContent = "Nothing was retrieved for this answer.";
  $("retrieved-empty").hidden = retrieved.length > 0;
  $("results").hidden = false;
}

// ---- answers while they stream ----------------------------------------------------------

const TEXT_IDS = { personalized: "pers-text", baseline: "base-text" };
const META_IDS = { personalized: "pers-meta", baseline: "base-meta" };

/** Empty answer cards for a compare that has just started; showPartial fills them in. */
export function startAnswers(method) {
  for (const side of Object.keys(TEXT_IDS)) {
    $(TEXT_IDS[side]).textContent = "";
    $(META_IDS[side]).textContent = "generating…";
  }
  if (method) $("pers-meta").textContent = `method ${method} · generating…`;
  for (const button of document.querySelectorAll("button.prefer")) button.disabled = true;
  $("pref-state").textContent = "";
  $("retrieved").querySelector("tbody").replaceChildren();
  $("retrieved").hidden = true;
  $("retrieved-empty").textContent = "Shown when both answers are done.";
  $("retrieved-empty").hidden = false;
  $("results").hidden = false;
}

/** The text of one side so far (as text, never HTML). */
export function showPartial(side, text) {
  $(TEXT_IDS[side]).textContent = text;
}

const STOPPED = { cancelled: "The compare was cancelled", failed: "The compare failed" };

/** A compare that was cancelled or failed: the partial texts stay, marked, and cannot be preferred. */
export function stopAnswers(how) {
  for (const id of Object.values(META_IDS)) $(id).textContent = `${how}: this answer may be incomplete`;
  for (const button of document.querySelectorAll("button.prefer")) button.disabled = true;
  $("pref-state").textContent = `${STOPPED[how] ?? how}: there is no preference to record.`;
  $("retrieved-empty").textContent = `Not shown: ${(STOPPED[how] ?? how).toLowerCase()}.`;
}
