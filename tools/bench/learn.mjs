// The screening loop's cost on the page's CPU path (BENCHMARKS §8): a model fit on N normals,
// a batch of 30 scored (the embeddings kept, as the page keeps them), then *learning from 8
// marked images* (with the model's normal set, as the page sends it) and *scoring the batch
// again* — the part the person waits for — timed, median of the runs. pkg/ in Node (one thread:
// the page's threaded build in its worker is faster, never slower). A random ViT-S/16 made by
// the library, images of size×size pixels at model size `size`.
//   node tools/bench/learn.mjs [--size 224] [--normals 16] [--batch 30] [--marked 8] [--rehearse 8] [--runs 3] [--pkg pkg]
// `--rehearse N`: how many of the model's normal images learning takes with the marked ones (the
// page takes as many as there are marked images, at most).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const opt = (name, d) => Number(arg(name) ?? d);
const pkg = join(root, arg("pkg") ?? "pkg");
const lib = await import(join(pkg, "dino_ar.js"));
lib.initSync({ module: readFileSync(join(pkg, "dino_ar_bg.wasm")) });
const [size, nNormals, nBatch, nMarked, runs] = [opt("size", 224), opt("normals", 16), opt("batch", 30), opt("marked", 8), opt("runs", 3)];
const nRehearse = Math.min(nNormals, opt("rehearse", nMarked));

// Stripes with a per-image phase, "another lighting" (inverted green) for the marked ones.
function picture(seed, shifted) {
  const rgba = new Uint8Array(size * size * 4);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    const v = 110 + 60 * Math.sin(x * 0.2 + seed) + 20 * (((x * 7 + y * 13 + seed * 17) % 10) / 10);
    rgba.set([v, shifted ? 255 - v : v, v, 255], (y * size + x) * 4);
  }
  return { rgba, width: size, height: size };
}

const t0 = performance.now();
const det = await lib.Detector.create("cpu");
await det.loadBackbone(lib.randomBackbone({ seed: 0 }));
const normals = Array.from({ length: nNormals }, (_, k) => picture(k, false));
det.keepEmbeddings();
const model = await det.fit(normals, { size, epochs: 5, seed: 1 });
await det.loadModel(model);
const batch = Array.from({ length: nBatch }, (_, k) => picture(100 + k, k < nMarked));
let t = performance.now();
for (const b of batch) await det.score(b.rgba, b.width, b.height);
const first = performance.now() - t;
console.log(`set-up ${((performance.now() - t0) / 1e3).toFixed(1)} s; scoring the ${nBatch}-image batch the first time (backbone + head): ${(first / 1e3).toFixed(1)} s`);
const marked = batch.slice(0, nMarked);
const times = [];
for (let r = 0; r < runs; r++) {
  await det.loadModel(model);
  t = performance.now();
  let [firstStep, lastStep] = [0, 0];
  const learned = await det.learn([...normals.slice(0, nRehearse), ...marked], lib.learnDefaults(), (p) => {
    if (p.phase !== "train") return;
    lastStep = performance.now();
    if (!firstStep) firstStep = lastStep;
  });
  await det.loadModel(learned);
  const learnt = performance.now() - t;
  for (const b of batch) await det.score(b.rgba, b.width, b.height);
  const total = performance.now() - t;
  times.push([learnt, total]);
  console.log(`     reading and embedding (kept grids) ${((firstStep - t) / 1e3).toFixed(2)} s, steps 2.. ${((lastStep - firstStep) / 1e3).toFixed(2)} s, calibration and bundle ${((t + learnt - lastStep) / 1e3).toFixed(2)} s`);
  console.log(`run ${r + 1}: learn from ${nMarked} marked (+${nRehearse} of the normal set, ${lib.learnDefaults().epochs} epochs) ${(learnt / 1e3).toFixed(2)} s, + scoring ${nBatch} again ${((total - learnt) / 1e3).toFixed(2)} s = ${(total / 1e3).toFixed(2)} s`);
}
times.sort((a, b) => a[1] - b[1]);
const [learnt, total] = times[times.length >> 1];
console.log(`median: learn ${(learnt / 1e3).toFixed(2)} s + score again ${((total - learnt) / 1e3).toFixed(2)} s = ${(total / 1e3).toFixed(2)} s (ViT-S/16 random, ${size}², ${JSON.stringify(det.keptEmbeddings)} kept)`);
det.free();
