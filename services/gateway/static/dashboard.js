// The node dashboard: plain JavaScript over the gateway's REST API (/v1) and its event
// stream. Bodies are protobuf messages in the proto3 JSON mapping: lowerCamelCase
// fields, 64-bit integers as strings, bytes as base64, enums by full name, and fields
// at their default value (zero, empty, false) left out.
//
// The token comes from the URL fragment (#token=…&coop=…&currency=…), which is moved to
// session storage and removed from the address bar at once, or from the paste form. It
// is sent only as `Authorization: Bearer` to this page's own origin.
"use strict";

/** How often the node and its peers are read again. */
const PEER_REFRESH_MS = 5000;
/** Events kept in the log; older ones are dropped from the page. */
const EVENT_LOG_MAX = 200;
/** Transfers shown. */
const HISTORY_LIMIT = 25;
/** Reconnection delay of the event stream: doubles from the first to the last. */
const RECONNECT_FIRST_MS = 1000;
const RECONNECT_MAX_MS = 30000;
/** Balances and transfers are read again this long after the last transfer event. */
const LEDGER_REFRESH_DELAY_MS = 300;
const STORAGE_KEY = "icn-dashboard";

const $ = (selector) => document.querySelector(selector);

/** What the page works with: the token and the cooperative to show. */
let session = null;
/** Aborts the event stream and stops the refresh timers on sign-out. */
let running = null;
/** Decimal places of the shown currency, from the cooperative's record. */
let decimals = 0;
/** Topic names on screen, to notice a new one in the event stream. */
const knownTopics = new Set();

// ---------------------------------------------------------------------------------
// Session

function loadSession() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) {
    const fromUrl = {
      token: fragment.get("token").trim(),
      coop: (fragment.get("coop") || "").trim(),
      currency: (fragment.get("currency") || "").trim(),
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(fromUrl));
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", location.pathname + location.search);
  }
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    return stored && stored.token ? stored : null;
  } catch {
    return null;
  }
}

/** The token's claims (its payload is base64url JSON); shown, never trusted. */
function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
  } catch {
    return {};
  }
}

function signOut(reason) {
  sessionStorage.removeItem(STORAGE_KEY);
  session = null;
  if (running) running.abort();
  running = null;
  clearErrors();
  if (reason) showError("sign-in", reason);
  showLogin();
}

function showLogin() {
  $("#dashboard").hidden = true;
  $("#sign-out").hidden = true;
  $("#login").hidden = false;
  $("#caller").textContent = "";
  $("#node-did").textContent = "signed out";
  setStreamState("off", "events: off");
}

// ---------------------------------------------------------------------------------
// REST

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
    this.reason = error.reason || "";
  }

  toString() {
    const what = [this.status, this.code, this.reason].filter(Boolean).join(" ");
    return `${what}: ${this.message}`;
  }
}

async function api(path) {
  if (!session) throw new DOMException("signed out", "AbortError");
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${session.token}` },
    cache: "no-store",
    signal: running ? running.signal : undefined,
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** Runs one section's loader; its error is shown until it next succeeds. */
async function load(section, loader) {
  try {
    await loader();
    clearError(section);
    return true;
  } catch (err) {
    if (err.name === "AbortError" || !session) return false;
    if (err.status === 401) signOut(err);
    else showError(section, err);
    return false;
  }
}

// ---------------------------------------------------------------------------------
// Errors

function showError(section, err) {
  const text = `${section}: ${err instanceof ApiError ? err.toString() : err.message || err}`;
  let line = document.querySelector(`#errors [data-section="${section}"]`);
  if (!line) {
    line = el("p", { className: "error" });
    line.dataset.section = section;
    $("#errors").append(line);
  }
  line.textContent = text;
}

function clearError(section) {
  const line = document.querySelector(`#errors [data-section="${section}"]`);
  if (line) line.remove();
}

function clearErrors() {
  $("#errors").replaceChildren();
}

// ---------------------------------------------------------------------------------
// Formatting

/** An element with properties and children; text is always set as text, never HTML. */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** "PEER_STATE_CONNECTED" → "connected". */
function enumName(value, prefix) {
  if (!value) return "unspecified";
  return value.replace(prefix, "").toLowerCase().replace(/_/g, " ");
}

/** A DID, shortened unless `full`; the whole DID is its title either way. */
function didLabel(did, { full = false } = {}) {
  if (!did) return el("span", { className: "muted", textContent: "—" });
  const text = full || did.length <= 30 ? did : `${did.slice(0, 16)}…${did.slice(-6)}`;
  const label = el("span", { className: "did", textContent: text, title: did });
  if (session && did === session.me) {
    label.append(el("span", { className: "you", textContent: " (you)" }));
  }
  return label;
}

/** An int64 amount (a string in JSON) in units of `places` decimals: "-1484", 2 → "-14.84". */
function formatAmount(raw, places) {
  let value = BigInt(raw || "0");
  const negative = value < 0n;
  if (negative) value = -value;
  const digits = value.toString().padStart(places + 1, "0");
  const whole = digits.slice(0, digits.length - places);
  const fraction = places ? `.${digits.slice(digits.length - places)}` : "";
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

function formatTime(ms, { date = false } = {}) {
  if (!ms || ms === "0") return "—";
  const when = new Date(Number(ms));
  return date ? when.toLocaleString() : when.toLocaleTimeString();
}

/** A payload for people: its text when it is short readable UTF-8, else its size. */
function payloadPreview(base64, compressed) {
  const bytes = Uint8Array.from(atob(base64 || ""), (c) => c.charCodeAt(0));
  if (!compressed) {
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      if (!/[\u0000-\u0008\u000e-\u001f]/.test(text)) {
        return text.length > 80 ? `“${text.slice(0, 80)}…”` : `“${text}”`;
      }
    } catch {
      // Not UTF-8: shown by size.
    }
  }
  return `${bytes.length} bytes${compressed ? ", compressed" : ""}`;
}

function fillTable(section, rows, emptyText) {
  const body = document.querySelector(`${section} tbody`);
  const columns = document.querySelectorAll(`${section} thead th`).length;
  if (rows.length === 0) {
    const cell = el("td", { className: "empty", colSpan: columns, textContent: emptyText });
    body.replaceChildren(el("tr", {}, cell));
    return;
  }
  body.replaceChildren(
    ...rows.map((cells) =>
      el(
        "tr",
        {},
        ...cells.map((c) => (c instanceof HTMLTableCellElement ? c : el("td", {}, c))),
      ),
    ),
  );
}

function num(text) {
  return el("td", { className: "num", textContent: text });
}

function badge(text, kind) {
  const b = el("span", { className: "badge", textContent: text });
  b.dataset.state = kind || text;
  return b;
}

function setStreamState(state, text) {
  const status = $("#stream-status");
  status.dataset.state = state;
  status.textContent = text;
}

// ---------------------------------------------------------------------------------
// Sections

async function loadNode() {
  const node = await api("/v1/node");
  $("#node-did").replaceChildren(node.did ? didLabel(node.did, { full: true }) : "no identity");
  $("#node-mode").textContent = node.limitedMode ? "limited (no identity)" : "full";
  $("#node-connected").textContent = String(node.connectedPeers || 0);
  $("#node-relay").textContent = node.relayAddress || "none";
  $("#services").replaceChildren(
    ...(node.services || []).map((s) => {
      const state = enumName(s.status, "SERVING_STATUS_");
      const item = el("li", { title: s.error || "" }, el("strong", { textContent: s.name }), " ", badge(state));
      if (s.info && s.info.version) item.append(el("span", { className: "muted", textContent: ` v${s.info.version}` }));
      return item;
    }),
  );
}

async function loadPeers() {
  const { peers = [] } = await api("/v1/peers");
  const order = (p) => (p.state === "PEER_STATE_CONNECTED" ? 0 : 1);
  peers.sort((a, b) => order(a) - order(b) || a.did.localeCompare(b.did));
  fillTable(
    "#peers",
    peers.map((p) => {
      const state = enumName(p.state, "PEER_STATE_");
      const stateCell = el("td", {}, badge(state));
      if (p.lastError) stateCell.append(el("div", { className: "muted small", textContent: p.lastError }));
      return [
        didLabel(p.did, { full: true }),
        stateCell,
        num(p.rttUs ? `${(Number(p.rttUs) / 1000).toFixed(2)} ms` : "—"),
        enumName(p.path, "PATH_"),
        p.remoteAddress || "—",
        p.outbound ? "outbound" : "inbound",
        num(`${p.messagesSent || 0} / ${p.messagesReceived || 0}`),
      ];
    }),
    "No peers known yet.",
  );
  $("#peers-updated").textContent = `updated ${formatTime(Date.now())}`;
}

function whoMayRead(acl) {
  if (!acl || acl.public) return "anyone";
  if (acl.minTrust) return `trust ≥ ${acl.minTrust.score || 0}`;
  if (acl.participants) return `${(acl.participants.dids || []).length} participants`;
  return "unknown rule";
}

async function loadTopics() {
  const { topics = [], nextCursor } = await api("/v1/topics?limit=100");
  knownTopics.clear();
  topics.forEach((t) => knownTopics.add(t.name));
  const rows = topics.map((t) => [
    el("span", { className: "mono", textContent: t.name }),
    whoMayRead(t.acl),
    enumName(t.scope, "TOPIC_SCOPE_"),
    num(t.revision || "0"),
  ]);
  if (nextCursor) rows.push([el("span", { className: "muted", textContent: "more topics not shown" }), "", "", ""]);
  fillTable("#topics", rows, "No topics you may read.");
}

/** The cooperative's currency: the chosen one, else its first; with its decimals. */
async function loadCurrency() {
  const coop = await api(`/v1/coops/${encodeURIComponent(session.coop)}`);
  const currencies = coop.currencies || [];
  const chosen = session.currency
    ? currencies.find((c) => c.symbol === session.currency)
    : currencies[0];
  if (!chosen) {
    throw new Error(`the cooperative ${session.coop} has no currency ${session.currency || "at all"}`);
  }
  session.currency = chosen.symbol;
  decimals = chosen.decimals || 0;
  const label = `${(coop.coop && coop.coop.name) || session.coop} · ${chosen.symbol}`;
  $("#balances-of").textContent = label;
  $("#transfers-of").textContent = label;
}

async function loadBalances() {
  const query = new URLSearchParams({ currency: session.currency, limit: "1000" });
  const { accounts = [] } = await api(`/v1/coops/${encodeURIComponent(session.coop)}/accounts?${query}`);
  fillTable(
    "#balances",
    accounts.map((a) => {
      const balance = num(formatAmount(a.balance, decimals));
      if (BigInt(a.balance || "0") < 0n) balance.classList.add("negative");
      return [didLabel(a.member), balance, num(formatAmount(a.creditLimit, decimals)), num(String(a.pending || 0))];
    }),
    "No accounts yet.",
  );
}

async function loadTransfers() {
  const query = new URLSearchParams({ currency: session.currency, all: "true", limit: String(HISTORY_LIMIT) });
  const { transfers = [] } = await api(`/v1/coops/${encodeURIComponent(session.coop)}/history?${query}`);
  fillTable(
    "#transfers",
    transfers.map((r) => {
      const t = r.transfer || {};
      const status = el("td", {}, badge(enumName(r.status, "TRANSFER_STATUS_")));
      if (r.detail) status.title = r.detail;
      return [
        formatTime(r.appliedAtMs || r.receivedAtMs, { date: true }),
        didLabel(t.payer),
        didLabel(t.payee),
        num(formatAmount(t.amount, decimals)),
        status,
        t.memo || "",
      ];
    }),
    "No transfers of yours yet.",
  );
}

async function loadLedger() {
  if (!session.coop) {
    const hint = "No cooperative chosen: add coop=… (and currency=…) to the link, or sign in with one.";
    fillTable("#balances", [], hint);
    fillTable("#transfers", [], hint);
    return;
  }
  if (!(await load("cooperative", loadCurrency))) {
    fillTable("#balances", [], "The cooperative could not be read: see the error above.");
    fillTable("#transfers", [], "The cooperative could not be read: see the error above.");
    return;
  }
  await Promise.all([load("balances", loadBalances), load("transfers", loadTransfers)]);
}

// ---------------------------------------------------------------------------------
// Live events: fetch() streaming, since EventSource cannot send the token.

/** Reads one server-sent-events response, calling `onMessage` for each message. */
async function readServerSentEvents(body, onMessage) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // Lines end with "\n" or "\r\n"; a blank line ends a message.
    buffer += value.replace(/\r/g, "");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { id: null, event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue; // keep-alive comments
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") message.id = text;
        else if (field === "event") message.event = text;
        else if (field === "data") message.data.push(text);
      }
      if (message.data.length > 0) onMessage(message);
    }
  }
}

async function followEvents(signal) {
  let lastEventId = null;
  let delay = RECONNECT_FIRST_MS;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${session.token}` };
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      setStreamState("connecting", lastEventId === null ? "events: connecting" : "events: resuming");
      const response = await fetch("/v1/events", { headers, cache: "no-store", signal });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      setStreamState("live", "events: live");
      clearError("events");
      delay = RECONNECT_FIRST_MS;
      await readServerSentEvents(response.body, (message) => {
        if (message.id !== null) lastEventId = message.id;
        showEvent(message);
      });
      // The gateway ended the stream (it stops, or this page fell too far behind):
      // resume from the last event seen.
    } catch (err) {
      if (signal.aborted || err.name === "AbortError") return;
      if (err.status === 401) {
        signOut(err);
        return;
      }
      showError("events", err);
    }
    setStreamState("reconnecting", `events: reconnecting in ${Math.round(delay / 1000)} s`);
    await sleep(delay, signal);
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const stop = () => {
      clearTimeout(timer);
      resolve();
    };
    signal.addEventListener("abort", stop, { once: true });
  });
}

/** What an event says, for people: [kind label, description]. */
function describeEvent(kind, event) {
  switch (kind) {
    case "transfer": {
      const r = (event.transfer && event.transfer.record) || {};
      const t = r.transfer || {};
      const shown = t.coopId === session.coop && t.currency === session.currency;
      const amount = shown ? formatAmount(t.amount, decimals) : t.amount || "0";
      return [
        "transfer",
        el(
          "span",
          {},
          didLabel(t.payer),
          " → ",
          didLabel(t.payee),
          ` ${amount} ${t.currency || ""} in ${t.coopId || "?"}, ${enumName(r.status, "TRANSFER_STATUS_")}`,
          t.memo ? ` — “${t.memo}”` : "",
        ),
      ];
    }
    case "gossip_entry": {
      const e = (event.gossipEntry && event.gossipEntry.entry && event.gossipEntry.entry.entry) || {};
      return [
        "entry",
        el(
          "span",
          {},
          el("span", { className: "mono", textContent: e.topic || "?" }),
          ` #${e.seq || 0} by `,
          didLabel(e.author),
          `: ${payloadPreview(e.payload, e.compressed)}`,
        ),
      ];
    }
    case "peer": {
      const p = (event.peer && event.peer.peer) || {};
      return ["peer", el("span", {}, didLabel(p.did), ` is ${enumName(p.state, "PEER_STATE_")}`)];
    }
    case "task": {
      const t = event.task || {};
      const state = enumName(t.state, "TASK_STATE_");
      return ["task", `${t.taskId || "?"} ${state}${t.message ? `: ${t.message}` : ""}`];
    }
    case "gap": {
      const g = event.gap || {};
      if (g.source) {
        return ["gap", `events of ${g.source} may have been missed while the gateway could not follow it: read again`];
      }
      return ["gap", `${g.missed || 0} events were missed: the gateway no longer keeps them`];
    }
    default:
      return [kind, "unknown event"];
  }
}

function showEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data.join("\n"));
  } catch {
    showError("events", new Error(`an event that is not JSON: ${message.data.join(" ").slice(0, 80)}`));
    return;
  }
  const [label, description] = describeEvent(message.event, event);
  const item = el(
    "li",
    { className: `event kind-${message.event}` },
    el("time", { textContent: formatTime(event.atMs) }),
    el("span", { className: "kind", textContent: label }),
    el("span", { className: "what" }, description),
  );
  if (message.id !== null) item.dataset.position = message.id;
  const log = $("#event-log");
  log.prepend(item);
  while (log.children.length > EVENT_LOG_MAX) log.lastElementChild.remove();
  $("#events-empty").hidden = true;
  reactTo(message.event, event);
}

let ledgerRefresh = null;

/** Sections an event changes are read again. */
function reactTo(kind, event) {
  if (kind === "peer") {
    load("peers", loadPeers);
  } else if (kind === "transfer" || (kind === "gap" && event.gap && event.gap.source === "ledger")) {
    // A transfer, or the ledger's events missed for a while: the ledger is read again.
    clearTimeout(ledgerRefresh);
    ledgerRefresh = setTimeout(() => session && loadLedger(), LEDGER_REFRESH_DELAY_MS);
  } else if (kind === "gossip_entry") {
    const e = event.gossipEntry && event.gossipEntry.entry && event.gossipEntry.entry.entry;
    if (e && !knownTopics.has(e.topic)) load("topics", loadTopics);
  }
}

// ---------------------------------------------------------------------------------
// Start

function every(ms, task, signal) {
  const tick = async () => {
    if (signal.aborted) return;
    await task();
    if (!signal.aborted) setTimeout(tick, ms);
  };
  tick();
}

function open() {
  const claims = claimsOf(session.token);
  session.me = claims.sub;
  $("#login").hidden = true;
  $("#dashboard").hidden = false;
  $("#sign-out").hidden = false;
  const expires = claims.exp ? ` · token until ${formatTime(claims.exp * 1000)}` : "";
  $("#caller").replaceChildren("signed in as ", didLabel(claims.sub), expires);
  $("#caller").title = claims.scope ? `scopes: ${claims.scope}` : "";
  running = new AbortController();
  const { signal } = running;
  every(PEER_REFRESH_MS, () => Promise.all([load("node", loadNode), load("peers", loadPeers)]), signal);
  load("topics", loadTopics);
  loadLedger();
  followEvents(signal);
}

function start() {
  $("#login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    session = {
      token: String(form.get("token")).trim(),
      coop: String(form.get("coop")).trim(),
      currency: String(form.get("currency")).trim(),
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    e.target.reset();
    clearErrors();
    open();
  });
  $("#sign-out").addEventListener("click", () => signOut(null));
  session = loadSession();
  if (session) open();
  else showLogin();
}

start();
