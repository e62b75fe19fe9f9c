// The worker that owns the Detector: every decode, backbone pass, training step and scoring runs
// here, so the page never freezes. Requests are { id, op, ...args }; replies are
// { id, result } or { id, error }, with { id, progress } in between.
// The library: pkg/ (the page compiles it once and hands it over with `start`) for WebGPU and the
// rules, and pkg-threads/ for the CPU backend on every core where the page is cross-origin
// isolated (loaded here on first use). A Detector and the Volumes it reads belong to one of them.
import init, * as one from "./pkg/dino_ar.js";

let wasmReady = null;
let threaded = null; // pkg-threads/, once loaded
let lib = one; // the build the detector runs on
async function loadThreaded({ glue, wasm }) {
  const par = await import(glue);
  await par.default({ module_or_path: new URL(wasm) });
  return par;
}

let detector = null;

// Every file is read by the library (src/input.rs), in the wasm: a picture decodes to the same
// pixels as in the CLI (16-bit kept, EXIF orientation applied), and a volume is cut the same way.
// An item is what www/files.js made of a pick: { name, kind, file } or { name, kind, series }.
const bytesOf = async (blob) => new Uint8Array(await blob.arrayBuffer());
const isVolume = (item) => item.kind !== "picture";

// The volumes scored last, read once each: the page asks for their slices while it shows them.
const volumes = new Map(); // name → { size, volume, fingerprint }
const KEEP_VOLUMES = 3;
const sizeOf = (item) => (item.series ? item.series.reduce((n, f) => n + f.size, 0) : item.file.size);
let lastPicture = null; // { key, img }: the picture drawn last (see `picture`)
function forgetVolumes() {
  for (const v of volumes.values()) v.volume.free();
  volumes.clear();
}
async function volumeOf(item) {
  const kept = volumes.get(item.name);
  if (kept && kept.size === sizeOf(item)) return kept.volume;
  let volume, fingerprint;
  try {
    if (item.series) {
      const files = await Promise.all(item.series.map(bytesOf));
      fingerprint = one.seriesFingerprint(files);
      volume = lib.Volume.readDicom(files, item.series.map((f) => f.name));
    } else {
      const bytes = await bytesOf(item.file);
      fingerprint = one.fingerprint(bytes);
      volume = lib.Volume.readFile(bytes, item.file.name);
    }
  } catch (e) {
    throw new Error(`${item.name}: ${e.message}`);
  }
  volumes.set(item.name, { size: sizeOf(item), volume, fingerprint });
  for (const [old, v] of volumes) {
    if (volumes.size <= KEEP_VOLUMES) break;
    v.volume.free();
    volumes.delete(old);
  }
  return volume;
}

// Items → the library's inputs (`FitImage`s), the files' bytes as they are.
async function inputsOf(items, progress = () => {}) {
  const inputs = [];
  for (const [k, item] of items.entries()) {
    const input = item.series
      ? { dicom: await Promise.all(item.series.map(bytesOf)), names: item.series.map((f) => f.name) }
      : { bytes: await bytesOf(item.file), name: item.name };
    if (item.slices) input.slices = item.slices;
    inputs.push(input);
    progress({ phase: "read", image: k + 1, images: items.length });
  }
  return inputs;
}

// Runs a library call on an item, naming the item in its error (the kind travels along).
async function named(item, call) {
  try {
    return await call();
  } catch (e) {
    const err = new Error(`${item.name}: ${e.message}`);
    err.kind = e.kind;
    throw err;
  }
}

function need() {
  if (!detector) throw new Error("the engine is not started");
  return detector;
}

// What the page's engine line shows: the backend and the CPU backend's threads (and why one).
let backendLine = null;
let oneThreadWhy = null;
const engineInfo = () => ({
  device: detector.device,
  backend: backendLine && detector.backend === "cpu" ? backendLine : detector.backend,
  threads: detector.threads,
  threadsNote: detector.threads === 1 ? (oneThreadWhy ?? detector.threadsNote) : detector.threadsNote,
  precision: detector.precision,
  precisionNote: detector.precisionNote,
});

const ops = {
  // `threads`: { glue, wasm } of pkg-threads/, or { why } the page cannot run it.
  // `precision`: "f32" or "f16" (Detector.create's option; the library says when it cannot).
  async start({ backend, precision, module, threads }) {
    await (wasmReady ??= init({ module_or_path: module }));
    detector?.free();
    detector = null;
    forgetVolumes();
    lastPicture = null;
    lib = one;
    let line = null; // the backend as the `auto` rule put it, when the CPU is its answer
    oneThreadWhy = threads.why ?? null;
    if (backend !== "gpu" && !threads.why) {
      if (backend === "auto") {
        // The library's `auto` rule (pkg/ sees the WebGPU adapter): keep WebGPU if it picks it.
        const probe = await one.Detector.create("auto", { precision });
        if (probe.device === "cpu") {
          line = probe.backend;
          probe.free();
        } else detector = probe;
      }
      if (!detector) {
        try {
          threaded ??= await loadThreaded(threads);
          detector = await threaded.Detector.create("cpu", { precision });
          lib = threaded;
        } catch (e) {
          oneThreadWhy = `the threaded build did not start: ${e.message}`;
        }
      }
    }
    detector ??= await one.Detector.create(backend, { precision });
    // The page learns from what it scored: keep the embeddings (the library's budget), so
    // learning and scoring again run only the head.
    detector.keepEmbeddings();
    backendLine = line;
    return { ...engineInfo(), webgpu: "gpu" in navigator };
  },

  async loadBackbone({ weights, config }) {
    const bytes = new Uint8Array(await weights.arrayBuffer());
    const configText = config ? await config.text() : undefined;
    const info = await need().loadBackbone(bytes, configText);
    return { ...info, ...engineInfo() };
  },

  async loadModel({ bundle }) {
    return await need().loadModel(new Uint8Array(await bundle.arrayBuffer()));
  },

  // Each item's bytes go to the library as they are: it reads, shrinks, windows and slices them
  // by the same rules as `dino-ar fit`.
  async fit({ images, options }, progress) {
    const det = need();
    // The library reads the options (defaults filled in, every key checked) before any file is.
    one.fitSpec(options);
    const bundle = await det.fit(await inputsOf(images, progress), options, (p) => progress(p));
    return { bundle, transfer: [bundle.buffer] };
  },

  // Go on learning from the loaded model on `images` (items, `slices` for a volume's marked
  // slices): the library's `learn`, from the model's weights.
  async learn({ images, options }, progress) {
    const det = need();
    const bundle = await det.learn(await inputsOf(images, progress), options, (p) => progress(p));
    return { bundle, transfer: [bundle.buffer] };
  },

  // The loaded model's threshold set again by `rule` on normal and anomalous items.
  async calibrate({ normal, anomalous, rule }) {
    const det = need();
    const r = await det.calibrate({ normal: await inputsOf(normal), anomalous: await inputsOf(anomalous), rule });
    return { bundle: r.model, choice: r.choice, transfer: [r.model.buffer] };
  },

  async score({ item }, progress) {
    const det = need();
    if (isVolume(item)) {
      const volume = await volumeOf(item);
      const [info, r] = await named(item, async () => [det.volumeSlices(volume), await det.scoreVolume(volume, (p) => progress(p))]);
      const transfer = [r.anomalyMap.buffer, ...r.slices.map((s) => s.grid.buffer)];
      const { fingerprint } = volumes.get(item.name);
      return { ...r, volume: info, width: info.width, height: info.height, backend: det.backend, fingerprint, transfer };
    }
    const bytes = await bytesOf(item.file);
    const r = await named(item, () => det.scoreFile(bytes));
    // Only the patch grid crosses to the page (the library upsamples it there when it draws).
    return { ...r, backend: det.backend, fingerprint: one.fingerprint(bytes), transfer: [r.grid.buffer] };
  },

  // A picture as the model read it (upright, 8-bit for drawing), for the page to draw. The page
  // asks for the same picture twice in a row (its thumbnail, then the viewer): the last one is
  // kept, so a camera-size file is decoded once for both; each reply gets its own copy.
  async picture({ item }) {
    const key = `${item.name}\n${item.file.size}\n${item.file.lastModified}`;
    if (lastPicture?.key !== key) {
      const img = await named(item, async () => one.decodePicture(await bytesOf(item.file)));
      lastPicture = { key, img };
    }
    const { img } = lastPicture;
    const rgba = img.rgba.slice();
    return { ...img, rgba, transfer: [rgba.buffer] };
  },

  // Slice `n` of a scored volume as the model sees it (grey RGBA), for the page to draw.
  async slice({ item, n }) {
    const volume = await volumeOf(item);
    const img = need().sliceImage(volume, n);
    return { ...img, transfer: [img.rgba.buffer] };
  },

  async explain({ item, slice }) {
    const det = need();
    const e = await named(item, async () => isVolume(item)
      ? await det.explainSlice(await volumeOf(item), slice)
      : await det.explainFile(await bytesOf(item.file)));
    return e ? { explanation: e, transfer: [e.actual.buffer, e.predicted.buffer] } : { explanation: null };
  },

  // Test hook (tests/js/threads.mjs), threaded build only: a pool thread panics while this worker
  // waits for it, as a bug would; the page must reject the call and start a fresh worker.
  panicForTests() {
    if (!lib.panicOnPoolThreadForTests) throw new Error("not the threaded build");
    lib.panicOnPoolThreadForTests();
  },
};

// One request at a time, in the order they came: a load must not start while `start` is still
// creating the detector.
let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  // The lock this worker holds for as long as it lives (www/engine.js, `watchLife`): outside the
  // queue, and never released — the browser lets it go when the worker ends.
  if (data.op === "hold") {
    navigator.locks.request(data.lock, () => {
      self.postMessage({ held: data.lock });
      return new Promise(() => {});
    });
    return;
  }
  queue = queue.then(() => handle(data));
};

async function handle({ id, op, ...args }) {
  const progress = (p) => self.postMessage({ id, progress: p });
  try {
    if (!ops[op]) throw new Error(`unknown request ${op}`);
    const { transfer = [], ...result } = (await ops[op](args, progress)) ?? {};
    self.postMessage({ id, result }, transfer);
  } catch (e) {
    // A trap inside wasm (a bug, or memory exhausted) leaves the module unusable: say so, and the
    // page starts a fresh worker.
    const fatal = e instanceof WebAssembly.RuntimeError;
    const error = fatal ? `internal error in the engine (${e.message}); it was restarted` : (e?.message ?? String(e));
    self.postMessage({ id, error, kind: e?.kind, fatal });
  }
}
