// End-to-end test of the real page (www/ + pkg/) in Debian's headless Chromium, driven like a user:
// load the tiny fixture backbone through the file input, train on a handful of normal brick crops,
// score an image with a planted defect and check the overlay's hot region covers it, export the
// CSV, reload (the weights are still there), run the built-in sample, and check from the network
// log that no request left the page's origin. Screenshots go to $DINO_AR_TEST_OUT (default
// tests/js/out/). Run by tools/test.sh after `wasm-pack build --dev --target web --out-dir pkg`.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { launch, root, serve } from "./harness.mjs";

const out = process.env.DINO_AR_TEST_OUT || join(root, "tests", "js", "out");
mkdirSync(out, { recursive: true });
const sample = join(root, "www", "sample");
const manifest = JSON.parse(readFileSync(join(sample, "manifest.json"), "utf8"));

// DINO_AR_SITE: a folder from tools/site.sh (tools/test.sh tests that, as it would be published),
// served from its parent so that the page lives on a sub-path (/<folder>/, as on GitHub Pages);
// otherwise the repository's www/ and pkg/ at the root.
const site = process.env.DINO_AR_SITE;
const server = await serve({ site: site && dirname(site) });
const { origin } = server;
const base = site ? `${origin}/${basename(site)}/` : `${origin}/`;
if (site) console.log(`     the static site ${site}, served at ${base}`);
const browser = await launch();
let failed = false;
let page;
const check = (ok, what) => {
  if (!ok) {
    failed = true;
    console.error(`FAIL ${what}`);
  } else console.log(`ok   ${what}`);
};
const MINUTE = 60_000;

// An accessibility audit with axe-core (from npm, evaluated in the page: no network), failing on
// serious and critical violations and listing the rest.
const AXE = readFileSync(join(root, "tests", "js", "node_modules", "axe-core", "axe.min.js"), "utf8");
async function audit(what) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => (await window.axe.run(document)).violations
    .map((v) => ({ impact: v.impact, text: `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})` })));
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of violations) if (!bad.includes(v)) console.log(`     note (axe): ${v.text}`);
  check(bad.length === 0, `accessibility audit of ${what}: no serious violation${bad.length ? ` — ${bad.map((v) => v.text).join("; ")}` : ""}`);
}

try {
  // One context for the whole run: the reload must find what the first visit stored.
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 1000 } });
  const outside = [];
  context.on("request", (r) => {
    if (!r.url().startsWith(`${origin}/`) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) outside.push(r.url());
  });
  page = await context.newPage();
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  const text = (sel) => page.locator(sel).innerText();
  const ready = () => page.waitForSelector("body[data-ready=true]", { timeout: MINUTE });

  const response = await page.goto(base);
  await ready();
  const csp = response.headers()["content-security-policy"] ?? "";
  check(csp.includes("connect-src 'self'") && csp.includes("default-src 'self'"), "the server sends the Content-Security-Policy");
  // The policy is enforced: a connection to another origin is refused inside the browser. The
  // other origin is on the loopback interface (127.0.0.2), so even a broken policy could not send
  // anything off this machine.
  const otherOrigin = origin.replace("localhost", "127.0.0.2");
  const blocked = await page.evaluate((other) => new Promise((resolve) => {
    document.addEventListener("securitypolicyviolation", (e) => resolve(`blocked (${e.violatedDirective})`), { once: true });
    fetch(`${other}/probe`).then(() => resolve("sent"), () => {});
  }), otherOrigin);
  check(blocked.startsWith("blocked (connect-src"), `a request to another origin is ${blocked}`);
  check(await page.locator("#error").isHidden(), "the page starts without an error");
  await audit("the first screen");
  // The training form starts from the library's defaults (none are written in the page).
  const form = await page.evaluate(async () => {
    const { fitDefaults } = await import("./pkg/dino_ar.js");
    const d = fitDefaults();
    const mismatched = [...document.querySelectorAll("[data-fit]")].filter((input) => {
      const want = input.dataset.fit === "size" ? d.size[0] : d[input.dataset.fit];
      return input.value !== String(want);
    }).map((input) => `${input.dataset.fit}=${input.value}`);
    return { fields: document.querySelectorAll("[data-fit]").length, mismatched };
  });
  check(form.fields >= 8 && form.mismatched.length === 0, `the fit form shows the library's defaults (${form.fields} fields; off: ${form.mismatched.join(", ") || "none"})`);
  check((await text("#privacy")).includes("stay on this device"), "the privacy line is shown");
  console.log(`     backend: ${await text("#backend-status")}`);
  // The precision menu lists the library's choices, f32 first; f16 where it cannot run (here
  // `auto` is the CPU) restarts the engine and says why in the engine line, not as an error.
  const precisions = await page.evaluate(() => [...document.querySelectorAll("#precision option")].map((o) => o.value));
  check(precisions.join() === "f32,f16" && (await page.inputValue("#precision")) === "f32", `the precision menu: ${precisions.join(", ")}`);
  await page.selectOption("#precision", "f16");
  await page.waitForFunction(() => /f32 \((f16 runs on a GPU|this GPU adapter has no shader-f16)/.test(document.querySelector("#backend-status").textContent),
    null, { timeout: MINUTE });
  check(await page.locator("#error").isHidden(), `f16 where it cannot run is a note: "${await text("#backend-status")}"`);
  await page.selectOption("#precision", "f32");
  await page.waitForFunction(() => !/starting|f16/.test(document.querySelector("#backend-status").textContent), null, { timeout: MINUTE });

  // A file that is not weights: a clear error, and the page stays usable.
  await page.setInputFiles("#backbone-files", join(sample, "test", "good_0.png"));
  await page.waitForSelector("#error:not([hidden])", { timeout: MINUTE });
  const badWeights = await text("#error-text");
  check(/PNG/i.test(badWeights), `an image picked as weights is refused by name: "${badWeights}"`);

  // 1. The tiny fixture backbone through the file input (weights + config.json together).
  await page.setInputFiles("#backbone-files", [
    join(root, "tests/fixtures/tiny/hf.safetensors"), join(root, "tests/fixtures/tiny/config.json")]);
  await page.waitForSelector("#backbone-info:not([hidden])", { timeout: MINUTE });
  const info = await text("#backbone-info");
  check(info.includes("width 64") && info.includes("fingerprint"), "backbone info: architecture and fingerprint");
  check((await text("#backbone-status")).includes("kept on this device"), "the weights are stored on the device");

  // 2. Train on a handful of normal images.
  const normals = manifest.normal.slice(0, 12).map((p) => join(sample, p));
  await page.setInputFiles("#normal-files", normals);
  await page.selectOption("[data-fit=size]", "224");
  await page.fill("[data-fit=epochs]", "25");
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("trained on"), null, { timeout: 5 * MINUTE });
  const losses = await page.locator("#fit-log li").count();
  check(losses === 25, `one loss line per epoch (${losses})`);
  check((await text("#model-status")).includes("trained on"), `model loaded: ${await text("#model-status")}`);

  // Cancel: a second training stopped at once, the model of the first still in place.
  await page.fill("[data-fit=epochs]", "500");
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("training:"), null, { timeout: 2 * MINUTE });
  // While a model trains, the score picker is off and says why (a pick would be dropped).
  check(await page.locator("#score-files").isDisabled() && (await text("#score-why")).includes("being trained"),
    `while training, scoring waits and says so: "${await text("#score-why")}"`);
  await page.click("#fit-cancel");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent === "training cancelled", null, { timeout: MINUTE });
  check(await page.locator("#error").isHidden(), "cancelling is not an error");
  await page.waitForFunction(() => !document.querySelector("#score-files").disabled, null, { timeout: MINUTE });

  // 3. Score an image with a planted defect, and a normal one.
  const defect = manifest.test.find((t) => t.image.includes("paint"));
  await page.setInputFiles("#score-files", [join(sample, defect.image), join(sample, "test", "good_0.png")]);
  await page.waitForFunction(() => document.querySelector("#score-status").textContent.includes("2 images scored"), null, { timeout: 2 * MINUTE });
  // The viewer shows the first image: compare the drawn overlay with the defect's mask.
  const overlap = await page.evaluate(async (maskUrl) => {
    const canvas = document.querySelector("#overlay");
    const { width: w, height: h } = canvas;
    const px = canvas.getContext("2d").getImageData(0, 0, w, h).data;
    const bmp = await createImageBitmap(await (await fetch(maskUrl)).blob());
    const c = new OffscreenCanvas(w, h);
    const ctx = c.getContext("2d");
    ctx.drawImage(bmp, 0, 0, w, h);
    const mask = ctx.getImageData(0, 0, w, h).data;
    // The hot region is what the page outlines in pure cyan: the edge of the pixels above the
    // threshold. Count its pixels within one patch (16 px) of the defect.
    const near = new Uint8Array(w * h);
    const r = 16;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      if (mask[(y * w + x) * 4] <= 127) continue;
      for (let yy = Math.max(0, y - r); yy <= Math.min(h - 1, y + r); yy++)
        for (let xx = Math.max(0, x - r); xx <= Math.min(w - 1, x + r); xx++) near[yy * w + xx] = 1;
    }
    let contour = 0, contourNear = 0, nearArea = 0;
    for (let i = 0; i < w * h; i++) {
      nearArea += near[i];
      if (px[i * 4] === 0 && px[i * 4 + 1] === 255 && px[i * 4 + 2] === 255) {
        contour++;
        contourNear += near[i];
      }
    }
    return { contour, contourNear, nearShare: nearArea / (w * h) };
  }, `sample/${defect.mask}`);
  const share = overlap.contourNear / overlap.contour;
  check(overlap.contour > 0 && share > 3 * overlap.nearShare,
    `the overlay's hot region lies on the defect (${(100 * share).toFixed(0)} % of its outline within a patch of the ` +
    `defect, which with that margin covers ${(100 * overlap.nearShare).toFixed(0)} % of the image)`);
  await page.hover("#overlay", { position: { x: 60, y: 60 } });
  check(/patch row \d+, column \d+: \d/.test(await text("#view-hover")), `hover shows the patch score: ${await text("#view-hover")}`);
  // A tap on a touch screen probes too, and the probe stays when the finger lifts.
  await page.evaluate(() => {
    const c = document.querySelector("#overlay");
    const r = c.getBoundingClientRect();
    const at = { clientX: r.left + r.width * 0.9, clientY: r.top + r.height * 0.1, pointerType: "touch", bubbles: true };
    c.dispatchEvent(new PointerEvent("pointerdown", at));
    c.dispatchEvent(new PointerEvent("pointerleave", at));
  });
  const tapped = await text("#view-hover");
  const side = Number(await page.locator("#overlay").getAttribute("data-grid-rows")); // a square grid here
  const expected = `patch row ${Math.floor(0.1 * side) + 1}, column ${Math.floor(0.9 * side) + 1}:`;
  check(tapped.startsWith(expected), `a tap probes the patch under the finger and keeps it: ${tapped}`);
  // "Show what the model saw": the patches the head could use for the probed one are shaded, all
  // before it in raster order, and a caption explains the reading order.
  await page.check("#explain");
  await page.focus("#overlay");
  for (const key of [...Array(6).fill("ArrowDown"), ...Array(6).fill("ArrowRight")]) await page.keyboard.press(key);
  const probed = (await text("#view-hover")).match(/patch row (\d+), column (\d+)/);
  const pixels = () => page.evaluate(() => {
    const c = document.querySelector("#overlay");
    return { w: c.width, h: c.height, px: Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data) };
  });
  const shaded = await pixels();
  const caption = await text("#explain-caption");
  // …and the embeddings next to the head's prediction of them, PCA-coloured, with the error grid.
  await page.waitForSelector("#explain-grids:not([hidden])", { timeout: MINUTE });
  const grids = await page.evaluate(() => ["actual", "predicted", "error"].map((id) => {
    const c = document.querySelector(`#explain-${id}`);
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    return { w: c.width, h: c.height, colours: new Set(Array.from({ length: px.length / 4 }, (_, i) => px.slice(4 * i, 4 * i + 3).join())).size };
  }));
  check(grids.every((g) => g.w > 1 && g.h > 1 && g.colours > 4) && grids[0].w === grids[1].w && grids[0].h === grids[1].h,
    `the explain view shows the embeddings, the prediction and the error as ${grids[0].w}×${grids[0].h} grids ` +
    `(${grids.map((g) => g.colours).join(" / ")} distinct colours)`);
  await page.locator("#viewer").screenshot({ path: join(out, "page-explain.png") });
  await page.evaluate(() => document.querySelector("#explain").click());
  check(await page.locator("#explain-grids").isHidden() && await page.locator("#explain-caption").isHidden(),
    "without \"show what the model saw\" its grids and caption are not shown");
  const plain = await pixels();
  // The probed patch's bottom edge in canvas pixels (rows are 1-based in the text).
  const gridH = Number(await page.locator("#overlay").getAttribute("data-grid-rows"));
  const rowBottom = probed ? (Number(probed[1]) * shaded.h) / gridH : 0;
  let changed = 0, after = 0;
  for (let i = 0; i < shaded.px.length; i += 4) {
    if (shaded.px[i] !== plain.px[i] || shaded.px[i + 1] !== plain.px[i + 1] || shaded.px[i + 2] !== plain.px[i + 2]) {
      changed++;
      if (Math.floor(i / 4 / shaded.w) >= Math.ceil(rowBottom)) after++;
    }
  }
  check(probed && changed > 0 && after === 0 && /raster order/.test(caption) && /blind spot/.test(caption),
    `"show what the model saw" shades ${changed} pixels, none below the probed patch (row ${probed?.[1]}), ` +
    `caption: ${caption.slice(0, 60)}…`);
  await page.screenshot({ path: join(out, "page-trained.png"), fullPage: true });

  // The threshold slider moves the verdicts; the reset button restores the calibrated one.
  await page.locator("#threshold").evaluate((e) => { e.value = e.min; e.dispatchEvent(new Event("input")); });
  const allAnomalous = await page.locator("#results tbody td.v-anomalous").count();
  check(allAnomalous === 2, `at the lowest threshold every image is anomalous (${allAnomalous})`);
  await page.click("#threshold-reset");

  // CSV export.
  const [csvDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  const csv = readFileSync(await csvDownload.path(), "utf8").trim().split("\n");
  check(csv[0] === "file,score,score_top1,threshold,verdict,slice,worst_slice,note", `CSV header: ${csv[0]}`);
  const rows = csv.slice(1).map((l) => l.split(","));
  check(rows.length === 2 && rows.every((r) => Number.isFinite(Number(r[1])) && ["normal", "anomalous"].includes(r[4])),
    `CSV rows: ${csv.slice(1).join(" | ")}`);
  const defectName = defect.image.split("/").pop();
  check(rows.some((r) => r[0] === defectName), "the CSV names the scored file");
  const [pngDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-png")]);
  const png = readFileSync(await pngDownload.path());
  check(png.subarray(1, 4).toString() === "PNG" && pngDownload.suggestedFilename().endsWith("_overlay.png"), `overlay PNG export (${pngDownload.suggestedFilename()})`);

  // A file that is no image: its row says so, the others (a grey 16-bit PNG among them) are scored.
  // A file that shares its name with one already in the table (picked from another folder).
  const otherFolder = mkdtempSync(join(tmpdir(), "dino-ar-page-"));
  copyFileSync(join(sample, "test", "good_1.png"), join(otherFolder, "good_0.png"));
  await page.setInputFiles("#score-files", [join(root, "tests/fixtures/tiny/config.json"), join(sample, "test", "good_1.png"),
    join(root, "tests/fixtures/tiny/image_grey16.png"), join(otherFolder, "good_0.png")]);
  await page.waitForFunction(() => document.querySelector("#score-status").textContent.includes("could not be read"), null, { timeout: MINUTE });
  check((await text("#score-status")).startsWith("5 images scored, 1 could not be read"), `batch status: ${await text("#score-status")}`);
  check((await text("#results")).includes("good_0.png (2)"), "two files that share a name get two rows told apart");
  check((await text("#results")).includes("config.json: not a supported file (a .json file)"), "an unreadable file is reported in its row, saying what it is");
  await page.click("#results button:text('image_grey16.png')");
  await page.waitForFunction(() => document.querySelector("#view-name").textContent === "image_grey16.png", null, { timeout: MINUTE });
  const grey = await page.evaluate(() => [document.querySelector("#overlay").width, document.querySelector("#overlay").height]);
  check(grey.join("x") === "90x120", `a grey 16-bit PNG is decoded and scored at its size (${grey.join("x")})`);

  // A NIfTI volume: every slice scored, its row expandable to its slices, a slice slider in the
  // viewer, the anomaly map exported as NIfTI and the rows in the CSV; a cut one is named.
  const cut = join(otherFolder, "cut.nii.gz");
  writeFileSync(cut, readFileSync(join(root, "tests/fixtures/volumes/lps.nii.gz")).subarray(0, 300));
  await page.setInputFiles("#score-files", [join(root, "tests/fixtures/volumes/uint8.nii"), cut]);
  await page.waitForFunction(() => document.querySelector("#results").textContent.includes("cut.nii.gz: truncated"), null, { timeout: 2 * MINUTE });
  check((await text("#results")).includes("worst: axial slice"), `a volume's row names its worst slice: ${await text("#results")}`);
  await page.click("#results button:text-is('uint8.nii')");
  await page.waitForFunction(() => document.querySelector("#view-name").textContent.startsWith("uint8.nii — axial slice"), null, { timeout: MINUTE });
  const slice = await page.evaluate(() => [document.querySelector("#overlay").width, document.querySelector("#overlay").height,
    document.querySelector("#slice-control").hidden, document.querySelector("#view-volume").textContent]);
  check(slice[0] === 7 && slice[1] === 6 && !slice[2] && slice[3].includes("worst slice"),
    `the viewer shows a 7×6 slice with its slider and the volume's verdict: ${JSON.stringify(slice)}`);
  await page.locator("#slice").fill("0");
  await page.waitForFunction(() => document.querySelector("#view-name").textContent.endsWith("axial slice 0 of 5"), null, { timeout: MINUTE });
  await page.click("#results button.slices-toggle");
  check(await page.locator("#results tr.slice-row").count() === 5, "the volume's row expands to its 5 slices");
  await page.click("#results tr.slice-row button:text-is('axial slice 3')");
  await page.waitForFunction(() => document.querySelector("#view-name").textContent.endsWith("axial slice 3 of 5"), null, { timeout: MINUTE });
  const [niiDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-nifti")]);
  const nii = readFileSync(await niiDownload.path());
  check(niiDownload.suggestedFilename() === "uint8_anomaly.nii.gz" && nii[0] === 0x1f && nii[1] === 0x8b,
    `the anomaly map exported as NIfTI (${niiDownload.suggestedFilename()}, ${nii.length} bytes)`);
  const [zipDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-overlays")]);
  const listed = execFileSync("python3", ["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(' '.join(z.namelist()))",
    await zipDownload.path()], { encoding: "utf8" }).trim();
  check(zipDownload.suggestedFilename() === "uint8_overlays.zip" && listed === "axial_0000.png axial_0001.png axial_0002.png axial_0003.png axial_0004.png",
    `every slice's overlay in one ZIP (${zipDownload.suggestedFilename()}: ${listed})`);
  const [volCsv] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  const volRows = readFileSync(await volCsv.path(), "utf8").trim().split("\n").filter((l) => l.startsWith("uint8.nii,"));
  check(volRows.length === 6 && volRows.filter((l) => /,\d+,,$/.test(l)).length === 5 && /,,\d+,$/.test(volRows[5]),
    `the CSV has a row per slice and one for the volume: ${volRows.join(" | ")}`);

  // DICOM: the files of a series picked together are one volume, told apart from another file of
  // the same pick by their SeriesInstanceUID and named as the CLI names it (this model's window is
  // the default, `auto`: the CT series in HU is read by its percentiles; the 8-bit RLE file as is).
  const dicom = join(root, "tests/fixtures/dicom");
  await page.setInputFiles("#score-files", [...["a", "b", "c", "d", "e"].map((n) => join(dicom, "series", `${n}.dcm`)), join(dicom, "SC_rgb_rle.dcm")]);
  await page.waitForFunction(() => /series [\d.]+/.test(document.querySelector("#results").textContent)
    && document.querySelector("#results").textContent.includes("SC_rgb_rle.dcm"), null, { timeout: 2 * MINUTE });
  const seriesRow = await page.locator("#results button", { hasText: /^series [\d.]+$/ }).count();
  check(seriesRow === 1 && !/series [\d.]+: /.test(await text("#results")),
    `a DICOM series is read and scored as one volume, named "series <UID>" (${seriesRow} row)`);
  await page.click("#results button:text-is('SC_rgb_rle.dcm')");
  await page.waitForFunction(() => document.querySelector("#view-name").textContent.startsWith("SC_rgb_rle.dcm — axial slice 0 of 1"), null, { timeout: MINUTE });
  const rle = await page.evaluate(() => [document.querySelector("#overlay").width, document.querySelector("#overlay").height]);
  check(rle.join("x") === "100x100", `a DICOM file (RLE, colour) is scored as a one-slice volume (${rle.join("x")})`);

  // Training on normal volumes (their slices) with a percentile window: a float volume is then
  // scored.
  const vols = join(root, "tests/fixtures/volumes");
  await page.setInputFiles("#normal-files", [join(vols, "uint8.nii"), join(vols, "lps.nii.gz"), join(vols, "oblique.nii.gz")]);
  await page.waitForFunction(() => document.querySelector("#normal-count").textContent.includes("3 volumes"), null, { timeout: MINUTE });
  check((await text("#normal-count")).startsWith("0 normal images and 3 volumes"), `normal volumes chosen: ${await text("#normal-count")}`);
  await page.evaluate(() => { document.querySelector("details.options").open = true; });
  await page.selectOption("[data-fit=window]", "percentile");
  await page.fill("[data-fit=epochs]", "2");
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("trained on"), null, { timeout: 5 * MINUTE });
  await page.setInputFiles("#score-files", join(vols, "float32.nii"));
  await page.waitForFunction(() => document.querySelector("#results").textContent.includes("float32.nii"), null, { timeout: 2 * MINUTE });
  check((await page.locator("#results button:text-is('float32.nii')").count()) === 1,
    "a model trained on volumes with a percentile window scores a float volume");
  await page.selectOption("[data-fit=window]", "auto");
  await page.evaluate(() => { document.querySelector("details.options").open = false; });

  // 4. Reload: the weights (and the model trained on them) are still there.
  await page.reload();
  await ready();
  check((await text("#backbone-status")).includes("kept on this device"), `after a reload the weights are back: ${await text("#backbone-status")}`);
  check((await text("#model-status")).includes("trained on"), "after a reload the model is back");

  // 5. The built-in sample, end to end.
  await page.click("#sample-run");
  await page.waitForFunction((n) => document.querySelector("#score-status").textContent.includes(`${n} images scored`), manifest.test.length, { timeout: 2 * MINUTE });
  check(await page.locator("#error").isHidden(), "the sample runs without an error");
  const verdicts = await page.locator("#results tbody tr").count();
  check(verdicts === manifest.test.length, `the sample fills the table (${verdicts} rows)`);
  // The sample demonstrates the method: every defective image scores above every normal one, and
  // the verdicts say so (its README gives the numbers).
  const sampleRows = await page.locator("#results tbody tr").evaluateAll((trs) => trs.map((tr) =>
    ({ name: tr.cells[1].textContent, score: Number(tr.cells[2].textContent), verdict: tr.cells[3].textContent })));
  const normalRows = sampleRows.filter((r) => manifest.test.some((t) => t.mask === null && t.image.endsWith(r.name)));
  const defectRows = sampleRows.filter((r) => !normalRows.includes(r));
  const worstNormal = Math.max(...normalRows.map((r) => r.score));
  const weakestDefect = Math.min(...defectRows.map((r) => r.score));
  check(normalRows.length >= 2 && defectRows.length >= 2 && weakestDefect > worstNormal &&
    sampleRows.every((r) => r.verdict === (normalRows.includes(r) ? "normal" : "anomalous")),
    `the sample ranks every defect above every normal image (${sampleRows.map((r) => `${r.name} ${r.score} ${r.verdict}`).join(", ")})`);
  await audit("the page with the sample's overlay and table");
  await page.locator("#score-section").screenshot({ path: join(out, "sample.png") });
  await page.screenshot({ path: join(out, "page-sample.png"), fullPage: true });

  // 6. The whole flow with the keyboard alone — sample → train → score → table → viewer — each
  // control reached with Tab (in page order) and shown with a visible focus ring.
  await page.reload();
  await ready();
  await page.evaluate(() => document.activeElement?.blur());
  const tabTo = async (selector, what, label) => {
    for (let i = 0; i < 120; i++) {
      await page.keyboard.press("Tab");
      const here = await page.evaluate(([sel, text]) => {
        const a = document.activeElement;
        const s = getComputedStyle(a);
        const ring = (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none";
        return { at: a.matches(sel) && (text === undefined || a.textContent === text), ring };
      }, [selector, label]);
      if (here.at) {
        check(here.ring, `keyboard: ${what} is reached with Tab and its focus is visible`);
        return;
      }
    }
    throw new Error(`keyboard: ${what} (${selector}) cannot be reached with Tab`);
  };
  // Space (or Enter) on a focused file input opens the chooser. Chromium now and then ignores the
  // key while the page is still busy from the step before: try again, still by keyboard only.
  const pickWithKeyboard = async (files) => {
    for (const [attempt, key] of ["Space", "Enter", "Space", "Enter"].entries()) {
      const chooser = page.waitForEvent("filechooser", { timeout: 5000 }).catch(() => null);
      await page.keyboard.press(key);
      const opened = await chooser;
      if (opened) {
        if (attempt > 0) console.log(`     note: the file chooser opened at attempt ${attempt + 1} (${key})`);
        return opened.setFiles(files);
      }
    }
    throw new Error("keyboard: neither Space nor Enter opened the file chooser");
  };
  await tabTo("#sample-run", "the sample button");
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("#score-status").textContent.includes(`${n} images scored`), manifest.test.length, { timeout: 2 * MINUTE });
  check(await page.locator("#error").isHidden(), "keyboard: the sample runs");
  await tabTo("#normal-files", "the normal-images picker");
  await pickWithKeyboard(manifest.normal.slice(0, 6).map((p) => join(sample, p)));
  await tabTo("[data-fit=epochs]", "the epochs field");
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.type("3");
  await tabTo("#fit-run", "the train button");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("trained on"), null, { timeout: 5 * MINUTE });
  check((await page.locator("#fit-log li").count()) === 3, "keyboard: a model trained for the 3 epochs typed");
  await tabTo("#score-files", "the score picker");
  await pickWithKeyboard([join(sample, "test", "good_0.png"), join(sample, defect.image)]);
  await page.waitForFunction(() => document.querySelector("#score-status").textContent.includes("2 images scored"), null, { timeout: 2 * MINUTE });
  const second = defect.image.split("/").pop();
  await tabTo("#results tbody button", "a row of the results table", second);
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("#view-name").textContent === n, second, { timeout: MINUTE });
  check(true, `keyboard: Enter on a row opens ${second} in the viewer`);

  // 7. Teaching the model, keyboard only: mark a row normal and one anomalous (N and A on the
  // row), learn from the marks, set the threshold by a rule; the marks and the versions survive a
  // reload, and an earlier version comes back.
  const pressed = (name, mark) => page.evaluate(([n, m]) =>
    document.querySelector(`#results button[aria-label="mark ${n} ${m}"]`)?.getAttribute("aria-pressed"), [name, mark]);
  await tabTo("#results tbody button", "the normal row", "good_0.png");
  await page.keyboard.press("n");
  await tabTo("#results tbody button", "the defective row", second);
  await page.keyboard.press("a");
  check(await pressed("good_0.png", "normal") === "true" && await pressed(second, "anomalous") === "true",
    "keyboard: N and A on a row mark it normal and anomalous");
  check((await text("#marks-summary")).startsWith("1 marked normal, 1 marked anomalous"), `the marks are counted: ${await text("#marks-summary")}`);
  await tabTo("#learn-run", "the learn button");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => /^learned from|failed/.test(document.querySelector("#learn-status").textContent), null, { timeout: 5 * MINUTE });
  check((await text("#learn-status")).includes("learned from 1 marked image and 1 of the images it was trained on: version 2"),
    `learning from the marks makes version 2 on the model's normal set: ${await text("#learn-status")}`);
  check((await text("#learn-report")).includes("verdict"), `what learning changed is reported: ${await text("#learn-report")}`);
  await tabTo("#rule-kind", "the rule picker");
  await tabTo("#rule-apply", "the rule button");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#model-rule").textContent.startsWith("version 3"), null, { timeout: MINUTE });
  const ruleLine = await text("#model-rule");
  check(ruleLine.includes("fpr:0.01") && ruleLine.includes("at least 100 normal images"),
    `a false-alarm rule on one marked normal is set, with the count it needs: ${ruleLine}`);
  await page.locator("#teach-section").screenshot({ path: join(out, "teach.png") });
  await audit("the page with marks, the threshold chart and versions");
  await page.reload();
  await ready();
  await tabTo("#sample-run", "the sample button, after a reload");
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelector("#score-status").textContent.includes(`${n} images scored`), manifest.test.length, { timeout: 2 * MINUTE });
  check(await pressed("good_0.png", "normal") === "true" && await pressed(second, "anomalous") === "true", "the marks survive a reload");
  const versions = await page.locator("#versions option").allTextContents();
  check(versions.length >= 3 && versions.some((v) => v.includes("version 3")) && versions.some((v) => v.includes("version 1")),
    `the versions survive a reload: ${versions.join(" | ")}`);
  await tabTo("#versions", "the versions list");
  await page.keyboard.press("Home");
  await tabTo("#version-use", "the go-back button");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#model-rule").textContent.startsWith("version 1"), null, { timeout: MINUTE });
  check((await text("#model-rule")).includes("quantile"), `back to version 1: ${await text("#model-rule")}`);
  const marksCsv = await page.evaluate(() => localStorage.getItem("dino-ar.marks"));
  check(marksCsv.startsWith("file,slice,fingerprint,mark\n") && marksCsv.split("\n").filter(Boolean).length === 3,
    `the marks are kept as the library's CSV: ${JSON.stringify(marksCsv)}`);

  // 8. Bad days (issue 30): the worker killed in the middle of training and of scoring, a reload
  // during training, the device's storage full in the middle of a save, then refused, and a
  // 2 GB file: each time the page says what happened, loses nothing it had kept, and works on.
  // The worker is killed as the browser would end it: its script stopped where it is
  // (Runtime.terminateExecution), then the worker closed, through the DevTools protocol.
  const killWorker = async (p) => {
    const cdp = await browser.newBrowserCDPSession();
    try {
      const { targetInfos } = await cdp.send("Target.getTargets");
      const pageTarget = targetInfos.find((t) => t.type === "page" && t.url === p.url());
      // The page's engine worker (an earlier, retired one may still be listed: each is tried).
      const workers = targetInfos.filter((t) => t.type === "worker" && new URL(t.url).pathname.endsWith("/worker.js") &&
        (!t.openerId || !pageTarget || t.openerId === pageTarget.targetId));
      for (const worker of workers) {
        try {
          const { sessionId } = await cdp.send("Target.attachToTarget", { targetId: worker.targetId, flatten: false });
          const send = (id, method, params = {}) =>
            cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method, params }) });
          await send(1, "Runtime.terminateExecution");
          await send(2, "Runtime.evaluate", { expression: "self.close()" });
        } catch {
          // gone already
        }
      }
    } finally {
      await cdp.detach().catch(() => {});
    }
  };
  const stored = (p, name) => p.evaluate(async (n) => {
    const d = await (await navigator.storage.getDirectory()).getDirectoryHandle("dino-ar");
    const names = [];
    for await (const k of d.keys()) names.push(k);
    const meta = await (await (await d.getFileHandle(n)).getFile()).text();
    return { meta, names: names.sort() };
  }, name);
  const errorText = async () => ((await page.locator("#error").isHidden()) ? "" : await text("#error-text"));

  // 8a. Killed in the middle of training: the error says so, the model already loaded stays, and
  // the next action (the sample) works on a fresh worker.
  const modelBefore = await text("#model-status");
  const storedBefore = await stored(page, "model.json");
  const storedName = JSON.parse(storedBefore.meta).name; // what a new visit loads
  await page.setInputFiles("#normal-files", normals);
  await page.fill("[data-fit=epochs]", "500");
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("training:"), null, { timeout: 2 * MINUTE });
  await killWorker(page);
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent === "training failed", null, { timeout: MINUTE });
  const killedTraining = await errorText();
  check(killedTraining.includes("stopped unexpectedly in the middle of the work"), `a worker killed while training is noticed and said: "${killedTraining}"`);
  check((await text("#model-status")) === modelBefore, "the model loaded before stays loaded");
  await page.click("#sample-run");
  await page.waitForFunction((n) => document.querySelector("#score-status").textContent.includes(`${n} images scored`), manifest.test.length, { timeout: 2 * MINUTE });
  check(await page.locator("#error").isHidden(), "after the kill, the next action works on a fresh worker");

  // 8b. Killed in the middle of scoring a batch: the input it was on is a row saying so, the
  // batch goes on on a fresh worker, every other input is scored.
  const batch = manifest.normal.map((p) => join(sample, p));
  const rowsBefore = await page.locator("#results tbody tr").count();
  await page.setInputFiles("#score-files", batch);
  await page.waitForFunction(() => /scoring .* \((\d+) of/.exec(document.querySelector("#score-status").textContent)?.[1] >= 3, null, { timeout: 2 * MINUTE });
  await killWorker(page);
  await page.waitForFunction(() => /images? scored/.test(document.querySelector("#score-status").textContent), null, { timeout: 3 * MINUTE });
  const batchRows = (await page.locator("#results tbody tr").evaluateAll((trs) => trs.map((tr) => tr.textContent))).slice(rowsBefore);
  const lostRows = batchRows.filter((r) => r.includes("stopped unexpectedly"));
  check(batchRows.length === batch.length && lostRows.length <= 1 && batchRows.length - lostRows.length >= batch.length - 1,
    `a worker killed while scoring loses at most the input it was on (${batchRows.length} rows, ${lostRows.length} lost: ${await text("#score-status")})`);
  check((await errorText()).includes("stopped unexpectedly"), "the kill is said");

  // 8c. A reload in the middle of training: the stored model is the last complete one.
  await page.setInputFiles("#normal-files", normals);
  await page.click("#fit-run");
  await page.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("training:"), null, { timeout: 2 * MINUTE });
  await page.reload();
  await ready();
  check((await text("#model-status")).startsWith(`${storedName}:`) && (await stored(page, "model.json")).meta === storedBefore.meta,
    `a reload during training finds the model stored before: ${await text("#model-status")}`);

  // 8d. Storage full in the middle of saving a new model (the test makes the bundle's write fail
  // after its first chunk, as a full disk would): said, the new model works for this visit, the
  // stored one is untouched (no torn or stray file), and it is what the next visit loads.
  await context.addInitScript(() => {
    const create = FileSystemFileHandle.prototype.createWritable;
    FileSystemFileHandle.prototype.createWritable = async function (...args) {
      const w = await create.apply(this, args);
      if (globalThis.__fullFor && this.name.startsWith(globalThis.__fullFor)) {
        const write = w.write.bind(w);
        w.write = (chunk) => write(chunk).then(() => {
          throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
        });
      }
      return w;
    };
  });
  await page.reload();
  await ready();
  await page.evaluate(() => (globalThis.__fullFor = "model."));
  await page.setInputFiles("#normal-files", normals);
  await page.fill("[data-fit=epochs]", "3");
  await page.click("#fit-run");
  await page.waitForFunction(() => /^trained on|failed/.test(document.querySelector("#fit-status").textContent), null, { timeout: 2 * MINUTE });
  const full = await text("#storage-status");
  check(full.includes("could not store") && full.includes("quota") && (await text("#model-status")).startsWith("model-12-normals"),
    `a full disk while saving is said, and the new model works for this visit: "${full}"`);
  const afterFull = await stored(page, "model.json");
  check(afterFull.meta === storedBefore.meta && afterFull.names.filter((n) => n.startsWith("model.")).length === 2,
    `the stored model is untouched, no stray file (${afterFull.names.filter((n) => n.startsWith("model.")).join(", ")})`);
  await page.reload();
  await ready();
  check((await text("#model-status")).startsWith(`${storedName}:`), `the next visit loads the last complete model: ${await text("#model-status")}`);

  // 8e. Storage refused (a private window, a policy): the page says so and runs without it; and a
  // 2 GB file is refused from its size before it is read, the other inputs scored.
  const refused = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
  await refused.addInitScript(() => {
    StorageManager.prototype.getDirectory = () => Promise.reject(new DOMException("The request is not allowed.", "SecurityError"));
  });
  const bare = await refused.newPage();
  bare.on("pageerror", (e) => consoleErrors.push(e.message));
  await bare.goto(base);
  await bare.waitForSelector("body[data-ready=true]", { timeout: MINUTE });
  const note = await bare.locator("#storage-status").innerText();
  check(note.includes("refuses") && (await bare.locator("#error").isHidden()), `storage refused is a note, not an error: "${note}"`);
  await bare.setInputFiles("#backbone-files", [join(root, "tests/fixtures/tiny/hf.safetensors"), join(root, "tests/fixtures/tiny/config.json")]);
  await bare.waitForSelector("#backbone-info:not([hidden])", { timeout: MINUTE });
  await bare.setInputFiles("#normal-files", normals);
  await bare.fill("[data-fit=epochs]", "3");
  await bare.click("#fit-run");
  await bare.waitForFunction(() => document.querySelector("#fit-status").textContent.startsWith("trained on"), null, { timeout: 2 * MINUTE });
  const hugeDir = mkdtempSync(join(tmpdir(), "dino-ar-huge-"));
  const huge = join(hugeDir, "huge.nii");
  writeFileSync(huge, "");
  truncateSync(huge, 2e9); // sparse: 2 GB that take no disk
  await bare.setInputFiles("#score-files", [huge, join(sample, "test", "good_0.png")]);
  await bare.waitForFunction(() => /scored/.test(document.querySelector("#score-status").textContent), null, { timeout: 2 * MINUTE });
  const hugeRow = await bare.locator("#results tbody tr", { hasText: "huge.nii" }).innerText();
  check(hugeRow.includes("2.00 GB") && hugeRow.includes("MAX_FILE_BYTES") && (await bare.locator("#score-status").innerText()).startsWith("1 image scored"),
    `storage refused, the page trains and scores; a 2 GB file is refused unread: "${hugeRow.replace(/\s+/g, " ")}"`);
  rmSync(hugeDir, { recursive: true, force: true });
  await refused.close();

  check(consoleErrors.length === 0, `no uncaught errors in the page (${consoleErrors.join("; ")})`);
  check(outside.length === 0, `no request left the origin (${outside.join(", ")})`);
  console.log(`     screenshots in ${out}`);
} catch (e) {
  failed = true;
  console.error(e);
  if (page) {
    // Where the page stood when the test gave up.
    for (const id of ["results", "error-text", "backend-status", "backbone-status", "model-status", "fit-status", "score-status"]) {
      console.error(`     #${id}: ${await page.locator(`#${id}`).innerText().catch(() => "?")}`);
    }
    await page.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
  }
} finally {
  await browser.close();
  server.stop();
}
process.exit(failed ? 1 : 0);
