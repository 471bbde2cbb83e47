// The job page: polls the JSON API every 2 s while the job runs and redraws what changed.
// Reads only: GET /jobs/{id}, /jobs/{id}/rewards (compact chart series), /jobs/{id}/trials (one page),
// /jobs/{id}/trials/{tid} and its /metrics. The login cookie authenticates every request.
// A placement job (data-kind="placement") shows its search's progress instead of a reward chart,
// then GET /jobs/{id}/placement drawn by placement.js (window.L2LPlacement).
(function () {
  "use strict";

  const root = document.getElementById("job");
  if (!root) return;
  const jobId = root.dataset.jobId;
  const placing = root.dataset.kind === "placement" && window.L2LPlacement;
  const API = "/jobs/" + jobId;
  const POLL_MS = 2000;
  const PAGE = 50;
  const FINISHED_JOB = ["completed", "failed", "cancelled"];
  const FINISHED_TRIAL = ["completed", "failed", "cancelled", "timed_out"];

  const view = { offset: 0, sort: "number", order: "asc", state: "", selected: null };
  let job = null;
  let progressKey = "";
  let chartCount = -1;
  let tableKey = "";
  let timer = null;
  let stopped = false;
  let placementShown = false;
  let searchProgress = "";

  const $ = (id) => document.getElementById(id);
  const fmt = (x, digits) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits === undefined ? 4 : digits));
  // A count (examples, parameters) reads as a whole number: 866, not 866.0000.
  const COUNT = /^(parameters|flops)$|_examples$/;
  const metricText = (name, v) => (typeof v !== "number" ? String(v) : COUNT.test(name) ? Math.round(v).toLocaleString("en") : fmt(v));
  const plural = (n, word) => n.toLocaleString("en") + " " + word + (n === 1 ? "" : "s");

  const { el } = window.L2LDom;

  async function getJSON(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {}));
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      throw new Error("logged out");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const error = new Error(body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // ------------------------------------------------------------------ architecture summaries

  const OP_SHORT = { skip_connect: "skip", nor_conv_1x1: "conv 1×1", nor_conv_3x3: "conv 3×3", avg_pool_3x3: "avg pool", none: "none" };

  function spaceOf() {
    const space = (job && (job.space || job.spec.space)) || {};
    const builder = space.builder || "";
    const kind = builder.indexOf("nb201") >= 0 ? "nb201" : builder.indexOf("mlp") >= 0 ? "mlp" : "other";
    const fixed = (space.settings && space.settings.fixed_params) || {};
    return { kind: kind, fixed: fixed };
  }

  function summary(params) {
    if (placing) return "one placement search";
    const space = spaceOf();
    const p = Object.assign({}, space.fixed, params);
    if (space.kind === "nb201") {
      return ["1_0", "2_0", "2_1", "3_0", "3_1", "3_2"].map((e) => OP_SHORT[p["edge_" + e]] || p["edge_" + e]).join(" · ");
    }
    if (space.kind === "mlp") {
      const parts = [p.num_layers + " × " + p.units + " " + p.activation];
      if (Number(p.dropout) > 0) parts.push("dropout " + p.dropout);
      if (p.learning_rate !== undefined) parts.push("lr " + Number(p.learning_rate).toExponential(1));
      if (p.batch_size !== undefined) parts.push("batch " + p.batch_size);
      return parts.join(", ");
    }
    return Object.entries(p).map(([k, v]) => k + "=" + v).join(", ");
  }

  function drawCell(params) {
    const W = 560, H = 250, MID = 120, R = 22;
    const xs = [40, 200, 360, 520];
    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "arch-svg", role: "img" });
    const defs = el("svg:defs", {}, [
      el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
        [el("svg:path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" })]),
    ]);
    svg.append(defs);
    const described = [];
    const labels = [];
    for (let j = 1; j < 4; j++) {
      for (let i = 0; i < j; i++) {
        const op = params["edge_" + j + "_" + i];
        if (!op || op === "none") continue;
        described.push("node " + i + " to node " + j + ": " + (OP_SHORT[op] || op));
        const span = j - i;
        // Neighbours are joined straight; longer edges arc above (span 2) or below (span 3).
        const bend = span === 1 ? 0 : span === 2 ? -150 : 200;
        const x0 = xs[i], x1 = xs[j], cx = (x0 + x1) / 2, cy = MID + bend;
        const start = toward(x0, MID, cx, cy, R), end = toward(x1, MID, cx, cy, R);
        svg.append(el("svg:path", {
          d: "M" + start[0] + "," + start[1] + " Q" + cx + "," + cy + " " + end[0] + "," + end[1],
          class: "edge op-" + op, "marker-end": "url(#arrow)",
        }));
        const ly = (MID + MID + 2 * cy) / 4;
        labels.push([cx, ly, OP_SHORT[op] || op, op]);
      }
    }
    for (const [x, y, text, op] of labels) {
      const width = text.length * 7.4 + 14;
      svg.append(el("svg:rect", { x: x - width / 2, y: y - 11, width: width, height: 22, rx: 11, class: "edge-label-bg op-" + op }));
      svg.append(el("svg:text", { x: x, y: y + 4, class: "edge-label", "text-anchor": "middle", text: text }));
    }
    xs.forEach((x, n) => {
      svg.append(el("svg:circle", { cx: x, cy: MID, r: R, class: "node" + (n === 0 || n === 3 ? " io" : "") }));
      svg.append(el("svg:text", { x: x, y: MID + 5, "text-anchor": "middle", class: "node-label", text: String(n) }));
      const caption = n === 0 ? "cell input" : n === 3 ? "cell output" : "";
      if (caption) svg.append(el("svg:text", { x: x, y: MID + R + 18, "text-anchor": "middle", class: "node-caption", text: caption }));
    });
    svg.setAttribute("aria-label", "Cell with 4 nodes; " + (described.length ? described.join("; ") : "no edges"));
    return svg;
  }

  function toward(x, y, cx, cy, r) {
    const dx = cx - x, dy = cy - y, n = Math.hypot(dx, dy) || 1;
    return [Math.round((x + (r * dx) / n) * 10) / 10, Math.round((y + (r * dy) / n) * 10) / 10];
  }

  function drawStack(params) {
    const layers = Math.max(0, Number(params.num_layers) || 0);
    const boxes = [["Input", "the features"]];
    for (let k = 0; k < layers; k++) {
      const detail = params.activation + (Number(params.dropout) > 0 ? ", dropout " + params.dropout : "");
      boxes.push(["Dense, " + params.units + " units", detail]);
    }
    boxes.push(["Output", "one score per class"]);
    // A stack read top to bottom, as the data flows; its height grows with the layers.
    const W = 360, BW = 240, BH = 44, GAP = 20, top = 8;
    const extra = [];
    if (params.learning_rate !== undefined) extra.push("learning rate " + Number(params.learning_rate).toExponential(1));
    if (params.batch_size !== undefined) extra.push("batch size " + params.batch_size);
    const H = top + boxes.length * (BH + GAP) - GAP + (extra.length ? 34 : 8);
    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "arch-svg stack-svg", role: "img", style: "max-width:" + W + "px" });
    svg.append(el("svg:defs", {}, [
      el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
        [el("svg:path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" })]),
    ]));
    const x = (W - BW) / 2;
    boxes.forEach(([title, detail], k) => {
      const y = top + k * (BH + GAP);
      const io = k === 0 || k === boxes.length - 1;
      svg.append(el("svg:rect", { x: x, y: y, width: BW, height: BH, rx: 8, class: "layer" + (io ? " io" : "") }));
      svg.append(el("svg:text", { x: W / 2, y: y + 19, "text-anchor": "middle", class: "layer-title", text: title }));
      svg.append(el("svg:text", { x: W / 2, y: y + 35, "text-anchor": "middle", class: "layer-detail", text: detail }));
      if (k > 0) svg.append(el("svg:line", { x1: W / 2, y1: y - GAP + 1, x2: W / 2, y2: y - 2, class: "edge", "marker-end": "url(#arrow)" }));
    });
    if (extra.length) svg.append(el("svg:text", { x: W / 2, y: H - 8, "text-anchor": "middle", class: "node-caption", text: extra.join(" · ") }));
    svg.setAttribute("aria-label", "Multilayer perceptron: " + boxes.map((b) => b.join(" ")).join(", then "));
    return svg;
  }

  function renderArchitecture(best) {
    const box = $("arch");
    if (!best) {
      $("arch-trial").textContent = "";
      box.replaceChildren(el("p", { class: "muted", text: "No completed trial yet." }));
      return;
    }
    $("arch-trial").textContent = "(trial #" + best.number + ", reward " + fmt(best.reward) + ")";
    const space = spaceOf();
    const params = Object.assign({}, space.fixed, best.params);
    const children = [];
    if (space.kind === "nb201") {
      children.push(drawCell(params));
      const arch = [1, 2, 3].map((j) => "|" + Array.from({ length: j }, (_, i) => params["edge_" + j + "_" + i] + "~" + i).join("|") + "|").join("+");
      children.push(el("p", { class: "arch-string" }, [el("code", { text: arch })]));
    } else if (space.kind === "mlp") {
      children.push(drawStack(params));
    } else {
      children.push(paramsTable(params));
    }
    box.replaceChildren(...children);
  }

  function paramsTable(params) {
    const rows = Object.entries(params).map(([k, v]) => el("tr", {}, [el("th", { scope: "row", text: k }), el("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })]));
    return el("table", { class: "kv" }, [el("tbody", {}, rows)]);
  }

  // ------------------------------------------------------------------ chart

  function niceTicks(lo, hi, count) {
    const span = hi - lo || 1;
    const step0 = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  let lastPoints = [];
  let lastWidth = 0;

  function drawChart(points) {
    const box = $("chart");
    lastPoints = points;
    lastWidth = box.clientWidth;
    const scored = points.filter((p) => p[1] !== null);
    const failed = points.filter((p) => p[1] === null);
    box.dataset.points = String(points.length);
    if (!points.length) {
      box.setAttribute("aria-label", "No finished trials yet");
      box.replaceChildren(el("p", { class: "muted chart-empty", text: "No finished trials yet. Points appear as trials finish." }));
      return;
    }
    // Drawn at the box's own width so that the labels keep their size on any screen.
    const W = Math.max(360, Math.round(box.clientWidth || 640)), H = 280, L = 54, Rm = 14, T = 14, B = 40;
    const budget = job ? job.progress.trials : 0;
    const maxN = Math.max(budget - 1, points[points.length - 1][0], 1);
    let lo = Infinity, hi = -Infinity;
    for (const p of scored) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    if (!scored.length) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const yTicks = niceTicks(lo, hi, 5);
    const xTicks = niceTicks(0, maxN, 6).filter((t) => Number.isInteger(t));
    const x = (n) => L + (n / maxN) * (W - L - Rm);
    const y = (r) => T + (1 - (r - lo) / (hi - lo)) * (H - T - B);
    const r2 = (v) => Math.round(v * 10) / 10;

    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", "aria-hidden": "true" });
    for (const t of yTicks) {
      svg.append(el("svg:line", { x1: L, x2: W - Rm, y1: r2(y(t)), y2: r2(y(t)), class: "grid" }));
      svg.append(el("svg:text", { x: L - 8, y: r2(y(t)) + 4, "text-anchor": "end", class: "tick", text: String(t) }));
    }
    for (const t of xTicks) {
      svg.append(el("svg:text", { x: r2(x(t)), y: H - B + 18, "text-anchor": "middle", class: "tick", text: t.toLocaleString("en") }));
    }
    svg.append(el("svg:line", { x1: L, x2: W - Rm, y1: H - B, y2: H - B, class: "axis" }));
    svg.append(el("svg:text", { x: (L + W - Rm) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label", text: "trial, in the order proposed" }));
    svg.append(el("svg:text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis-label", transform: "rotate(-90 14 " + (T + H - B) / 2 + ")", text: "reward" }));

    // Thousands of trials: one path each for the dots, the failures and the best-so-far line.
    const dots = [], fails = [], best = [];
    let top = -Infinity, bestAt = null;
    for (const p of points) {
      if (p[1] === null) { fails.push("M" + r2(x(p[0])) + "," + (H - B - 7) + "v10"); continue; }
      dots.push("M" + r2(x(p[0])) + "," + r2(y(p[1])) + "h0");
      if (p[1] > top) {
        best.push((best.length ? "H" + r2(x(p[0])) + "V" : "M" + r2(x(p[0])) + ",") + r2(y(p[1])));
        top = p[1];
        bestAt = p[0];
      }
    }
    const size = points.length > 2000 ? 2.5 : points.length > 300 ? 4 : 7;
    if (best.length) best.push("H" + r2(x(points[points.length - 1][0])));
    if (best.length) svg.append(el("svg:path", { d: best.join(""), class: "best-line" }));
    svg.append(el("svg:path", { d: dots.join(""), class: "dots", "stroke-width": size }));
    if (fails.length) svg.append(el("svg:path", { d: fails.join(""), class: "fails" }));
    box.replaceChildren(svg);
    box.setAttribute("aria-label", "Rewards of " + plural(points.length, "finished trial") + " (" + failed.length + " failed)" +
      (bestAt !== null ? "; best " + fmt(top) + " at trial " + bestAt : ""));
  }

  // ------------------------------------------------------------------ status

  function renderJob() {
    const p = job.progress;
    const stateBadge = $("job-state");
    stateBadge.textContent = job.state;
    stateBadge.className = "badge state-" + job.state;
    const bar = $("job-progress");
    bar.max = p.trials;
    bar.value = p.completed + p.failed + p.cancelled + (p.timed_out || 0);
    const parts = [p.completed.toLocaleString("en") + " of " + p.trials.toLocaleString("en") + " trials completed"];
    if (p.failed) parts.push(p.failed.toLocaleString("en") + " failed");
    if (p.timed_out) parts.push(p.timed_out.toLocaleString("en") + " timed out");
    if (p.running) parts.push(p.running + " running");
    if (p.queued) parts.push(p.queued + " queued");
    if (p.cancelled) parts.push(p.cancelled + " cancelled");
    $("progress-text").textContent = placing && searchProgress && !p.completed ? searchProgress : parts.join(" · ");
    $("progress-text").dataset.completed = String(p.completed);
    if (placing) {
      const ms = job.best_trial && job.best_trial.metrics.step_time_ms;
      $("best-reward").textContent = typeof ms === "number" ? ms.toPrecision(4) + " ms" : "—";
    } else {
      $("best-reward").textContent = job.best_trial ? fmt(job.best_trial.reward) : "—";
    }
    const reason = $("job-reason");
    reason.hidden = !job.reason;
    reason.textContent = job.reason || "";
    const warning = $("job-warning");
    warning.hidden = !job.warning;
    warning.textContent = job.warning ? "Warning: " + job.warning : "";
    const chance = $("job-chance");
    const level = job.chance && (job.chance.test ?? job.chance.validation);
    chance.hidden = typeof level !== "number";
    if (typeof level === "number") {
      chance.textContent = "Chance level: " + job.chance.metric + " " + fmt(level, 3) + ", from " + job.chance.guess +
        "; a model that learned something does clearly better.";
    }
    const finished = FINISHED_JOB.includes(job.state);
    $("pause").hidden = finished || job.state === "paused";
    $("resume").hidden = job.state !== "paused";
    $("cancel").hidden = finished;
    if (!placing) renderFinalModel(job.final_model);
  }

  // A placement job's one trial reports the best step time so far every few seconds.
  async function refreshSearchProgress() {
    const page = await getJSON(API + "/trials?limit=1");
    const trial = page.items[0];
    if (!trial || trial.state !== "running") { searchProgress = ""; return; }
    const curve = await getJSON(API + "/trials/" + trial.id + "/metrics");
    const last = curve.points[curve.points.length - 1];
    if (!last) { searchProgress = "Scoring the baselines…"; return; }
    const v = last.values;
    searchProgress = "Searching: best " + (typeof v.best_step_time_ms === "number" ? v.best_step_time_ms.toPrecision(4) + " ms" : "—") +
      " after " + plural(Math.round(v.samples || 0), "placement") + " in " + Math.round(v.seconds || 0) + " s";
  }

  async function showPlacement() {
    let doc;
    try {
      doc = await getJSON(API + "/placement");
    } catch (error) {
      if (error.status === 404) return;  // not sent yet
      throw error;
    }
    placementShown = true;
    $("placement-graph-card").hidden = false;  // shown first: the drawings take the cards' width
    $("timeline-card").hidden = false;
    $("placement-download").hidden = false;
    window.L2LPlacement.render(doc, {
      summary: $("placement-summary"),
      graph: $("placement-graph"),
      graphNote: $("graph-note"),
      legend: $("device-legend"),
      timelines: $("timelines"),
    });
  }

  // The best architecture retrained and scored once on the held-out test data; absent until it starts.
  function renderFinalModel(model) {
    const section = $("final-model");
    if (!model) { section.hidden = true; return; }
    section.hidden = false;
    const status = el("p", { class: "final-status" }, [el("span", { class: "badge state-" + model.state, text: model.state || "" })]);
    if (model.trial_id !== undefined) {
      const number = job.best_trial && job.best_trial.id === model.trial_id ? "#" + job.best_trial.number : "";
      status.append(document.createTextNode(" retrained from "),
        el("button", { type: "button", class: "link", "data-trial": model.trial_id, text: "trial " + number }));
      status.querySelector("button").addEventListener("click", () => showTrial(model.trial_id, true));
    }
    if (model.state === "running" || model.state === "queued") status.append(document.createTextNode(" on training + validation data…"));
    const children = [status];
    const metrics = model.test_metrics || {};
    if (Object.keys(metrics).length) {
      const stats = Object.entries(metrics).map(([k, v]) => el("div", {}, [el("dt", { text: k }), el("dd", { text: metricText(k, v) })]));
      children.push(el("p", { class: "muted", text: "Scored once on held-out test data that the search never saw:" }));
      children.push(el("dl", { class: "test-metrics", id: "test-metrics" }, stats));
    }
    if (model.error) children.push(el("pre", { class: "error-text", text: model.error }));
    const files = model.downloads || model.files || {};
    const labels = { keras: "Keras model (.keras)", savedmodel: "TensorFlow SavedModel (.zip)" };
    const links = Object.entries(files).filter(([, url]) => url).map(([kind, url]) =>
      el("li", {}, [el("a", { href: url, class: "button primary", download: "", "data-format": kind, text: "Download " + (labels[kind] || kind) })]));
    if (links.length) children.push(el("ul", { class: "downloads" }, links));
    $("final-body").replaceChildren(...children);
  }

  // ------------------------------------------------------------------ table

  function trialsUrl() {
    const q = new URLSearchParams({ offset: view.offset, limit: PAGE, sort: view.sort, order: view.order });
    if (view.state) q.append("state", view.state);
    return API + "/trials?" + q.toString();
  }

  async function refreshTable() {
    let page;
    try {
      page = await getJSON(trialsUrl());
    } catch (error) {
      if (error.status === 404 && view.offset > 0) { view.offset = 0; return refreshTable(); }
      throw error;
    }
    const rows = page.items.map((t) => {
      const firstLine = t.error ? t.error.trim().split("\n").pop() : "";
      const tr = el("tr", { "data-trial-id": t.id, class: (t.is_best ? "best " : "") + (view.selected === t.id ? "selected" : "") }, [
        el("td", { class: "num" }, [el("button", { type: "button", class: "link open-trial", "aria-label": "Show trial " + t.number, text: "#" + t.number })]),
        el("td", {}, [el("span", { class: "badge state-" + t.state, text: t.state })]),
        el("td", { class: "num", text: fmt(t.reward) }),
        el("td", { class: "params", title: JSON.stringify(t.params), text: summary(t.params) }),
        el("td", { class: "num", text: String(t.attempts) }),
        el("td", { class: "error-cell", title: t.error || "", text: t.state === "failed" || t.error ? firstLine : "" }),
      ]);
      return tr;
    });
    if (!rows.length) rows.push(el("tr", {}, [el("td", { colspan: 6, class: "muted", text: view.state ? "No " + view.state + " trials." : "No trials yet." })]));
    $("trial-rows").replaceChildren(...rows);
    const last = Math.min(page.offset + page.items.length, page.total);
    $("page-info").textContent = page.total
      ? (page.offset + 1).toLocaleString("en") + "–" + last.toLocaleString("en") + " of " + plural(page.total, "trial")
      : "";
    $("page-info").dataset.total = String(page.total);
    $("first-page").disabled = $("prev-page").disabled = page.offset === 0;
    $("next-page").disabled = $("last-page").disabled = page.offset + PAGE >= page.total;
    view.total = page.total;
  }

  function setSortHeaders() {
    for (const th of document.querySelectorAll("#trials th[data-sort]")) {
      th.setAttribute("aria-sort", th.dataset.sort === view.sort ? (view.order === "asc" ? "ascending" : "descending") : "none");
    }
  }

  // ------------------------------------------------------------------ trial detail

  async function showTrial(trialId, focus) {
    view.selected = trialId;
    for (const tr of document.querySelectorAll("#trial-rows tr")) tr.classList.toggle("selected", Number(tr.dataset.trialId) === trialId);
    const [trial, curve] = await Promise.all([getJSON(API + "/trials/" + trialId), getJSON(API + "/trials/" + trialId + "/metrics")]);
    if (view.selected !== trialId) return;
    const section = $("trial-detail");
    section.hidden = false;
    section.dataset.trialId = String(trialId);
    section.dataset.state = trial.state;
    $("detail-title").textContent = "Trial #" + trial.number;
    const children = [
      el("p", {}, [el("span", { class: "badge state-" + trial.state, text: trial.state }),
        document.createTextNode(trial.reward !== null ? "  reward " + fmt(trial.reward) : ""),
        document.createTextNode(trial.attempts > 1 ? "  · " + trial.attempts + " attempts" : "")]),
    ];
    if (trial.error) {
      children.push(el("h3", { text: trial.state === "failed" ? "Why it failed" : "Error of an earlier attempt" }));
      children.push(el("pre", { class: "error-text", id: "trial-error", text: trial.error }));
    }
    children.push(el("h3", { text: "Metrics by epoch" }));
    children.push(curves(curve.points));
    const grid = el("div", { class: "grid-2" }, [
      el("div", {}, [el("h3", { text: "Architecture" }), paramsTable(trial.params)]),
      el("div", {}, [el("h3", { text: "Final metrics" }), Object.keys(trial.metrics).length ? paramsTable(roundAll(trial.metrics)) : el("p", { class: "muted", text: "None reported yet." })]),
    ]);
    children.push(grid);
    $("detail-body").replaceChildren(...children);
    if (focus) section.focus();
  }

  function roundAll(values) {
    const out = {};
    for (const [k, v] of Object.entries(values)) out[k] = typeof v === "number" ? Number(v.toPrecision(5)) : v;
    return out;
  }

  function curves(points) {
    const wrap = el("div", { class: "curves", id: "trial-curves" });
    if (!points.length) { wrap.append(el("p", { class: "muted", text: "No epoch reported yet." })); return wrap; }
    const names = [];
    for (const p of points) for (const k of Object.keys(p.values)) if (!names.includes(k)) names.push(k);
    names.sort((a, b) => (a.replace("val_", "") + (a.startsWith("val_") ? 0 : 1)).localeCompare(b.replace("val_", "") + (b.startsWith("val_") ? 0 : 1)));
    for (const name of names.slice(0, 6)) {
      const series = points.filter((p) => typeof p.values[name] === "number").map((p) => [p.step, p.values[name]]);
      if (!series.length) continue;
      const W = 220, H = 110, L = 8, R = 8, T = 22, B = 18;
      let lo = Math.min(...series.map((s) => s[1])), hi = Math.max(...series.map((s) => s[1]));
      if (hi - lo < 1e-9) { lo -= 0.5 * (Math.abs(lo) || 1) * 0.1; hi += 0.5 * (Math.abs(hi) || 1) * 0.1; }
      const maxStep = Math.max(1, series[series.length - 1][0]);
      const x = (s) => L + (s / maxStep) * (W - L - R);
      const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
      const d = series.map((s, k) => (k ? "L" : "M") + x(s[0]).toFixed(1) + "," + y(s[1]).toFixed(1)).join("");
      const last = series[series.length - 1];
      const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "curve-svg", role: "img", "aria-label": name + " by epoch, last " + last[1].toPrecision(4) }, [
        el("svg:text", { x: L, y: 14, class: "curve-title", text: name }),
        el("svg:text", { x: W - R, y: 14, "text-anchor": "end", class: "curve-value", text: last[1].toPrecision(4) }),
        el("svg:line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }),
        el("svg:text", { x: L, y: H - 4, class: "tick", text: "epoch " + series[0][0] }),
        el("svg:text", { x: W - R, y: H - 4, "text-anchor": "end", class: "tick", text: "epoch " + last[0] }),
        el("svg:path", { d: d, class: "curve-line" + (name.startsWith("val_") ? " val" : "") }),
        ...series.map((s) => el("svg:circle", { cx: x(s[0]).toFixed(1), cy: y(s[1]).toFixed(1), r: 2.5, class: "curve-dot" + (name.startsWith("val_") ? " val" : "") })),
      ]);
      wrap.append(svg);
    }
    return wrap;
  }

  // ------------------------------------------------------------------ polling

  async function tick() {
    timer = null;
    try {
      job = await getJSON(API);
      renderJob();
      const p = job.progress;
      const key = [job.state, p.created, p.queued, p.running, p.completed, p.failed, p.cancelled, p.timed_out].join("/");
      const charted = p.completed + p.failed + (p.timed_out || 0);
      const work = [];
      if (placing) {
        if (!FINISHED_JOB.includes(job.state)) work.push(refreshSearchProgress().then(renderJob));
        if (!placementShown && p.completed) work.push(showPlacement());
      } else if (charted !== chartCount) {
        work.push(getJSON(API + "/rewards").then((points) => { chartCount = points.length; drawChart(points); }));
        renderArchitecture(job.best_trial);
      } else if (chartCount === -1) {
        renderArchitecture(job.best_trial);
      }
      if (key !== progressKey || tableKey !== viewKey()) {
        work.push(refreshTable().then(() => { tableKey = viewKey(); }));
        if (view.selected !== null && $("trial-detail").dataset.state && !FINISHED_TRIAL.includes($("trial-detail").dataset.state)) {
          work.push(showTrial(view.selected, false));
        }
      }
      await Promise.all(work);
      progressKey = key;
      hideMessage();
      if (FINISHED_JOB.includes(job.state)) stopped = true;
    } catch (error) {
      if (error.message !== "logged out") showMessage("Could not refresh: " + error.message);
    }
    if (!stopped) schedule();
  }

  function viewKey() { return [view.offset, view.sort, view.order, view.state].join("/"); }

  function schedule() {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => { if (document.hidden) schedule(); else tick(); }, POLL_MS);
  }

  function showMessage(text) { const m = $("action-message"); m.textContent = text; m.hidden = false; }
  function hideMessage() { $("action-message").hidden = true; }

  async function changeView(update) {
    Object.assign(view, update);
    setSortHeaders();
    try {
      await refreshTable();
      tableKey = viewKey();
    } catch (error) {
      showMessage("Could not load trials: " + error.message);
    }
  }

  // ------------------------------------------------------------------ events

  $("state-filter").addEventListener("change", (e) => changeView({ state: e.target.value, offset: 0 }));
  $("first-page").addEventListener("click", () => changeView({ offset: 0 }));
  $("prev-page").addEventListener("click", () => changeView({ offset: Math.max(0, view.offset - PAGE) }));
  $("next-page").addEventListener("click", () => changeView({ offset: view.offset + PAGE }));
  $("last-page").addEventListener("click", () => changeView({ offset: Math.max(0, Math.floor(((view.total || 1) - 1) / PAGE) * PAGE) }));
  for (const th of document.querySelectorAll("#trials th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      const sort = th.dataset.sort;
      // A new column starts where it is most useful: numbers from the first, rewards from the best.
      const order = view.sort === sort ? (view.order === "asc" ? "desc" : "asc") : sort === "reward" ? "desc" : "asc";
      changeView({ sort: sort, order: order, offset: 0 });
    });
  }
  $("trial-rows").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-trial-id]");
    if (row) showTrial(Number(row.dataset.trialId), true).catch((error) => showMessage("Could not load the trial: " + error.message));
  });
  $("close-detail").addEventListener("click", () => { view.selected = null; $("trial-detail").hidden = true; });
  for (const button of document.querySelectorAll(".job-actions button")) {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      if (action === "cancel" && !window.confirm("Cancel this job? Trials in flight stop; finished ones are kept.")) return;
      button.disabled = true;
      try {
        job = await getJSON(API + "/" + action, { method: "POST" });
        renderJob();
        hideMessage();
        if (stopped && !FINISHED_JOB.includes(job.state)) stopped = false;
        progressKey = "";
        if (!stopped || action === "cancel") { stopped = false; schedule(); }
      } catch (error) {
        showMessage(error.message);
      } finally {
        button.disabled = false;
      }
    });
  }
  window.addEventListener("resize", () => {
    if (!placing && Math.abs($("chart").clientWidth - lastWidth) > 20 && lastPoints.length) drawChart(lastPoints);
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !stopped) { schedule(); } });

  tick();
})();
