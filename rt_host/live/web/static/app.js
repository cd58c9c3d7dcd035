// The control page of the live host. It uses only the documented API: the WebSocket /ws pushes the
// state (~20 Hz), and every move is a POST to /api/param, /api/release, /api/amount or /api/bypass.
// A token in the page's address (?token=…) goes with every request.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const HISTORY_S = 20;           // the automation plot's span
const SEND_EVERY_MS = 40;       // a drag sends at most this often (the last value always goes)
const HOLD_AFTER_INPUT_MS = 400; // after a person's input the slider follows the hand, not the pushes
const STAGE_COLORS = ["#4aa3ff", "#52d07c", "#e377c2", "#5ad7d0", "#f0d25a", "#c58cff"]; // person: amber

const $ = (id) => document.getElementById(id);
let built = false;
let rows = {};            // name → {row, input, tick, value, src, stage}
let order = [];           // parameter names in the chain's order
let stageColor = {};
let history = [];         // {t, u: Float32Array, person: Uint8Array}
let focusName = null;     // the parameter under the mouse: drawn on top in the plot
let lastInput = {};       // name → time of the last input by a person
let amountInputAt = 0;
let bypassOn = false;
let ws = null;

// --- requests ---------------------------------------------------------------------------------------
function headers() {
  const h = {"Content-Type": "application/json"};
  if (TOKEN) h["Authorization"] = "Bearer " + TOKEN;
  return h;
}

async function post(path, body) {
  try {
    const r = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(body)});
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg += ": " + (await r.json()).error; } catch (e) { /* not JSON */ }
      toast(msg);
    }
    return r.ok;
  } catch (e) {
    toast(String(e));
    return false;
  }
}

// One queue per control: at most one request in flight and one every SEND_EVERY_MS; the newest value
// wins and the last one always goes, in order (two requests in flight could overtake each other).
const pending = new Map(); // key → {busy, next, last}
function sendSoon(key, path, body) {
  const p = pending.get(key) || {busy: false, next: null, last: 0};
  pending.set(key, p);
  p.next = {path, body};
  if (!p.busy) pump(p);
}

async function pump(p) {
  p.busy = true;
  while (p.next) {
    const wait = p.last + SEND_EVERY_MS - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const {path, body} = p.next;
    p.next = null;
    p.last = performance.now();
    await post(path, body);
  }
  p.busy = false;
}

let toastTimer = null;
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}

// --- formatting ---------------------------------------------------------------------------------------
function fmt(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(1);
  if (a >= 10) return v.toFixed(2);
  return v.toFixed(3);
}
const num = (v, digits, unit) => (v === null || v === undefined) ? "–" : v.toFixed(digits) + (unit ? " " + unit : "");

// --- building the page from the first state ------------------------------------------------------
function build(state) {
  $("title").textContent = state.title === state.chain ? state.chain : `${state.title} · ${state.chain}`;
  document.title = `deepafx-rt · ${state.title}`;
  const stages = $("stages");
  stages.textContent = "";
  rows = {};
  order = [];
  stageColor = {};
  const cards = {};
  for (const p of state.parameters) {
    if (!(p.stage in cards)) {
      stageColor[p.stage] = STAGE_COLORS[Object.keys(cards).length % STAGE_COLORS.length];
      const card = document.createElement("div");
      card.className = "stage";
      card.dataset.stage = p.stage;
      const h = document.createElement("h2");
      h.textContent = p.stage;
      const hint = document.createElement("span");
      hint.className = "hint";
      h.appendChild(hint);
      const list = document.createElement("div");
      list.className = "rows";
      card.append(h, list);
      stages.appendChild(card);
      cards[p.stage] = {card, list, hint, count: 0};
    }
    const c = cards[p.stage];
    c.count += 1;
    c.list.appendChild(makeRow(p));
    order.push(p.name);
  }
  for (const c of Object.values(cards)) {
    c.hint.textContent = `${c.count} parameter${c.count > 1 ? "s" : ""}`;
    if (c.count > 24) c.card.classList.add("wide");
  }
  const legend = $("legend");
  legend.textContent = "";
  for (const [stage, color] of Object.entries(stageColor)) legend.appendChild(legendItem(color, stage));
  legend.appendChild(legendItem("#ffb347", "held by a person"));
  built = true;
}

function legendItem(color, text) {
  const span = document.createElement("span");
  const i = document.createElement("i");
  i.style.background = color;
  span.append(i, text);
  return span;
}

function makeRow(p) {
  const row = document.createElement("div");
  row.className = "row model";
  row.dataset.name = p.name;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = p.symbol;
  name.title = `${p.label} (${p.name}): ${fmt(p.minimum)} … ${fmt(p.maximum)} ${p.unit}, ${p.scale}, default ${fmt(p.default)}`;
  const track = document.createElement("div");
  track.className = "track";
  const input = document.createElement("input");
  input.type = "range";
  input.min = "0";
  input.max = "1000";
  input.step = "1";
  input.dataset.name = p.name;
  input.setAttribute("aria-label", p.name);
  const tick = document.createElement("span");
  tick.className = "tick";
  tick.title = "where the model would put it";
  track.append(input, tick);
  const value = document.createElement("span");
  value.className = "value";
  const src = document.createElement("span");
  src.className = "src model";
  src.textContent = "model";
  const rel = document.createElement("button");
  rel.className = "rel";
  rel.type = "button";
  rel.textContent = "↺";
  rel.title = "hand back to the model";
  row.append(name, track, value, src, rel);

  const held = p.source === "held";
  input.disabled = held;
  input.addEventListener("input", () => {
    lastInput[p.name] = performance.now();
    sendSoon(p.name, "/api/param", {name: p.name, normalized: input.valueAsNumber / 1000});
  });
  input.addEventListener("pointerdown", () => { lastInput[p.name] = Infinity; });
  const up = () => { if (lastInput[p.name] === Infinity) lastInput[p.name] = performance.now(); };
  input.addEventListener("pointerup", up);
  input.addEventListener("pointercancel", up);
  input.addEventListener("lostpointercapture", up);
  rel.addEventListener("click", () => {
    lastInput[p.name] = 0;
    post("/api/release", {name: p.name});
  });
  row.addEventListener("mouseenter", () => { focusName = p.name; });
  row.addEventListener("mouseleave", () => { if (focusName === p.name) focusName = null; });
  rows[p.name] = {row, input, tick, value, src, unit: p.unit};
  return row;
}

// --- every push -------------------------------------------------------------------------------------
function update(state) {
  if (!built || order.length !== state.parameters.length) build(state);
  const now = performance.now();
  const u = new Float32Array(order.length);
  const person = new Uint8Array(order.length);
  state.parameters.forEach((p, j) => {
    const r = rows[p.name];
    u[j] = p.normalized;
    person[j] = p.source === "person" || p.source === "offset" ? 1 : 0;
    if (r.row.dataset.source !== p.source) {
      r.row.className = "row " + p.source;
      r.row.dataset.source = p.source;
      r.src.className = "src " + p.source;
      r.src.textContent = p.source;
    }
    if (!(now - (lastInput[p.name] || 0) < HOLD_AFTER_INPUT_MS)) {
      const v = Math.round(p.normalized * 1000);
      if (r.input.valueAsNumber !== v) r.input.value = String(v);
    }
    r.row.dataset.normalized = String(p.normalized);
    r.value.textContent = fmt(p.value);
    if (r.unit) {
      const small = document.createElement("small");
      small.textContent = r.unit;
      r.value.appendChild(small);
    }
    if (p.predicted !== null) r.tick.style.left = (p.predicted * 100).toFixed(2) + "%";
  });
  history.push({t: state.time_s, u, person});
  while (history.length > 2 && history[0].t < state.time_s - HISTORY_S) history.shift();

  if (now - amountInputAt > HOLD_AFTER_INPUT_MS) {
    $("amount").value = String(Math.round(state.amount * 100));
    $("amount-out").textContent = `${Math.round(state.amount * 100)} %`;
  }
  bypassOn = state.bypass.on;
  const ab = $("ab");
  ab.classList.toggle("on", bypassOn);
  ab.dataset.on = bypassOn ? "1" : "0";
  ab.textContent = bypassOn
    ? `B · input, level-matched (${state.bypass.gain_db >= 0 ? "+" : ""}${num(state.bypass.gain_db, 1, "dB")})`
    : "A · processed";
  $("clock").textContent = `${state.time_s.toFixed(1)} s`;
  meters(state.meters);
  health(state.stats);
  draw();
}

const LUFS_FLOOR = -48;
function meterBar(id, loudness, peak, text) {
  const m = $(id);
  const pos = (v) => v === null ? 0 : Math.max(0, Math.min(1, (v - LUFS_FLOOR) / -LUFS_FLOOR));
  m.querySelector(".fill").style.width = (100 * pos(loudness)).toFixed(1) + "%";
  const pk = m.querySelector(".peak");
  if (pk) pk.style.left = (100 * pos(peak)).toFixed(1) + "%";
  m.querySelector(".num").textContent = text;
}

function meters(m) {
  meterBar("m-in", m.in_short_term_lufs, m.in_peak_dbfs,
           `${num(m.in_short_term_lufs, 1, "LUFS")} · ${num(m.in_peak_dbfs, 1, "dB")}`);
  meterBar("m-out", m.out_short_term_lufs, m.out_peak_dbfs,
           `${num(m.out_short_term_lufs, 1, "LUFS")} · ${num(m.out_peak_dbfs, 1, "dB")}`);
  const gr = $("m-gr");
  gr.hidden = m.gain_reduction_db === null;
  if (m.gain_reduction_db !== null) {
    const g = Math.min(0, m.gain_reduction_db);
    gr.querySelector(".fill").style.width = (100 * Math.min(1, -g / 12)).toFixed(1) + "%";
    gr.querySelector(".num").textContent = `${num(g, 1, "dB")} limiter`;
  }
}

function health(s) {
  const items = [
    ["DSP load", num(s.dsp_load_pct, 1, "%"), false],
    ["xruns", String(s.xruns ?? "–"), false],
    ["callback", `p99 ${num(s.callback_p99_us, 0)} / ${num(s.period_us, 0, "µs")} · max ${num(s.callback_max_us, 0)}`,
     s.callback_max_us !== null && s.period_us !== null && s.callback_max_us > s.period_us],
    ["over the period", String(s.callbacks_over_period ?? "–"), s.callbacks_over_period > 0],
    ["inference", `p50 ${num(s.inference_p50_ms, 1, "ms")}`, false],
    ["latency", `${s.latency_frames ?? "–"} frames (${num(s.latency_ms, 1, "ms")})`, false],
    ["predictions", `${s.predictions ?? "–"}${s.late_predictions ? ` (${s.late_predictions} late)` : ""}`, s.late_predictions > 0],
    ["move → port", num(s.control_latency_ms, 1, "ms"), false],
    ["block", s.block ? `${s.block} frames at ${s.rate} Hz` : "–", false],
  ];
  const dl = $("health");
  if (dl.children.length !== 2 * items.length) {
    dl.textContent = "";
    for (const [k] of items) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      dl.append(dt, document.createElement("dd"));
    }
  }
  items.forEach(([, v, bad], i) => {
    const dd = dl.children[2 * i + 1];
    dd.textContent = v;
    dd.classList.toggle("bad", !!bad);
  });
}

// --- the automation plot ----------------------------------------------------------------------------
function draw() {
  const canvas = $("plot");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  if (history.length < 2) return;
  const pad = {l: 30, r: 8, t: 8, b: 18};
  const tEnd = history[history.length - 1].t, tStart = tEnd - HISTORY_S;
  const x = (t) => pad.l + (w - pad.l - pad.r) * (t - tStart) / HISTORY_S;
  const y = (u) => pad.t + (h - pad.t - pad.b) * (1 - u);
  g.strokeStyle = "#262c36";
  g.fillStyle = "#8a93a3";
  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  for (const u of [0, 0.25, 0.5, 0.75, 1]) {
    g.beginPath(); g.moveTo(pad.l, y(u)); g.lineTo(w - pad.r, y(u)); g.stroke();
    g.fillText(u.toFixed(2).replace(/0+$/, "").replace(/\.$/, ""), 4, y(u) + 4);
  }
  for (let s = Math.max(0, Math.ceil(tStart / 5) * 5); s <= tEnd; s += 5) {
    g.beginPath(); g.moveTo(x(s), pad.t); g.lineTo(x(s), h - pad.b); g.stroke();
    g.fillText(`${s} s`, x(s) - 10, h - 4);
  }
  const line = (j, color, width) => {
    g.strokeStyle = color;
    g.lineWidth = width;
    g.beginPath();
    history.forEach((s, i) => (i ? g.lineTo : g.moveTo).call(g, x(s.t), y(s.u[j])));
    g.stroke();
  };
  g.globalAlpha = 0.55;
  order.forEach((name, j) => {
    if (name !== focusName) line(j, stageColor[name.split(".")[0]], 1);
  });
  g.globalAlpha = 1;
  const newest = history[history.length - 1];
  order.forEach((name, j) => { if (newest.person[j] && name !== focusName) line(j, "#ffb347", 2); });
  if (focusName) {
    const j = order.indexOf(focusName);
    line(j, "#ffffff", 2.5);
    g.fillStyle = "#ffffff";
    g.fillText(focusName, pad.l + 6, pad.t + 12);
  }
}

// --- controls -----------------------------------------------------------------------------------------
function wireControls() {
  const amount = $("amount");
  amount.addEventListener("input", () => {
    amountInputAt = performance.now();
    $("amount-out").textContent = `${amount.value} %`;
    sendSoon("amount", "/api/amount", {value: amount.valueAsNumber / 100});
  });
  $("ab").addEventListener("click", () => post("/api/bypass", {on: !bypassOn}));
  $("release-all").addEventListener("click", () => {
    lastInput = {};
    post("/api/release", {});
  });
  window.addEventListener("resize", draw);
}

// --- the connection ---------------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "";
  ws = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  ws.onopen = () => {
    $("conn").className = "conn on";
    $("conn").textContent = "live";
    history = [];  // a new connection may be a new run: its clock starts again
    built = false;
  };
  ws.onmessage = (e) => update(JSON.parse(e.data));
  ws.onclose = () => {
    $("conn").className = "conn off";
    $("conn").textContent = "disconnected: retrying";
    setTimeout(connect, 1500);
  };
}

wireControls();
connect();
