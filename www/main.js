// The page: reads files locally, hands bytes to the wasm Detector, draws what comes back.
import init, { Detector } from "./pkg/dino_ar.js";

const $ = (id) => document.getElementById(id);
let detector = null;
let backboneReady = false;

function status(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function startBackend() {
  status($("backend-status"), "starting…");
  try {
    if (detector) detector.free();
    detector = await Detector.create($("backend").value);
    backboneReady = false;
    status($("backend-status"), detector.backend);
    status($("weights-status"), "no weights loaded");
  } catch (e) {
    detector = null;
    status($("backend-status"), String(e.message || e), true);
  }
  updateRun();
}

function updateRun() {
  $("run").disabled = !(detector && backboneReady && $("image").files.length);
}

async function loadWeights(file) {
  if (!detector) await startBackend();
  if (!detector) return;
  const el = $("weights-status");
  status(el, `reading ${file.name} (${(file.size / 1e6).toFixed(1)} MB)…`);
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const cfgFile = $("config").files[0];
    const cfg = cfgFile ? await cfgFile.text() : undefined;
    status(el, `loading ${file.name}…`);
    const info = await detector.loadBackbone(bytes, cfg);
    backboneReady = true;
    status(el, `${file.name}: ${info.layout} (${info.format}), width ${info.hiddenSize}, ` +
      `${info.layers} blocks, ${info.heads} heads, ${info.registers} registers, patch ${info.patchSize}`);
  } catch (e) {
    backboneReady = false;
    status(el, `${file.name}: ${e.message || e}`, true);
  }
  updateRun();
}

async function imageRgba(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return { bitmap, rgba: new Uint8Array(data.data.buffer), width: bitmap.width, height: bitmap.height };
}

// Project the D-dim embeddings onto their first three principal components (power iteration).
function pcaRgb(data, d, n) {
  const mean = new Float64Array(d);
  for (let c = 0; c < d; c++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += data[c * n + i];
    mean[c] = s / n;
  }
  const x = (c, i) => data[c * n + i] - mean[c];
  const comps = [];
  const proj = [];
  for (let k = 0; k < 3; k++) {
    let v = new Float64Array(d).map((_, i) => Math.sin(i * 12.9898 + k * 78.233));
    for (let iter = 0; iter < 30; iter++) {
      const p = new Float64Array(n);
      for (let c = 0; c < d; c++) for (let i = 0; i < n; i++) p[i] += x(c, i) * v[c];
      const w = new Float64Array(d);
      for (let c = 0; c < d; c++) { let s = 0; for (let i = 0; i < n; i++) s += x(c, i) * p[i]; w[c] = s; }
      for (const u of comps) { const dot = u.reduce((s, ui, c) => s + ui * w[c], 0); for (let c = 0; c < d; c++) w[c] -= dot * u[c]; }
      const norm = Math.hypot(...w) || 1;
      v = w.map((wi) => wi / norm);
    }
    comps.push(v);
    const p = new Float64Array(n);
    for (let c = 0; c < d; c++) for (let i = 0; i < n; i++) p[i] += x(c, i) * v[c];
    proj.push(p);
  }
  const rgba = new Uint8ClampedArray(n * 4);
  for (let k = 0; k < 3; k++) {
    const p = proj[k];
    let lo = Infinity, hi = -Infinity;
    for (const v of p) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    for (let i = 0; i < n; i++) rgba[i * 4 + k] = 255 * (p[i] - lo) / (hi - lo || 1);
  }
  for (let i = 0; i < n; i++) rgba[i * 4 + 3] = 255;
  return rgba;
}

async function run() {
  const el = $("run-status");
  const file = $("image").files[0];
  const size = Number($("size").value);
  $("run").disabled = true;
  try {
    status(el, `decoding ${file.name}…`);
    const img = await imageRgba(file);
    const input = $("input");
    input.width = size; input.height = size;
    input.getContext("2d").drawImage(img.bitmap, 0, 0, size, size);
    status(el, "embedding (the first run compiles the shaders)…");
    const t0 = performance.now();
    const e = await detector.embedImage(img.rgba, img.width, img.height, size, size);
    const ms = performance.now() - t0;
    const n = e.gridH * e.gridW;
    const d = e.data.length / n;
    const pca = $("pca");
    pca.width = e.gridW; pca.height = e.gridH;
    pca.getContext("2d").putImageData(new ImageData(pcaRgb(e.data, d, n), e.gridW, e.gridH), 0, 0);
    status(el, `${file.name}: ${img.width}×${img.height} → ${size}×${size} → ${e.gridH}×${e.gridW} grid of ${d}-d embeddings in ${ms.toFixed(0)} ms on ${detector.backend}`);
  } catch (err) {
    status(el, `${file.name}: ${err.message || err}`, true);
  }
  updateRun();
}

await init();
$("backend").addEventListener("change", startBackend);
$("weights").addEventListener("change", () => $("weights").files[0] && loadWeights($("weights").files[0]));
$("config").addEventListener("change", () => $("weights").files[0] && loadWeights($("weights").files[0]));
$("image").addEventListener("change", updateRun);
$("run").addEventListener("click", run);
const drop = $("drop-weights");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("dragging");
  const file = ev.dataTransfer.files[0];
  if (file) loadWeights(file);
});
await startBackend();
