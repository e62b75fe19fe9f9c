// The page's memory for one BraTS-sized volume (240×240×155 int16, gzipped NIfTI): wasm memory
// before reading it, after `Volume.read`, and after `scoreVolume` (wasm memory never shrinks, so
// the last figure is the peak). The tiny fixture backbone at 32²: the figure is the volume's cost,
// not a backbone's. BENCHMARKS.md quotes it.
//   node tests/js/volume_memory.mjs            (after wasm-pack build --dev --target web --out-dir pkg)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { launch, root, serve } from "./harness.mjs";

const [X, Y, Z] = [240, 240, 155];
// A NIfTI-1 header for int16 voxels (RAS, 1 mm), then a smooth head-like blob.
const header = Buffer.alloc(352);
header.writeInt32LE(348, 0);
[3, X, Y, Z, 1, 1, 1, 1].forEach((d, i) => header.writeInt16LE(d, 40 + 2 * i));
header.writeInt16LE(4, 70); // int16
header.writeInt16LE(16, 72);
[1, 1, 1, 1, 1, 1, 1, 1].forEach((p, i) => header.writeFloatLE(p, 76 + 4 * i));
header.writeFloatLE(352, 108);
header.writeInt16LE(1, 254); // sform: scanner
[[1, 0, 0, -120], [0, 1, 0, -120], [0, 0, 1, -77]].forEach((row, r) => row.forEach((v, c) => header.writeFloatLE(v, 280 + 16 * r + 4 * c)));
header.write("n+1\0", 344, "latin1");
const voxels = Buffer.alloc(X * Y * Z * 2);
for (let z = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) {
  const r = Math.hypot((x - 120) / 90, (y - 120) / 100, (z - 77) / 70);
  voxels.writeInt16LE(r < 1 ? Math.round(800 + 200 * Math.sin(x / 7) * Math.cos(y / 9)) : 0, 2 * (x + X * (y + Y * z)));
}
const nii = gzipSync(Buffer.concat([header, voxels]));

const server = await serve();
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${server.origin}/`);
  const weights = readFileSync(join(root, "tests/fixtures/tiny/hf.safetensors")).toString("base64");
  const config = readFileSync(join(root, "tests/fixtures/tiny/config.json"), "utf8");
  const out = await page.evaluate(async ({ weights, config, nii }) => {
    const { default: init, Detector, Volume } = await import("/pkg/dino_ar.js");
    const wasm = await init();
    const mb = () => wasm.memory.buffer.byteLength / 1e6;
    const det = await Detector.create("cpu");
    await det.loadBackbone(Uint8Array.from(atob(weights), (c) => c.charCodeAt(0)), config);
    const pictures = [0, 1, 2, 3].map((k) => ({ rgba: new Uint8Array(32 * 32 * 4).map((_, i) => (i * 7 + k * 13) % 251), width: 32, height: 32 }));
    await det.loadModel(await det.fit(pictures, { epochs: 1, size: 32, window: "percentile" }));
    const bytes = Uint8Array.from(atob(nii), (c) => c.charCodeAt(0));
    const before = mb();
    const t0 = performance.now();
    const vol = Volume.read(bytes);
    const read = mb();
    const readMs = performance.now() - t0;
    const t1 = performance.now();
    const r = await det.scoreVolume(vol);
    return { file: bytes.length / 1e6, before, read, peak: mb(), readMs, scoreMs: performance.now() - t1,
      slices: r.slices.length, map: r.anomalyMap.length / 1e6 };
  }, { weights, config, nii: nii.toString("base64") });
  const f = (x) => x.toFixed(1);
  console.log(`volume 240×240×155 int16 (${f(X * Y * Z * 2 / 1e6)} MB of voxels, ${f(out.file)} MB gzipped; as f32 ${f(X * Y * Z * 4 / 1e6)} MB)`);
  console.log(`wasm memory: ${f(out.before)} MB with backbone and model, ${f(out.read)} MB after Volume.read (${f(out.readMs)} ms), ${f(out.peak)} MB peak after scoreVolume of ${out.slices} slices (${f(out.scoreMs / 1000)} s; map ${f(out.map)} MB gzipped)`);
} finally {
  await browser.close();
  server.stop();
}
