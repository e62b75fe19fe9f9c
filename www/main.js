// The page: wires the controls to the engine (a worker that owns the Detector), the storage of the
// weights on this device, and the overlay drawing. Data flows one way: files → worker → scores →
// overlays and table. Nothing here computes on the model; nothing here leaves the device.
import * as storage from "./storage.js";
import { isolate } from "./isolate.js";
import { dino, load as loadLibrary, threads } from "./library.js";
import * as files from "./files.js";
import { $, download, dropZone, el, fmt, guard, mb, progress, showError } from "./ui.js";
import { engine, loadMarks, setThreshold, state } from "./state.js";
import * as viewer from "./viewer.js";
import { setSlice, show } from "./viewer.js";
import * as table from "./table.js";
import { renderTable } from "./table.js";
import * as teach from "./teach.js";
import * as training from "./training.js";
import { normals, setNormals } from "./training.js";

// What depends on the threshold or the marks is drawn again when either changes.
const redraw = () => {
  renderTable();
  teach.render();
};
viewer.hooks.changed = redraw;
table.hooks.marked = teach.render;
teach.hooks.changed = () => {
  redraw();
  if (state.view) viewer.show(state.current, state.results[state.current]?.slice).catch(() => {});
};
// A model fit here keeps the files it was fit on: learning from marks adds to them.
training.hooks.trained = (bundle, name) => useModel(bundle, name, { store: true, normals: [...normals] });
training.hooks.changed = () => updateControls();
teach.hooks.learned = (bundle, name, normalSet, { version = true } = {}) =>
  useModel(bundle, name, { store: true, keepResults: true, normals: normalSet, version });
teach.hooks.rescore = rescoreAll;

// ---- engine --------------------------------------------------------------------------------

async function startEngine() {
  if (!("gpu" in navigator)) $("webgpu-notice").hidden = false;
  $("backend-status").textContent = "starting…";
  engine.module = await loadLibrary();
  engine.threads = threads;
  engine.watch(dino.engineChannel());
  fillForms();
  $("backend-status").textContent = engineLine(await engine.start($("backend").value, $("precision").value));
}

// The engine line: the backend, on the CPU its threads and why not more, and the precision that
// runs (with why, when it is not the one asked for).
function engineLine({ device, backend, threads: n, threadsNote, precision, precisionNote }) {
  state.device = device;
  const parts = [backend];
  if (device === "cpu") parts.push(`${n} thread${n === 1 ? "" : "s"}${threadsNote ? ` (${threadsNote})` : ""}`);
  parts.push(precisionNote ? `${precision} (${precisionNote})` : precision);
  return parts.join(" · ");
}

// The training form and the overlay controls start from the library's defaults and list its
// choices: nothing here restates them.
function fillForms() {
  const choices = dino.choices();
  const fill = (select, list) =>
    select.replaceChildren(...list.map(({ value, label }) => el("option", label, { value })));
  const defaults = dino.fitDefaults();
  for (const input of document.querySelectorAll("[data-fit]")) {
    const key = input.dataset.fit;
    if (input.tagName === "SELECT" && choices[key]) fill(input, choices[key]);
    let value = defaults[key];
    // A square size is offered by its side.
    if (key === "size") value = value[0] === value[1] ? value[0] : value.join("x");
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === String(value))) {
      input.append(el("option", String(value), { value }));
    }
    input.value = String(value);
  }
  // The pickers offer what the library reads (it still tells files apart by their content).
  const formats = files.formats();
  $("normal-files").accept = $("score-files").accept = formats.extensions.join(",");
  for (const e of document.querySelectorAll(".formats")) e.textContent = formats.text;
  fill($("colormap"), choices.colormap);
  fill($("precision"), choices.precision); // the library lists its default first
  fill($("backend"), choices.device); // `auto` first: the one rule that picks WebGPU or the CPU
  const style = dino.overlayDefaults();
  $("colormap").value = style.colormap;
  $("opacity").value = style.opacity;
  $("contour").checked = style.contour;
}

// The worker ended on its own (www/engine.js): say so, even if nothing was running.
engine.onLost = (why) => showError(why);

engine.onRestart = (started, lost) => {
  $("backend-status").textContent = engineLine(started);
  if (lost) {
    setModel(null);
    showError(lost);
  }
};

$("backend").onchange = $("precision").onchange = (event) =>
  guard(async () => {
    engine.backend = $("backend").value;
    engine.precision = $("precision").value;
    $("backend-status").textContent = "starting…";
    // A fresh engine on the new backend or precision, with the backbone and model loaded again.
    await engine.restart(`the ${event.target.id} changed`);
  });

// ---- backbone ------------------------------------------------------------------------------

function splitBackboneFiles(files) {
  const config = files.find((f) => /\.json$/i.test(f.name)) ?? null;
  const weights = files.filter((f) => !/\.json$/i.test(f.name));
  if (weights.length !== 1) {
    throw new Error(weights.length === 0
      ? "no weights file among the chosen files (only config.json?): pick model.safetensors or a .pth too"
      : `pick one weights file at a time, got ${weights.map((f) => f.name).join(", ")}`);
  }
  return { weights: weights[0], config };
}

async function useBackbone(weights, config, { source, name }) {
  $("backbone-status").textContent = `loading ${name} into the engine…`;
  progress("backbone-progress", undefined);
  try {
    const info = await engine.loadBackbone(weights, config).catch((e) => {
      $("backbone-status").textContent = state.backbone ? `still using ${state.backbone.name}` : "no weights loaded";
      throw new Error(`${name}: ${e.message}`);
    });
    state.backbone = { name, size: weights.size, source, info };
    if (!info.keptModel) setModel(null);
    showBackbone();
    await teach.renderVersions();
    $("backend-status").textContent = engineLine(info);
  } finally {
    progress("backbone-progress", null);
  }
}

function showBackbone() {
  const b = state.backbone;
  const dl = $("backbone-info");
  if (!b) {
    $("backbone-status").textContent = "no weights loaded";
    dl.hidden = true;
    $("backbone-forget").hidden = true;
    updateControls();
    return;
  }
  const where = {
    stored: "kept on this device (origin private storage): a reload does not ask again",
    sample: "the built-in sample's random tiny ViT — not DINOv3",
    picked: "in memory only (this browser could not store it)",
  }[b.source];
  $("backbone-status").textContent = `${b.name} loaded — ${where}`;
  const i = b.info;
  const rows = [
    ["file", b.name], ["size", mb(b.size)], ["format", `${i.format} (${i.layout} names)`],
    ["architecture", `ViT, width ${i.hiddenSize}, ${i.layers} layers, ${i.heads} heads, ${i.registers} registers, patch ${i.patchSize}`],
    ["fingerprint", i.fingerprint],
  ];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  dl.hidden = false;
  $("backbone-forget").hidden = b.source !== "stored";
  updateControls();
}

// Where the device's storage refuses or is full, the page goes on without it and says so once:
// what is loaded works for this visit, and nothing already stored is lost.
function storageNote(why) {
  $("storage-status").textContent = `${why} — the page works on, but this is not kept for the next visit`;
  $("storage-status").hidden = false;
}

async function pickBackbone(fileList) {
  const { weights, config } = splitBackboneFiles([...fileList]);
  if (await storage.available()) {
    $("backbone-status").textContent = `storing ${weights.name} on this device…`;
    progress("backbone-progress", 0, weights.size);
    try {
      await storage.save("backbone", config ? { weights, config } : { weights },
        { name: weights.name, size: weights.size },
        (done) => progress("backbone-progress", done, weights.size));
      const stored = await storage.load("backbone");
      if (stored) {
        await useBackbone(stored.files.weights, stored.files.config ?? null, { source: "stored", name: weights.name });
        return;
      }
    } catch (e) {
      // The files themselves may still be fine: only storing them failed.
      if (!/could not store|no private file storage/.test(e.message)) throw e;
      progress("backbone-progress", null);
      storageNote(e.message);
    }
  }
  await useBackbone(weights, config, { source: "picked", name: weights.name });
}

$("backbone-files").onchange = (e) =>
  guard(async () => {
    try {
      await pickBackbone(e.target.files);
    } catch (err) {
      // A file that is not DINOv3 weights must not stay stored for the next visit.
      if (state.backbone?.source !== "stored") await storage.forget("backbone");
      throw err;
    } finally {
      e.target.value = "";
    }
  });

$("backbone-forget").onclick = () =>
  guard(async () => {
    await storage.forget("backbone");
    await storage.forget("model");
    state.backbone.source = "picked";
    showBackbone();
    $("backbone-status").textContent += " — removed from this device's storage";
  });

// ---- model ---------------------------------------------------------------------------------

function setModel(model, { keepResults = false } = {}) {
  state.model = model;
  if (!model) {
    $("model-status").textContent = state.backbone ? "no model loaded: load one or train one" : "no model loaded";
    $("model-download").hidden = true;
  } else {
    const i = model.info;
    // The patches the head could see when predicting one: from its own masks (the library).
    model.field = dino.receptiveField(i.spec);
    model.blindSpot = dino.blindSpot(i.spec);
    $("model-status").textContent =
      `${model.name}: ${i.method}, input ${i.inputWidth}×${i.inputHeight}, trained on ${i.trainImages} images, ` +
      `calibrated threshold ${fmt(i.threshold)}`;
    $("model-download").hidden = false;
    const t = $("threshold");
    t.min = Math.min(i.displayLow, i.threshold * 0.5);
    t.max = Math.max(i.displayHigh, i.threshold) * 2 - t.min;
    setThreshold(i.threshold);
  }
  if (!keepResults) clearResults();
  updateControls();
  teach.render();
}

// `normals`: the items the model was fit or learned on here (learning adds the marked ones to
// them); `version`: keep it as a new version on this device (going back to one does not).
async function useModel(bundle, name, { store, keepResults = false, normals: normalSet = null, version = true }) {
  const info = await engine.loadModel(bundle).catch((e) => {
    throw new Error(`${name}: ${e.message}`);
  });
  setModel({ name, info, bundle, normals: normalSet }, { keepResults });
  if (store && state.backbone?.source === "stored") {
    await storage.save("model", { bundle }, { name, fingerprint: state.backbone.info.fingerprint })
      .catch((e) => storageNote(`${name}: ${e.message}`));
  }
  if (store && version) {
    const meta = { name, version: info.version, rule: info.rule, threshold: info.threshold, fingerprint: state.backbone?.info.fingerprint };
    await storage.saveVersion(bundle, meta).catch((e) => storageNote(`${name} as a version: ${e.message}`));
    await teach.renderVersions();
  }
}

$("model-file").onchange = (e) =>
  guard(async () => {
    const f = e.target.files[0];
    e.target.value = "";
    if (!f) return;
    if (!state.backbone) throw new Error("load the backbone weights first: the model belongs to one backbone");
    await useModel(f, f.name, { store: true });
  });

$("model-download").onclick = () => download(state.model.bundle, state.model.name.replace(/(\.safetensors)?$/, ".safetensors"));

// ---- scoring -------------------------------------------------------------------------------

let stopScoring = false;

async function scoreFiles(picked) {
  const items = await files.items(picked);
  if (!$("fit-cancel").hidden) throw new Error("a model is being trained: score the images once it is done");
  if (!state.model) throw new Error("load or train a model first");
  stopScoring = false;
  $("score-stop").hidden = false;
  let failed = 0;
  try {
    for (const [k, item] of items.entries()) {
      if (stopScoring) break;
      $("score-status").textContent = `scoring ${item.name} (${k + 1} of ${items.length})` +
        (k === 0 && state.results.length === 0 && state.device === "gpu"
          ? " — the first run compiles GPU shaders" : "");
      progress("score-progress", k, items.length);
      let entry;
      try {
        if (item.error) throw new Error(item.error);
        const status = $("score-status").textContent;
        const r = await engine.score(item, (p) => {
          $("score-status").textContent = `${status}: slice ${p.slice} of ${p.slices}`;
        });
        entry = fill({ name: rowName(item), item }, r);
      } catch (e) {
        if (stopScoring) break;
        failed++;
        entry = { name: rowName(item), item, error: e.message };
      }
      state.results.push(entry);
      redraw();
      if (state.current < 0 && !entry.error) await show(state.results.length - 1);
    }
  } finally {
    progress("score-progress", null);
    $("score-stop").hidden = true;
  }
  const n = state.results.filter((r) => !r.error).length;
  $("score-status").textContent = `${n} image${n === 1 ? "" : "s"} scored` +
    (failed ? `, ${failed} could not be read (see the table)` : "") + (stopScoring ? " (stopped)" : "");
}

$("score-files").onchange = (e) =>
  guard(async () => {
    const files = [...e.target.files];
    e.target.value = "";
    await scoreFiles(files);
  });
$("score-stop").onclick = () => {
  stopScoring = true;
  engine.restart("stopped").catch(() => {});
};

// A row's numbers from a score result (a volume's: its slices, worst, map).
function fill(entry, r) {
  Object.assign(entry, { fingerprint: r.fingerprint, score: r.score, top1: r.scoreTop1, grid: r.grid,
    gridH: r.gridH, gridW: r.gridW, width: r.width, height: r.height, thumb: null });
  if (r.volume) {
    Object.assign(entry, { volume: r.volume, slices: r.slices, worst: r.worstSlice, anomalyMap: r.anomalyMap });
    if (r.warning) entry.volume.warning = r.warning;
    setSlice(entry, r.worstSlice);
  }
  return entry;
}

// The batch scored again by the model now loaded (after it learned): the embeddings are kept in
// the engine, so only the head runs.
async function rescoreAll() {
  for (const [k, r] of state.results.entries()) {
    if (r.error) continue;
    $("score-status").textContent = `scoring ${r.name} again (${k + 1} of ${state.results.length})`;
    const shown = r.slice;
    fill(r, await engine.score(r.item));
    if (r.slices && shown !== undefined) setSlice(r, shown);
  }
  $("score-status").textContent = `${state.results.length} rows scored by version ${state.model.info.version}`;
  redraw();
  // The viewer follows when the engine is free (the table's thumbnails are drawn first).
  if (state.current >= 0) show(state.current, state.results[state.current].slice).catch(() => {});
}

// A row's name: the item's (the path inside a picked folder where the browser gives it), numbered
// when two picked files still share it (`good/000.png` and `cut/000.png` picked one by one).
function rowName(item) {
  const name = item.name;
  const taken = new Set(state.results.map((r) => r.name));
  if (!taken.has(name)) return name;
  let k = 2;
  while (taken.has(`${name} (${k})`)) k++;
  return `${name} (${k})`;
}

function clearResults() {
  $("score-status").textContent = "";
  state.results = [];
  state.current = -1;
  state.view = null;
  $("viewer").hidden = true;
  renderTable();
  teach.render();
}
$("batch-clear").onclick = clearResults;

// ---- drag and drop -------------------------------------------------------------------------

dropZone("backbone-drop", pickBackbone);
dropZone("normal-drop", setNormals);
dropZone("score-drop", scoreFiles);
function updateControls() {
  const busy = !$("fit-cancel").hidden;
  $("fit-run").disabled = busy || !state.backbone || normals.length === 0;
  // Why the score picker is off, said next to it rather than after a pick is dropped.
  const why = busy ? "a model is being trained: images can be scored once it is done"
    : !state.model ? "load or train a model first" : "";
  $("score-files").disabled = why !== "";
  $("score-files").title = why;
  $("score-why").textContent = why;
  $("model-file").disabled = !state.backbone || busy;
}

// ---- the built-in sample -------------------------------------------------------------------

async function fetchBlob(path) {
  const res = await fetch(`sample/${path}`);
  if (!res.ok) throw new Error(`the sample file ${path} is missing (HTTP ${res.status})`);
  return await res.blob();
}

$("sample-run").onclick = () =>
  guard(async () => {
    $("sample-run").disabled = true;
    try {
      const manifest = await (await fetch("sample/manifest.json")).json();
      await useBackbone(await fetchBlob(manifest.backbone.weights), await fetchBlob(manifest.backbone.config),
        { source: "sample", name: "sample backbone (random tiny ViT)" });
      await useModel(await fetchBlob(manifest.model), "sample model (brick)", { store: false });
      const files = await Promise.all(manifest.test.map(async (t) =>
        new File([await fetchBlob(t.image)], t.image.split("/").pop(), { type: "image/png" })));
      await scoreFiles(files);
      // Open the most anomalous image and list the rest by score.
      const top = state.results.reduce((best, r, i) => (!r.error && r.score > (state.results[best]?.score ?? -Infinity) ? i : best), -1);
      if (top >= 0) await show(top);
      state.sort = { key: "score", dir: -1 };
      renderTable();
      $("score-section").scrollIntoView({ behavior: "smooth" });
    } finally {
      $("sample-run").disabled = false;
    }
  });

// ---- boot ----------------------------------------------------------------------------------

async function boot() {
  await isolate();
  await startEngine();
  // The marks of earlier visits (the library reads their CSV).
  loadMarks();
  teach.render();
  if (!(await storage.available())) storageNote("this browser refuses the page private file storage (OPFS)");
  const stored = await storage.load("backbone");
  if (stored) {
    await useBackbone(stored.files.weights, stored.files.config ?? null, { source: "stored", name: stored.meta.name });
    const model = await storage.load("model");
    if (model && model.meta.fingerprint === state.backbone.info.fingerprint) {
      await useModel(model.files.bundle, model.meta.name, { store: false });
    }
  }
  updateControls();
  await teach.renderVersions();
  document.body.dataset.ready = "true";
}
guard(boot).finally(() => (document.body.dataset.ready = "true"));
