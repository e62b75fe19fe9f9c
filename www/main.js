// The page: wires the controls to the engine (a worker that owns the Detector), the storage of the
// weights on this device, and the overlay drawing. Data flows one way: files → worker → scores →
// overlays and table. Nothing here computes on the model; nothing here leaves the device.
import { Engine } from "./engine.js";
import * as storage from "./storage.js";
import { isolate } from "./isolate.js";
import { dino, load as loadLibrary, threads } from "./library.js";

const $ = (id) => document.getElementById(id);
const engine = new Engine();

const state = {
  backbone: null, // { name, size, source, info }
  model: null, // { name, info, bundle: Blob }
  // { name, file, score, top1, grid, gridH, gridW, width, height, error }; a volume also has
  // `volume` (how the model cuts it), `slices` (each slice's result), `worst`, `slice` (the one
  // shown: its grid and size are the row's grid and size) and `anomalyMap` (.nii.gz bytes).
  results: [],
  current: -1,
  sort: { key: null, dir: 1 },
  view: null, // { base: ImageData, map: Float32Array, result }
  probe: null, // patch [row, col] under the pointer or the keyboard cursor
  threshold: NaN, // the verdict threshold in use: the model's, or the slider's
};

const IMAGE_NAME = /\.(png|jpe?g|webp|bmp)$/i;
const VOLUME_NAME = /\.(nii|nii\.gz|dcm)$/i;
const stemOf = (name) => name.replace(/\.nii\.gz$/i, "").replace(/\.[^./]*$/, "").replace(/[\/ ]+/g, "_");
const mb = (n) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(4) : "—");

// ---- messages ------------------------------------------------------------------------------

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}
$("error-close").onclick = () => ($("error").hidden = true);

function progress(id, value, max) {
  const p = $(id);
  p.hidden = value === null;
  if (value === undefined) p.removeAttribute("value");
  else if (value !== null) [p.max, p.value] = [max, value];
}

// Runs an action from a control: errors are shown, the page stays usable.
async function guard(action) {
  try {
    $("error").hidden = true;
    return await action();
  } catch (e) {
    showError(e.message ?? String(e));
  }
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

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
function engineLine({ backend, threads: n, threadsNote, precision, precisionNote }) {
  const parts = [backend];
  if (/^cpu/.test(backend)) parts.push(`${n} thread${n === 1 ? "" : "s"}${threadsNote ? ` (${threadsNote})` : ""}`);
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
  fill($("colormap"), choices.colormap);
  fill($("precision"), choices.precision); // the library lists its default first
  const style = dino.overlayDefaults();
  $("colormap").value = style.colormap;
  $("opacity").value = style.opacity;
  $("contour").checked = style.contour;
}

// The form's settings as fit options; the library checks them (and names a bad one).
function fitOptions() {
  const options = {};
  for (const input of document.querySelectorAll("[data-fit]")) {
    const v = input.value.trim();
    options[input.dataset.fit] = input.type === "number" && v !== "" ? Number(v) : v;
  }
  if (/^\d+$/.test(options.size)) options.size = Number(options.size);
  return options;
}
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

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  Object.assign(e, attrs);
  return e;
}

async function pickBackbone(fileList) {
  const { weights, config } = splitBackboneFiles([...fileList]);
  let source = "picked";
  if (await storage.available()) {
    $("backbone-status").textContent = `storing ${weights.name} on this device…`;
    progress("backbone-progress", 0, weights.size);
    await storage.save("backbone", config ? { weights, config } : { weights },
      { name: weights.name, size: weights.size },
      (done) => progress("backbone-progress", done, weights.size));
    const stored = await storage.load("backbone");
    if (stored) {
      await useBackbone(stored.files.weights, stored.files.config ?? null, { source: "stored", name: weights.name });
      return;
    }
  }
  await useBackbone(weights, config, { source, name: weights.name });
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

function setModel(model) {
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
  clearResults();
  updateControls();
}

async function useModel(bundle, name, { store }) {
  const info = await engine.loadModel(bundle).catch((e) => {
    throw new Error(`${name}: ${e.message}`);
  });
  setModel({ name, info, bundle });
  if (store && state.backbone?.source === "stored") {
    await storage.save("model", { bundle }, { name, fingerprint: state.backbone.info.fingerprint }).catch(() => {});
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

// Training.
let normals = [];
function setNormals(files) {
  const usable = (f) => IMAGE_NAME.test(f.name) || VOLUME_NAME.test(f.name);
  normals = [...files].filter(usable);
  // Files that are not images are named, not silently dropped.
  const skipped = [...files].filter((f) => !usable(f)).map((f) => f.name);
  const named = skipped.slice(0, 5).join(", ") + (skipped.length > 5 ? ` and ${skipped.length - 5} more` : "");
  const volumes = normals.filter((f) => VOLUME_NAME.test(f.name)).length;
  $("normal-count").textContent = (normals.length
    ? `${normals.length - volumes} normal images` + (volumes ? ` and ${volumes} volume files (their slices)` : "") + " chosen"
    : "no normal images chosen") +
    (skipped.length ? `; skipped ${skipped.length} that are not images (PNG, JPEG, WebP, BMP) or volumes (NIfTI, DICOM): ${named}` : "");
  updateControls();
}
$("normal-files").onchange = (e) => setNormals(e.target.files);
$("normal-folder").onchange = (e) => setNormals(e.target.files);

$("fit-run").onclick = () =>
  guard(async () => {
    // The worker has the library check the options before it reads any image.
    await train(normals, fitOptions(), `model-${normals.length}-normals.safetensors`);
  });

async function train(files, options, name) {
  $("fit-cancel").hidden = false;
  updateControls();
  $("fit-log").replaceChildren();
  progress("fit-progress", 0, 1);
  const status = $("fit-status");
  status.textContent = "reading the images…";
  try {
    // A DICOM series goes as one item; the library cuts volumes into their slices.
    const images = (await groupDicom(files)).map((f) => (f.series ? f : { name: f.name, blob: f }));
    const result = await engine.fit(images, options, (p) => {
      if (p.phase === "decode") {
        status.textContent = `reading image ${p.image} of ${p.images}`;
      } else if (p.phase === "embed") {
        status.textContent = `embedding image ${p.image} of ${p.images} with the backbone` +
          (p.images > files.length ? " (volumes count each slice)" : "");
        progress("fit-progress", p.image, p.images * 2);
      } else {
        const done = (p.epoch - 1) * p.steps + p.step;
        status.textContent = `training: epoch ${p.epoch}/${p.epochs}, step ${p.step}/${p.steps}, loss ${p.loss.toFixed(5)}`;
        progress("fit-progress", p.epochs * p.steps + done, p.epochs * p.steps * 2);
        if (p.step === p.steps) $("fit-log").append(el("li", `epoch ${p.epoch}: loss ${p.loss.toFixed(5)}`));
      }
    });
    status.textContent = "trained; loading the model…";
    await useModel(new Blob([result.bundle]), name, { store: true });
    status.textContent = `trained on ${files.length} images. Score images below, or download the bundle.`;
  } catch (e) {
    status.textContent = e.message === "training cancelled" ? "training cancelled" : "training failed";
    if (e.message !== "training cancelled") throw e;
  } finally {
    $("fit-cancel").hidden = true;
    progress("fit-progress", null);
    updateControls();
  }
}

$("fit-cancel").onclick = () => guard(() => engine.restart("training cancelled"));

// ---- scoring -------------------------------------------------------------------------------

let stopScoring = false;

// The DICOM files of a pick grouped by series (the library reads each file's SeriesInstanceUID,
// not its pixels): one volume each ({ name, series }), in the place of its first file. A file
// whose series cannot be read stays alone (its row will say why).
async function groupDicom(files) {
  const dcm = files.filter((f) => /\.dcm$/i.test(f.name));
  const uids = dcm.length ? dino.dicomSeries(await Promise.all(dcm.map(async (f) => new Uint8Array(await f.arrayBuffer())))) : [];
  const uidOf = new Map(dcm.map((f, k) => [f, uids[k]]));
  const out = [];
  const series = new Map();
  for (const f of files) {
    const uid = uidOf.get(f);
    if (!uid) {
      out.push(f);
      continue;
    }
    if (!series.has(uid)) {
      const folder = (f.webkitRelativePath || "").split("/").slice(0, -1).join("/");
      const item = { name: `${folder || "DICOM"} series …${uid.slice(-6)}`, series: [] };
      series.set(uid, item);
      out.push(item);
    }
    series.get(uid).series.push(f);
  }
  // A "series" of one file is that file.
  return out.map((x) => (x.series?.length === 1 ? x.series[0] : x));
}

async function scoreFiles(files) {
  files = await groupDicom([...files]);
  if (!$("fit-cancel").hidden) throw new Error("a model is being trained: score the images once it is done");
  if (!state.model) throw new Error("load or train a model first");
  stopScoring = false;
  $("score-stop").hidden = false;
  let failed = 0;
  try {
    for (const [k, file] of files.entries()) {
      if (stopScoring) break;
      $("score-status").textContent = `scoring ${file.name} (${k + 1} of ${files.length})` +
        (k === 0 && state.results.length === 0 && !/^cpu/.test($("backend-status").textContent)
          ? " — the first run compiles GPU shaders" : "");
      progress("score-progress", k, files.length);
      let entry;
      try {
        const status = $("score-status").textContent;
        const r = await engine.score(file.name, file, (p) => {
          $("score-status").textContent = `${status}: slice ${p.slice} of ${p.slices}`;
        });
        entry = { name: rowName(file), file, score: r.score, top1: r.scoreTop1, grid: r.grid,
          gridH: r.gridH, gridW: r.gridW, width: r.width, height: r.height };
        if (r.volume) {
          Object.assign(entry, { volume: r.volume, slices: r.slices, worst: r.worstSlice, anomalyMap: r.anomalyMap });
          if (r.warning) entry.volume.warning = r.warning;
          setSlice(entry, r.worstSlice);
        }
      } catch (e) {
        if (stopScoring) break;
        failed++;
        entry = { name: rowName(file), file, error: e.message };
      }
      state.results.push(entry);
      renderTable();
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

// The threshold is kept exactly (the model's own value, not the slider's nearest step).
function threshold() {
  return state.threshold;
}
function setThreshold(t) {
  state.threshold = t;
  $("threshold").value = t;
  $("threshold-value").textContent = fmt(t);
}
const verdictOf = (r) => (r.error ? "error" : dino.verdict(r.score, threshold()));

// A row's name: the path inside a picked folder where the browser gives it, and numbered when two
// picked files still share it (`good/000.png` and `cut/000.png` picked one by one).
function rowName(file) {
  const name = file.webkitRelativePath || file.name;
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
}
$("batch-clear").onclick = clearResults;

// ---- viewer --------------------------------------------------------------------------------

// Show slice `n` of a volume's row: its grid and size become the row's (the table keeps the
// volume's own score, its worst slice's).
function setSlice(r, n) {
  const s = r.slices[n];
  Object.assign(r, { slice: n, grid: s.grid, gridH: s.gridH, gridW: s.gridW, width: s.width, height: s.height });
  r.explanation = null;
}

// What the viewer draws the map over: the picture, or the volume's slice as the model saw it.
async function baseBitmap(r) {
  if (!r.slices) return await createImageBitmap(r.file, { imageOrientation: "from-image", colorSpaceConversion: "none" });
  const img = await engine.slice(r.file.name, r.file, r.slice);
  return await createImageBitmap(new ImageData(new Uint8ClampedArray(img.rgba.buffer), img.width, img.height));
}

async function show(index, slice) {
  const r = state.results[index];
  if (!r || r.error) return;
  state.current = index;
  if (r.slices && slice !== undefined && slice !== r.slice) setSlice(r, slice);
  const bitmap = await baseBitmap(r);
  const canvas = $("overlay");
  [canvas.width, canvas.height] = [r.width, r.height];
  canvas.dataset.gridRows = r.gridH; // the patch grid's rows, for whoever reads the canvas
  // Shown at a comfortable size whatever the image's: up to 34 rem wide, 75 % of the window high.
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize);
  canvas.style.width = `${Math.round(Math.min(34 * rem, (0.75 * innerHeight * r.width) / r.height))}px`;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, r.width, r.height);
  bitmap.close();
  state.view = { base: ctx.getImageData(0, 0, r.width, r.height), map: dino.upsampleMap(r.grid, r.gridH, r.gridW, r.height, r.width), result: r };
  state.probe = null;
  $("viewer").hidden = false;
  $("view-name").textContent = r.slices ? `${r.name} — ${r.volume.plane} slice ${r.slice} of ${r.slices.length}` : r.name;
  $("slice-control").hidden = !r.slices;
  $("export-nifti").hidden = !r.slices;
  $("export-overlays").hidden = !r.slices;
  $("view-volume").hidden = !r.slices;
  if (r.slices) {
    $("slice").max = r.slices.length - 1;
    $("slice").value = r.slice;
    $("slice-value").textContent = `${r.slice} of ${r.slices.length}`;
    const notes = [r.volume.warning, ...r.volume.notes].filter(Boolean).join("; ");
    $("view-volume").textContent = `Volume: ${r.volume.plane} slices through the model's window (${r.volume.window}); ` +
      `its score is its worst slice's (slice ${r.worst}: ${fmt(r.score)}, ${verdictOf(r)})` + (notes ? `. ${notes}` : "");
  }
  drawView();
  renderTable();
}

$("slice").oninput = () =>
  guard(async () => {
    if (state.current >= 0) await show(state.current, Number($("slice").value));
  });

// Every slice's overlay as a PNG (as `dino-ar score` writes them), in one ZIP.
$("export-overlays").onclick = () =>
  guard(async () => {
    const r = state.view?.result;
    if (!r?.slices) return;
    const names = [];
    const files = [];
    for (const [n, s] of r.slices.entries()) {
      $("score-status").textContent = `drawing the overlay of slice ${n + 1} of ${r.slices.length}`;
      const img = await engine.slice(r.file.name, r.file, n);
      const base = new ImageData(new Uint8ClampedArray(img.rgba.buffer), img.width, img.height);
      const map = dino.upsampleMap(s.grid, s.gridH, s.gridW, img.height, img.width);
      const canvas = new OffscreenCanvas(img.width, img.height);
      canvas.getContext("2d").putImageData(renderOverlay(base, map, overlayOptions()), 0, 0);
      const png = await canvas.convertToBlob({ type: "image/png" });
      names.push(`${r.volume.plane}_${String(n).padStart(4, "0")}.png`);
      files.push(new Uint8Array(await png.arrayBuffer()));
    }
    $("score-status").textContent = "";
    download(new Blob([dino.zipFiles(names, files)], { type: "application/zip" }), `${stemOf(r.name)}_overlays.zip`);
  });

// The anomaly map of the volume on its own voxel grid, with its affine: it opens aligned over the
// scan in 3D Slicer or ITK-SNAP.
$("export-nifti").onclick = () => {
  const r = state.view?.result;
  if (r?.anomalyMap) download(new Blob([r.anomalyMap], { type: "application/gzip" }), `${stemOf(r.name)}_anomaly.nii.gz`);
};

function overlayOptions() {
  const i = state.model.info;
  return { colormap: $("colormap").value, opacity: Number($("opacity").value), threshold: threshold(),
    displayLow: i.displayLow, displayHigh: i.displayHigh, contour: $("contour").checked };
}

// The library draws the map over the image (the same rule as the CLI's overlay PNGs).
function renderOverlay(base, map, options) {
  const px = dino.renderOverlay(base.data, base.width, base.height, map, options);
  return new ImageData(new Uint8ClampedArray(px.buffer, px.byteOffset, px.length), base.width, base.height);
}

function drawView() {
  const v = state.view;
  if (!v) return;
  const r = v.result;
  const ctx = $("overlay").getContext("2d");
  ctx.putImageData(renderOverlay(v.base, v.map, overlayOptions()), 0, 0);
  const explain = $("explain").checked;
  let counts = null; // patches of the grid the probed prediction sees / cannot see
  if (state.probe) {
    // Outline the probed patch; with "show what the model saw", lighten the patches its
    // prediction could use (the receptive field; outside the grid they are zero padding) and
    // darken those before it, within reach, that it cannot see (the blind spot).
    const [row, col] = state.probe;
    const [sx, sy] = [r.width / r.gridW, r.height / r.gridH];
    if (explain) {
      const shade = (offsets, style) => {
        ctx.fillStyle = style;
        let n = 0;
        for (let k = 0; k < offsets.length; k += 2) {
          const [y, x] = [row + offsets[k], col + offsets[k + 1]];
          if (y >= 0 && x >= 0 && y < r.gridH && x < r.gridW) {
            ctx.fillRect(x * sx, y * sy, sx, sy);
            n++;
          }
        }
        return n;
      };
      counts = {
        seen: shade(state.model.field, "rgba(255, 255, 255, 0.45)"),
        blind: shade(state.model.blindSpot, "rgba(0, 0, 0, 0.55)"),
      };
    }
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = Math.max(1, r.width / 300);
    ctx.strokeRect(col * sx, row * sy, sx, sy);
  }
  $("explain-caption").hidden = !explain;
  if (explain) $("explain-caption").textContent = explainCaption(counts);
  drawExplanation(explain ? r : null);
  // A volume's viewer judges the slice shown; the table judges the volume (its worst slice).
  const shown = r.slices ? { score: r.slices[r.slice].score, top1: r.slices[r.slice].scoreTop1 } : r;
  const verdict = verdictOf(shown);
  $("view-verdict").textContent = verdict;
  $("view-verdict").className = `verdict v-${verdict}`;
  $("view-score").textContent = fmt(shown.score);
  $("view-top1").textContent = fmt(shown.top1);
  $("view-threshold").textContent = `${fmt(threshold())} (calibrated ${fmt(state.model.info.threshold)})`;
  if (state.probe) {
    const [row, col] = state.probe;
    $("view-hover").textContent = `patch row ${row + 1}, column ${col + 1}: ${fmt(r.grid[row * r.gridW + col])}`;
  } else $("view-hover").textContent = "—";
}

// The embeddings, the prediction and the error, one pixel per patch. The explanation is asked of
// the worker once per result, when first wanted, and the grids are painted when it arrives or when
// the result or the overlay's settings change — not on every move of the probe.
function drawExplanation(r) {
  const box = $("explain-grids");
  if (!r || state.model.field.length === 0) {
    box.hidden = true;
    box.dataset.painted = "";
    return;
  }
  if (!r.explanation) {
    box.hidden = true; // not another image's grids while this one's are computed
    r.explanation = engine.explain(r.file.name, r.file, r.slice).then((x) => x.explanation, (e) => {
      showError(e.message);
      return null;
    });
    r.explanation.then(() => { if (state.view?.result === r) drawExplanation(r); });
    return;
  }
  const options = { ...overlayOptions(), opacity: 1, contour: false };
  const key = JSON.stringify([state.current, options]);
  if (box.dataset.painted === key) return;
  box.dataset.painted = key;
  r.explanation.then((e) => {
    if (state.view?.result !== r || !$("explain").checked) return;
    if (!e) {
      box.hidden = true;
      return;
    }
    const paint = (id, rgba) => {
      const c = $(id);
      [c.width, c.height] = [e.gridW, e.gridH];
      c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), e.gridW, e.gridH), 0, 0);
    };
    paint("explain-actual", e.actual);
    paint("explain-predicted", e.predicted);
    // The error grid in the overlay's colours: the map drawn at full opacity on opaque black.
    const black = new Uint8ClampedArray(e.gridW * e.gridH * 4);
    for (let i = 3; i < black.length; i += 4) black[i] = 255;
    paint("explain-error", dino.renderOverlay(black, e.gridW, e.gridH, r.grid, options));
    box.hidden = false;
  });
}

// What "show what the model saw" says, for the model in use and, once a patch is pointed at, the
// number of patches of this image its prediction sees and cannot see (`counts`).
function explainCaption(counts) {
  const spec = state.model.info.spec;
  if (state.model.field.length === 0) {
    return "The kNN baseline scores each patch on its own: its distance to the closest patch of the normal images.";
  }
  const blindHead = state.model.blindSpot.length > 0;
  const seen = counts ? `the ${counts.seen} patches before it that it can see (lightened)` : "patches before it (point at a patch or use the arrow keys to see which)";
  const holes = !blindHead
    ? " It sees every patch before it within its reach: no blind spot."
    : counts
      ? ` Darkened: ${counts.blind} patches before it, within its reach, that its masked convolutions never see (its blind spot).`
      : " Some patches before it, within its reach, its masked convolutions never see (its blind spot, darkened).";
  return `The model (${spec.variant} head) reads the image's patches in raster order, like text: left to right, top to bottom. ` +
    `It predicts each patch's embedding from ${seen}, never from the patch itself or anything after it. ` +
    `The map shows how far the real embedding is from the prediction.${holes}`;
}

for (const id of ["colormap", "opacity", "contour", "explain"]) $(id).oninput = drawView;
$("threshold").oninput = () => {
  state.threshold = Number($("threshold").value);
  $("threshold-value").textContent = fmt(threshold());
  drawView();
  renderTable();
};
$("threshold-reset").onclick = () => {
  setThreshold(state.model.info.threshold);
  drawView();
  renderTable();
};

// The pointer probes a patch: hovering with a mouse, or tapping on a touch screen (where the probe
// stays until the next tap, since a finger does not hover).
const probeAt = (e) => {
  const v = state.view;
  if (!v) return;
  const rect = e.target.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * v.result.gridW;
  const y = ((e.clientY - rect.top) / rect.height) * v.result.gridH;
  state.probe = [Math.min(Math.max(Math.floor(y), 0), v.result.gridH - 1), Math.min(Math.max(Math.floor(x), 0), v.result.gridW - 1)];
  drawView();
};
$("overlay").onpointermove = probeAt;
$("overlay").onpointerdown = probeAt;
$("overlay").onpointerleave = (e) => {
  if (e.pointerType !== "mouse") return;
  state.probe = null;
  drawView();
};
// Keyboard: arrows move the probed patch.
$("overlay").onkeydown = (e) => {
  const v = state.view;
  const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
  if (!v || !step) return;
  e.preventDefault();
  const [row, col] = state.probe ?? [0, 0];
  state.probe = [Math.min(Math.max(row + step[0], 0), v.result.gridH - 1), Math.min(Math.max(col + step[1], 0), v.result.gridW - 1)];
  drawView();
};

// The overlay at the image's own size, without the probe's outline.
$("export-png").onclick = () => {
  const v = state.view;
  const r = v.result;
  const name = stemOf(r.name) + (r.slices ? `_${r.volume.plane}_${String(r.slice).padStart(4, "0")}` : "");
  const canvas = new OffscreenCanvas(v.base.width, v.base.height);
  canvas.getContext("2d").putImageData(renderOverlay(v.base, v.map, overlayOptions()), 0, 0);
  canvas.convertToBlob({ type: "image/png" }).then((blob) => download(blob, `${name}_overlay.png`));
};

// ---- batch table ---------------------------------------------------------------------------

function sorted() {
  const { key, dir } = state.sort;
  const rows = state.results.map((r, index) => ({ r, index }));
  if (!key) return rows;
  const value = (r) => (key === "score" ? (r.error ? -Infinity : r.score) : key === "verdict" ? verdictOf(r) : r.name);
  return rows.sort((a, b) => {
    const [x, y] = [value(a.r), value(b.r)];
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
}

const THUMB = 72;
function thumbnail(r) {
  const c = el("canvas", undefined, { width: THUMB, height: Math.max(1, Math.round((THUMB * r.height) / r.width)) });
  c.setAttribute("aria-hidden", "true");
  // A volume's thumbnail is its worst slice.
  const source = r.slices
    ? engine.slice(r.file.name, r.file, r.worst).then((img) => new ImageData(new Uint8ClampedArray(img.rgba.buffer), img.width, img.height))
    : Promise.resolve(r.file);
  const [grid, gridH, gridW] = r.slices ? [r.slices[r.worst].grid, r.slices[r.worst].gridH, r.slices[r.worst].gridW] : [r.grid, r.gridH, r.gridW];
  source.then((src) => createImageBitmap(src, { resizeWidth: c.width, resizeHeight: c.height, resizeQuality: "medium" }))
    .then((bmp) => {
      const ctx = c.getContext("2d");
      ctx.drawImage(bmp, 0, 0);
      bmp.close();
      const base = ctx.getImageData(0, 0, c.width, c.height);
      const map = dino.upsampleMap(grid, gridH, gridW, c.height, c.width);
      ctx.putImageData(renderOverlay(base, map, { ...overlayOptions(), contour: false }), 0, 0);
    })
    .catch(() => {});
  return c;
}

function renderTable() {
  $("batch").hidden = state.results.length === 0;
  const body = $("results").tBodies[0];
  body.replaceChildren(...sorted().map(({ r, index }) => {
    const tr = el("tr");
    if (index === state.current) tr.className = "current";
    r.thumb ??= r.error ? null : thumbnail(r);
    const name = r.error ? el("span", r.name) : el("button", r.name, { type: "button", onclick: () => show(index, r.worst) });
    const cell = el("td");
    cell.append(name);
    const verdict = verdictOf(r);
    tr.append(
      el("td").appendChild(r.thumb ?? el("span", "—")).parentNode,
      cell,
      el("td", r.error ? "" : fmt(r.score)),
      el("td", r.error ? `could not be scored: ${r.error}` : verdict, { className: `v-${verdict}` }),
    );
    if (!r.slices) return [tr];
    // A volume lists its slices on demand, each a way into the viewer at that slice.
    const toggle = el("button", r.expanded ? "hide slices" : `${r.slices.length} slices`, {
      type: "button", className: "slices-toggle",
      onclick: () => { r.expanded = !r.expanded; renderTable(); },
    });
    toggle.setAttribute("aria-expanded", String(!!r.expanded));
    cell.append(el("span", ` worst: ${r.volume.plane} slice ${r.worst} `, { className: "hint" }), toggle);
    if (!r.expanded) return [tr];
    return [tr, ...r.slices.map((s, n) => {
      const v = verdictOf({ score: s.score });
      const row = el("tr", undefined, { className: "slice-row" + (index === state.current && n === r.slice ? " current" : "") });
      row.append(el("td"), el("td").appendChild(el("button", `${r.volume.plane} slice ${n}`, { type: "button", onclick: () => show(index, n) })).parentNode,
        el("td", fmt(s.score)), el("td", v, { className: `v-${v}` }));
      return row;
    })];
  }).flat());
  for (const th of $("results").tHead.rows[0].cells) {
    const key = th.querySelector("button")?.dataset.sort;
    if (key) th.setAttribute("aria-sort", state.sort.key === key ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
}

for (const b of $("results").tHead.querySelectorAll("button[data-sort]")) {
  b.onclick = () => {
    const key = b.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : key === "score" ? -1 : 1 };
    renderTable();
  };
}

// The same file as `dino-ar score` writes (the library writes both), at the threshold in use.
$("export-csv").onclick = () => {
  const rows = sorted().flatMap(({ r }) => (r.error
    ? [{ file: r.name, threshold: threshold(), error: r.error }]
    : r.slices
      ? [...r.slices.map((s, n) => ({ file: r.name, score: s.score, scoreTop1: s.scoreTop1, threshold: threshold(), slice: n })),
        { file: r.name, score: r.score, scoreTop1: r.top1, threshold: threshold(), worstSlice: r.worst,
          ...(r.volume.warning || r.volume.notes.length ? { note: [r.volume.warning, ...r.volume.notes].filter(Boolean).join("; ") } : {}) }]
      : [{ file: r.name, score: r.score, scoreTop1: r.top1, threshold: threshold() }]));
  download(new Blob([dino.scoresCsv(rows)], { type: "text/csv" }), "dino-ar-scores.csv");
};

// ---- drag and drop -------------------------------------------------------------------------

function dropZone(id, onFiles) {
  const zone = $(id);
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    guard(() => onFiles([...e.dataTransfer.files]));
  });
}
dropZone("backbone-drop", pickBackbone);
dropZone("normal-drop", async (files) => setNormals(files));
dropZone("score-drop", scoreFiles);
// A file dropped outside a zone must not navigate away from the page (and lose its state).
for (const ev of ["dragover", "drop"]) window.addEventListener(ev, (e) => e.preventDefault());

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
  const stored = await storage.load("backbone");
  if (stored) {
    await useBackbone(stored.files.weights, stored.files.config ?? null, { source: "stored", name: stored.meta.name });
    const model = await storage.load("model");
    if (model && model.meta.fingerprint === state.backbone.info.fingerprint) {
      await useModel(model.files.bundle, model.meta.name, { store: false });
    }
  }
  updateControls();
  document.body.dataset.ready = "true";
}
guard(boot).finally(() => (document.body.dataset.ready = "true"));
