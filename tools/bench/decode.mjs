// How long the library takes to decode a picture in the wasm (what the page does for every file
// it scores or trains on): `decodePicture`, median of N runs, in Node on pkg/ as built.
//   node tools/bench/decode.mjs photo.jpg [runs=5]      (pkg/ from tools/serve.sh or wasm-pack)
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { initSync, decodePicture } = await import(join(root, "pkg", "dino_ar.js"));
initSync({ module: readFileSync(join(root, "pkg", "dino_ar_bg.wasm")) });
const [file, runs = "5"] = process.argv.slice(2);
if (!file) throw new Error("usage: node tools/bench/decode.mjs <picture> [runs]");
const bytes = new Uint8Array(readFileSync(file));
const times = [];
let size = "";
for (let k = 0; k < Number(runs); k++) {
  const t = performance.now();
  const img = decodePicture(bytes);
  times.push(performance.now() - t);
  size = `${img.width}×${img.height}`;
}
times.sort((a, b) => a - b);
console.log(`${file}: ${size}, decodePicture median ${times[times.length >> 1].toFixed(0)} ms (min ${times[0].toFixed(0)}, max ${times.at(-1).toFixed(0)}, ${times.length} runs)`);
