// The CLI and the page agree. One bundle (fit by `dino-ar fit`) scores the same images through
// `dino-ar score` and through the page in headless Chromium: the verdicts must be identical and
// the overlay PNGs (at opacity 1) equal within 1/255 per channel.
//
// Scores computed natively and in wasm differ in their last bits (other SIMD kernels), so "a score
// exactly on the threshold" cannot be had from a trained model on both sides at once. The second
// half makes one with exact arithmetic: the tiny backbone with its final LayerNorm set to γ = 0,
// β = 0.5 (every embedding is exactly 0.5, on any machine) and a head whose weights are all zero
// (every prediction is exactly 0). Every image then scores the same number on both sides; with the
// threshold set to exactly that number both must say "normal", one float step below it "anomalous".
//
// Run by tools/test.sh after `cargo test` (which builds the CLI) and `wasm-pack build`.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { launch, root, serve } from "./harness.mjs";

const bin = process.env.DINO_AR_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(homedir(), ".cache", "dino-ar-target"), "debug", "dino-ar");
const tiny = join(root, "tests", "fixtures", "tiny");
const sample = join(root, "www", "sample");
const work = mkdtempSync(join(tmpdir(), "dino-ar-agree-"));
const MINUTE = 60_000;

let failed = false;
const check = (ok, what) => {
  if (!ok) {
    failed = true;
    console.error(`FAIL ${what}`);
  } else console.log(`ok   ${what}`);
};

// On the CPU, as the page here is: a hardware GPU (`--device auto`'s pick where there is one)
// rounds differently, and the exact on-the-threshold case below needs the same arithmetic.
function cli(command, ...args) {
  return execFileSync(bin, [command, "--device", "cpu", ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

// ---- safetensors, just enough to edit a file -------------------------------------------------

function readTensors(path) {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")), data: Buffer.from(bytes.subarray(8 + n)) };
}

function writeTensors(path, { header, data }) {
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([head, Buffer.from(json, "utf8"), data]));
}

function fillF32(file, name, value) {
  const { dtype, data_offsets: [a, b] } = file.header[name];
  if (dtype !== "F32") throw new Error(`${name}: expected F32, got ${dtype}`);
  for (let o = a; o < b; o += 4) file.data.writeFloatLE(value, o);
}

// A bundle with new calibration numbers, optionally with every weight zeroed.
function editBundle(from, to, { threshold, zero = false }) {
  const file = readTensors(from);
  if (zero) file.data.fill(0);
  const meta = JSON.parse(file.header.__metadata__.dino_ar);
  if (threshold !== undefined) meta.calibration.threshold = threshold;
  file.header.__metadata__.dino_ar = JSON.stringify(meta);
  writeTensors(to, file);
}

// The f32 just below `x` (an f32 value).
function f32Below(x) {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] += x > 0 ? -1 : 1;
  return f[0];
}

// scores.csv → Map(basename → { score, verdict }).
function parseCsv(text) {
  const [head, ...lines] = text.trim().split("\n");
  if (head !== "file,score,score_top1,threshold,verdict,slice,worst_slice,note") throw new Error(`unexpected CSV header: ${head}`);
  return new Map(lines.map((l) => {
    const [file, score, , threshold, verdict] = l.split(",");
    return [basename(file), { score, threshold, verdict }];
  }));
}

// ---- the CLI side ---------------------------------------------------------------------------

const normalDir = join(work, "normal");
mkdirSync(normalDir);
for (const f of readdirSync(join(sample, "normal")).slice(0, 16)) copyFileSync(join(sample, "normal", f), join(normalDir, f));
const tests = readdirSync(join(sample, "test")).map((f) => join(sample, "test", f));
const model = join(work, "model.safetensors");
cli("fit", "--backbone", join(tiny, "hf.safetensors"), "--normal", normalDir, "--out", model,
  "--size", "64", "--epochs", "8", "--hidden", "32", "--no-cache");
cli("score", "--backbone", join(tiny, "hf.safetensors"), "--model", model, "--opacity", "1",
  "--out", join(work, "cli"), ...tests);
const cliRows = parseCsv(readFileSync(join(work, "cli", "scores.csv"), "utf8"));

// The exact case: embeddings all 0.5, predictions all 0.
const exactDir = join(work, "exact");
mkdirSync(exactDir);
const exactBackbone = join(exactDir, "model.safetensors");
const weights = readTensors(join(tiny, "hf.safetensors"));
fillF32(weights, "norm.weight", 0);
fillF32(weights, "norm.bias", 0.5);
writeTensors(exactBackbone, weights);
copyFileSync(join(tiny, "config.json"), join(exactDir, "config.json"));
const exactRaw = join(exactDir, "raw.safetensors");
cli("fit", "--backbone", exactBackbone, "--normal", normalDir, "--out", exactRaw, "--size", "64",
  "--epochs", "1", "--hidden", "8", "--no-cache");
const exactProbe = join(exactDir, "probe.safetensors");
editBundle(exactRaw, exactProbe, { zero: true });
const exactImages = tests.slice(0, 2);
cli("score", "--backbone", exactBackbone, "--model", exactProbe, "--out", join(exactDir, "probe"), ...exactImages);
const exactScores = [...parseCsv(readFileSync(join(exactDir, "probe", "scores.csv"), "utf8")).values()].map((r) => Number(r.score));
check(exactScores.every((s) => s === exactScores[0]), `the exact case scores every image alike (${exactScores})`);
const onScore = exactScores[0];
const exactOn = join(exactDir, "on.safetensors");
const exactBelow = join(exactDir, "below.safetensors");
editBundle(exactRaw, exactOn, { zero: true, threshold: onScore });
editBundle(exactRaw, exactBelow, { zero: true, threshold: f32Below(onScore) });
const exactCli = {};
for (const [name, bundle] of [["on", exactOn], ["below", exactBelow]]) {
  cli("score", "--backbone", exactBackbone, "--model", bundle, "--out", join(exactDir, name), ...exactImages);
  exactCli[name] = parseCsv(readFileSync(join(exactDir, name, "scores.csv"), "utf8"));
}
check([...exactCli.on.values()].every((r) => r.score === r.threshold && r.verdict === "normal"),
  "CLI: a score exactly on the threshold is normal");
check([...exactCli.below.values()].every((r) => r.verdict === "anomalous"), "CLI: one float step above the threshold is anomalous");

// ---- the page side --------------------------------------------------------------------------

const server = await serve();
const browser = await launch();
try {
  // Loads a backbone and a bundle into a fresh page, scores `images`, returns the page and its CSV.
  async function pageRun(backboneFiles, bundle, images, { opacity = 1 } = {}) {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.origin}/`);
    await page.waitForSelector("body[data-ready=true]", { timeout: MINUTE });
    await page.setInputFiles("#backbone-files", backboneFiles);
    await page.waitForSelector("#backbone-info:not([hidden])", { timeout: MINUTE });
    await page.setInputFiles("#model-file", bundle);
    await page.waitForFunction(() => document.querySelector("#model-status").textContent.includes("calibrated threshold"), null, { timeout: MINUTE });
    await page.setInputFiles("#score-files", images);
    await page.waitForFunction((n) => document.querySelector("#score-status").textContent.startsWith(`${n} image`), images.length, { timeout: 5 * MINUTE });
    await page.locator("#opacity").evaluate((e, v) => { e.value = v; e.dispatchEvent(new Event("input")); }, opacity);
    const [csv] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
    const rows = parseCsv(readFileSync(await csv.path(), "utf8"));
    check(errors.length === 0 && await page.locator("#error").isHidden(), `the page ran without errors (${errors.join("; ")})`);
    return { page, context, rows };
  }

  async function exportPng(page, name) {
    await page.getByRole("button", { name, exact: true }).click();
    await page.waitForFunction((n) => document.querySelector("#view-name").textContent === n, name);
    const [png] = await Promise.all([page.waitForEvent("download"), page.click("#export-png")]);
    return readFileSync(await png.path()).toString("base64");
  }

  // Per-channel differences between two PNGs (decoded by the browser).
  function comparePngs(page, a, b) {
    return page.evaluate(async ([a, b]) => {
      const pixels = async (b64) => {
        const bmp = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]),
          { colorSpaceConversion: "none", premultiplyAlpha: "none" });
        const c = new OffscreenCanvas(bmp.width, bmp.height);
        const ctx = c.getContext("2d");
        ctx.drawImage(bmp, 0, 0);
        return { w: bmp.width, h: bmp.height, px: ctx.getImageData(0, 0, bmp.width, bmp.height).data };
      };
      const [x, y] = [await pixels(a), await pixels(b)];
      if (x.w !== y.w || x.h !== y.h) return { size: `${x.w}x${x.h} vs ${y.w}x${y.h}` };
      let max = 0, over = 0;
      for (let i = 0; i < x.px.length; i++) {
        if (i % 4 === 3) continue;
        const d = Math.abs(x.px[i] - y.px[i]);
        max = Math.max(max, d);
        if (d > 1) over++;
      }
      return { max, over };
    }, [a, b]);
  }

  // 1. A trained model: verdicts and overlays.
  const run = await pageRun([join(tiny, "hf.safetensors"), join(tiny, "config.json")], model, tests);
  for (const [name, cliRow] of cliRows) {
    const pageRow = run.rows.get(name);
    check(pageRow?.verdict === cliRow.verdict,
      `${name}: the same verdict (CLI ${cliRow.verdict} at ${cliRow.score}, page ${pageRow?.verdict} at ${pageRow?.score}; threshold ${cliRow.threshold})`);
    const cliPng = readFileSync(join(work, "cli", name.replace(/\.png$/, "_overlay.png"))).toString("base64");
    const d = await comparePngs(run.page, cliPng, await exportPng(run.page, name));
    check(d.size === undefined && d.max <= 1, `${name}: overlay PNGs equal within 1/255 (largest difference ${d.max ?? d.size}, ${d.over ?? "?"} values over 1)`);
  }
  check(run.rows.size === cliRows.size, `the page scored all ${cliRows.size} images`);
  await run.context.close();

  // 2. Exactly on the threshold, and one float step below it.
  for (const [name, bundle, expected] of [["on", exactOn, "normal"], ["below", exactBelow, "anomalous"]]) {
    const r = await pageRun([exactBackbone, join(exactDir, "config.json")], bundle, exactImages);
    for (const [file, cliRow] of exactCli[name]) {
      const pageRow = r.rows.get(file);
      check(pageRow?.score === cliRow.score && pageRow?.verdict === expected && cliRow.verdict === expected,
        `threshold ${name} the score: ${file} is ${expected} on both sides (CLI ${cliRow.score} ${cliRow.verdict}, page ${pageRow?.score} ${pageRow?.verdict})`);
    }
    const contour = await r.page.evaluate(() => {
      const c = document.querySelector("#overlay");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (px[i] === 0 && px[i + 1] === 255 && px[i + 2] === 255) n++;
      return n;
    });
    check(expected === "normal" ? contour === 0 : contour > 0, `threshold ${name} the score: the page's contour follows the same rule (${contour} cyan pixels)`);
    await r.context.close();
  }

  // 3. One input path. Awkward files — a phone JPEG stored on its side with its EXIF orientation
  // tag, a 16-bit PNG of 12-bit data, an RGBA PNG, a lossless WebP — score the same in the CLI and
  // the page (to the digits the page shows); and one training folder of all kinds (one picture
  // larger than twice the model side) fits the same model in both.
  const awkward = join(root, "tests", "fixtures", "awkward");
  const awkwardFiles = ["phone_rotated.jpg", "grey16_12bit.png", "rgba.png", "lossless.webp"].map((f) => join(awkward, f));
  const trainDir = join(awkward, "train");
  const trainFiles = readdirSync(trainDir).sort().map((f) => join(trainDir, f));
  const fitArgs = ["--size", "64", "--epochs", "3", "--hidden", "16", "--no-cache"];
  const cliModel = join(work, "awkward_cli.safetensors");
  cli("fit", "--backbone", join(tiny, "hf.safetensors"), "--normal", trainDir, "--out", cliModel, ...fitArgs);
  const scoreWith = (bundle, out) => {
    cli("score", "--backbone", join(tiny, "hf.safetensors"), "--model", bundle, "--out", join(work, out), ...awkwardFiles);
    return parseCsv(readFileSync(join(work, out, "scores.csv"), "utf8"));
  };
  const cliAwkward = scoreWith(cliModel, "awkward_cli");
  const awkwardRun = await pageRun([join(tiny, "hf.safetensors"), join(tiny, "config.json")], cliModel, awkwardFiles);
  for (const [file, c] of cliAwkward) {
    const p = awkwardRun.rows.get(file);
    check(p && Number(p.score).toFixed(4) === Number(c.score).toFixed(4) && p.verdict === c.verdict,
      `${file}: the same score to the page's digits (CLI ${c.score} ${c.verdict}, page ${p?.score} ${p?.verdict})`);
  }
  // The page fits on the same folder, with the same settings, through its form.
  const { page } = awkwardRun;
  await page.evaluate(() => {
    document.querySelector("[data-fit=size]").append(new Option("64", "64"));
    document.querySelector("details.options").open = true; // the AR head's settings
  });
  await page.selectOption("[data-fit=size]", "64");
  await page.fill("[data-fit=epochs]", "3");
  await page.fill("[data-fit=hidden]", "16");
  await page.setInputFiles("#normal-files", trainFiles);
  await page.waitForFunction(() => !document.querySelector("#fit-run").disabled, null, { timeout: MINUTE });
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("trained on"), null, { timeout: 5 * MINUTE });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#model-download")]);
  const pageModel = join(work, "awkward_page.safetensors");
  copyFileSync(await download.path(), pageModel);
  await awkwardRun.context.close();
  const meta = (path) => JSON.parse(readTensors(path).header.__metadata__.dino_ar);
  const [mc, mp] = [meta(cliModel), meta(pageModel)];
  const close = (a, b) => Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a));
  check(mc.train_images === mp.train_images && mc.calibration.images === mp.calibration.images && close(mc.calibration.threshold, mp.calibration.threshold),
    `one folder, one model: the CLI's and the page's bundles (${mc.train_images}/${mp.train_images} training images, ` +
    `${mc.calibration.images}/${mp.calibration.images} held out, threshold ${mc.calibration.threshold} / ${mp.calibration.threshold})`);
  const pageAwkward = scoreWith(pageModel, "awkward_page");
  for (const [file, c] of cliAwkward) {
    const p = pageAwkward.get(file);
    check(p && close(Number(p.score), Number(c.score)), `${file}: the page's model scores it as the CLI's (${p?.score} vs ${c.score})`);
  }

  // 4. The same marks make the same model. The page loads the CLI's model, scores the training
  // folder, two rows are marked normal and the page learns from them; the CLI goes on learning
  // from the same model with the marks the page exported (files found by fingerprint).
  const marksRun = await pageRun([join(tiny, "hf.safetensors"), join(tiny, "config.json")], cliModel, trainFiles);
  const mpage = marksRun.page;
  for (const f of trainFiles.slice(0, 2)) await mpage.click(`#results button[aria-label="mark ${basename(f)} normal"]`);
  const [marksDl] = await Promise.all([mpage.waitForEvent("download"), mpage.click("#marks-export")]);
  const marksCsv = join(work, "marks.csv");
  copyFileSync(await marksDl.path(), marksCsv);
  await mpage.click("#learn-run");
  await mpage.waitForFunction(() => /^learned from|failed/.test(document.querySelector("#learn-status").textContent), null, { timeout: 5 * MINUTE });
  check((await mpage.locator("#learn-status").innerText()).startsWith("learned from 2 marked images"), `the page learned: ${await mpage.locator("#learn-status").innerText()}`);
  const [learnedDl] = await Promise.all([mpage.waitForEvent("download"), mpage.click("#model-download")]);
  const pageLearned = join(work, "learned_page.safetensors");
  copyFileSync(await learnedDl.path(), pageLearned);
  await marksRun.context.close();
  const lp = meta(pageLearned);
  const cliLearned = join(work, "learned_cli.safetensors");
  cli("fit", "--backbone", join(tiny, "hf.safetensors"), "--resume", cliModel, "--marks", marksCsv, "--images", trainDir,
    "--epochs", String(lp.spec.epochs), "--batch-size", String(lp.spec.batchSize), "--no-cache", "--out", cliLearned);
  const lc = meta(cliLearned);
  const step = (m) => JSON.stringify({ ...m.history.at(-1), threshold: undefined });
  check(lc.history.length === 2 && step(lc) === step(lp) && lc.train_images === lp.train_images && close(lc.calibration.threshold, lp.calibration.threshold),
    `the same marks, the same model: the CLI's and the page's learned bundles (${step(lc)}; threshold ${lc.calibration.threshold} / ${lp.calibration.threshold})`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.stop();
}
console.log(failed ? "the CLI and the page disagree" : "the CLI and the page agree");
process.exit(failed ? 1 : 0);
