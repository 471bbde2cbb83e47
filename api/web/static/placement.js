// A placement job's result, drawn from GET /jobs/{id}/placement (see its description in /docs):
// the step times against the baselines, the op graph coloured by device, and the simulated
// training step of the learned and the expert placement as a timeline per device.
// job.js calls window.L2LPlacement.render(doc, elements) once the document exists.
(function () {
  "use strict";

  // Distinct, colour-blind-friendly hues (Okabe–Ito first), then more for big clusters.
  const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7a6fbf", "#8c6d31",
    "#3b8b8b", "#b04a5a", "#5a7d2a", "#6b6b6b"];
  const BASELINE_LABELS = { single_device: "One device", round_robin: "Round robin", op_mod_k: "Op i on device i mod k",
    contiguous: "Contiguous cut", expert: "Expert (GNMT layout)", expert_split_softmax: "Expert, softmax split by step", metis: "METIS cut" };
  // Beyond this many ops the graph is drawn by layer; beyond this many layers, as dots without edges.
  const OPS_WITH_EDGES = 1500;
  const LAYERS_WITH_EDGES = 600;

  const colour = (d) => PALETTE[d % PALETTE.length];
  const ms = (x) => (typeof x === "number" ? (x >= 100 ? x.toFixed(1) : x.toPrecision(4)) + " ms" : "does not fit");
  const r1 = (v) => Math.round(v * 10) / 10;

  const { el } = window.L2LDom;

  function deviceIndex(doc) {
    const index = new Map(doc.devices.map((name, d) => [name, d]));
    return doc.placement.map((name) => index.get(name));
  }

  // ------------------------------------------------------------------ summary

  function renderSummary(doc, box) {
    const learned = doc.step_time_ms;
    const expert = doc.baselines.expert ? doc.baselines.expert.step_time_ms : null;
    const stats = [["Learned placement", ms(learned), "learned-ms"]];
    if (doc.baselines.expert) stats.push(["Expert placement", ms(expert), "expert-ms"]);
    const ratio = doc.speedup && doc.speedup.vs_expert;
    if (typeof ratio === "number") {
      const words = Math.abs(ratio - 1) < 0.005 ? "as fast" : ratio > 1 ? "faster" : "slower";
      stats.push(["Against the expert", ratio.toFixed(2) + "× (" + words + ")", "speedup"]);
    }
    if (doc.best_baseline) {
      stats.push(["Best baseline", (BASELINE_LABELS[doc.best_baseline] || doc.best_baseline) + ", " + ms(doc.baselines[doc.best_baseline].step_time_ms), "best-baseline"]);
    }
    stats.push(["Lower bound", ms(doc.lower_bound_ms), "lower-bound"]);
    const dl = el("dl", { class: "test-metrics", id: "placement-stats" },
      stats.map(([label, value, id]) => el("div", { "data-stat": id }, [el("dt", { text: label }), el("dd", { text: value })])));
    const rows = Object.entries(doc.baselines).map(([name, b]) => el("tr", { "data-baseline": name }, [
      el("th", { scope: "row", text: BASELINE_LABELS[name] || name }),
      el("td", { class: "num", text: ms(b.step_time_ms) }),
      el("td", { class: "num", text: typeof b.step_time_ms === "number" && learned ? (b.step_time_ms / learned).toFixed(2) + "×" : "—" }),
    ]));
    const table = el("table", { class: "kv", id: "baselines" }, [
      el("caption", { text: "Baselines: their step time, and as a multiple of the learned placement's" }),
      el("tbody", {}, rows),
    ]);
    const note = el("p", { class: "muted", text: Number(doc.samples).toLocaleString("en") + " placements tried in " +
      Math.round(doc.search_seconds) + " s by the " + doc.strategy.name + " placer on " + doc.cluster.name + " (" +
      doc.devices.length + " devices)." });
    box.replaceChildren(dl, table, note, ...renderApply(doc));
  }

  // What a user applies: {layer: device} and the TensorFlow / JAX code that does it.
  function renderApply(doc) {
    if (!doc.layer_devices) return [];
    const rows = Object.entries(doc.layer_devices).map(([layer, device]) => el("tr", { "data-layer": layer }, [
      el("th", { scope: "row", text: layer }),
      el("td", { text: device }),
    ]));
    const table = el("table", { class: "kv", id: "layer-devices" }, [
      el("caption", { text: "Each layer's device (where its parameters live)" }),
      el("tbody", {}, rows),
    ]);
    const parts = [table];
    if (doc.split_layers && doc.split_layers.length) {
      parts.push(el("p", { class: "muted", id: "split-layers", text: "Split over several devices (op-level placement " +
        "in the JSON): " + doc.split_layers.join(", ") }));
    }
    for (const [framework, label] of [["tensorflow", "TensorFlow (tf.device scopes)"], ["jax", "JAX (device_put per layer)"]]) {
      if (doc.code && doc.code[framework]) {
        parts.push(el("details", { id: "code-" + framework }, [el("summary", { text: label }), el("pre", {}, [el("code", { text: doc.code[framework] })])]));
      }
    }
    return parts;
  }

  // ------------------------------------------------------------------ graph

  // Columns: each op as early as its inputs allow, except that an op reading only graph inputs
  // (an embedding of time step t) waits until just before its first consumer, not at the start.
  function depths(ops) {
    const depth = new Array(ops.length).fill(0);
    ops.forEach((op, i) => { for (const j of op.inputs) depth[i] = Math.max(depth[i], depth[j] + 1); });
    const firstUse = new Array(ops.length).fill(Infinity);
    ops.forEach((op, i) => { for (const j of op.inputs) firstUse[j] = Math.min(firstUse[j], depth[i]); });
    ops.forEach((op, i) => {
      if (op.inputs.length && firstUse[i] < Infinity && op.inputs.every((j) => !ops[j].inputs.length)) {
        depth[i] = Math.max(depth[i], firstUse[i] - 1);
      }
    });
    return depth;
  }

  // Nodes left to right by depth; within a column, top to bottom by layer (in order of the layers'
  // first ops), so that the steps of an unrolled layer keep one row, then by topological position.
  function layout(depth, rank, available) {
    const columns = [];
    depth.forEach((d, i) => { (columns[d] = columns[d] || []).push(i); });
    const rows = Math.max(...columns.map((c) => (c ? c.length : 0)), 1);
    const colGap = Math.max(10, Math.min(64, available / Math.max(columns.length, 1)));
    const rowGap = Math.max(9, Math.min(36, 460 / rows));
    const pad = 14;
    const at = new Array(depth.length);
    columns.forEach((members, d) => {
      if (!members) return;
      members.sort((a, b) => rank[a] - rank[b] || a - b);
      const offset = ((rows - members.length) * rowGap) / 2; // centre short columns
      members.forEach((i, k) => { at[i] = [pad + d * colGap + colGap / 2, pad + offset + k * rowGap + rowGap / 2]; });
    });
    return { at: at, width: 2 * pad + columns.length * colGap, height: 2 * pad + rows * rowGap, colGap: colGap, rowGap: rowGap };
  }

  function layerRanks(ops) {
    const first = new Map();
    return ops.map((op) => { if (!first.has(op.layer)) first.set(op.layer, first.size); return first.get(op.layer); });
  }

  function drawGraph(doc, box, note) {
    const ops = doc.graph.ops;
    const devices = deviceIndex(doc);
    const available = Math.max(320, (box.clientWidth || 900) - 4);
    let svg;
    if (ops.length <= OPS_WITH_EDGES) {
      svg = drawOps(ops, devices, available, true);
      note.textContent = "(" + ops.length + " ops)";
    } else {
      const layers = layerGraph(ops, devices);
      if (layers.names.length <= LAYERS_WITH_EDGES) {
        svg = drawLayers(layers, doc.devices.length, available);
        note.textContent = "(" + ops.length.toLocaleString("en") + " ops in " + layers.names.length + " layers; a bar per layer, split by the devices of its ops)";
      } else {
        svg = drawOps(ops, devices, available, false);
        note.textContent = "(" + ops.length.toLocaleString("en") + " ops, a dot each)";
      }
    }
    const counts = doc.devices.map(() => 0);
    for (const d of devices) counts[d] += 1;
    const described = doc.devices.map((name, d) => name + ": " + counts[d] + " ops").join(", ");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Op graph of " + doc.graph.name + " placed on " + doc.devices.length + " devices; " + described);
    box.replaceChildren(svg);
    box.dataset.ops = String(ops.length);
  }

  function drawOps(ops, devices, available, withEdges) {
    const shape = layout(depths(ops), layerRanks(ops), available);
    const radius = Math.max(withEdges ? 2.5 : 1.5, Math.min(8, Math.min(shape.colGap, shape.rowGap) * 0.32));
    const svg = el("svg:svg", { viewBox: "0 0 " + r1(shape.width) + " " + r1(shape.height), width: r1(shape.width), height: r1(shape.height), class: "graph-svg" });
    if (withEdges) {
      // Edges between ops on different devices carry a tensor across a link: drawn darker.
      const local = [], crossing = [];
      ops.forEach((op, i) => {
        for (const j of op.inputs) {
          const [x0, y0] = shape.at[j], [x1, y1] = shape.at[i];
          (devices[i] === devices[j] ? local : crossing).push("M" + r1(x0) + "," + r1(y0) + "L" + r1(x1) + "," + r1(y1));
        }
      });
      if (local.length) svg.append(el("svg:path", { d: local.join(""), class: "graph-edge" }));
      if (crossing.length) svg.append(el("svg:path", { d: crossing.join(""), class: "graph-edge crossing" }));
    }
    ops.forEach((op, i) => {
      const [x, y] = shape.at[i];
      svg.append(el("svg:circle", { cx: r1(x), cy: r1(y), r: r1(radius), fill: colour(devices[i]), class: "graph-op", "data-op": i }, [
        el("svg:title", { text: op.name + (op.layer !== op.name ? " (" + op.layer + ")" : "") + (op.kind ? " · " + op.kind : "") +
          " · " + (op.flops / 1e9).toPrecision(3) + " GFLOPs" }),
      ]));
    });
    return svg;
  }

  // Layers as nodes: a layer's depth is the deepest of its ops' earliest depths along layer edges.
  function layerGraph(ops, devices) {
    const index = new Map();
    const names = [];
    const layerOf = ops.map((op) => {
      if (!index.has(op.layer)) { index.set(op.layer, names.length); names.push(op.layer); }
      return index.get(op.layer);
    });
    const counts = names.map(() => new Map());
    ops.forEach((op, i) => { const c = counts[layerOf[i]]; c.set(devices[i], (c.get(devices[i]) || 0) + 1); });
    const edges = new Set();
    ops.forEach((op, i) => {
      for (const j of op.inputs) {
        const a = layerOf[j], b = layerOf[i];
        if (a < b) edges.add(a * names.length + b); // layers are numbered in order of their first op: no cycles
      }
    });
    const inputs = names.map(() => []);
    for (const e of edges) inputs[e % names.length].push(Math.floor(e / names.length));
    return { names: names, counts: counts, inputs: inputs };
  }

  function drawLayers(layers, deviceCount, available) {
    const depth = new Array(layers.names.length).fill(0);
    layers.inputs.forEach((ins, b) => { for (const a of ins) depth[b] = Math.max(depth[b], depth[a] + 1); });
    const shape = layout(depth, layers.names.map((_, k) => k), available);
    const w = Math.max(6, Math.min(40, shape.colGap * 0.7)), h = Math.max(5, Math.min(16, shape.rowGap * 0.7));
    const svg = el("svg:svg", { viewBox: "0 0 " + r1(shape.width) + " " + r1(shape.height), width: r1(shape.width), height: r1(shape.height), class: "graph-svg" });
    const lines = [];
    layers.inputs.forEach((ins, b) => {
      for (const a of ins) lines.push("M" + r1(shape.at[a][0]) + "," + r1(shape.at[a][1]) + "L" + r1(shape.at[b][0]) + "," + r1(shape.at[b][1]));
    });
    svg.append(el("svg:path", { d: lines.join(""), class: "graph-edge" }));
    layers.names.forEach((name, k) => {
      const [cx, cy] = shape.at[k];
      const total = [...layers.counts[k].values()].reduce((a, b) => a + b, 0);
      const group = el("svg:g", { class: "graph-layer" }, [
        el("svg:title", { text: name + ": " + [...layers.counts[k].entries()].map(([d, c]) => c + " on device " + d).join(", ") }),
      ]);
      let x = cx - w / 2;
      for (let d = 0; d < deviceCount; d++) {
        const share = (layers.counts[k].get(d) || 0) / total;
        if (!share) continue;
        group.append(el("svg:rect", { x: r1(x), y: r1(cy - h / 2), width: r1(share * w), height: r1(h), fill: colour(d) }));
        x += share * w;
      }
      svg.append(group);
    });
    return svg;
  }

  function renderLegend(doc, box) {
    const counts = doc.devices.map(() => 0);
    for (const d of deviceIndex(doc)) counts[d] += 1;
    box.replaceChildren(...doc.devices.map((name, d) => el("li", { "data-device": name }, [
      el("span", { class: "key swatch", style: "background:" + colour(d) }),
      document.createTextNode(name + " (" + counts[d] + " op" + (counts[d] === 1 ? "" : "s") + ")"),
    ])));
  }

  // ------------------------------------------------------------------ timelines

  function drawTimeline(doc, which, title, scaleMs, width) {
    const line = doc.timelines[which];
    const names = doc.devices;
    const W = Math.max(480, width), L = 78, R = 16, T = 24, ROW = 22, STRIP = 7, GAP = 8, B = 30;
    const H = T + names.length * (ROW + STRIP + GAP) + B;
    const x = (t) => L + (t / scaleMs) * (W - L - R);
    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "timeline-svg", role: "img", "data-timeline": which,
      "aria-label": title + ": one step takes " + ms(line.step_time_ms) + " on " + names.length + " devices" });
    svg.append(el("svg:text", { x: L, y: 15, class: "timeline-title", text: title + " · " + ms(line.step_time_ms) + (line.fits ? "" : " (needs more memory than the devices have)") }));
    line.devices.forEach((row, d) => {
      const y = T + d * (ROW + STRIP + GAP);
      const lane = el("svg:g", { class: "lane-row", "data-device": names[d] });
      svg.append(lane);
      lane.append(el("svg:text", { x: L - 8, y: y + ROW / 2 + 4, "text-anchor": "end", class: "tick", text: names[d] }));
      lane.append(el("svg:rect", { x: L, y: y, width: r1(W - L - R), height: ROW, class: "lane" }));
      const forward = [], backward = [];
      for (const [, back, start, end] of row.runs) {
        if (end <= start) continue; // ops with no work (inputs) take no time
        const w = Math.max(0.6, x(end) - x(start));
        (back ? backward : forward).push("M" + r1(x(start)) + "," + y + "h" + r1(w) + "v" + ROW + "h" + r1(-w) + "z");
      }
      if (forward.length) lane.append(el("svg:path", { d: forward.join(""), fill: colour(d), class: "run forward" }));
      if (backward.length) lane.append(el("svg:path", { d: backward.join(""), fill: colour(d), class: "run backward" }));
      // Sends: a mark per transfer in the strip under the sender, coloured by the receiver.
      const sends = new Map();
      for (const [, , to, start, end] of row.transfers) {
        const w = Math.max(0.8, x(end) - x(start));
        if (!sends.has(to)) sends.set(to, []);
        sends.get(to).push("M" + r1(x(start)) + "," + (y + ROW + 1) + "h" + r1(w) + "v" + (STRIP - 2) + "h" + r1(-w) + "z");
      }
      for (const [to, marks] of sends) lane.append(el("svg:path", { d: marks.join(""), fill: colour(to), class: "transfer" }));
    });
    const axisY = T + names.length * (ROW + STRIP + GAP);
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: axisY, y2: axisY, class: "axis" }));
    for (const t of ticks(scaleMs, 6)) {
      svg.append(el("svg:line", { x1: r1(x(t)), x2: r1(x(t)), y1: axisY, y2: axisY + 4, class: "axis" }));
      svg.append(el("svg:text", { x: r1(x(t)), y: axisY + 17, "text-anchor": "middle", class: "tick", text: t + " ms" }));
    }
    if (typeof line.step_time_ms === "number") {
      svg.append(el("svg:line", { x1: r1(x(line.step_time_ms)), x2: r1(x(line.step_time_ms)), y1: T - 4, y2: axisY, class: "step-end" }));
    }
    return svg;
  }

  function ticks(hi, count) {
    const step0 = hi / count || 1;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => hi / s <= count) || 10 * mag;
    const out = [];
    for (let v = 0; v <= hi + 1e-9; v += step) out.push(Number(v.toPrecision(6)));
    return out;
  }

  function renderTimelines(doc, box) {
    const width = Math.round(box.clientWidth || 900);
    // One time scale for both, so that the shorter step looks shorter.
    const scale = Math.max(...Object.values(doc.timelines).map((t) => t.makespan_ms || 0), 1e-6);
    const charts = [drawTimeline(doc, "learned", "Learned placement", scale, width)];
    if (doc.timelines.expert) charts.push(drawTimeline(doc, "expert", "Expert placement", scale, width));
    const key = el("ul", { class: "legend", "aria-hidden": "true" }, [
      el("li", {}, [el("span", { class: "key swatch", style: "background:" + colour(0) }), document.createTextNode("forward")]),
      el("li", {}, [el("span", { class: "key swatch backward", style: "background:" + colour(0) }), document.createTextNode("backward")]),
      el("li", {}, [el("span", { class: "key strip", style: "background:" + colour(1) }), document.createTextNode("sends a tensor (to the device of this colour)")]),
    ]);
    box.replaceChildren(...charts, key);
  }

  function render(doc, parts) {
    renderSummary(doc, parts.summary);
    drawGraph(doc, parts.graph, parts.graphNote);
    renderLegend(doc, parts.legend);
    renderTimelines(doc, parts.timelines);
  }

  window.L2LPlacement = { render: render, colour: colour };
})();
