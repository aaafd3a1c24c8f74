// mmad-edge live page: live sources over server-sent events, the review queue, the threshold what-if.
// Plain DOM (no build step); all text goes in through textContent.
"use strict";

const CSRF = document.querySelector('meta[name="mmad-edge-csrf"]').content;
const cards = new Map();
let reviewItems = [];
let selected = null;
let waitingForNext = false;  // marked the last unmarked item: select the next one that arrives
let marksDone = 0;  // marks answered so far: a list fetched before the latest one is stale
let listsAsked = 0;  // review lists asked for so far: only the newest answer is drawn
const evicted = new Set();  // items whose image or mark was refused: gone (the store's cap), never asked again
let itemsKey = "";
let marksKey = "";
const chosenThresholds = new Map();  // per category: the person's pick survives redraws
const applyMessages = new Map();  // per category: Apply's last answer [class, text]

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fmt(value, digits = 4) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(digits);
}

async function post(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json",
    "X-MMAD-Edge-CSRF": CSRF}, body: JSON.stringify(body)});
  const text = await response.text();
  if (!response.ok) throw new Error(text);
  return JSON.parse(text);
}

// ---- charts -------------------------------------------------------------------------------------
function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui";
  return [ctx, width, height];
}

function vline(ctx, x, height, color, label) {
  ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, height); ctx.stroke();
  if (label) ctx.fillText(label, Math.min(x + 3, ctx.canvas.clientWidth - 60), 11);
}

function drawHistogram(canvas, histogram, threshold) {
  const [ctx, width, height] = canvasContext(canvas);
  const {edges, counts} = histogram;
  if (!counts.length) return;
  const low = edges[0], high = edges[edges.length - 1], top = Math.max(...counts);
  const x = (v) => (v - low) / (high - low) * width;
  counts.forEach((count, i) => {
    ctx.fillStyle = threshold !== null && edges[i] >= threshold ? "#d92d20" : "#7c8ba1";
    const h = count / top * (height - 14);
    ctx.fillRect(x(edges[i]) + 0.5, height - h, Math.max(1, x(edges[i + 1]) - x(edges[i]) - 1), h);
  });
  if (threshold !== null) vline(ctx, x(threshold), height, "#1d2230", "threshold");
}

function drawDrift(canvas, drift) {
  const [ctx, width, height] = canvasContext(canvas);
  const points = drift.points, tolerance = drift.tolerance;
  if (!points.length) { ctx.fillStyle = "#6b7280"; ctx.fillText("no drift statistic yet", 6, 14); return; }
  const first = points[0][0], last = Math.max(points[points.length - 1][0], first + 1);
  const span = Math.max(tolerance || 1, ...points.map((p) => Math.abs(p[1]))) * 1.15;
  const x = (f) => (f - first) / (last - first) * width, y = (v) => height / 2 - v / span * (height / 2);
  if (tolerance) {
    ctx.strokeStyle = "#e98b0c"; ctx.setLineDash([4, 3]);
    for (const v of [tolerance, -tolerance]) { ctx.beginPath(); ctx.moveTo(0, y(v)); ctx.lineTo(width, y(v)); ctx.stroke(); }
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#2563eb"; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach(([f, v], i) => (i ? ctx.lineTo(x(f), y(v)) : ctx.moveTo(x(f), y(v))));
  ctx.stroke();
  ctx.fillStyle = "#6b7280"; ctx.fillText(`${fmt(points[points.length - 1][1], 3)} std`, 6, 12);
}

// ---- live sources -------------------------------------------------------------------------------
function sourceCard(source) {
  const image = el("img", {class: "frame", alt: `latest frame of ${source.name}`});
  const parts = {image, verdict: el("b"), score: el("b"), threshold: el("b"), counts: el("b"), fps: el("b"),
    agreement: el("b"), fill: el("span"), histogram: el("canvas"), drift: el("canvas"), seq: null, loading: false};
  parts.shadow = el("span", {class: "shadow", hidden: ""}, "shadow agreement ", parts.agreement);
  image.addEventListener("load", () => { parts.loading = false; });
  image.addEventListener("error", () => { parts.loading = false; });
  const title = source.category ? `${source.name} (${source.category})` : source.name;
  const card = el("div", {class: "card", "data-source": source.index}, el("h3", {}, title), image,
    el("div", {class: "stats"}, el("span", {}, "verdict ", parts.verdict), el("span", {}, "score ", parts.score),
      el("span", {}, "threshold ", parts.threshold), el("span", {}, "anomalous / normal ", parts.counts),
      el("span", {}, "fps ", parts.fps), parts.shadow),
    el("div", {class: "bar", title: "score on the normalised scale: the mark is the threshold"}, parts.fill, el("i")),
    el("div", {class: "charts"}, el("figure", {}, parts.histogram, el("figcaption", {}, "score histogram (recent frames)")),
      el("figure", {}, parts.drift, el("figcaption", {}, "drift: median shift in normal std"))));
  document.getElementById("sources").append(card);
  return parts;
}

function showSource(source, shadow) {
  const parts = cards.get(source.index) || sourceCard(source);
  cards.set(source.index, parts);
  if (source.seq !== null && source.seq !== parts.seq && !parts.loading) {
    parts.seq = source.seq; parts.loading = true;
    parts.image.src = `/api/frame/${source.index}.jpg?seq=${source.seq}`;
  }
  parts.verdict.textContent = source.is_anomaly === null ? "–" : source.is_anomaly ? "anomalous" : "normal";
  parts.verdict.className = source.is_anomaly ? "verdict-bad" : "verdict-good";
  parts.score.textContent = fmt(source.score);
  parts.threshold.textContent = fmt(source.threshold);
  parts.counts.textContent = `${source.anomalies} / ${source.normal}`;
  parts.fps.textContent = source.fps.toFixed(1);
  const level = source.score_normalized === null ? 0 : source.score_normalized;
  parts.fill.style.width = `${Math.round(level * 100)}%`;
  parts.fill.className = source.is_anomaly ? "bad" : "";
  const compared = shadow && shadow[source.name];
  parts.shadow.hidden = !compared;
  if (compared && compared.agreement !== null) {
    parts.agreement.textContent = `${(compared.agreement * 100).toFixed(1)} % of ${compared.compared} ` +
      `(${compared.disagreed} to review)`;
  }
  drawHistogram(parts.histogram, source.histogram, source.threshold);
  drawDrift(parts.drift, source.drift);
}

function onSnapshot(snapshot) {
  const status = document.getElementById("status");
  status.textContent = snapshot.ended ? "source ended (page stays up)" : "live";
  status.className = `pill ${snapshot.ended ? "ended" : "live"}`;
  const usage = snapshot.review;
  document.getElementById("usage").textContent = `review: ${usage.unmarked} to mark, ${usage.marked} marked, ` +
    `${(usage.bytes / 1048576).toFixed(1)} of ${(usage.max_bytes / 1048576).toFixed(0)} MB`;
  snapshot.sources.forEach((source) => showSource(source, snapshot.shadow));
  const items = `${usage.items}/${usage.marked}`;
  if (items !== itemsKey) { itemsKey = items; loadReview(); }
  if (String(usage.marked) !== marksKey) { marksKey = String(usage.marked); loadWhatIf(); }
}

// ---- review queue -------------------------------------------------------------------------------
async function loadReview() {
  const asked = marksDone, ticket = ++listsAsked;
  const response = await fetch("/api/review");
  const data = await response.json();
  if (ticket !== listsAsked) return;  // a newer list is on its way: this one may name evicted items
  if (asked !== marksDone) { loadReview(); return; }  // a mark landed meanwhile: this list may predate it
  reviewItems = data.items.sort((a, b) => (a.label !== null) - (b.label !== null) || b.id - a.id);
  const firstUnmarked = reviewItems.find((item) => item.label === null);
  if (selected === null || !reviewItems.some((item) => item.id === selected) || (waitingForNext && firstUnmarked)) {
    selected = firstUnmarked ? firstUnmarked.id : reviewItems.length ? reviewItems[0].id : null;
    waitingForNext = false;
  }
  renderQueue();
}

function renderQueue() {
  const queue = document.getElementById("queue");
  queue.replaceChildren(...reviewItems.map((item) => {
    const tag = el("span", {class: `tag ${item.label || ""}`}, item.label || item.reason);
    const row = el("li", {class: item.id === selected ? "selected" : "", "data-id": item.id},
      reviewImage(item, ""),
      el("div", {}, el("span", {}, `#${item.id} `, tag), el("small", {}, `${item.source} · ${fmt(item.score)}`)));
    row.addEventListener("click", () => { selected = item.id; renderQueue(); });
    return row;
  }));
  const chosen = queue.querySelector("li.selected");
  if (chosen && (chosen.offsetTop < queue.scrollTop ||
      chosen.offsetTop + chosen.offsetHeight > queue.scrollTop + queue.clientHeight)) {
    queue.scrollTop = chosen.offsetTop - queue.clientHeight / 2;  // the list only, never the page
  }
  renderCurrent();
}

function renderCurrent() {
  const item = reviewItems.find((entry) => entry.id === selected);
  const current = document.getElementById("current");
  if (!item) { current.replaceChildren(el("p", {class: "muted"}, "No frames to review yet.")); return; }
  const when = new Date(item.created * 1000).toLocaleString();
  const good = el("button", {class: "good", id: "mark-good"}, "Good (g)");
  const defect = el("button", {class: "defect", id: "mark-defect"}, "Defect (d)");
  good.addEventListener("click", () => mark("good"));
  defect.addEventListener("click", () => mark("defect"));
  current.replaceChildren(reviewImage(item, `review item ${item.id}`),
    el("p", {}, `#${item.id} · ${item.source}${item.category ? ` (${item.category})` : ""} · ${item.reason} · score ` +
      `${fmt(item.score)} against ${fmt(item.threshold)} · ${when} · `, el("b", {id: "label"}, item.label || "unmarked")),
    el("div", {class: "buttons"}, good, defect));
}

function reviewImage(item, alt) {
  // The camera loop evicts the oldest unmarked items at the store's cap, so an item listed a moment
  // ago may be gone: its image answers 404, shown as "evicted", and the list is fetched again.
  const gone = () => el("span", {class: "evicted", title: `review item ${item.id} was evicted (store cap)`}, "evicted");
  if (evicted.has(item.id)) return gone();
  const image = el("img", {src: `/api/review/${item.id}/overlay.img`, alt});
  image.addEventListener("error", () => {
    image.replaceWith(gone());
    if (!evicted.has(item.id)) { evicted.add(item.id); loadReview(); }
  });
  return image;
}

async function mark(label) {
  const item = reviewItems.find((entry) => entry.id === selected);
  if (!item) return;
  let updated;
  try {
    updated = await post(`/api/review/${item.id}`, {label});
  } catch (error) {  // evicted while shown: the fresh list drops it and selects the next
    if (error.message.startsWith("no review item")) evicted.add(item.id);
    loadReview();
    return;
  }
  marksDone += 1;
  const shown = reviewItems.find((entry) => entry.id === updated.id);  // the list may have been reloaded
  if (shown) Object.assign(shown, updated);
  const next = reviewItems.find((entry) => entry.label === null);
  if (label !== null && next) selected = next.id;
  waitingForNext = label !== null && !next;
  renderQueue();
  loadWhatIf();
}

function move(step) {
  const index = reviewItems.findIndex((entry) => entry.id === selected);
  const next = reviewItems[index + step];
  if (next) { selected = next.id; renderQueue(); }
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {g: () => mark("good"), d: () => mark("defect"), u: () => mark(null),
    ArrowRight: () => move(1), ArrowDown: () => move(1), ArrowLeft: () => move(-1), ArrowUp: () => move(-1)};
  if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
});

// ---- threshold what-if --------------------------------------------------------------------------
async function loadWhatIf() {
  const response = await fetch("/api/whatif");
  const data = await response.json();
  const box = document.getElementById("whatif");
  if (!data.categories.length) {
    box.replaceChildren(el("p", {class: "muted"}, "Mark frames good or defect to see what each threshold would do."));
    return;
  }
  box.replaceChildren(...data.categories.map(whatIfCard));
}

function whatIfCard(entry) {
  const name = entry.category === null ? "pooled (no category)" : entry.category;
  const curve = entry.curve;
  const wanted = chosenThresholds.has(name) ? chosenThresholds.get(name) : entry.suggested.threshold;
  const nearest = curve.reduce((best, row, i) =>
    Math.abs(row.threshold - wanted) < Math.abs(curve[best].threshold - wanted) ? i : best, 0);
  const slider = el("input", {type: "range", min: 0, max: curve.length - 1, step: 1, value: nearest});
  const canvas = el("canvas");
  const chosen = el("b", {class: "chosen"}), alarms = el("b", {class: "false-alarms"}), misses = el("b", {class: "misses"});
  const [messageClass, messageText] = applyMessages.get(name) || ["message", ""];
  const message = el("div", {class: messageClass}, messageText);
  const apply = el("button", {class: "primary apply"}, "Apply");
  const now = entry.current;
  const card = el("div", {class: "card", "data-category": name}, el("h3", {}, `${name}: ${entry.marked} marked ` +
      `(${entry.good} good, ${entry.defect} defect)`), canvas, slider,
    el("table", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "threshold"), el("th", {}, "false alarms"), el("th", {}, "misses")),
      el("tr", {}, el("td", {}, "now"), el("td", {}, fmt(now && now.threshold)), el("td", {}, now ? String(now.false_alarms) : "–"),
        el("td", {}, now ? String(now.misses) : "–")),
      el("tr", {}, el("td", {}, "chosen"), el("td", {}, chosen), el("td", {}, alarms), el("td", {}, misses))),
    el("div", {class: "buttons"}, apply), message);
  const showCounts = () => {
    const row = curve[Number(slider.value)];
    chosen.textContent = fmt(row.threshold); alarms.textContent = String(row.false_alarms);
    misses.textContent = String(row.misses);
    return row;
  };
  const update = () => drawWhatIf(canvas, curve, now && now.threshold, showCounts().threshold);
  showCounts();  // the numbers at once; the chart once the card is laid out
  slider.addEventListener("input", () => { chosenThresholds.set(name, curve[Number(slider.value)].threshold); update(); });
  apply.addEventListener("click", async () => {
    apply.disabled = true;
    try {
      const result = await post("/api/apply", {category: entry.category, threshold: curve[Number(slider.value)].threshold});
      applyMessages.set(name, ["message", result.message]);
    } catch (error) {
      applyMessages.set(name, ["message error", error.message]);
    }
    loadWhatIf();  // "now" moves to the applied threshold
  });
  requestAnimationFrame(update);
  return card;
}

function drawWhatIf(canvas, curve, current, chosen) {
  const [ctx, width, height] = canvasContext(canvas);
  const values = curve.map((row) => row.threshold).concat(current === null || current === undefined ? [] : [current]);
  const low = Math.min(...values), high = Math.max(...values) + 1e-12;
  const top = Math.max(1, ...curve.map((row) => Math.max(row.false_alarms, row.misses)));
  const x = (v) => 4 + (v - low) / (high - low) * (width - 8), y = (n) => height - 4 - n / top * (height - 20);
  for (const [key, color] of [["false_alarms", "#e98b0c"], ["misses", "#d92d20"]]) {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    curve.forEach((row, i) => (i ? ctx.lineTo(x(row.threshold), y(row[key])) : ctx.moveTo(x(row.threshold), y(row[key]))));
    ctx.stroke();
  }
  if (current !== null && current !== undefined) vline(ctx, x(current), height, "#6b7280", "now");
  vline(ctx, x(chosen), height, "#2563eb", "chosen");
  ctx.fillStyle = "#e98b0c"; ctx.fillText("false alarms", width - 120, 24);
  ctx.fillStyle = "#d92d20"; ctx.fillText("misses", width - 45, 24);
}

// ---- start --------------------------------------------------------------------------------------
const events = new EventSource("/api/events");
events.onmessage = (message) => onSnapshot(JSON.parse(message.data));
events.onerror = () => {
  const status = document.getElementById("status");
  status.textContent = "disconnected"; status.className = "pill";
};
