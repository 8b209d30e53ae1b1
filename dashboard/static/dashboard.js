// LRSA brand monitor: state from /events (Server-Sent Events), rendered with DOM nodes only.
// Every piece of text from the topics (entity names, post text, rationales, ids) is set with
// textContent or as a text node, never parsed as HTML; the page's CSP refuses inline scripts.
"use strict";

const MAX_POSTS = 200;
const MAX_ALERTS = 200;
const MAX_ROWS = 100;
const SPARK_POINTS = 30;

const state = {
  aggs: new Map(),      // entity -> size -> Map(start_ms -> record)
  alerts: [],           // newest last
  active: new Map(),    // "entity|direction" -> fired record
  posts: new Map(),     // post_id -> record (insertion order = arrival)
  sizes: new Set(),
  latestEnd: 0,
  selected: null,
  kafka: "starting",
  live: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k === "data") Object.assign(node.dataset, v);
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else node.setAttribute(k, String(v));
    }
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function fmt(x, digits = 2) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

function pct(x) {
  return typeof x === "number" && isFinite(x) ? `${Math.round(x * 100)} %` : "–";
}

// a UTC timestamp in the reader's own time zone
function localTime(iso) {
  const t = iso ? new Date(iso) : null;
  return t && !isNaN(t) ? t.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "–";
}

function countsText(c) {
  return c ? `${c.positive} positive, ${c.neutral} neutral, ${c.negative} negative` : "–";
}

// an alert in plain words: "negative mentions rose from 20 % to 75 % in the 1m window from <local time> (20 mentions)"
function alertSentence(r) {
  const n = r.counts ? r.counts.positive + r.counts.neutral + r.counts.negative : 0;
  const window = `the ${r.window ?? "?"} window from ${localTime(r.window_start)}`;
  return r.type === "fired"
    ? `${r.direction} mentions rose from ${pct(r.baseline_share)} to ${pct(r.share)} in ${window} (${n} mentions)`
    : `${r.direction} mentions back to ${pct(r.share)} (usually ${pct(r.baseline_share)}) in ${window}`;
}

// ---- applying events ------------------------------------------------------------------------

function addAggregate(r) {
  let sizes = state.aggs.get(r.entity);
  if (!sizes) state.aggs.set(r.entity, (sizes = new Map()));
  let series = sizes.get(r.window);
  if (!series) sizes.set(r.window, (series = new Map()));
  series.set(r.start_ms, r);
  if (!state.sizes.has(r.window)) {
    state.sizes.add(r.window);
    const opt = el("option", { value: r.window, text: r.window });
    $("window-size").append(opt);
  }
  const end = r.window_end ? Date.parse(r.window_end) : r.start_ms;
  if (isFinite(end) && end > state.latestEnd) state.latestEnd = end;
}

function removeAggregate(e) {
  const series = state.aggs.get(e.entity)?.get(e.window);
  if (series) series.delete(e.start_ms);
}

function addAlert(r) {
  state.alerts.push(r);
  if (state.alerts.length > MAX_ALERTS) state.alerts.shift();
  const key = r.entity + "|" + r.direction;
  if (r.type === "fired") state.active.set(key, r);
  else state.active.delete(key);
}

function addPost(r) {
  state.posts.delete(r.post_id);
  state.posts.set(r.post_id, r);
  while (state.posts.size > MAX_POSTS) state.posts.delete(state.posts.keys().next().value);
}

function apply(ev) {
  switch (ev.type) {
    case "snapshot":
      state.aggs.clear(); state.alerts = []; state.active.clear(); state.posts.clear();
      ev.aggregates.forEach(addAggregate);
      ev.alerts.forEach(addAlert);
      state.active.clear();
      ev.active.forEach((r) => state.active.set(r.entity + "|" + r.direction, r));
      ev.posts.forEach(addPost);
      break;
    case "aggregate": addAggregate(ev.record); break;
    case "aggregate_removed": removeAggregate(ev); break;
    case "alert": addAlert(ev.record); break;
    case "post": addPost(ev.record); break;
    case "status": state.kafka = ev.kafka; break;
    case "batch": ev.events.forEach(apply); break;
  }
}

// ---- rendering ------------------------------------------------------------------------------

// At most one render per RENDER_MS, however fast updates come.
const RENDER_MS = 200;
let scheduled = false;
let lastRender = 0;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  const wait = Math.max(0, lastRender + RENDER_MS - performance.now());
  setTimeout(() => requestAnimationFrame(() => { scheduled = false; lastRender = performance.now(); render(); }), wait);
}

function filterText() { return $("entity-filter").value.trim().toLowerCase(); }
function matches(name) { const f = filterText(); return !f || String(name).toLowerCase().includes(f); }
function currentSize() { return $("window-size").value || [...state.sizes][0]; }
function rangeStart() {
  const span = Number($("range").value);
  return span > 0 && state.latestEnd ? state.latestEnd - span : -Infinity;
}

function windowsOf(entity, size) {
  const series = state.aggs.get(entity)?.get(size);
  if (!series) return [];
  const from = rangeStart();
  return [...series.values()].filter((r) => r.start_ms >= from).sort((a, b) => a.start_ms - b.start_ms);
}

function rowsFor(size) {
  const rows = [];
  for (const entity of state.aggs.keys()) {
    if (!matches(entity)) continue;
    const ws = windowsOf(entity, size);
    if (!ws.length) continue;
    const c = { positive: 0, neutral: 0, negative: 0 };
    let mentions = 0;
    for (const w of ws) {
      c.positive += w.counts.positive; c.neutral += w.counts.neutral; c.negative += w.counts.negative;
      mentions += w.mentions;
    }
    const net = mentions ? (c.positive - c.negative) / mentions : 0;
    rows.push({ entity, c, mentions, net, trend: ws.slice(-SPARK_POINTS).map((w) => w.net_sentiment ?? 0) });
  }
  rows.sort((a, b) => b.mentions - a.mentions || a.entity.localeCompare(b.entity));
  const total = rows.reduce((n, r) => n + r.mentions, 0);  // share of voice among the entities shown
  for (const r of rows) r.share = total ? r.mentions / total : 0;
  return rows.slice(0, MAX_ROWS);
}

// ---- key figures: this period against the one before -----------------------------------------

const DEFAULT_PERIOD_MS = 3600000;  // with range "all": the last hour against the hour before

function periodTotals(size, from, to) {
  const c = { positive: 0, neutral: 0, negative: 0 };
  let mentions = 0;
  for (const [entity, sizes] of state.aggs) {
    if (!matches(entity)) continue;
    for (const w of (sizes.get(size)?.values() ?? [])) {
      if (w.start_ms < from || w.start_ms >= to) continue;
      c.positive += w.counts.positive; c.neutral += w.counts.neutral; c.negative += w.counts.negative;
      mentions += w.mentions;
    }
  }
  return { mentions, net: mentions ? (c.positive - c.negative) / mentions : null,
           negative: mentions ? c.negative / mentions : null };
}

// {now, before, span}: the matching entities' totals over the selected range (or the last hour)
// ending at the latest window's end, and over the span before it
function keyFigures(size) {
  const span = Number($("range").value) || DEFAULT_PERIOD_MS;
  const end = state.latestEnd;
  if (!end) return null;
  return { now: periodTotals(size, end - span, end + 1), before: periodTotals(size, end - 2 * span, end - span), span };
}

function change(now, before, kind) {
  if (now === null || before === null || (kind === "count" && !before)) return ["no earlier period", ""];
  const d = kind === "count" ? (now - before) / before : now - before;
  const text = kind === "count" ? `${d >= 0 ? "+" : "−"}${Math.abs(Math.round(d * 100))} %`
             : kind === "share" ? `${d >= 0 ? "+" : "−"}${Math.abs(Math.round(d * 100))} points`
             : `${d >= 0 ? "+" : "−"}${Math.abs(d).toFixed(2)}`;
  const good = kind === "share" ? d < 0 : d > 0;  // fewer negatives, more mentions / net are good
  return [`${text} vs the period before`, d === 0 ? "" : good ? "up" : "down"];
}

function renderKeyFigures() {
  const k = keyFigures(currentSize());
  const tiles = [["kpi-mentions", (x) => x.mentions, (v) => String(v), "count"],
                 ["kpi-net", (x) => x.net, (v) => (v === null ? "–" : fmt(v)), "net"],
                 ["kpi-negative", (x) => x.negative, (v) => pct(v), "share"]];
  for (const [id, get, show, kind] of tiles) {
    const tile = $(id);
    tile.querySelector(".kpi-value").textContent = k ? show(get(k.now)) : "–";
    const [text, cls] = k ? change(get(k.now), get(k.before), kind) : ["", ""];
    const ch = tile.querySelector(".kpi-change");
    ch.textContent = text;
    ch.className = "kpi-change " + cls;
  }
  $("kpi-period").textContent = k ? `the last ${Math.round(k.span / 60000)} min of event time` : "";
}

// ---- export ---------------------------------------------------------------------------------

function csvField(v) {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// the board as it is shown (filter, window size, range) as CSV text
function boardCsv() {
  const header = ["entity", "mentions", "share_of_voice", "positive", "neutral", "negative", "net_sentiment"];
  const lines = rowsFor(currentSize()).map((r) =>
    [r.entity, r.mentions, r.share.toFixed(4), r.c.positive, r.c.neutral, r.c.negative, r.net.toFixed(4)]
      .map(csvField).join(","));
  return [header.join(","), ...lines].join("\n") + "\n";
}

function exportCsv() {
  const url = URL.createObjectURL(new Blob([boardCsv()], { type: "text/csv" }));
  const a = el("a", { href: url, download: `lrsa-entities-${currentSize() ?? "all"}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 90 20");
  const zero = document.createElementNS(ns, "line");
  for (const [k, v] of Object.entries({ x1: 0, y1: 10, x2: 90, y2: 10 })) zero.setAttribute(k, v);
  svg.append(zero);
  if (values.length) {
    const step = values.length > 1 ? 90 / (values.length - 1) : 0;
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(10 - 9 * Math.max(-1, Math.min(1, v))).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", values.length > 1 ? pts.join(" ") : `0,${pts[0].split(",")[1]} 90,${pts[0].split(",")[1]}`);
    svg.append(line);
  }
  return svg;
}

function renderBoard() {
  const size = currentSize();
  const body = $("leaderboard").tBodies[0];
  const rows = size ? rowsFor(size) : [];
  body.replaceChildren(...rows.map((r) => {
    const alerting = state.active.has(r.entity + "|negative") || state.active.has(r.entity + "|positive");
    const tr = el("tr", { data: { entity: r.entity }, class: (alerting ? "alerting " : "") + (r.entity === state.selected ? "selected" : ""),
                          on: { click: () => select(r.entity) } },
      el("td", { class: "c-entity", text: r.entity }),
      el("td", { class: "c-mentions", text: String(r.mentions) }),
      el("td", { class: "c-share" }, el("span", { class: "share-bar", style: `width: ${Math.round(r.share * 60)}px` }),
         el("span", { class: "share-text", text: pct(r.share) })),
      el("td", { class: "c-pos", text: String(r.c.positive) }),
      el("td", { class: "c-neu", text: String(r.c.neutral) }),
      el("td", { class: "c-neg", text: String(r.c.negative) }),
      el("td", { class: "c-net", text: fmt(r.net) }),
      el("td", { class: "c-trend" }, sparkline(r.trend)),
      el("td", { class: "c-alert", text: alerting ? "⚠" : "" }));
    return tr;
  }));
  $("board-empty").hidden = rows.length > 0;
}

function postIdButtons(ids) {
  return ids.map((id) => el("button", { class: "link post-link", text: id, data: { postId: id },
                                        on: { click: (e) => { e.stopPropagation(); showPost(id); } } }));
}

function alertItem(r, withEvidence) {
  const li = el("li", { class: `${r.type} ${r.direction}`, data: { entity: r.entity, direction: r.direction } });
  li.title = `share ${fmt(r.share)} against a baseline of ${fmt(r.baseline_share)}, z ${fmt(r.z, 1)}`;  // for analysts
  li.append(el("strong", { class: "alert-entity", text: r.entity }),
            el("span", { class: "alert-text", text: `: ${alertSentence(r)}` }));
  if (withEvidence) {
    const ev = el("div", { class: "evidence" });
    if (r.counts) ev.append(el("div", { text: `this window: ${countsText(r.counts)}` +
      (r.baseline_counts ? `; the windows before: ${countsText(r.baseline_counts)}` : "") }));
    if (r.post_ids.length) ev.append(el("div", null, "posts: ", ...postIdButtons(r.post_ids.slice(0, 10))));
    for (const text of r.rationales.slice(0, 3)) ev.append(el("div", { class: "rationale", text }));
    li.append(ev);
  }
  li.addEventListener("click", () => select(r.entity));
  return li;
}

function renderAlerts() {
  const active = [...state.active.values()].filter((r) => matches(r.entity));
  $("active-alerts").replaceChildren(...(active.length ? active.map((r) => alertItem(r, true))
                                                         : [el("li", { class: "empty", text: "none" })]));
  // the feed: every event except the fired one of an episode still open (it is listed above)
  const open = new Set([...state.active.values()].map((r) => r.episode_id));
  const feed = state.alerts.filter((r) => matches(r.entity) && !(r.type === "fired" && open.has(r.episode_id)))
    .slice(-50).reverse();
  $("alert-feed").replaceChildren(...(feed.length ? feed.map((r) => alertItem(r, false))
                                                   : [el("li", { class: "empty", text: "none" })]));
}

function highlighted(post) {
  const box = el("div", { class: "post-text" });
  const text = post.text ?? "";
  if (!post.text) {
    box.append(el("span", { class: "empty", text: "(the result carries no text)" }));
    if (post.aspects.length) box.append(" ", ...post.aspects.map((a) => el("mark", { class: a.sentiment, text: a.term, title: a.entity ?? a.term })));
    return box;
  }
  let at = 0;
  for (const a of [...post.aspects].sort((x, y) => x.start - y.start)) {
    if (a.start < at) continue;  // overlapping spans: the first wins
    box.append(document.createTextNode(text.slice(at, a.start)));
    box.append(el("mark", { class: a.sentiment, title: `${a.entity ?? a.term}: ${a.sentiment} ${fmt(a.confidence)}`,
                            text: text.slice(a.start, a.end) }));
    at = a.end;
  }
  box.append(document.createTextNode(text.slice(at)));
  return box;
}

function postItem(post) {
  return el("li", { class: "post", data: { postId: post.post_id } },
    el("div", { class: "post-head", text: `${post.post_id} · ${localTime(post.event_time)}${post.lang ? " · " + post.lang : ""}` }),
    highlighted(post),
    post.rationale ? el("div", { class: "rationale", text: post.rationale }) : null);
}

function postMatches(post) {
  const f = filterText();
  return !f || post.aspects.some((a) => String(a.entity ?? a.term).toLowerCase().includes(f) || a.term.toLowerCase().includes(f));
}

function renderPosts() {
  const posts = [...state.posts.values()].filter(postMatches).reverse().slice(0, 50);
  $("posts").replaceChildren(...posts.map(postItem));
}

function renderDetail() {
  // the chosen entity, or until one is clicked the one with the most mentions shown
  const size = currentSize();
  const entity = state.selected ?? rowsFor(size)[0]?.entity;
  $("detail").hidden = !entity;
  if (!entity) return;
  const ws = windowsOf(entity, size);
  $("detail-title").textContent = `${entity} · ${size ?? ""} windows` +
    (state.selected ? "" : " (the most mentioned; click a row for another)");
  const examples = [...new Set(ws.slice(-5).reverse().flatMap((w) => w.example_post_ids))].slice(0, 15);
  $("examples").replaceChildren(...examples.map((id) => el("li", null, ...postIdButtons([id]))));
  if (window.Plotly) {
    const x = ws.map((w) => w.window_start);
    const bar = (name, key, color) => ({ type: "bar", name, x, y: ws.map((w) => w.counts[key]), marker: { color } });
    window.Plotly.react("chart", [bar("positive", "positive", "#1b7f3b"), bar("neutral", "neutral", "#9e9e9e"),
                                  bar("negative", "negative", "#b3261e")],
                        { barmode: "stack", margin: { t: 10, r: 10, b: 80, l: 55 }, legend: { orientation: "h", y: -0.35 },
                          yaxis: { title: { text: "mentions per window" } } },
                        { displayModeBar: false, responsive: true });
  }
}

function renderStatus() {
  const s = $("status");
  const live = state.live && state.kafka === "connected";
  s.textContent = state.live ? (live ? "live" : `kafka ${state.kafka}`) : "reconnecting";
  s.classList.toggle("live", live);
  $("clock").textContent = state.latestEnd ? `event time ${localTime(new Date(state.latestEnd).toISOString())}` : "";
}

function render() {
  renderStatus();
  renderKeyFigures();
  renderBoard();
  renderAlerts();
  renderPosts();
  renderDetail();
}

function select(entity) {
  state.selected = entity;
  $("post-view").replaceChildren();
  schedule();
}

async function showPost(id) {
  const view = $("post-view");
  let post = state.posts.get(id);
  if (!post) {
    try {
      const res = await fetch(`/api/posts/${encodeURIComponent(id)}`);
      if (res.ok) post = await res.json();
    } catch (e) { /* shown below */ }
  }
  view.replaceChildren(post ? el("div", { class: "post", data: { postId: id } }, ...postItem(post).childNodes)
                            : el("p", { class: "empty", text: `post ${id} is not among the latest posts` }));
  $("detail").hidden = false;
}

// ---- wiring ---------------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/events");
  source.onopen = () => { state.live = true; schedule(); };
  source.onerror = () => { state.live = false; schedule(); };  // EventSource reconnects by itself
  source.onmessage = (msg) => {
    try { apply(JSON.parse(msg.data)); } catch (e) { console.error("bad event", e); }
    schedule();
  };
}

for (const id of ["entity-filter", "window-size", "range"]) $(id).addEventListener("input", schedule);
$("export-csv").addEventListener("click", exportCsv);
window.lrsaBoardCsv = boardCsv;  // what the export writes, for tests and the console
connect();
