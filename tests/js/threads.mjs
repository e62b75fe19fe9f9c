// The threaded build (pkg-threads/) in headless Chromium, beside the one-thread build (pkg/):
//   1. served with COOP/COEP (tools/serve.py): the page is cross-origin isolated and runs every
//      core; both builds give the same embeddings and maps (within 1e-5); `threads` is validated;
//   2. served without them and without service workers: the page runs one thread and says why;
//   3. served without them, as a static host: the page isolates itself (its own service worker)
//      and runs every core again.
// Needs pkg/ and pkg-threads/ (tools/test.sh builds both with --dev).
import { launch, root, serve } from "./harness.mjs";
import { existsSync } from "node:fs";
import { join } from "node:path";

for (const dir of ["pkg", "pkg-threads"]) {
  if (!existsSync(join(root, dir, "dino_ar_bg.wasm"))) {
    console.error(`missing ${dir}/: build it (${dir === "pkg" ? "wasm-pack build --dev --target web --out-dir pkg" : "tools/build-threads.sh --dev"})`);
    process.exit(1);
  }
}

let failed = false;
const check = (ok, what) => {
  if (!ok) failed = true;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
};
const MINUTE = 60_000;
const browser = await launch();

// Opens the page on a fresh server and context → { page, line, stop }.
async function open({ isolation = true, serviceWorkers = "allow" } = {}) {
  const server = await serve({ isolation });
  const context = await browser.newContext({ serviceWorkers });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  try {
    await page.goto(`${server.origin}/`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 3 * MINUTE });
  } catch (e) {
    server.stop();
    throw new Error(`the page did not get ready (${e.message.split("\n")[0]}); its errors: ${errors.join("; ") || "none"}`);
  }
  const line = await page.locator("#backend-status").innerText();
  const state = await page.evaluate(() => ({ isolated: globalThis.crossOriginIsolated, cores: navigator.hardwareConcurrency }));
  return { page, line, ...state, errors, stop: async () => { await context.close(); server.stop(); } };
}

try {
  // 1. Isolated by the server's headers.
  const a = await open();
  console.log(`     engine line: ${a.line}`);
  check(a.isolated, "tools/serve.py's COOP/COEP make the page cross-origin isolated");
  const many = `${a.cores} thread${a.cores === 1 ? "" : "s"}`;
  check(a.line.includes(`· ${many}`) && !a.line.includes("not cross-origin"), `the page runs the CPU backend on every core: "${a.line}"`);
  const r = await a.page.evaluate(async () => {
    const err = async (f) => { try { await f(); return "no error"; } catch (e) { return e.message; } };
    const one = await import("./pkg/dino_ar.js");
    await one.default();
    const par = await import("./pkg-threads/dino_ar.js");
    await par.default();
    const out = { threadedBuild: [one.threadedBuild(), par.threadedBuild()] };
    // Bad limits are refused by name before the pool starts.
    for (const bad of [0, -1, 1.5, "2", 1e9 + 0.5]) out[`bad ${JSON.stringify(bad)}`] = await err(() => par.Detector.create("cpu", { threads: bad }));
    out.unknownKey = await err(() => par.Detector.create("cpu", { thread: 2 }));
    out.webgpu = await err(() => par.Detector.create("webgpu"));
    // The first detector starts the pool; more than the browser offers is clamped, and says so.
    const det = await par.Detector.create("cpu", { threads: 64 });
    out.clamped = { threads: det.threads, note: det.threadsNote ?? null };
    out.resize = await err(() => par.Detector.create("cpu", { threads: det.threads === 1 ? 2 : 1 }));
    const again = await par.Detector.create("cpu");
    out.shared = again.threads;
    again.free();
    const single = await one.Detector.create("cpu", { threads: 4 });
    out.single = { threads: single.threads, note: single.threadsNote ?? null };
    // The same ViT-S/16 (random weights) on one thread and on all: the same embeddings.
    const weights = one.randomBackbone({ seed: 3 });
    await det.loadBackbone(weights);
    await single.loadBackbone(weights);
    // (Timings belong to tests/js/bench.mjs: here the page's own thread spins while it waits for
    // the pool, which a worker — where the page runs the library — does not.)
    const [h, w] = [224, 224];
    const pixels = new Float32Array(3 * h * w).map((_, i) => Math.sin(i * 0.37) * 1.5);
    const e1 = await single.embedPixels(pixels, h, w);
    const eN = await det.embedPixels(pixels, h, w);
    let diff = 0, scale = 0;
    for (let i = 0; i < e1.data.length; i++) {
      diff = Math.max(diff, Math.abs(e1.data[i] - eN.data[i]));
      scale = Math.max(scale, Math.abs(e1.data[i]));
    }
    out.embed = { diff, scale, n: e1.data.length, same: e1.data.length === eN.data.length };
    // The sample's backbone and model: the same anomaly maps on one thread and on all.
    const get = async (p) => new Uint8Array(await (await fetch(`./sample/${p}`)).arrayBuffer());
    const manifest = await (await fetch("./sample/manifest.json")).json();
    const config = await (await fetch(`./sample/${manifest.backbone.config}`)).text();
    for (const d of [single, det]) {
      await d.loadBackbone(await get(manifest.backbone.weights), config);
      await d.loadModel(await get(manifest.model));
    }
    const rgba = async (p) => {
      const bitmap = await createImageBitmap(await (await fetch(`./sample/${p}`)).blob());
      const c = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = c.getContext("2d");
      ctx.drawImage(bitmap, 0, 0);
      return { rgba: new Uint8Array(ctx.getImageData(0, 0, c.width, c.height).data.buffer), w: c.width, h: c.height };
    };
    out.maps = [];
    for (const { image } of manifest.test.slice(0, 3)) {
      const img = await rgba(image);
      const s1 = await single.score(img.rgba, img.w, img.h);
      const sN = await det.score(img.rgba, img.w, img.h);
      let d = Math.abs(s1.score - sN.score);
      for (let i = 0; i < s1.grid.length; i++) d = Math.max(d, Math.abs(s1.grid[i] - sN.grid[i]));
      out.maps.push({ image, diff: d, score: s1.score });
    }
    det.free();
    single.free();
    return out;
  });
  check(r.threadedBuild[0] === false && r.threadedBuild[1] === true, "pkg/ is the one-thread build, pkg-threads/ the threaded one");
  for (const bad of [0, -1, 1.5, "2", 1e9 + 0.5]) {
    const m = r[`bad ${JSON.stringify(bad)}`];
    check(/threads/.test(m) && m !== "no error", `threads: ${JSON.stringify(bad)} is refused by name: ${m}`);
  }
  check(/`thread`/.test(r.unknownKey), `a misspelt option is named: ${r.unknownKey}`);
  check(/not in the threaded build/.test(r.webgpu), `the threaded build refuses WebGPU by name: ${r.webgpu}`);
  check(r.clamped.threads === a.cores && /not 64/.test(r.clamped.note ?? ""), `threads: 64 is clamped to the ${a.cores} offered, with a note: ${r.clamped.note}`);
  check(/cannot be resized/.test(r.resize), `a second detector cannot resize the pool: ${r.resize}`);
  check(r.shared === a.cores, `a later detector shares the pool (${r.shared} threads)`);
  check(r.single.threads === 1 && /one-thread build/.test(r.single.note ?? ""), `pkg/ runs one thread and says so: ${r.single.note}`);
  check(r.embed.same && r.embed.diff <= 1e-5 * Math.max(1, r.embed.scale), `embeddings on ${a.cores} threads equal one thread's (max |Δ| ${r.embed.diff.toExponential(2)} over ${r.embed.n} values, largest |value| ${r.embed.scale.toFixed(2)})`);
  for (const m of r.maps) check(m.diff <= 1e-5, `${m.image}: the map and score on ${a.cores} threads equal one thread's (max |Δ| ${m.diff.toExponential(2)})`);
  // A pool thread that panics (a bug): the worker that called the library waits for it forever,
  // so the library announces the panic and the page's engine rejects the call and starts afresh.
  const panic = await a.page.evaluate(async () => {
    const { Engine } = await import("./engine.js");
    const { dino, load, threads } = await import("./library.js");
    const engine = new Engine();
    engine.module = await load();
    engine.threads = threads;
    engine.watch(dino.engineChannel());
    await engine.start("cpu");
    const t = performance.now();
    const error = await engine.call("panicForTests").then(() => "no error", (e) => e.message);
    const seconds = (performance.now() - t) / 1000;
    // The fresh worker works.
    const again = await engine.call("loadBackbone", { weights: new Blob([dino.randomBackbone({ seed: 1, width: 64, layers: 1, mlp: 128 })]), config: null })
      .then((i) => `loaded (${i.backend})`, (e) => e.message);
    engine.worker.terminate();
    return { error, seconds, again };
  });
  a.errors.splice(0, a.errors.length, ...a.errors.filter((e) => !/panicked|test panic|unreachable/.test(e)));
  check(/a test panic on a pool thread/.test(panic.error) && /restarted/.test(panic.error), `a pool thread's panic rejects the call with its message (${panic.seconds.toFixed(1)} s): ${panic.error}`);
  check(/^loaded/.test(panic.again), `and the engine works again: ${panic.again}`);
  // WebGPU keeps working in the isolated page (from pkg/: the threaded build has none).
  await a.page.selectOption("#backend", "gpu");
  await a.page.waitForFunction(() => !/starting/.test(document.querySelector("#backend-status").textContent), null, { timeout: 2 * MINUTE });
  const gpuLine = await a.page.locator("#backend-status").innerText();
  check(/^webgpu: /.test(gpuLine) && await a.page.locator("#error").isHidden(), `WebGPU runs in the isolated page: "${gpuLine}"`);
  check(a.errors.length === 0, `no page errors (${a.errors.join("; ") || "none"})`);
  const isolatedScore = r.maps[0].score;
  await a.stop();

  // 2. No isolation (a host without the headers, service workers refused): one thread, said so.
  const b = await open({ isolation: false, serviceWorkers: "block" });
  console.log(`     engine line: ${b.line}`);
  check(!b.isolated, "without COOP/COEP and service workers the page is not isolated");
  check(/· 1 thread \(the page is not cross-origin isolated\)/.test(b.line), `the page falls back to one thread and says why: "${b.line}"`);
  // The sample end to end on the page: it scores as in the isolated page.
  await b.page.click("#sample-run");
  const tests = await b.page.evaluate(async () => (await (await fetch("./sample/manifest.json")).json()).test.length);
  await b.page.waitForFunction((n) => document.querySelector("#score-status").textContent.includes(`${n} images scored`), tests, { timeout: 5 * MINUTE });
  check(await b.page.locator("#error").isHidden(), "the sample runs on one thread without an error");
  check(b.errors.length === 0, `no page errors without isolation (${b.errors.join("; ") || "none"})`);
  console.log(`     (one-thread score of the first test image in the isolated page: ${isolatedScore.toFixed(6)})`);
  await b.stop();

  // 3. A static host without the headers: the page's own service worker isolates it.
  const c = await open({ isolation: false });
  console.log(`     engine line: ${c.line}`);
  check(c.isolated, "on a host without the headers the page isolates itself (www/isolate-sw.js)");
  check(c.line.includes(`· ${many}`), `and runs every core: "${c.line}"`);
  check(c.errors.length === 0, `no page errors (${c.errors.join("; ") || "none"})`);
  await c.stop();
} catch (e) {
  failed = true;
  console.error(`FAIL ${e.stack ?? e}`);
} finally {
  await browser.close();
}
if (failed) process.exit(1);
console.log("threads: all checks passed");
