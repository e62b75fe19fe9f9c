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

// Images for training are decoded to at most this many times the model's side (keeping the
// aspect ratio) before they are handed to Rust: the backbone only sees the model size, and a
// folder of camera images at full size would not fit in the tab's memory.
const FIT_DECODE_FACTOR = 2;

async function decode(blob, name, maxSide = 0) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
      imageOrientation: "from-image",
    });
  } catch {
    throw new Error(`${name}: not an image this browser can decode (the page reads PNG, JPEG, WebP and BMP)`);
  }
  let { width, height } = bitmap;
  if (maxSide > 0 && Math.max(width, height) > maxSide) {
    const s = maxSide / Math.max(width, height);
    const [w, h] = [Math.max(1, Math.round(width * s)), Math.max(1, Math.round(height * s))];
    bitmap.close();
    bitmap = await createImageBitmap(blob, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
      imageOrientation: "from-image",
      resizeWidth: w,
      resizeHeight: h,
      resizeQuality: "high",
    });
    [width, height] = [w, h];
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
  return { rgba, width, height };
}

// A volume: a NIfTI or DICOM file (known by its name: the page's picker offers .nii, .nii.gz and
// .dcm), or a DICOM series the page grouped ({ series: File[] }).
const isVolume = (name, source) => /\.(nii|nii\.gz|dcm)$/i.test(name) || Array.isArray(source?.series);

// The volumes scored last, read once each: the page asks for their slices while it shows them.
const volumes = new Map(); // name → { size, volume }
const KEEP_VOLUMES = 3;
const sizeOf = (source) => (source.series ? source.series.reduce((n, f) => n + f.size, 0) : source.size);
function forgetVolumes() {
  for (const v of volumes.values()) v.volume.free();
  volumes.clear();
}
async function volumeOf(name, source) {
  const kept = volumes.get(name);
  if (kept && kept.size === sizeOf(source)) return kept.volume;
  const bytes = async (b) => new Uint8Array(await b.arrayBuffer());
  let volume;
  try {
    const dicom = source.series ?? (/\.dcm$/i.test(name) ? [source] : null);
    volume = dicom
      ? lib.Volume.readDicom(await Promise.all(dicom.map(bytes)), dicom.map((f) => f.name ?? name))
      : lib.Volume.read(await bytes(source));
  } catch (e) {
    throw new Error(`${name}: ${e.message}`);
  }
  volumes.set(name, { size: sizeOf(source), volume });
  for (const [old, v] of volumes) {
    if (volumes.size <= KEEP_VOLUMES) break;
    v.volume.free();
    volumes.delete(old);
  }
  return volume;
}

function need() {
  if (!detector) throw new Error("the engine is not started");
  return detector;
}

// What the page's engine line shows: the backend and the CPU backend's threads (and why one).
let backendLine = null;
let oneThreadWhy = null;
const engineInfo = () => ({
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
    lib = one;
    let line = null; // the backend as the `auto` rule put it, when the CPU is its answer
    oneThreadWhy = threads.why ?? null;
    if (backend !== "webgpu" && !threads.why) {
      if (backend === "auto") {
        // The library's `auto` rule (pkg/ sees the WebGPU adapter): keep WebGPU if it picks it.
        const probe = await one.Detector.create("auto", { precision });
        if (/^cpu/.test(probe.backend)) {
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

  async fit({ images, options }, progress) {
    const det = need();
    // The library reads the options (defaults filled in, every key checked) before any image is.
    const spec = one.fitSpec(options);
    const maxSide = FIT_DECODE_FACTOR * Math.max(...spec.size);
    const decoded = [];
    const bytes = async (b) => new Uint8Array(await b.arrayBuffer());
    for (const [k, { name, blob, series }] of images.entries()) {
      // Volumes go to the library as files: it cuts them through the fit's window and plane.
      if (series) decoded.push({ dicom: await Promise.all(series.map(bytes)), names: series.map((f) => f.name) });
      else if (/\.dcm$/i.test(name)) decoded.push({ dicom: [await bytes(blob)], names: [name] });
      else if (/\.nii(\.gz)?$/i.test(name)) decoded.push({ nifti: await bytes(blob), name });
      else decoded.push(await decode(blob, name, maxSide));
      progress({ phase: "decode", image: k + 1, images: images.length });
    }
    const bundle = await det.fit(decoded, options, (p) => progress(p));
    return { bundle, transfer: [bundle.buffer] };
  },

  async score({ name, blob }, progress) {
    const det = need();
    if (isVolume(name, blob)) {
      const volume = await volumeOf(name, blob);
      let info, r;
      try {
        info = det.volumeSlices(volume);
        r = await det.scoreVolume(volume, (p) => progress(p));
      } catch (e) {
        throw new Error(`${name}: ${e.message}`);
      }
      const transfer = [r.anomalyMap.buffer, ...r.slices.map((s) => s.grid.buffer)];
      return { ...r, volume: info, width: info.width, height: info.height, backend: det.backend, transfer };
    }
    const img = await decode(blob, name);
    let r;
    try {
      r = await det.score(img.rgba, img.width, img.height);
    } catch (e) {
      throw new Error(`${name}: ${e.message}`);
    }
    // Only the patch grid crosses to the page (the library upsamples it there when it draws).
    return { ...r, backend: det.backend, transfer: [r.grid.buffer] };
  },

  // Slice `n` of a scored volume as the model sees it (grey RGBA), for the page to draw.
  async slice({ name, blob, n }) {
    const volume = await volumeOf(name, blob);
    const img = need().sliceImage(volume, n);
    return { ...img, transfer: [img.rgba.buffer] };
  },

  async explain({ name, blob, slice }) {
    let e;
    try {
      if (isVolume(name, blob)) {
        e = await need().explainSlice(await volumeOf(name, blob), slice);
      } else {
        const img = await decode(blob, name);
        e = await need().explain(img.rgba, img.width, img.height);
      }
    } catch (err) {
      throw new Error(`${name}: ${err.message}`);
    }
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
    self.postMessage({ id, error, fatal });
  }
}
