// The screening loop as a person meets it (BENCHMARKS §8): the real page from a static site
// (tools/site.sh --release), cross-origin isolated, engine on the CPU (the threaded build in its
// worker, every core), a random ViT-S/16 at 224²: train on 16 normal images, score a batch of 30,
// mark 8 of them normal, then *Learn from my marks* — timed from the click until the page says it
// learned, which is after the batch was scored again. Median of the runs (each learns again).
//   tools/site.sh --release /tmp/site/dino-ar && node tools/bench/learn_page.mjs /tmp/site/dino-ar [runs=3]
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { launch, root, serve } from "../../tests/js/harness.mjs";

const [site, runs = "3"] = process.argv.slice(2);
if (!site) throw new Error("usage: node tools/bench/learn_page.mjs SITE_DIR [runs]");
const lib = await import(join(site, "pkg", "dino_ar.js"));
lib.initSync({ module: readFileSync(join(site, "pkg", "dino_ar_bg.wasm")) });
// A file, not a buffer: Playwright hands over at most 50 MB that way.
const weights = join(mkdtempSync(join(tmpdir(), "dino-ar-learn-")), "vits16-random.safetensors");
writeFileSync(weights, lib.randomBackbone({ seed: 0 }));

const server = await serve({ site: dirname(site) });
const browser = await launch();
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${server.origin}/${basename(site)}/`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
  // PNGs made by the page's canvas: stripes, and "another lighting" (green inverted) for the batch's first 8.
  const pngs = await page.evaluate(async () => {
    const make = async (seed, shifted) => {
      const c = new OffscreenCanvas(224, 224);
      const ctx = c.getContext("2d");
      const img = ctx.createImageData(224, 224);
      for (let y = 0; y < 224; y++) for (let x = 0; x < 224; x++) {
        const v = 110 + 60 * Math.sin(x * 0.2 + seed) + 20 * (((x * 7 + y * 13 + seed * 17) % 10) / 10);
        img.data.set([v, shifted ? 255 - v : v, v, 255], (y * 224 + x) * 4);
      }
      ctx.putImageData(img, 0, 0);
      const bytes = new Uint8Array(await (await c.convertToBlob({ type: "image/png" })).arrayBuffer());
      return btoa(String.fromCharCode(...bytes));
    };
    const normal = [];
    for (let k = 0; k < 16; k++) normal.push(await make(k, false));
    const batch = [];
    for (let k = 0; k < 30; k++) batch.push(await make(100 + k, k < 8));
    return { normal, batch };
  });
  const files = (list, prefix) => list.map((b64, k) => ({ name: `${prefix}_${String(k).padStart(2, "0")}.png`, mimeType: "image/png", buffer: Buffer.from(b64, "base64") }));
  await page.selectOption("#backend", "cpu");
  await page.waitForFunction(() => !document.querySelector("#backend-status").textContent.includes("starting"), null, { timeout: 60_000 });
  await page.setInputFiles("#backbone-files", weights);
  await page.waitForFunction(() => document.querySelector("#backbone-status").textContent.includes("loaded"), null, { timeout: 120_000 });
  console.log(`engine: ${await page.locator("#backend-status").innerText()}`);
  await page.setInputFiles("#normal-files", files(pngs.normal, "normal"));
  await page.selectOption("[data-fit=size]", "224");
  await page.fill("[data-fit=epochs]", "5");
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("trained on"), null, { timeout: 600_000 });
  let t = Date.now();
  await page.setInputFiles("#score-files", files(pngs.batch, "batch"));
  await page.waitForFunction(() => document.querySelector("#score-status").textContent.includes("30 images scored"), null, { timeout: 600_000 });
  console.log(`scoring the batch the first time (backbone + head): ${((Date.now() - t) / 1e3).toFixed(1)} s`);
  for (let k = 0; k < 8; k++) await page.click(`#results button[aria-label="mark batch_${String(k).padStart(2, "0")}.png normal"]`);
  const times = [];
  for (let r = 0; r < Number(runs); r++) {
    t = Date.now();
    await page.click("#learn-run");
    // Done when the status names the new version (the model fit first is version 1).
    await page.waitForFunction((v) => {
      const s = document.querySelector("#learn-status").textContent;
      return s.includes("failed") || new RegExp(`^learned from.*version ${v} `).test(s);
    }, r + 2, { timeout: 600_000 });
    times.push((Date.now() - t) / 1e3);
    console.log(`run ${r + 1}: ${times.at(-1).toFixed(2)} s — ${await page.locator("#learn-status").innerText()}; ${await page.locator("#learn-report li").first().innerText()}`);
  }
  times.sort((a, b) => a - b);
  console.log(`median: learn from 8 marked images and score the 30-image batch again: ${times[times.length >> 1].toFixed(2)} s (min ${times[0].toFixed(2)}, max ${times.at(-1).toFixed(2)}, ${times.length} runs)`);
} finally {
  await browser.close();
  server.stop();
}
