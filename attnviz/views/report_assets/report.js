// The attnviz report viewer: draws the run embedded in this page. No network, no libraries.
// Every string from the run is inserted with textContent (never as markup).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("attnviz-data").textContent);
  const LUT = hexBytes(DATA.colormap); // 256 x RGB
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const PALETTE = ["#2563eb", "#dc2626", "#059669", "#9333ea", "#d97706", "#0891b2",
                   "#db2777", "#65a30d"];
  const MUTED = "#586174";
  // heatmaps are drawn on a dark ground, as in attnviz's GIFs: 'hot' ends in white
  const FIGURE = { ground: "#181818", text: "#f0f0f0", muted: "#a8afbd", line: "#808080" };
  const CACHE_LIMIT = 256; // decoded (layer, epoch) arrays kept
  const AXIS = DATA.axis === "step" ? "step" : "epoch"; // what DATA.epochs count

  const state = {
    epoch: DATA.epochs.length - 1, // an index into DATA.epochs
    layer: 0,
    head: "mean", // "mean" or a head index
    query: "last", // "last", "mean" or a query index (self-attention)
    sample: 0, // the sample of the queries x keys map
    scale: "one", // "one": colours from 0 to 1; "max": 0 to the layer's largest weight
    timer: null,
    statistic: null, // the per-head statistic the heads panel is coloured by
  };
  const cache = new Map();
  const $ = (id) => document.getElementById(id);

  // ---- small helpers -----------------------------------------------------------------------

  function hexBytes(hex) {
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  function node(tag, text, props) {
    const element = document.createElement(tag);
    if (text !== undefined && text !== null) element.textContent = String(text);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "className") element.className = value;
      else element.setAttribute(key, value);
    }
    return element;
  }

  // a number in `digits` significant digits, without trailing zeros: 0.912, 1, 1200, 2.5e-5
  function format(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
    const number = Number(value);
    const size = Math.abs(number);
    if (number === 0) return "0";
    if (size >= 1e5 || size < 1e-4) {
      return number.toExponential((digits || 4) - 1).replace(/\.?0+e/, "e");
    }
    return String(Number(number.toPrecision(digits || 4)));
  }

  function lutIndex(value, vmax) {
    return Math.max(0, Math.min(255, Math.round((value / vmax) * 255)));
  }

  function setupCanvas(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    return ctx;
  }

  // values (rows x cols, row-major) drawn as cells of cellW x cellH at (x, y)
  function drawCells(ctx, values, rows, cols, x, y, cellW, cellH, vmax) {
    const image = new ImageData(cols, rows);
    const pixels = image.data;
    for (let i = 0; i < rows * cols; i++) {
      const index = 3 * lutIndex(values[i], vmax);
      pixels[4 * i] = LUT[index];
      pixels[4 * i + 1] = LUT[index + 1];
      pixels[4 * i + 2] = LUT[index + 2];
      pixels[4 * i + 3] = 255;
    }
    const small = document.createElement("canvas");
    small.width = cols;
    small.height = rows;
    small.getContext("2d").putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, x, y, cols * cellW, rows * cellH);
  }

  // attnviz.views.frames.label_step; tests/test_report_browser.py runs both on the same cases
  function shortToken(token) {
    return token.length > 8 ? token.slice(0, 7) + "\u2026" : token;
  }

  function labelStep(cellPx, labelPx) {
    for (const magnitude of [1, 10, 100, 1000, 10000, 100000]) {
      for (const step of [magnitude, 2 * magnitude, 5 * magnitude]) {
        if (step * cellPx >= labelPx) return step;
      }
    }
    return 1000000;
  }

  function availableWidth(element) {
    return Math.max(280, element.parentElement.clientWidth - 36); // less the panel's padding
  }

  // ---- the weights ---------------------------------------------------------------------------

  function layer() {
    return DATA.layers[state.layer];
  }

  // the epoch (an index into DATA.epochs) whose maps stand for `epochIndex`: itself, or on a
  // compact page the nearest epoch that has maps
  function mapIndex(layerIndex, epochIndex) {
    const held = DATA.layers[layerIndex].weights;
    if (held[epochIndex] !== null) return epochIndex;
    let best = -1;
    held.forEach((text, i) => {
      if (text !== null && (best < 0 || Math.abs(i - epochIndex) < Math.abs(best - epochIndex))) {
        best = i;
      }
    });
    return best;
  }

  // attnviz.store.quant's float16 scale: sign, 5 exponent bits, 10 fraction bits
  function half(low, high) {
    const bits = low | (high << 8);
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 31, fraction = bits & 1023;
    if (exponent === 0) return sign * fraction * Math.pow(2, -24);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
  }

  // attnviz.store.quant.decode: rows of K codes and a float16 scale; a weight is code s / 254
  function decodeQ8(binary, keys) {
    const width = keys + 2, rows = binary.length / width;
    const values = new Float32Array(rows * keys);
    for (let r = 0; r < rows; r++) {
      const base = r * width;
      const step = half(binary.charCodeAt(base + keys), binary.charCodeAt(base + keys + 1)) / 254;
      for (let k = 0; k < keys; k++) values[r * keys + k] = binary.charCodeAt(base + k) * step;
    }
    return values;
  }

  function decodeUint16(binary) {
    const values = new Float32Array(binary.length / 2);
    for (let i = 0; i < values.length; i++) {
      values[i] = (binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8)) / 65535;
    }
    return values;
  }

  // the maps of a layer at an epoch, decoded when first shown (and kept for a while)
  function weights(layerIndex, epochIndex) {
    const at = mapIndex(layerIndex, epochIndex);
    const key = layerIndex + ":" + at;
    if (!cache.has(key)) {
      const spec = DATA.layers[layerIndex];
      const binary = atob(spec.weights[at]);
      const values = spec.encoding === "q8" ? decodeQ8(binary, spec.keys) : decodeUint16(binary);
      if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value);
      cache.set(key, values);
    }
    return cache.get(key);
  }

  function heads(spec) {
    return spec.kind === "self" && spec.heads > 1 ? ["mean", ...range(spec.heads)] : ["mean"];
  }

  function range(n) {
    return Array.from({ length: n }, (_, i) => i);
  }

  function queryIndex(spec, query) {
    return query === "last" ? spec.queries - 1 : query;
  }

  // (samples x keys) rows of one head (or their mean) at one query (or their mean): Python's
  // attnviz.analysis.score.attention_rows, checked against it by tests/test_report_browser.py
  function probeRows(layerIndex, epochIndex, head, query) {
    const spec = DATA.layers[layerIndex];
    const all = weights(layerIndex, epochIndex);
    const n = DATA.samples, keys = spec.keys;
    if (spec.kind !== "self") return all;
    const H = spec.heads, Q = spec.queries;
    const headList = head === "mean" ? range(H) : [head];
    const queryList = query === "mean" ? range(Q) : [queryIndex(spec, query)];
    const rows = new Float32Array(n * keys);
    const share = 1 / (headList.length * queryList.length);
    for (let i = 0; i < n; i++) {
      for (const h of headList) {
        for (const q of queryList) {
          const base = ((i * H + h) * Q + q) * keys;
          for (let k = 0; k < keys; k++) rows[i * keys + k] += all[base + k] * share;
        }
      }
    }
    return rows;
  }

  // (queries x keys) of one sample, one head (or their mean)
  function queryMap(layerIndex, epochIndex, head, sample) {
    const spec = DATA.layers[layerIndex];
    const all = weights(layerIndex, epochIndex);
    const H = spec.heads, Q = spec.queries, K = spec.keys;
    const headList = head === "mean" ? range(H) : [head];
    const map = new Float32Array(Q * K);
    for (const h of headList) {
      const base = (sample * H + h) * Q * K;
      for (let j = 0; j < Q * K; j++) map[j] += all[base + j] / headList.length;
    }
    return map;
  }

  function vmax(spec) {
    return state.scale === "max" && spec.max > 0 ? spec.max : 1;
  }

  // the probe's masks over a layer's key positions (a run's layers may have different keys)
  function masksOver(keys) {
    return DATA.masks.filter((mask) => mask.rows[0].length === keys);
  }

  // attnviz.analysis.score.mass of each mask over these keys (checked as probeRows is)
  function masses(rows, keys) {
    return masksOver(keys).map((mask) => {
      let total = 0;
      for (let i = 0; i < DATA.samples; i++) {
        for (let k = 0; k < keys; k++) total += mask.rows[i][k] ? rows[i * keys + k] : 0;
      }
      return [mask.name, total / DATA.samples];
    });
  }

  function viewName(spec, head, query) {
    const parts = [];
    if (DATA.layers.length > 1) parts.push("layer " + spec.name);
    if (spec.kind === "self") {
      parts.push(head === "mean" ? "mean of " + spec.heads + " heads" : "head " + head);
      parts.push(query === "mean" ? "mean of queries"
        : query === "last" ? "query " + (spec.queries - 1) + " (last)" : "query " + query);
    }
    return parts.join(" · ");
  }

  // ---- the tooltip ---------------------------------------------------------------------------

  const tooltip = $("tooltip");

  function showTooltip(event, lines) {
    tooltip.textContent = lines.join("\n");
    tooltip.hidden = false;
    const x = Math.min(event.clientX + 14, window.innerWidth - tooltip.offsetWidth - 8);
    const y = Math.min(event.clientY + 14, window.innerHeight - tooltip.offsetHeight - 8);
    tooltip.style.left = Math.max(4, x) + "px";
    tooltip.style.top = Math.max(4, y) + "px";
  }

  function hideTooltip() {
    tooltip.hidden = true;
  }

  // ---- the probe heatmap ---------------------------------------------------------------------

  let heatmapBoxes = null; // where the last drawing put things, for the tooltip

  function sameRows(rows) {
    return rows.every((row) => row.every((value, k) => value === rows[0][k]));
  }

  function drawHeatmap() {
    const canvas = $("heatmap");
    const spec = layer();
    const n = DATA.samples, keys = spec.keys, top = vmax(spec);
    const rows = probeRows(state.layer, state.epoch, state.head, state.query);
    const measure = setupCanvas(canvas, 10, 10);
    const masks = masksOver(keys);
    const labels = [...range(n).map(String), ...masks.map((mask) => mask.name)];
    const left = 28 + Math.max(...labels.map((text) => measure.measureText(text).width));
    const bar = 64; // the colour bar and its numbers
    const width = availableWidth(canvas);
    const cellW = Math.max(2, Math.min(32, Math.floor((width - left - bar - 12) / keys)));
    const cellH = Math.max(14, Math.min(26, cellW));
    const maskBlocks = masks.map((mask) => {
      const single = sameRows(mask.rows);
      return { mask, rows: single ? [mask.rows[0]] : mask.rows,
               height: single ? cellH : Math.max(3, Math.floor(cellH / 3)) };
    });
    const gridTop = 8;
    const gridBottom = gridTop + n * cellH;
    let y = gridBottom + 8;
    for (const block of maskBlocks) {
      block.top = y;
      y += block.rows.length * block.height + 4;
    }
    const axisTop = y + 2;
    const height = axisTop + 36;
    const gridWidth = keys * cellW;
    const ctx = setupCanvas(canvas, left + gridWidth + bar + 12, height);
    ctx.fillStyle = FIGURE.ground;
    ctx.fillRect(0, 0, left + gridWidth + bar + 12, height);
    drawCells(ctx, rows, n, keys, left, gridTop, cellW, cellH, top);
    ctx.fillStyle = FIGURE.text;
    ctx.textAlign = "right";
    const sampleStep = labelStep(cellH, 14);
    for (let i = 0; i < n; i += sampleStep) ctx.fillText(String(i), left - 6, gridTop + (i + 0.5) * cellH);
    ctx.save();
    ctx.translate(10, (gridTop + gridBottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillStyle = FIGURE.muted;
    ctx.fillText("sample", 0, 0);
    ctx.restore();
    for (const block of maskBlocks) {
      const cells = new Float32Array(block.rows.length * keys);
      block.rows.forEach((row, i) => row.forEach((value, k) => { cells[i * keys + k] = value; }));
      drawCells(ctx, cells, block.rows.length, keys, left, block.top, cellW, block.height, 1);
      ctx.fillStyle = FIGURE.text;
      ctx.textAlign = "right";
      ctx.fillText(block.mask.name, left - 6, block.top + (block.rows.length * block.height) / 2);
    }
    // position ticks
    const step = labelStep(cellW, ctx.measureText(String(keys - 1)).width + 6);
    ctx.textAlign = "center";
    ctx.strokeStyle = FIGURE.line;
    for (let k = 0; k < keys; k += step) {
      const x = left + (k + 0.5) * cellW;
      ctx.beginPath();
      ctx.moveTo(x, axisTop - 2);
      ctx.lineTo(x, axisTop + 3);
      ctx.stroke();
      ctx.fillText(String(k), x, axisTop + 11);
    }
    ctx.fillStyle = FIGURE.muted;
    ctx.fillText("position", left + gridWidth / 2, axisTop + 27);
    drawColourBar(ctx, left + gridWidth + 14, gridTop, Math.max(n * cellH, 60), top);
    heatmapBoxes = { left, gridTop, cellW, cellH, n, keys, rows, maskBlocks, top };
    const shown = masses(rows, keys).map(([name, value]) => name + " " + format(value, 3));
    canvas.setAttribute("aria-label", "probe attention, " + n + " samples by " + keys +
      " positions" + (shown.length ? "; mass on " + shown.join(", ") : ""));
  }

  function drawColourBar(ctx, x, y, height, top, low) {
    low = low || 0;
    const steps = 64;
    for (let i = 0; i < steps; i++) {
      const index = 3 * lutIndex(1 - i / (steps - 1), 1);
      ctx.fillStyle = `rgb(${LUT[index]},${LUT[index + 1]},${LUT[index + 2]})`;
      ctx.fillRect(x, y + (i * height) / steps, 12, height / steps + 1);
    }
    ctx.fillStyle = FIGURE.text;
    ctx.textAlign = "left";
    for (const [fraction, value] of [[0, top], [0.5, (low + top) / 2], [1, low]]) {
      ctx.fillText(format(value, 3), x + 17, y + fraction * height);
    }
  }

  $("heatmap").addEventListener("mousemove", (event) => {
    const box = heatmapBoxes;
    if (!box) return;
    const rect = event.currentTarget.getBoundingClientRect();
    const x = event.clientX - rect.left, y = event.clientY - rect.top;
    const k = Math.floor((x - box.left) / box.cellW);
    if (k < 0 || k >= box.keys) return hideTooltip();
    const i = Math.floor((y - box.gridTop) / box.cellH);
    if (i >= 0 && i < box.n) {
      const lines = ["sample " + i + " · position " + k,
                     "attention " + format(box.rows[i * box.keys + k], 4)];
      if (DATA.tokens && DATA.tokens[i].length === box.keys) lines.push("token " + DATA.tokens[i][k]);
      if (DATA.inputs) lines.push("input " + format(DATA.inputs[i][k], 4));
      if (DATA.targets) lines.push("target of sample " + i + ": " + format(DATA.targets[i], 4));
      return showTooltip(event, lines);
    }
    for (const block of box.maskBlocks) {
      const row = Math.floor((y - block.top) / block.height);
      if (row >= 0 && row < block.rows.length) {
        const which = block.rows.length === 1 ? "every sample" : "sample " + row;
        return showTooltip(event, ["mask " + block.mask.name + " · " + which,
          "position " + k + (block.rows[row][k] ? " is in the mask" : " is not in the mask")]);
      }
    }
    hideTooltip();
  });
  $("heatmap").addEventListener("mouseleave", hideTooltip);

  // ---- queries x keys ------------------------------------------------------------------------

  let queryBoxes = null;

  function drawQueryMap() {
    const spec = layer();
    const panel = $("qk-panel");
    panel.hidden = spec.kind !== "self";
    if (panel.hidden) return;
    const canvas = $("qk");
    const Q = spec.queries, K = spec.keys, top = vmax(spec);
    const map = queryMap(state.layer, state.epoch, state.head, state.sample);
    // tokens name the positions where they cover them (shortened: the tooltip has them whole)
    const tokens = DATA.tokens && DATA.tokens[state.sample].length === K && Q === K
      ? DATA.tokens[state.sample].map(shortToken) : null;
    const left = tokens ? 64 : 44, gridTop = 8;
    const cell = Math.max(2, Math.min(18, Math.floor((availableWidth(canvas) - left - 80) / K)));
    const height = gridTop + Q * cell + 40;
    const ctx = setupCanvas(canvas, left + K * cell + 80, height);
    ctx.fillStyle = FIGURE.ground;
    ctx.fillRect(0, 0, left + K * cell + 80, height);
    drawCells(ctx, map, Q, K, left, gridTop, cell, cell, top);
    const selected = state.query === "mean" ? null : queryIndex(spec, state.query);
    if (selected !== null) {
      ctx.strokeStyle = "#38bdf8";
      ctx.lineWidth = 2;
      ctx.strokeRect(left - 1, gridTop + selected * cell - 1, K * cell + 2, cell + 2);
      ctx.lineWidth = 1;
    }
    ctx.fillStyle = FIGURE.text;
    const qStep = labelStep(cell, 14), kStep = labelStep(cell, tokens ? 56 : 24);
    ctx.textAlign = "right";
    for (let q = 0; q < Q; q += qStep) {
      ctx.fillText(tokens ? tokens[q] : String(q), left - 4, gridTop + (q + 0.5) * cell);
    }
    ctx.textAlign = "center";
    for (let k = 0; k < K; k += kStep) {
      ctx.fillText(tokens ? tokens[k] : String(k), left + (k + 0.5) * cell, gridTop + Q * cell + 10);
    }
    ctx.fillStyle = FIGURE.muted;
    ctx.fillText("key position", left + (K * cell) / 2, gridTop + Q * cell + 27);
    drawColourBar(ctx, left + K * cell + 14, gridTop, Math.max(Q * cell, 60), top);
    queryBoxes = { left, gridTop, cell, Q, K, map };
    $("qk-caption").textContent = "sample " + state.sample + " · " +
      (state.head === "mean" ? "mean of heads" : "head " + state.head) +
      " · rows are queries (click one to show it above), columns are keys";
  }

  function queryAt(event) {
    const box = queryBoxes;
    if (!box) return null;
    const rect = event.currentTarget.getBoundingClientRect();
    const q = Math.floor((event.clientY - rect.top - box.gridTop) / box.cell);
    const k = Math.floor((event.clientX - rect.left - box.left) / box.cell);
    return q >= 0 && q < box.Q && k >= 0 && k < box.K ? [q, k] : null;
  }

  $("qk").addEventListener("mousemove", (event) => {
    const at = queryAt(event);
    if (!at) return hideTooltip();
    const [q, k] = at;
    const lines = ["query " + q + " → key " + k,
                   "attention " + format(queryBoxes.map[q * queryBoxes.K + k], 4)];
    const tokens = DATA.tokens ? DATA.tokens[state.sample] : null;
    if (tokens && tokens.length === queryBoxes.K && queryBoxes.Q === queryBoxes.K) {
      lines.push("tokens " + tokens[q] + " → " + tokens[k]);
    }
    showTooltip(event, lines);
  });
  $("qk").addEventListener("mouseleave", hideTooltip);
  $("qk").addEventListener("click", (event) => {
    const at = queryAt(event);
    if (at) select({ query: at[0] });
  });

  // ---- what each head does: statistics of every head over epochs -------------------------------

  const STAT_TEXT = {
    entropy: "entropy / ln L (0: one key, 1: uniform)",
    first: "mass on the first key",
    self: "mass on the query's own position",
    prev: "mass on the previous position",
    next: "mass on the next position",
    distance: "mean distance to the keys looked at (positions)",
    special: "mass on special tokens ([CLS], [SEP])",
    induction: "mass on the token after an earlier copy of the query's token",
  };
  let headsBoxes = null;

  function statLayers() {
    return DATA.layers.map((spec, index) => ({ spec, index })).filter((item) => item.spec.stats);
  }

  function buildHeads() {
    const items = statLayers();
    $("heads-panel").hidden = items.length === 0;
    if (!items.length) return;
    const present = DATA.statistics.filter((name, s) => items.some((item) =>
      item.spec.stats.some((epoch) => epoch.some((head) => head[s] !== null))));
    state.statistic = present[0];
    const wrapper = node("label", "colour ");
    const element = wrapper.appendChild(node("select"));
    for (const name of present) {
      const option = element.appendChild(node("option", name + ": " + STAT_TEXT[name]));
      option.value = name;
    }
    element.addEventListener("change", () => select({ statistic: element.value }));
    controls.statistic = element;
    $("heads-controls").append(wrapper);
    $("heads-caption").textContent = "One cell per head, one stripe per recorded " + AXIS +
      " from left to right, coloured by the chosen statistic of every probe sample and query " +
      "(docs/metrics.md); the outlined stripe is the " + AXIS + " shown. Click a head to show " +
      "its map.";
  }

  function statRange(name) {
    if (name !== "distance") return [0, 1];
    let high = 0;
    const s = DATA.statistics.indexOf(name);
    for (const item of statLayers()) {
      for (const epoch of item.spec.stats) for (const head of epoch) high = Math.max(high, head[s] || 0);
    }
    return [0, high || 1];
  }

  function drawHeads() {
    const items = statLayers();
    if (!items.length) return;
    const canvas = $("heads");
    const name = state.statistic, s = DATA.statistics.indexOf(name);
    const [low, high] = statRange(name);
    const E = DATA.epochs.length;
    const H = Math.max(...items.map((item) => item.spec.heads));
    const left = 44, top = 20, bar = 70;
    const cellW = Math.max(8, Math.min(6 * E + 4, Math.floor((availableWidth(canvas) - left - bar) / H)));
    const cellH = Math.max(10, Math.min(24, cellW));
    const width = left + H * cellW + bar;
    const height = top + Math.max(items.length * cellH, 60) + 8;
    const ctx = setupCanvas(canvas, width, height);
    ctx.fillStyle = FIGURE.ground;
    ctx.fillRect(0, 0, width, height);
    const stripe = (cellW - 2) / E;
    items.forEach((item, row) => {
      const y = top + row * cellH;
      for (let h = 0; h < item.spec.heads; h++) {
        const x = left + h * cellW;
        for (let e = 0; e < E; e++) {
          const value = item.spec.stats[e][h][s];
          if (value === null) continue;
          const index = 3 * lutIndex((value - low) / (high - low), 1);
          ctx.fillStyle = `rgb(${LUT[index]},${LUT[index + 1]},${LUT[index + 2]})`;
          ctx.fillRect(x + e * stripe, y, Math.ceil(stripe), cellH - 2);
        }
        ctx.strokeStyle = FIGURE.text;
        ctx.strokeRect(x + state.epoch * stripe + 0.5, y + 0.5, Math.max(1, stripe - 1), cellH - 3);
        if (item.index === state.layer && h === state.head) {
          ctx.strokeStyle = "#38bdf8";
          ctx.lineWidth = 2;
          ctx.strokeRect(x - 1, y - 1, cellW, cellH);
          ctx.lineWidth = 1;
        }
      }
    });
    ctx.fillStyle = FIGURE.text;
    ctx.textAlign = "right";
    const rowStep = labelStep(cellH, 14);
    items.forEach((item, row) => {
      if (row % rowStep === 0) ctx.fillText("L" + item.index, left - 6, top + (row + 0.5) * cellH);
    });
    ctx.textAlign = "center";
    const headStep = labelStep(cellW, ctx.measureText(String(H - 1)).width + 6);
    for (let h = 0; h < H; h += headStep) ctx.fillText(String(h), left + (h + 0.5) * cellW, 9);
    drawColourBar(ctx, left + H * cellW + 12, top, Math.max(items.length * cellH - 2, 60), high,
                  low);
    headsBoxes = { left, top, cellW, cellH, items, H, s };
    const chosen = items.find((item) => item.index === state.layer) || items[0];
    $("heads-labels").textContent = chosen.spec.labels ? "What each head of " +
      chosen.spec.name + " does at " + AXIS + " " + DATA.epochs[state.epoch] + " (the number it " +
      "rests on; docs/metrics.md, Head labels): " + chosen.spec.labels[state.epoch].map(
      ([label, number], h) => h + " " + label + " " + format(number, 2)).join(" · ") : "";
    canvas.setAttribute("aria-label", "statistic " + name + " of " + items.length +
      " layers by " + H + " heads over " + E + " " + AXIS + "s");
  }

  function headAt(event) {
    const box = headsBoxes;
    if (!box) return null;
    const rect = event.currentTarget.getBoundingClientRect();
    const h = Math.floor((event.clientX - rect.left - box.left) / box.cellW);
    const row = Math.floor((event.clientY - rect.top - box.top) / box.cellH);
    if (row < 0 || row >= box.items.length || h < 0 || h >= box.items[row].spec.heads) return null;
    return { item: box.items[row], head: h };
  }

  $("heads").addEventListener("mousemove", (event) => {
    const at = headAt(event);
    if (!at) return hideTooltip();
    const value = at.item.spec.stats[state.epoch][at.head][headsBoxes.s];
    const lines = [at.item.spec.name, "head " + at.head + " · " + AXIS + " " +
      DATA.epochs[state.epoch], state.statistic + " " + format(value, 3)];
    if (at.item.spec.labels) {
      const [label, number] = at.item.spec.labels[state.epoch][at.head];
      lines.push(label + " (" + format(number, 2) + ")");
    }
    showTooltip(event, lines);
  });
  $("heads").addEventListener("mouseleave", hideTooltip);
  $("heads").addEventListener("click", (event) => {
    const at = headAt(event);
    if (at) select({ layer: at.item.index, head: at.head });
  });

  // ---- the model view: layers x heads --------------------------------------------------------

  const thumbnails = [];

  function buildGrid() {
    // a compact page holds too few maps for a thumbnail of every head: the heads panel
    const show = DATA.maps.mode === "full" &&
      (DATA.layers.length > 1 || DATA.layers.some((spec) => heads(spec).length > 1));
    $("grid-panel").hidden = !show;
    if (!show) return;
    const table = node("table");
    const width = Math.max(...DATA.layers.map((spec) => heads(spec).length));
    const headRow = node("tr");
    headRow.append(node("th", "layer"));
    for (const head of heads(DATA.layers.find((spec) => heads(spec).length === width))) {
      headRow.append(node("th", head === "mean" ? "mean" : "head " + head, { scope: "col" }));
    }
    table.appendChild(node("thead")).append(headRow);
    const body = table.appendChild(node("tbody"));
    DATA.layers.forEach((spec, layerIndex) => {
      const row = node("tr");
      row.append(node("th", spec.name, { scope: "row" }));
      for (const head of heads(spec)) {
        const button = node("button", null, {
          type: "button", className: "thumb", "data-layer": layerIndex, "data-head": head,
          "aria-label": spec.name + ", " + (head === "mean" ? "mean of heads" : "head " + head),
        });
        const canvas = button.appendChild(node("canvas"));
        button.addEventListener("click", () => select({ layer: layerIndex, head }));
        row.appendChild(node("td")).append(button);
        thumbnails.push({ button, canvas, layerIndex, head });
      }
      body.append(row);
    });
    $("grid").append(table);
  }

  function drawGrid() {
    for (const thumb of thumbnails) {
      const spec = DATA.layers[thumb.layerIndex];
      const query = thumb.layerIndex === state.layer ? state.query : "last";
      const rows = probeRows(thumb.layerIndex, state.epoch, thumb.head, query);
      const cell = Math.max(1, Math.floor(96 / spec.keys));
      const cellH = Math.max(1, Math.floor(48 / DATA.samples));
      const ctx = setupCanvas(thumb.canvas, spec.keys * cell, DATA.samples * cellH);
      drawCells(ctx, rows, DATA.samples, spec.keys, 0, 0, cell, cellH, vmax(spec));
      const chosen = thumb.layerIndex === state.layer && thumb.head === state.head;
      thumb.button.setAttribute("aria-pressed", chosen ? "true" : "false");
    }
  }

  // ---- curves over epochs --------------------------------------------------------------------

  const charts = [];

  function niceTicks(low, high, count) {
    const span = high - low || 1;
    const raw = span / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    const ticks = [];
    for (let value = Math.ceil(low / step) * step; value <= high + 1e-9 * span; value += step) {
      ticks.push(Number(value.toPrecision(12)));
    }
    return ticks;
  }

  function buildCharts() {
    const losses = ["loss", "val_loss"].filter((key) => DATA.history[key].some((v) => v !== null));
    if (losses.length) {
      // the built-in tasks' loss; a user's model trains on its own
      charts.push({ title: !DATA.task ? "loss" : DATA.config.encoder === "embedding"
        ? "loss (cross-entropy)" : "loss (mean squared error)", kind: "loss",
                    keys: losses });
    }
    const spec = layer();
    if (spec.scores) {
      // each number once, as attnviz score shows them: not the metrics equal to another by
      // definition (topk-precision and topk-recall are topk-f1); entropy, the same for every
      // mask, once
      for (const metric of DATA.metrics.filter((m) => !m.same_as)) {
        charts.push({ title: metric.name + " (" + metric.better + " is better" +
                      (metric.per_mask ? "" : "; any mask") + ")", kind: "metric", metric });
      }
    }
    const container = $("curves");
    for (const chart of charts) {
      chart.canvas = container.appendChild(node("canvas", null, { role: "img" }));
      chart.canvas.setAttribute("aria-label", chart.title);
      chart.canvas.addEventListener("click", (event) => {
        const epoch = chartEpoch(chart, event);
        if (epoch !== null) jumpTo(epoch);
      });
      chart.canvas.addEventListener("mousemove", (event) => chartTooltip(chart, event));
      chart.canvas.addEventListener("mouseleave", hideTooltip);
    }
    const legend = $("legend");
    const items = [];
    if (losses.length) {
      losses.forEach((key) => items.push([key, PALETTE[key === "loss" ? 0 : 1], false]));
      DATA.baselines.forEach((b) => items.push(["baseline: " + b.name, MUTED, true]));
    }
    if (spec.scores) {
      spec.scores.masks.forEach((name, i) => items.push(["mask " + name, PALETTE[(i + 2) % 8], false]));
    }
    for (const [name, color, dashed] of items) {
      const item = legend.appendChild(node("span"));
      const swatch = item.appendChild(node("span", null, { className: dashed ? "swatch dashed" : "swatch" }));
      swatch.style.borderTopColor = color;
      item.append(document.createTextNode(name));
    }
  }

  function chartSeries(chart) {
    if (chart.kind === "loss") {
      const epochs = DATA.history.x;
      return chart.keys.map((key) => ({
        name: key, color: PALETTE[key === "loss" ? 0 : 1],
        points: epochs.map((e, i) => [e, DATA.history[key][i]]).filter((p) => p[1] !== null),
      }));
    }
    const spec = layer();
    const scores = spec.scores;
    const view = Math.max(0, scores.views.indexOf(state.head)); // temporal: its one view
    const metric = DATA.metrics.indexOf(chart.metric);
    const masks = chart.metric.per_mask ? scores.masks : scores.masks.slice(0, 1);
    return masks.map((name, m) => ({
      name: chart.metric.per_mask ? "mask " + name : "any mask",
      color: chart.metric.per_mask ? PALETTE[(m + 2) % 8] : MUTED,
      points: DATA.epochs.map((e, i) => [e, scores.values[i][m][view][metric]])
        .filter((p) => p[1] !== null),
    }));
  }

  function chartWidth() {
    const available = Math.max(280, $("curves").clientWidth);
    const columns = Math.max(1, Math.floor((available + 18) / 300));
    return Math.floor((available - 18 * (columns - 1)) / columns) - 1;
  }

  function chartGeometry(chart, series) {
    const width = chartWidth(), height = 180;
    const box = { x: 44, y: 22, w: width - 56, h: height - 50, width, height };
    const xs = [...DATA.epochs, ...DATA.history.x];
    box.xmin = Math.min(...xs);
    box.xmax = Math.max(...xs, box.xmin + 1);
    if (chart.kind === "metric") {
      box.ymin = chart.metric.low;
      box.ymax = chart.metric.high;
      box.log = false;
    } else {
      const ys = [...series.flatMap((s) => s.points.map((p) => p[1])),
                  ...DATA.baselines.map((b) => b.mse)].filter((v) => v !== null);
      box.log = ys.every((v) => v > 0) && Math.max(...ys) / Math.min(...ys) > 20;
      box.ymin = box.log ? Math.log10(Math.min(...ys)) : Math.min(0, ...ys);
      box.ymax = box.log ? Math.log10(Math.max(...ys)) : Math.max(...ys);
      if (box.ymax === box.ymin) box.ymax = box.ymin + 1;
    }
    box.px = (epoch) => box.x + ((epoch - box.xmin) / (box.xmax - box.xmin)) * box.w;
    box.py = (value) => {
      const v = box.log ? Math.log10(value) : value;
      return box.y + box.h - ((v - box.ymin) / (box.ymax - box.ymin)) * box.h;
    };
    return box;
  }

  function drawChart(chart) {
    const series = chartSeries(chart);
    const box = chartGeometry(chart, series);
    chart.box = box;
    chart.series = series;
    const ctx = setupCanvas(chart.canvas, box.width, box.height);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, box.width, box.height);
    ctx.fillStyle = "#1d2330";
    ctx.textAlign = "left";
    ctx.fillText(chart.title, 4, 9);
    // axes and ticks
    ctx.strokeStyle = "#d9dde5";
    ctx.fillStyle = MUTED;
    ctx.textAlign = "right";
    const yTicks = box.log
      ? niceTicks(Math.floor(box.ymin), Math.ceil(box.ymax), 3).map((p) => Math.pow(10, p))
        .filter((v) => Math.log10(v) >= box.ymin - 1e-9 && Math.log10(v) <= box.ymax + 1e-9)
      : niceTicks(box.ymin, box.ymax, 3);
    for (const value of yTicks) {
      const y = box.py(value);
      ctx.beginPath();
      ctx.moveTo(box.x, y);
      ctx.lineTo(box.x + box.w, y);
      ctx.stroke();
      ctx.fillText(format(value, 2), box.x - 4, y);
    }
    ctx.textAlign = "center";
    for (const epoch of niceTicks(box.xmin, box.xmax, 5).filter((e) => Number.isInteger(e))) {
      ctx.fillText(String(epoch), box.px(epoch), box.y + box.h + 10);
    }
    ctx.fillText(AXIS, box.x + box.w / 2, box.y + box.h + 24);
    if (chart.kind === "loss") {
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = MUTED;
      ctx.textAlign = "right";
      for (const baseline of DATA.baselines) {
        const y = box.py(baseline.mse);
        ctx.beginPath();
        ctx.moveTo(box.x, y);
        ctx.lineTo(box.x + box.w, y);
        ctx.stroke();
        ctx.fillText(baseline.name, box.x + box.w, y - 7);
      }
      ctx.setLineDash([]);
    }
    ctx.lineWidth = 1.6;
    for (const line of series) {
      ctx.strokeStyle = line.color;
      ctx.beginPath();
      line.points.forEach(([epoch, value], i) => {
        const x = box.px(epoch), y = box.py(value);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
    ctx.lineWidth = 1;
    const x = box.px(DATA.epochs[state.epoch]);
    ctx.strokeStyle = "#c2410c";
    ctx.beginPath();
    ctx.moveTo(x, box.y);
    ctx.lineTo(x, box.y + box.h);
    ctx.stroke();
  }

  function chartEpoch(chart, event) {
    const box = chart.box;
    if (!box) return null;
    const rect = chart.canvas.getBoundingClientRect();
    const epoch = box.xmin + ((event.clientX - rect.left - box.x) / box.w) * (box.xmax - box.xmin);
    if (epoch < box.xmin - 1 || epoch > box.xmax + 1) return null;
    return epoch;
  }

  function nearestIndex(epoch) {
    let best = 0;
    DATA.epochs.forEach((e, i) => {
      if (Math.abs(e - epoch) < Math.abs(DATA.epochs[best] - epoch)) best = i;
    });
    return best;
  }

  function jumpTo(epoch) {
    stop();
    select({ epoch: nearestIndex(epoch) });
  }

  function chartTooltip(chart, event) {
    const epoch = chartEpoch(chart, event);
    if (epoch === null) return hideTooltip();
    const at = Math.round(epoch);
    const lines = [AXIS + " " + at + " (click to show " + AXIS + " " +
      DATA.epochs[nearestIndex(epoch)] + ")"];
    for (const line of chart.series) {
      const point = line.points.find((p) => p[0] === at);
      if (point) lines.push(line.name + " " + format(point[1], 4));
    }
    if (chart.kind === "loss") DATA.baselines.forEach((b) => lines.push(b.name + " " + format(b.mse, 4)));
    showTooltip(event, lines);
  }

  // ---- explain and the run -------------------------------------------------------------------

  function table(data) {
    const element = node("table", null, { className: "data" });
    element.append(node("caption", data.title));
    const head = element.appendChild(node("thead")).appendChild(node("tr"));
    for (const [name, justify] of data.columns) {
      head.append(node("th", name, justify === "right" ? { scope: "col", className: "num" }
                                                          : { scope: "col" }));
    }
    const body = element.appendChild(node("tbody"));
    for (const row of data.rows) {
      const tr = body.appendChild(node("tr"));
      row.forEach((cell, i) => tr.append(node("td", cell,
        data.columns[i] && data.columns[i][1] === "right" ? { className: "num" } : {})));
    }
    if (data.caption) {
      const note = body.appendChild(node("tr")).appendChild(node("td", data.caption,
        { className: "note" }));
      note.setAttribute("colspan", String(data.columns.length));
    }
    return element;
  }

  function buildExplain() {
    const report = DATA.explain;
    $("explain-panel").hidden = !report;
    if (!report) return;
    const last = DATA.run.epochs_done;
    $("explain-caption").textContent = report.header + (report.epoch !== last
      ? " (the run has " + last + " epochs now: run attnviz explain again for the latest)" : "");
    for (const sentence of report.verdict) $("verdict").append(node("li", sentence));
    for (const data of report.tables) $("explain-tables").append(table(data));
  }

  function facts(pairs) {
    const list = node("dl", null, { className: "facts" });
    for (const [name, value] of pairs) {
      if (value === null || value === undefined) continue;
      list.append(node("dt", name), node("dd", value));
    }
    return list;
  }

  function buildRun() {
    const run = DATA.run;
    const task = DATA.task;
    $("run-facts").append(facts([
      ["run", run.path],
      ["task", task ? task.name : "none"],
      ["what it asks", task ? task.description : null],
      ["epochs", run.epochs_done + " trained of " + run.epochs_planned + "; " +
        DATA.epochs.length + " recorded " + AXIS + "s shown"],
      ["probe batch", DATA.maps.probe_samples + " samples"],
      ["maps", DATA.maps.said],
      ["layers", DATA.layers.map((spec) => spec.name + " (" + spec.kind + ", " +
        (spec.kind === "self" ? spec.heads + " heads, " : "") + spec.keys + " positions)").join("; ")],
      ["written by", "attnviz " + run.written_by + " (run format " + run.format_version + "), " +
        run.created],
      ["this report", "attnviz " + DATA.attnviz_version],
    ]));
    $("run-facts").append(node("h3", "configuration"));
    const config = $("run-facts").appendChild(node("dl", null, { className: "config" }));
    for (const [key, value] of Object.entries(DATA.config)) {
      const item = config.appendChild(node("div"));
      const text = value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
      item.append(node("dt", key), node("dd", text));
    }
  }

  // ---- controls ------------------------------------------------------------------------------

  function addSelect(label, options, current, onChange) {
    const wrapper = node("label", label + " ");
    const element = wrapper.appendChild(node("select"));
    for (const [value, text] of options) {
      const option = element.appendChild(node("option", text));
      option.value = String(value);
      if (String(value) === String(current)) option.selected = true;
    }
    element.addEventListener("change", () => onChange(element.value));
    $("selectors").append(wrapper);
    return element;
  }

  let controls = {};

  function buildControls() {
    const slider = $("epoch");
    slider.max = String(DATA.epochs.length - 1);
    slider.value = String(state.epoch);
    slider.addEventListener("input", () => { stop(); select({ epoch: Number(slider.value) }); });
    $("play").addEventListener("click", () => (state.timer ? stop() : play()));
    if (DATA.layers.length > 1) {
      controls.layer = addSelect("layer", DATA.layers.map((spec, i) => [i, spec.name]), 0,
        (value) => select({ layer: Number(value), head: "mean", query: "last" }));
    }
    buildViewControls();
    const largest = Math.max(...DATA.layers.map((spec) => spec.max));
    state.scale = largest < 0.5 ? "max" : "one";
    controls.scale = addSelect("colours", [["one", "0 to 1"], ["max", "0 to the layer's largest"]],
      state.scale, (value) => select({ scale: value }));
  }

  function buildViewControls() {
    for (const key of ["head", "query", "sample"]) {
      if (controls[key]) controls[key].parentElement.remove();
      delete controls[key];
    }
    const spec = layer();
    if (spec.kind !== "self") return;
    if (spec.heads > 1) {
      controls.head = addSelect("head", heads(spec).map((h) => [h, h === "mean" ? "mean" : h]),
        state.head, (value) => select({ head: value === "mean" ? "mean" : Number(value) }));
    }
    const queries = [["last", "last (" + (spec.queries - 1) + ")"], ["mean", "mean"],
                     ...range(spec.queries).map((q) => [q, String(q)])];
    controls.query = addSelect("query", queries, state.query,
      (value) => select({ query: value === "last" || value === "mean" ? value : Number(value) }));
    controls.sample = addSelect("sample", range(DATA.samples).map((i) => [i, String(i)]),
      state.sample, (value) => select({ sample: Number(value) }));
  }

  function play() {
    if (state.epoch >= DATA.epochs.length - 1) select({ epoch: 0 });
    const fps = Math.max(2, Math.min(12, DATA.epochs.length / 6));
    state.timer = setInterval(() => {
      if (state.epoch >= DATA.epochs.length - 1) return stop();
      select({ epoch: state.epoch + 1 });
    }, 1000 / fps);
    $("play").setAttribute("aria-pressed", "true");
    $("play").textContent = "\u275a\u275a pause";
  }

  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    $("play").setAttribute("aria-pressed", "false");
    $("play").textContent = "\u25b6 play";
  }

  function select(changes) {
    const layerChanged = changes.layer !== undefined && changes.layer !== state.layer;
    Object.assign(state, changes);
    if (layerChanged) {
      buildViewControls();
      if (controls.layer) controls.layer.value = String(state.layer);
    }
    for (const key of ["head", "query", "sample", "scale", "statistic"]) {
      if (controls[key]) controls[key].value = String(state[key]);
    }
    $("epoch").value = String(state.epoch);
    render();
  }

  // ---- drawing everything --------------------------------------------------------------------

  function render() {
    const spec = layer();
    const epoch = DATA.epochs[state.epoch];
    const index = DATA.history.x.indexOf(epoch);
    const loss = index >= 0 ? DATA.history.loss[index] : null;
    const valLoss = index >= 0 ? DATA.history.val_loss[index] : null;
    $("epoch-label").textContent = (AXIS === "step" ? "step " + epoch + " of " +
      DATA.epochs[DATA.epochs.length - 1] : "epoch " + epoch + " of " + DATA.run.epochs_done) +
      (epoch === 0 ? " (untrained)" : "");
    const rows = probeRows(state.layer, state.epoch, state.head, state.query);
    const parts = [AXIS + " " + epoch];
    if (loss !== null) parts.push("loss " + format(loss, 4));
    if (valLoss !== null) parts.push("val_loss " + format(valLoss, 4));
    const mass = masses(rows, spec.keys);
    if (mass.length) {
      parts.push("mass on " + mass.map(([name, value]) => name + " " + format(value, 3)).join(", "));
    }
    const view = viewName(spec, state.head, state.query);
    if (view) parts.push(view);
    const at = mapIndex(state.layer, state.epoch);
    if (at !== state.epoch) parts.push("map of epoch " + DATA.epochs[at] + ", the nearest this page holds");
    if (DATA.maps.mode !== "full") {
      parts.push((DATA.samples === 1 ? "sample 0" : "samples 0-" + (DATA.samples - 1)) + " of " +
                 DATA.maps.probe_samples);
    }
    $("probe-caption").textContent = parts.join(" · ");
    drawHeatmap();
    drawQueryMap();
    drawHeads();
    if (!$("grid-panel").hidden) drawGrid();
    charts.forEach(drawChart);
  }

  function start() {
    const task = DATA.task;
    $("title").textContent = "attnviz report · " + DATA.title;
    $("subtitle").textContent = [task ? task.name : null, DATA.config.encoder && DATA.config.attention
      ? DATA.config.encoder + " + " + DATA.config.attention : null,
      DATA.run.epochs_done + " epochs", "probe batch of " + DATA.maps.probe_samples]
      .filter(Boolean).join(" · ");
    $("curves-caption").textContent = (AXIS === "step"
      ? "Training loss over the steps since the record before (val_loss at epoch ends)"
      : "Loss per epoch") +
      (DATA.baselines.length ? " with the task's baselines (dashed)" : "") + "; " +
      "each score of the shown head against each mask, for the last query as attnviz score " +
      "computes it (topk-f1 is also topk-precision and topk-recall). The orange line is the " +
      AXIS + " shown; click a chart to show another " + AXIS + ".";
    buildControls();
    buildHeads();
    buildGrid();
    buildCharts();
    buildExplain();
    buildRun();
    render();
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(render, 100);
    });
  }

  start();
})();
