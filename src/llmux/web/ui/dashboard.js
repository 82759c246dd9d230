// llmux dashboard: draws GET /llmux/status and follows GET /llmux/events.
// Plain JavaScript, no framework, no build step, nothing from the network
// but llmux itself.
"use strict";

(function () {
  const KEY_STORAGE = "llmux-dashboard-key";
  const WINDOW_SECS = 15 * 60;
  const POLL_MS = 3000;
  const MAX_EVENTS = 200;
  // No byte for this long (heartbeats come every 15 s): the stream is dead.
  const STALL_MS = 40000;
  const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
  // Okabe-Ito, as the simulator's timeline.
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9",
    "#D55E00", "#F0E442", "#000000"];
  const SWITCHING = "#555555";
  const FAILED = "#c0392b";
  // Events that change a model's state, and the state they leave it in.
  const STATE_AFTER = {
    model_admitted: "waking",
    model_activated: "awake",
    model_adopted: "awake",
    model_evicted: "sleeping",
    model_unloaded: "unloaded",
    model_dead: "failed",
    switch_failed: "failed",
  };
  // Events marked on the timeline.
  const MARKED = new Set(["switch_started", "model_admitted", "model_activated",
    "model_evicted", "model_unloaded", "model_dead", "switch_failed",
    "model_adopted"]);

  // Events that say nothing about the models' states.
  const QUIET = new Set(["backend_output", "hook_output"]);

  const $ = (id) => document.getElementById(id);
  const state = {
    status: null,
    models: [],            // names, in status order (config order)
    history: new Map(),    // model -> [{t, state}] transitions (server time)
    marks: [],             // {t, event, model, text}
    skew: 0,               // server clock minus ours, in seconds
    streamAbort: null,
    streamUp: false,
    lastUptime: null,
    adminAllowed: false,
    refetchTimer: null,
  };

  // --- keys -----------------------------------------------------------
  function key() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const k = key();
    if (k) h.Authorization = "Bearer " + k;
    return h;
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON */ }
    return "HTTP " + response.status;
  }

  function notice(text) {
    const n = $("notice");
    n.textContent = text || "";
    n.hidden = !text;
  }

  // --- time -----------------------------------------------------------
  function serverNow() {
    return Date.now() / 1000 + state.skew;
  }

  function secs(value) {
    if (value === null || value === undefined) return "–";
    if (value < 60) return value.toFixed(1) + " s";
    const m = Math.floor(value / 60);
    return m + " min " + Math.round(value - m * 60) + " s";
  }

  function clock(t) {
    return new Date((t - state.skew) * 1000).toLocaleTimeString();
  }

  // --- the model list, capacity, policy ------------------------------
  function color(model) {
    const i = state.models.indexOf(model);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }

  function noteState(model, value, t) {
    let list = state.history.get(model);
    if (!list) {
      list = [];
      state.history.set(model, list);
    }
    const last = list[list.length - 1];
    if (last && last.state === value) return;
    if (last && t < last.t) t = last.t;
    list.push({ t: t, state: value });
  }

  function applyStatus(doc) {
    if (typeof doc.uptime_secs === "number") {
      if (state.lastUptime !== null && doc.uptime_secs + 1 < state.lastUptime) {
        // llmux restarted under a stream that did not end: start again.
        restartStream();
      }
      state.lastUptime = doc.uptime_secs;
    }
    state.status = doc;
    state.models = Object.keys(doc.models || {});
    const now = serverNow();
    for (const name of state.models) noteState(name, doc.models[name].state, now);
    renderAll();
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.action = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function renderModels() {
    const doc = state.status;
    const body = $("models").tBodies[0];
    // Redraw only on a change, so a button is not replaced under a click.
    const shown = JSON.stringify(state.models.map((name) => [name, doc.models[name]]));
    if (shown === body.dataset.shown) return;
    body.dataset.shown = shown;
    body.textContent = "";
    for (const name of state.models) {
      const m = doc.models[name];
      const row = document.createElement("tr");
      row.dataset.model = name;
      const nameCell = cell(row, "", "name");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color(name);
      nameCell.appendChild(swatch);
      nameCell.appendChild(document.createTextNode(name));
      const st = cell(row, m.state, "state state-" + m.state);
      if (m.blocked_by && m.blocked_by.length) {
        st.title = "waiting for " + m.blocked_by.map((b) => b.model + " (" + b.reason + ")").join(", ");
        st.textContent += " ⏳";
      }
      cell(row, String(m.in_flight), "num in-flight");
      cell(row, String(m.queue_depth), "num queue");
      cell(row, secs(m.oldest_wait_secs), "num wait");
      cell(row, m.placement === null || m.placement === undefined ? "–"
        : "#" + m.placement + " " + Object.keys(m.holds || {}).join("+"), "placement");
      cell(row, m.pinned ? "📌 pinned" : "–", "pin");
      cell(row, secs(m.idle_expires_in_secs), "num ttl");
      const actions = cell(row, "", "actions admin-only");
      for (const action of ["wake", "sleep", m.pinned ? "unpin" : "pin"]) {
        actions.appendChild(button(action, () => act(name, action)));
      }
      body.appendChild(row);
    }
  }

  function renderSummary() {
    const doc = state.status;
    const parts = [doc.state];
    if (doc.switching) parts.push(doc.switching.from + " → " + doc.switching.to);
    parts.push("awake: " + (doc.awake.length ? doc.awake.join(", ") : "none"));
    if (doc.version) parts.push("v" + doc.version);
    if (typeof doc.uptime_secs === "number") parts.push("up " + secs(doc.uptime_secs));
    $("summary").textContent = parts.join(" · ");
  }

  function renderPools() {
    const doc = state.status;
    const box = $("pools");
    box.textContent = "";
    if (!doc.capacity) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = "No capacity table: one model awake at a time ("
        + (doc.awake.length ? doc.awake.join(", ") : "none now") + ").";
      box.appendChild(p);
      return;
    }
    for (const pool of Object.keys(doc.capacity)) {
      const total = doc.capacity[pool];
      const used = (doc.used || {})[pool] || 0;
      const row = document.createElement("div");
      row.className = "pool";
      row.dataset.pool = pool;
      const label = document.createElement("span");
      label.className = "pool-name";
      label.textContent = pool;
      const bar = document.createElement("div");
      bar.className = "bar";
      for (const name of state.models) {
        const held = (doc.models[name].holds || {})[pool];
        if (!held) continue;
        const seg = document.createElement("div");
        seg.className = "seg";
        seg.style.width = (100 * held / total).toFixed(2) + "%";
        seg.style.background = color(name);
        seg.title = name + ": " + held;
        seg.textContent = name;
        bar.appendChild(seg);
      }
      const figures = document.createElement("span");
      figures.className = "pool-figures";
      figures.textContent = used + " / " + total;
      row.append(label, bar, figures);
      box.appendChild(row);
    }
  }

  function table(title, object) {
    const t = document.createElement("table");
    t.className = "kv";
    const cap = document.createElement("caption");
    cap.textContent = title;
    t.appendChild(cap);
    for (const k of Object.keys(object || {})) {
      const row = t.insertRow();
      cell(row, k, "k");
      const v = object[k];
      cell(row, typeof v === "object" ? JSON.stringify(v) : String(v), "v");
    }
    return t;
  }

  function renderPolicy() {
    const doc = state.status;
    const box = $("policy");
    box.textContent = "";
    box.appendChild(table("switch policy", doc.policy));
    box.appendChild(table("eviction", doc.eviction));
    if (doc.switch_costs && doc.switch_costs.length) {
      const costs = {};
      for (const c of doc.switch_costs) costs[c.from + " → " + c.to] = c.ema_secs.toFixed(2) + " s";
      box.appendChild(table("switch costs (moving average)", costs));
    }
    if (doc.last_error) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = "last error: " + doc.last_error;
      box.appendChild(p);
    }
  }

  // --- the timeline ---------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const T = { width: 960, left: 110, right: 12, lane: 20, gap: 6, top: 8, axis: 22 };

  function svg(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    for (const k of Object.keys(attrs)) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }

  function laneStyle(value, model) {
    switch (value) {
      case "awake": return { fill: color(model), opacity: 1 };
      case "draining": return { fill: color(model), opacity: 0.5 };
      case "waking": case "sleeping": case "unloading": return { fill: SWITCHING, opacity: 1 };
      case "failed": return { fill: FAILED, opacity: 1 };
      default: return null;  // asleep, unloaded: empty
    }
  }

  // The window: the last 15 minutes, or less while the page has seen less
  // (at least half a minute), so a fresh page shows its first switches legibly.
  function windowSecs(now) {
    let first = now;
    for (const list of state.history.values()) if (list.length) first = Math.min(first, list[0].t);
    for (const mark of state.marks) first = Math.min(first, mark.t);
    return Math.min(WINDOW_SECS, Math.max(30, (now - first) * 1.1));
  }

  function tickStep(span) {
    for (const step of [10, 15, 30, 60, 120, 180, 300]) if (span / step <= 6) return step;
    return 300;
  }

  function renderTimeline() {
    const now = serverNow();
    const windowLength = windowSecs(now);
    const start = now - windowLength;
    const span = T.width - T.left - T.right;
    const x = (t) => T.left + span * (Math.max(t, start) - start) / windowLength;
    const height = T.top + state.models.length * (T.lane + T.gap) + T.axis + 18;
    const root = svg("svg", { viewBox: "0 0 " + T.width + " " + height, width: "100%",
      role: "img", "aria-label": "timeline of the last " + Math.round(windowLength) + " seconds" });
    state.models.forEach((model, i) => {
      const y = T.top + i * (T.lane + T.gap);
      svg("rect", { x: T.left, y: y, width: span, height: T.lane, fill: "#f2f2f2" }, root);
      const label = svg("text", { x: T.left - 6, y: y + T.lane * 0.7, "text-anchor": "end",
        class: "lane-label" }, root);
      label.textContent = model.length > 14 ? model.slice(0, 13) + "…" : model;
      const list = state.history.get(model) || [];
      list.forEach((step, j) => {
        const end = j + 1 < list.length ? list[j + 1].t : now;
        if (end < start) return;
        const style = laneStyle(step.state, model);
        if (!style) return;
        const rect = svg("rect", { x: x(step.t).toFixed(1), y: y,
          width: Math.max(1, x(end) - x(step.t)).toFixed(1), height: T.lane,
          fill: style.fill, "fill-opacity": style.opacity, "data-state": step.state }, root);
        svg("title", {}, rect).textContent = model + " " + step.state + " from " + clock(step.t);
      });
    });
    for (const mark of state.marks) {
      if (mark.t < start) continue;
      const i = state.models.indexOf(mark.model);
      if (i < 0) continue;
      const y = T.top + i * (T.lane + T.gap);
      const stroke = mark.event === "model_dead" || mark.event === "switch_failed" ? FAILED : "#111";
      const line = svg("line", { x1: x(mark.t).toFixed(1), x2: x(mark.t).toFixed(1),
        y1: y - 2, y2: y + T.lane + 2, stroke: stroke, "stroke-width": 1.5,
        class: "mark", "data-event": mark.event, "data-model": mark.model }, root);
      svg("title", {}, line).textContent = clock(mark.t) + " " + mark.event + ": " + mark.text;
    }
    const axisY = T.top + state.models.length * (T.lane + T.gap) + 4;
    svg("line", { x1: T.left, x2: T.left + span, y1: axisY, y2: axisY, stroke: "#999" }, root);
    const step = tickStep(windowLength);
    for (let ago = 0; ago <= windowLength + 0.001; ago += step) {
      const tx = T.left + span * (windowLength - ago) / windowLength;
      svg("line", { x1: tx, x2: tx, y1: axisY, y2: axisY + 4, stroke: "#999" }, root);
      const text = ago === 0 ? "now" : "−" + (ago < 60 ? ago + " s" : ago / 60 + " min");
      svg("text", { x: tx, y: axisY + 16, "text-anchor": ago === 0 ? "end" : "middle",
        class: "axis" }, root).textContent = text;
    }
    const legend = [["serving or awake", PALETTE[0], 1], ["draining", PALETTE[0], 0.5],
      ["waking / going to sleep", SWITCHING, 1], ["failed", FAILED, 1]];
    const box = $("timeline");
    box.textContent = "";
    box.appendChild(root);
    const legendBox = document.createElement("p");
    legendBox.className = "legend";
    for (const [text, fill, opacity] of legend) {
      const s = document.createElement("span");
      s.className = "swatch";
      s.style.background = fill;
      s.style.opacity = opacity;
      legendBox.append(s, text + "  ");
    }
    legendBox.append("| ticks: switches, wakes, evictions, unloads (hover for details)");
    box.appendChild(legendBox);
  }

  function prune() {
    const start = serverNow() - WINDOW_SECS;
    state.marks = state.marks.filter((m) => m.t >= start);
    for (const [model, list] of state.history) {
      // Keep the last transition before the window: it colours its start.
      let first = 0;
      while (first + 1 < list.length && list[first + 1].t <= start) first++;
      if (first) state.history.set(model, list.slice(first));
    }
  }

  function renderAll() {
    if (!state.status) return;
    renderSummary();
    renderModels();
    renderPools();
    renderPolicy();
    renderTimeline();
    showAdmin();
  }

  // --- events ---------------------------------------------------------
  function addEventRow(name, data, t) {
    const list = $("events");
    const li = document.createElement("li");
    li.dataset.event = name;
    li.className = "level-" + (data.level || "info");
    const when = document.createElement("time");
    when.textContent = clock(t);
    const what = document.createElement("b");
    what.textContent = name;
    const text = document.createElement("span");
    text.textContent = data.message || JSON.stringify(data);
    li.append(when, " ", what, " ", text);
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
  }

  function onEvent(name, data) {
    if (name === "status") {
      applyStatus(data);
      return;
    }
    const now = Date.now() / 1000;
    const t = typeof data.time === "number" ? data.time : now + state.skew;
    if (typeof data.time === "number") state.skew = data.time - now;
    // Debug events (routine alive checks, hook output) and a managed
    // server's output lines would bury the rest; they change no state.
    const chatter = data.level === "debug" || QUIET.has(name);
    if (!chatter) addEventRow(name, data, t);
    if (name === "switch_started") {
      if (data.to) {
        noteState(data.to, "waking", t);
        state.marks.push({ t: t, event: name, model: data.to, text: data.from + " → " + data.to });
      }
    } else if (data.model && STATE_AFTER[name]) {
      noteState(data.model, STATE_AFTER[name], t);
    }
    if (MARKED.has(name) && name !== "switch_started" && data.model) {
      state.marks.push({ t: t, event: name, model: data.model, text: data.message || name });
    }
    if (chatter) return;
    if (state.status) renderTimeline();
    refetchSoon();
  }

  // The stream says what happened; the status document says where that
  // left every model. Fetch it after a burst of events.
  function refetchSoon() {
    if (state.refetchTimer !== null) return;
    state.refetchTimer = setTimeout(() => {
      state.refetchTimer = null;
      fetchStatus();
    }, 150);
  }

  // --- the stream: fetch() and an SSE parser, so a key can be sent ------
  function setConnection(up, text) {
    state.streamUp = up;
    const c = $("connection");
    c.className = "connection " + (up ? "up" : "down");
    c.textContent = text;
  }

  function parseBlock(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line[0] === ":") continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    try {
      onEvent(name, JSON.parse(data.join("\n")));
    } catch (e) {
      console.error("llmux dashboard: bad event", name, e);
    }
  }

  async function stream(signal) {
    const response = await fetch("/llmux/events", {
      headers: headers({ Accept: "text/event-stream" }), signal: signal, cache: "no-store",
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      if (response.status === 401 || response.status === 403) {
        notice("llmux refused the event stream: " + message + ". Enter a key above.");
      }
      throw new Error(message);
    }
    setConnection(true, "live");
    notice("");
    probeAdmin();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let stall = null;
    const watch = () => {
      clearTimeout(stall);
      stall = setTimeout(() => reader.cancel(), STALL_MS);
    };
    watch();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watch();
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } finally {
      clearTimeout(stall);
    }
  }

  async function follow() {
    let failures = 0;
    for (;;) {
      const controller = new AbortController();
      state.streamAbort = controller;
      try {
        await stream(controller.signal);
        failures = 0;
      } catch (e) {
        failures++;
      }
      setConnection(false, "reconnecting…");
      const wait = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  function restartStream() {
    if (state.streamAbort) state.streamAbort.abort();
  }

  // --- polling: the fallback that keeps the page right ----------------
  async function fetchStatus() {
    try {
      const response = await fetch("/llmux/status", { headers: headers(), cache: "no-store" });
      if (!response.ok) {
        const message = await errorMessage(response);
        if (response.status === 401 || response.status === 403) {
          notice("llmux refused the status: " + message + ". Enter a key above.");
        }
        return;
      }
      applyStatus(await response.json());
    } catch (e) {
      // llmux is down: the stream, if it thinks it is up, is stale.
      setConnection(false, "llmux unreachable");
      restartStream();
    }
  }

  // --- admin ----------------------------------------------------------
  // An unknown action on a model that does not exist: llmux checks who asks
  // before it reads the path, so a 404 means the admin API would accept us,
  // and nothing is done or logged.
  async function probeAdmin() {
    try {
      const response = await fetch("/llmux/models/-/check", { method: "POST", headers: headers() });
      state.adminAllowed = response.status === 404;
      const hint = $("admin-hint");
      if (state.adminAllowed) {
        hint.textContent = key() ? "Admin actions use the key entered above."
          : "Admin actions allowed without a key (llmux has no admin key and this is a local client).";
      } else {
        hint.textContent = "Enter an admin key above for wake, sleep, pin and reload ("
          + (await errorMessage(response)) + ").";
      }
    } catch (e) {
      state.adminAllowed = false;
    }
    showAdmin();
  }

  function showAdmin() {
    document.body.classList.toggle("admin", state.adminAllowed);
  }

  async function post(path, label) {
    const result = $("admin-result");
    result.className = "admin-result";
    result.textContent = label + "…";
    try {
      const response = await fetch(path, { method: "POST", headers: headers() });
      if (response.ok) {
        const body = await response.json();
        result.textContent = label + ": " + (body.state || "done");
      } else {
        result.className = "admin-result error";
        result.textContent = label + " failed: " + (await errorMessage(response));
      }
    } catch (e) {
      result.className = "admin-result error";
      result.textContent = label + " failed: " + e.message;
    }
    fetchStatus();
  }

  function act(model, action) {
    return post("/llmux/models/" + encodeURIComponent(model) + "/" + action, action + " " + model);
  }

  // --- start ----------------------------------------------------------
  function start() {
    $("key").value = key();
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const k = $("key").value.trim();
      if (k) sessionStorage.setItem(KEY_STORAGE, k);
      else sessionStorage.removeItem(KEY_STORAGE);
      restartStream();
      fetchStatus();
      probeAdmin();
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      $("key").value = "";
      restartStream();
      probeAdmin();
    });
    $("reload").addEventListener("click", () => post("/llmux/reload", "reload"));
    fetchStatus();
    probeAdmin();
    follow();
    setInterval(fetchStatus, POLL_MS);
    setInterval(() => { prune(); if (state.status) renderTimeline(); }, 5000);
  }

  start();
})();
