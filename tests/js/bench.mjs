// In-browser benchmark (BENCHMARKS.md, tables 3 and 5): dino-ar (pkg/) vs onnxruntime-web on the
// same random ViT-S/16, same input, same headless Chromium; then AR-head training in the page.
//
//   node tests/js/bench.mjs [--size 224] [--runs 5] [--webgpu] [--train 16] [--threads N] [--model DIR] [--onnx FILE]
//
// Needs pkg/ (tools/serve.sh --release or wasm-pack build --release --target web --out-dir pkg),
// tests/fixtures/full (make_fixtures.py --full) and its ONNX export (tools/bench/export_onnx.py).
// By default both run single-threaded on the CPU. `--threads N` serves the page cross-origin
// isolated and adds dino-ar's threaded build (pkg-threads/, tools/build-threads.sh) on N threads,
// with onnxruntime-web's wasm EP on the same N (one-thread dino-ar stays as the first row).
// `--webgpu` adds both WebGPU paths (slow on a software adapter). `--profile` (with `--webgpu`)
// runs one more WebGPU forward of each engine with every dispatch in its own queue submission and
// prints where the time goes, kernel by kernel (see `profiler` below). `--cpu-profile FILE`
// records the page's JavaScript and wasm with Chromium's sampling profiler (FILE.cpuprofile, for
// DevTools) and prints the functions that take the most time on the page's own thread.
import { createReadStream, existsSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { launch, root } from "./harness.mjs";

const { values: opt } = parseArgs({
  options: {
    size: { type: "string", default: "224" },
    runs: { type: "string", default: "5" },
    webgpu: { type: "boolean", default: false },
    train: { type: "string", default: "0" },
    model: { type: "string", default: "tests/fixtures/full" },
    onnx: { type: "string", default: "model.onnx" },
    threads: { type: "string", default: "0" },
    profile: { type: "boolean", default: false },
    "cpu-profile": { type: "string" },
  },
});
const threads = Number(opt.threads);
if (!Number.isInteger(threads) || threads < 0) throw new Error(`--threads: ${opt.threads} is not a thread count`);
const here = dirname(fileURLToPath(import.meta.url));
// Say what is missing and how to make it, rather than fail inside the page on a 404.
const needs = [
  [join(root, "pkg", "dino_ar.js"), "tools/serve.sh --release (or wasm-pack build --release --target web --out-dir pkg)"],
  [join(root, opt.model, "hf.safetensors"), "python tools/fixtures/make_fixtures.py --full"],
  [join(root, opt.model, "config.json"), "python tools/fixtures/make_fixtures.py --full"],
  [join(root, opt.model, opt.onnx), `python tools/bench/export_onnx.py ${opt.model} --size ${opt.size}`],
  [join(here, "node_modules", "onnxruntime-web"), "(cd tests/js && npm ci)"],
  ...(threads ? [[join(root, "pkg-threads", "dino_ar.js"), "tools/build-threads.sh --release"]] : []),
];
const missing = needs.filter(([file]) => !existsSync(file));
if (missing.length) {
  for (const [file, make] of missing) console.error(`missing ${file}: make it with ${make}`);
  process.exit(1);
}
const types = { ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
// pkg/, onnxruntime-web's dist/ and the model files under one origin (a plain file server: the
// 88 MB weights are too big for Playwright's request interception).
const mounts = [["/pkg/", join(root, "pkg")], ["/pkg-threads/", join(root, "pkg-threads")], ["/bench/ort/", join(here, "node_modules/onnxruntime-web/dist")],
  ["/bench/", join(root, opt.model)]];
// Cross-origin isolation (shared memory, hence threads for both engines) with --threads.
const isolation = threads ? { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" } : {};
// The threaded build runs in a worker, as the page runs it: there a thread waiting for the pool
// sleeps, while the page's own thread would spin beside the pool's threads.
const THREADS_WORKER = `
let det, memory;
self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    let result = null;
    if (op === "create") {
      const par = await import("/pkg-threads/dino_ar.js");
      memory = (await par.default()).memory;
      det = await par.Detector.create("cpu", { threads: args.threads });
      result = { threads: det.threads };
    } else if (op === "memory") result = memory.buffer.byteLength / 2 ** 20;
    else if (op === "fit") result = await det.fit(args.imgs, args.options, (p) => self.postMessage({ id, progress: p }));
    else if (op === "free") det.free();
    else result = await det[op](...args);
    self.postMessage({ id, result });
  } catch (e) {
    self.postMessage({ id, error: String(e?.message ?? e) });
  }
};`;
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (path === "/bench/threads-worker.mjs") {
    return res.writeHead(200, { "content-type": "text/javascript", ...isolation }).end(THREADS_WORKER);
  }
  if (path === "/bench.html") return res.writeHead(200, { "content-type": "text/html", ...isolation }).end("<!doctype html><title>bench</title><link rel=\"icon\" href=\"data:,\">");
  const mount = mounts.find(([prefix]) => path.startsWith(prefix));
  const file = mount && join(mount[1], path.slice(mount[0].length));
  if (!file || !file.startsWith(mount[1]) || !existsSync(file) || !statSync(file).isFile()) return res.writeHead(404).end();
  res.writeHead(200, { "content-type": types[file.slice(file.lastIndexOf("."))] ?? "application/octet-stream", ...isolation });
  createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://localhost:${server.address().port}`;

const browser = await launch();
let code = 0;
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error(`page: ${m.text()}`); });
  await page.goto(`${origin}/bench.html`);
  const cdp = opt["cpu-profile"] ? await page.context().newCDPSession(page) : null;
  if (cdp) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 1000 });
    await cdp.send("Profiler.start");
  }
  const result = await page.evaluate(async ({ size, runs, webgpu, train, onnxName, threads, profile }) => {
    // Where a WebGPU forward spends its time, kernel by kernel, without timestamp queries (which a
    // page cannot count on): while on, every compute dispatch and buffer copy an encoder records is
    // held back and replayed in order, each in its own queue submission, and the time between the
    // completion of one submission and the next (the queue runs them one after the other) is that
    // dispatch's. Kernels are named by their pipeline's label (cubecl: the kernel's entry point;
    // onnxruntime-web: the program's name). One submission per dispatch adds overhead, so read
    // the shares, not the sum.
    function makeProfiler() {
      const E = GPUCommandEncoder.prototype, P = GPUComputePassEncoder.prototype, Q = GPUQueue.prototype;
      const orig = { begin: E.beginComputePass, finish: E.finish, create: GPUDevice.prototype.createCommandEncoder,
        setPipeline: P.setPipeline, setBindGroup: P.setBindGroup, submit: Q.submit };
      const st = { on: false, deviceOf: new WeakMap(), opsOf: new WeakMap(), passOf: new WeakMap(), cbOps: new WeakMap(), done: [] };
      GPUDevice.prototype.createCommandEncoder = function (...a) {
        const enc = orig.create.apply(this, a);
        st.deviceOf.set(enc, this);
        st.opsOf.set(enc, []);
        return enc;
      };
      E.beginComputePass = function (...a) {
        const pass = orig.begin.apply(this, a);
        st.passOf.set(pass, { enc: this, pipeline: null, groups: [] });
        return pass;
      };
      P.setPipeline = function (p) { const s = st.passOf.get(this); if (s) s.pipeline = p; return orig.setPipeline.call(this, p); };
      P.setBindGroup = function (...a) { const s = st.passOf.get(this); if (s) s.groups[a[0]] = a; return orig.setBindGroup.apply(this, a); };
      // Direct and indirect dispatches alike are held back, so that the replay keeps their order.
      for (const name of ["dispatchWorkgroups", "dispatchWorkgroupsIndirect"]) {
        const f = P[name];
        if (!f) continue;
        P[name] = function (...a) {
          const s = st.passOf.get(this);
          if (!st.on || !s) return f.apply(this, a);
          const size = name === "dispatchWorkgroups" ? a.join("x") : "indirect";
          st.opsOf.get(s.enc).push({ dispatch: f, pipeline: s.pipeline, groups: s.groups.filter(Boolean).map((g) => [...g]), args: a, size });
        };
      }
      for (const name of ["copyBufferToBuffer", "clearBuffer"]) {
        const f = E[name];
        E[name] = function (...a) {
          if (!st.on || !st.opsOf.has(this)) return f.apply(this, a);
          st.opsOf.get(this).push({ name, f, args: a });
        };
      }
      E.finish = function (...a) {
        const cb = orig.finish.apply(this, a);
        st.cbOps.set(cb, { device: st.deviceOf.get(this), ops: st.opsOf.get(this) ?? [] });
        return cb;
      };
      Q.submit = function (cbs) {
        const r = orig.submit.call(this, cbs);
        if (!st.on) return r;
        for (const cb of cbs) {
          const { device, ops } = st.cbOps.get(cb) ?? { ops: [] };
          for (const op of ops) {
            const enc = orig.create.call(device);
            if (op.f) op.f.apply(enc, op.args);
            else {
              const pass = orig.begin.call(enc);
              orig.setPipeline.call(pass, op.pipeline);
              for (const g of op.groups) orig.setBindGroup.apply(pass, g);
              op.dispatch.apply(pass, op.args);
              pass.end();
            }
            const queued = performance.now();
            orig.submit.call(this, [orig.finish.call(enc)]);
            const label = op.f ? op.name : (op.pipeline?.label || "(unlabelled)");
            const size = op.f ? "" : op.size;
            st.done.push(this.onSubmittedWorkDone().then(() => ({ label, size, queued, end: performance.now() })));
          }
        }
        return r;
      };
      return {
        async run(f) {
          st.on = true;
          st.done = [];
          try { await f(); } finally { st.on = false; }
          const ends = await Promise.all(st.done);
          const by = new Map();
          let prev = 0, total = 0;
          for (const e of ends) {
            const ms = e.end - Math.max(prev, e.queued);
            prev = e.end;
            total += ms;
            const key = `${e.label} [${e.size}]`;
            const k = by.get(key) ?? { kernel: key, n: 0, ms: 0 };
            k.n++;
            k.ms += ms;
            by.set(key, k);
          }
          return { total, kernels: [...by.values()].sort((a, b) => b.ms - a.ms) };
        },
      };
    }
    // WebGPU work counted where it leaves JavaScript: compute dispatches, queue submissions and
    // buffer read-backs (mapAsync), per forward pass, for both engines.
    const counts = { dispatch: 0, submit: 0, readback: 0 };
    const count = (proto, name, key) => {
      const f = proto?.[name];
      if (f) proto[name] = function (...a) { counts[key]++; return f.apply(this, a); };
    };
    count(self.GPUComputePassEncoder?.prototype, "dispatchWorkgroups", "dispatch");
    count(self.GPUComputePassEncoder?.prototype, "dispatchWorkgroupsIndirect", "dispatch");
    count(self.GPUQueue?.prototype, "submit", "submit");
    count(self.GPUBuffer?.prototype, "mapAsync", "readback");
    const profiler = profile ? makeProfiler() : null;
    const { default: init, Detector } = await import("/pkg/dino_ar.js");
    const wasm = await init();
    // A wasm memory only grows, so its size is the high-water mark of everything the CPU backend
    // allocated (weights, activations, scratch); WebGPU buffers live outside it.
    const wasmMB = () => wasm.memory.buffer.byteLength / 2 ** 20;
    const ort = await import("/bench/ort/ort.webgpu.min.mjs");
    ort.env.wasm.numThreads = Math.max(1, threads);
    if (threads && !crossOriginIsolated) throw new Error("--threads: the bench page is not cross-origin isolated");
    // pkg-threads/ in a worker, behind the few Detector methods used here.
    let threaded = null;
    if (threads) {
      const worker = new Worker("/bench/threads-worker.mjs", { type: "module" });
      const waiting = new Map();
      let next = 0;
      worker.onmessage = ({ data }) => {
        const w = waiting.get(data.id);
        if (data.progress) return w.progress?.(data.progress);
        waiting.delete(data.id);
        if (data.error !== undefined) w.reject(new Error(data.error));
        else w.resolve(data.result);
      };
      const call = (op, args, progress) => new Promise((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject, progress });
        worker.postMessage({ id, op, args });
      });
      threaded = {
        create: async (n) => {
          const { threads: count } = await call("create", { threads: n });
          return {
            threads: count,
            loadBackbone: (w, c) => call("loadBackbone", [w, c]),
            embedPixels: (p, h, w) => call("embedPixels", [p, h, w]),
            fit: (imgs, options, progress) => call("fit", { imgs, options }, progress),
            free: () => call("free").then(() => worker.terminate()),
          };
        },
        memory: () => call("memory"),
      };
    }
    ort.env.wasm.wasmPaths = "/bench/ort/";
    const bytes = async (p) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const weights = await bytes("/bench/hf.safetensors");
    const config = await (await fetch("/bench/config.json")).text();
    const onnx = await bytes(`/bench/${onnxName}`);
    let seed = 1;
    const pixels = Float32Array.from({ length: 3 * size * size }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 4 - 2);
    const stats = (ms) => {
      const s = [...ms].sort((a, b) => a - b);
      return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
    };
    async function timed(f) {
      const t0 = performance.now();
      const first = await f();
      const firstMs = performance.now() - t0;
      const ms = [];
      let out = first;
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        out = await f();
        ms.push(performance.now() - t);
      }
      const before = { ...counts };
      await f();
      const work = Object.fromEntries(Object.keys(counts).map((k) => [k, counts[k] - before[k]]));
      return { first: firstMs, ...stats(ms), out, work };
    }
    const rows = [];
    let ref = null;
    const compare = (tokens) => {
      // tokens: [D, gh, gw] channel-major patch grid; ref: the same from the first engine.
      if (!ref) { ref = tokens; return 0; }
      let m = 0;
      for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i] - tokens[i]));
      return m;
    };
    const fromOrt = (t) => {
      // last_hidden_state [1, T, D] → patch grid [D, g, g] (drop CLS + registers).
      const [, T, D] = t.dims;
      const g = size / 16, skip = T - g * g;
      const out = new Float32Array(D * g * g);
      for (let p = 0; p < g * g; p++) for (let d = 0; d < D; d++) out[d * g * g + p] = t.data[(skip + p) * D + d];
      return out;
    };
    const engines = [["cpu", "wasm"], ...(webgpu ? [["webgpu", "webgpu"]] : [])];
    for (const [ours, theirs] of engines) {
      const memStart = wasmMB();
      const det = await Detector.create(ours);
      const tLoad = performance.now();
      await det.loadBackbone(weights, config);
      const loadMs = performance.now() - tLoad;
      const memLoaded = wasmMB();
      const a = await timed(() => det.embedPixels(pixels, size, size));
      const engine = `dino-ar ${det.backend.split(":")[0]}`;
      rows.push({ engine, loadMs, ...a, diff: compare(a.out.data), out: undefined });
      rows.push({ engine: `${engine}: memory`, memStart, memLoaded, memPeak: wasmMB() });
      if (profiler && ours === "webgpu") rows.push({ engine, profile: await profiler.run(() => det.embedPixels(pixels, size, size)) });
      let pdet = null;
      if (threaded && ours === "cpu") {
        // The threaded build on `threads` threads, the same model and input.
        pdet = await threaded.create(threads);
        const m0 = await threaded.memory();
        const t = performance.now();
        await pdet.loadBackbone(weights, config);
        const pLoad = performance.now() - t;
        const m1 = await threaded.memory();
        const p = await timed(() => pdet.embedPixels(pixels, size, size));
        const name = `dino-ar cpu ${pdet.threads} threads`;
        rows.push({ engine: name, loadMs: pLoad, ...p, diff: compare(p.out.data), out: undefined });
        rows.push({ engine: `${name}: memory`, memStart: m0, memLoaded: m1, memPeak: await threaded.memory() });
      }
      const tSess = performance.now();
      const session = await ort.InferenceSession.create(onnx, { executionProviders: [theirs] });
      const sessMs = performance.now() - tSess;
      const input = new ort.Tensor("float32", pixels, [1, 3, size, size]);
      const b = await timed(async () => (await session.run({ pixel_values: input })).last_hidden_state);
      rows.push({ engine: `onnxruntime-web ${theirs}${theirs === "wasm" && threads ? ` ${threads} threads` : ""}`, loadMs: sessMs, ...b, diff: compare(fromOrt(b.out)), out: undefined });
      if (profiler && theirs === "webgpu") {
        rows.push({ engine: "onnxruntime-web webgpu", profile: await profiler.run(async () => (await session.run({ pixel_values: input })).last_hidden_state.data) });
      }
      await session.release();
      if (ours === "webgpu") {
        // WebGPU work per training step: 8 images at 64² (a step's kernels do not depend on the
        // grid size, so a 4×4 grid counts the same work), batch 2, one epoch; counted from the
        // end of embedding to the last step's progress report (so the epoch's set-up is included).
        const imgs = Array.from({ length: 8 }, (_, k) => {
          const rgba = new Uint8Array(64 * 64 * 4);
          for (let i = 0; i < rgba.length; i++) rgba[i] = (i * 2654435761 + k * 97) % 251;
          return { rgba, width: 64, height: 64 };
        });
        let from = null, to = null, steps = 0;
        await det.fit(imgs, { epochs: 1, size: 64, batchSize: 2, holdout: 0.25 }, (p) => {
          if (p.phase === "embed" && p.image === p.images) from = { ...counts };
          if (p.phase === "train" && p.step === p.steps) { to = { ...counts }; steps = p.steps; }
        });
        const work = Object.fromEntries(Object.keys(counts).map((k) => [k, (to[k] - from[k]) / steps]));
        rows.push({ engine: `${engine}: training step`, trainWork: work, steps });
      }
      for (const [label, d] of [["dino-ar cpu: fit", det], ...(pdet ? [[`dino-ar cpu ${pdet.threads} threads: fit`, pdet]] : [])]) {
        if (!(train > 0 && ours === "cpu")) break;
        // AR-head training in the page: `train` images at this size, 3 epochs; seconds per epoch.
        const imgs = Array.from({ length: train }, (_, k) => {
          const rgba = new Uint8Array(size * size * 4);
          for (let i = 0; i < rgba.length; i++) rgba[i] = (i * 2654435761 + k * 97) % 251;
          return { rgba, width: size, height: size };
        });
        const marks = [];
        const t0 = performance.now();
        await d.fit(imgs, { epochs: 3, size, holdout: 0.1 }, (p) => {
          if (p.phase === "embed" && p.image === p.images) marks.push(["embedded", performance.now()]);
          if (p.phase === "train" && p.step === p.steps) marks.push([`epoch ${p.epoch}`, performance.now()]);
        });
        const ends = marks.map(([, t]) => t);
        const epochs = ends.slice(1).map((t, i) => t - ends[i]);
        rows.push({ engine: label, embedMs: ends[0] - t0, epochMs: epochs, images: train });
      }
      det.free();
      await pdet?.free();
    }
    return rows;
  }, { size: Number(opt.size), runs: Number(opt.runs), webgpu: opt.webgpu, train: Number(opt.train), onnxName: opt.onnx, threads, profile: opt.profile });
  if (cdp) {
    const { profile } = await cdp.send("Profiler.stop");
    writeFileSync(opt["cpu-profile"], JSON.stringify(profile));
    // Self time per function: each sample charges its time to the node it landed in.
    const self = new Map(), byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const f = byId.get(id).callFrame, key = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}`;
      self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
    });
    const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 40);
    console.log(`# page thread, self time (ms), written to ${opt["cpu-profile"]}:`);
    for (const [k, ms] of top) console.log(`#   ${ms.toFixed(0).padStart(7)}  ${k}`);
  }
  console.log(`# ${opt.model} (random weights) at ${opt.size}², one image, headless Chromium; ms: first run, then median, min, max of ${opt.runs}`);
  console.log(`${"engine".padEnd(30)} ${"load_ms".padStart(9)} ${"first_ms".padStart(9)} ${"median_ms".padStart(10)} ${"min_ms".padStart(9)} ${"max_ms".padStart(9)}  max|diff| vs first row`);
  for (const r of result) {
    if (r.profile) {
      const { total, kernels } = r.profile;
      console.log(`# profile of ${r.engine}, one forward, a submission per dispatch: ${total.toFixed(0)} ms in ${kernels.reduce((n, k) => n + k.n, 0)} dispatches and copies`);
      for (const k of kernels.slice(0, 25)) {
        console.log(`#   ${(100 * k.ms / total).toFixed(1).padStart(5)} % ${k.ms.toFixed(0).padStart(7)} ms ${String(k.n).padStart(4)}×  ${k.kernel}`);
      }
      continue;
    }
    if (r.epochMs) {
      console.log(`# page training (${r.engine.replace(": fit", "")}): ${r.images} images at ${opt.size}², embedding ${(r.embedMs / 1000).toFixed(1)} s, epochs ${r.epochMs.map((m) => (m / 1000).toFixed(2)).join(", ")} s`);
      continue;
    }
    if (r.trainWork) {
      const w = r.trainWork, f = (x) => x.toFixed(1);
      console.log(`# ${r.engine.replace(": training step", "")} per training step (batch 2, mean of ${r.steps}): ${f(w.dispatch)} compute dispatches, ${f(w.submit)} queue submissions, ${f(w.readback)} buffer read-backs (the loss)`);
      continue;
    }
    if (r.memPeak !== undefined) {
      const mb = (x) => `${x.toFixed(0)} MB`;
      console.log(`# ${r.engine.replace(": memory", "")}: wasm memory ${mb(r.memStart)} at start, ${mb(r.memLoaded)} with the backbone loaded, ${mb(r.memPeak)} peak after ${Number(opt.runs) + 1} forwards`);
      continue;
    }
    const f = (x) => x.toFixed(1).padStart(9);
    console.log(`${r.engine.padEnd(30)} ${f(r.loadMs)} ${f(r.first)} ${r.median.toFixed(1).padStart(10)} ${f(r.min)} ${f(r.max)}  ${r.diff.toExponential(1)}`);
    if (r.work.dispatch + r.work.readback > 0) {
      console.log(`# ${r.engine} per forward: ${r.work.dispatch} compute dispatches, ${r.work.submit} queue submissions, ${r.work.readback} buffer read-backs`);
    }
  }
  // Both engines run the same model on the same input: a large difference means one is wrong.
  const worst = Math.max(...result.filter((r) => r.diff !== undefined).map((r) => r.diff));
  if (!(worst <= 1e-3)) {
    console.error(`FAIL the engines disagree: max |diff| ${worst}`);
    code = 1;
  }
  const med = (name) => result.find((r) => r.engine === name)?.median;
  if (threads) {
    const ours = result.find((r) => /^dino-ar cpu \d+ threads$/.test(r.engine));
    console.log(`dino_ar_threads_over_ort_wasm_threads=${(ours.median / med(`onnxruntime-web wasm ${threads} threads`)).toFixed(2)}`);
    console.log(`dino_ar_threads_over_one_thread=${(ours.median / med("dino-ar cpu")).toFixed(2)}`);
  } else console.log(`dino_ar_over_ort_wasm=${(med("dino-ar cpu") / med("onnxruntime-web wasm")).toFixed(2)}`);
  if (opt.webgpu) console.log(`dino_ar_over_ort_webgpu=${(med("dino-ar webgpu") / med("onnxruntime-web webgpu")).toFixed(2)}`);
} catch (e) {
  code = 1;
  console.error(e);
} finally {
  await browser.close();
  server.close();
}
process.exit(code);
