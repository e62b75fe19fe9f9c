// Teaching the model: the person's marks (counts, export, import), learning from them, the
// threshold rules with the marked scores' histogram and ROC, and the model's versions. Every rule
// is the library's (chooseThreshold, rocCurve, learn, calibrate): this file only gathers the
// marked rows and draws.
import * as storage from "./storage.js";
import { dino } from "./library.js";
import { $, download, el, fmt, guard, progress } from "./ui.js";
import { engine, marks, markOf, replaceMarks, setThreshold, state, threshold } from "./state.js";

// What the page wires in: `learned(bundle, name, normals)` loads a new version and keeps the
// results; `rescore()` scores the batch again (only the head runs: the embeddings are kept);
// `changed()` redraws what depends on the threshold.
export const hooks = { learned: async () => {}, rescore: async () => {}, changed: () => {} };

// The scores of the marked rows: a picture (or a volume marked whole) by its score, a marked
// slice by its own.
export function markedScores() {
  const normal = [];
  const anomalous = [];
  const add = (mark, score) => (mark === "normal" ? normal : mark === "anomalous" ? anomalous : null)?.push(score);
  for (const r of state.results) {
    if (r.error || !r.fingerprint) continue;
    add(markOf(r, null), r.score);
    r.slices?.forEach((s, n) => add(markOf(r, n), s.score));
  }
  return { normal, anomalous };
}

// The marked rows as the library's items: a whole file, or a volume with its marked slices.
function markedItems(mark) {
  const out = [];
  for (const r of state.results) {
    if (r.error || !r.fingerprint) continue;
    if (markOf(r, null) === mark) {
      out.push(r.item);
      continue;
    }
    const slices = (r.slices ?? []).map((_, n) => n).filter((n) => markOf(r, n) === mark);
    if (slices.length) out.push({ ...r.item, slices });
  }
  return out;
}

// ---- the rule ------------------------------------------------------------------------------

const RULE_DEFAULTS = { quantile: 0.99, fpr: 0.01, recall: 0.95 };
function rule() {
  const kind = $("rule-kind").value;
  return kind === "f1" ? "f1" : `${kind}:${$("rule-value").value.trim()}`;
}
$("rule-kind").onchange = () => {
  const kind = $("rule-kind").value;
  $("rule-value").hidden = kind === "f1";
  if (kind in RULE_DEFAULTS) $("rule-value").value = RULE_DEFAULTS[kind];
  render();
};
$("rule-value").oninput = () => render();

// ---- drawing -------------------------------------------------------------------------------

export function render() {
  const { normal, anomalous } = markedScores();
  const inBatch = normal.length + anomalous.length;
  const elsewhere = Math.max(0, marks.size - inBatch);
  $("marks-summary").textContent = `${normal.length} marked normal, ${anomalous.length} marked anomalous` +
    (elsewhere ? `; ${elsewhere} more mark${elsewhere === 1 ? "" : "s"} on images not in this batch (score them to use them)` : "");
  const busy = !$("learn-cancel").hidden;
  $("learn-run").disabled = busy || !state.model || markedItems("normal").length === 0;
  $("rule-apply").disabled = busy || !state.model;
  $("threshold-keep").disabled = busy || !state.model;
  $("marks-export").disabled = marks.size === 0;
  $("marks-clear").disabled = marks.size === 0;
  // The rule's choice on the marked scores, as calibrate will make it.
  let preview;
  try {
    const c = dino.chooseThreshold(rule(), normal, anomalous);
    preview = `threshold ${fmt(c.threshold)} — flags ${pct(c.falseAlarmRate)} of ${c.normal} marked normal` +
      (c.recall === null || c.recall === undefined ? "" : `, ${pct(c.recall)} of ${c.anomalous} marked anomalous`) +
      (c.warning ? `. ${c.warning}` : "");
  } catch (e) {
    preview = e.message;
  }
  $("rule-preview").textContent = preview;
  drawHistogram(normal, anomalous);
  drawRoc(normal, anomalous);
  const m = state.model?.info;
  $("model-rule").textContent = m
    ? `version ${m.version}: threshold ${fmt(m.threshold)} set by ${m.rule} on ${m.calibrationImages} normal` +
      (m.anomalousImages ? ` and ${m.anomalousImages} anomalous` : "") + " images" + (m.warning ? ` — ${m.warning}` : "")
    : "";
}
const pct = (x) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)} %`;

// The histogram's score range, kept for the click that moves the threshold.
let range = [0, 1];
function drawHistogram(normal, anomalous) {
  const c = $("marks-chart");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const all = [...normal, ...anomalous, threshold()].filter(Number.isFinite);
  if (normal.length + anomalous.length === 0 || all.length === 0) {
    ctx.fillStyle = "#666";
    ctx.fillText("mark rows normal or anomalous to see their scores here", 8, c.height / 2);
    return;
  }
  let [lo, hi] = [Math.min(...all), Math.max(...all)];
  const pad = (hi - lo || 1) * 0.08;
  [lo, hi] = [lo - pad, hi + pad];
  range = [lo, hi];
  const bins = 24;
  const x = (v) => ((v - lo) / (hi - lo)) * c.width;
  const count = (list) => {
    const h = new Array(bins).fill(0);
    for (const v of list) h[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))]++;
    return h;
  };
  const [hn, ha] = [count(normal), count(anomalous)];
  const top = Math.max(1, ...hn, ...ha);
  const w = c.width / bins;
  for (const [h, colour] of [[hn, "rgba(40, 110, 220, 0.6)"], [ha, "rgba(220, 50, 40, 0.6)"]]) {
    ctx.fillStyle = colour;
    h.forEach((n, i) => n && ctx.fillRect(i * w + 1, c.height - 14 - (n / top) * (c.height - 24), w - 2, (n / top) * (c.height - 24)));
  }
  ctx.strokeStyle = "#0aa";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x(threshold()), 0);
  ctx.lineTo(x(threshold()), c.height - 12);
  ctx.stroke();
  ctx.fillStyle = "#333";
  ctx.fillText(fmt(lo), 2, c.height - 2);
  ctx.fillText(fmt(hi), c.width - 44, c.height - 2);
}

function drawRoc(normal, anomalous) {
  const c = $("roc-chart");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#bbb";
  ctx.strokeRect(0.5, 0.5, c.width - 1, c.height - 1);
  if (!normal.length || !anomalous.length) {
    $("roc-caption").textContent = "ROC: mark some normal and some anomalous rows";
    return;
  }
  const px = (p) => [p.falseAlarmRate * (c.width - 1), (1 - p.recall) * (c.height - 1)];
  ctx.strokeStyle = "#333";
  ctx.beginPath();
  dino.rocCurve(normal, anomalous).forEach((p, i) => (i ? ctx.lineTo(...px(p)) : ctx.moveTo(...px(p))));
  ctx.stroke();
  const at = dino.thresholdRates(threshold(), normal, anomalous);
  const [ox, oy] = px({ falseAlarmRate: at.falseAlarmRate, recall: at.recall ?? 0 });
  ctx.fillStyle = "#0aa";
  ctx.beginPath();
  ctx.arc(ox, oy, 4, 0, 2 * Math.PI);
  ctx.fill();
  $("roc-caption").textContent = `at ${fmt(threshold())}: ${pct(at.falseAlarmRate)} false alarms, recall ${pct(at.recall ?? 0)}`;
}

// A click on the histogram moves the threshold there (the slider, which the keyboard moves too).
$("marks-chart").onclick = (e) => {
  if (!state.model) return;
  const rect = e.target.getBoundingClientRect();
  const [lo, hi] = range;
  setThreshold(lo + ((e.clientX - rect.left) / rect.width) * (hi - lo));
  hooks.changed();
};

// ---- the model's new versions ---------------------------------------------------------------

async function calibrate(ruleText) {
  const { bundle, choice } = await engine.calibrate(markedItems("normal"), markedItems("anomalous"), ruleText);
  await hooks.learned(new Blob([bundle]), versionName(), state.model.normals);
  return choice;
}
const versionName = () => (state.model?.name ?? "model").replace(/(\.v\d+)?(\.safetensors)?$/, "") + ".safetensors";

$("rule-apply").onclick = () => guard(async () => {
  const c = await calibrate(rule());
  $("learn-report").replaceChildren(el("li", `threshold set to ${fmt(c.threshold)} by ${c.rule}` + (c.warning ? ` (${c.warning})` : "")));
});
// The slider's threshold, kept in the model (a new version) instead of forgotten on reload.
$("threshold-keep").onclick = () => guard(async () => {
  const c = await calibrate(`manual:${threshold()}`);
  $("learn-report").replaceChildren(el("li", `threshold ${fmt(c.threshold)} kept in the model`));
});

// Learn from the marks: the images marked normal join the model's normal set (the images it was
// trained on here, where the page has them), the head goes on from its weights for a few epochs,
// then the batch is scored again and the table shows what changed. Of the normal set it takes as
// many images as are marked, spread over the set: enough that the model does not forget it (on
// new images alone it would, tests/learn_native.rs), few enough to take seconds (BENCHMARKS §8).
function rehearsal(normalSet, count) {
  if (normalSet.length <= count) return normalSet;
  return Array.from({ length: count }, (_, k) => normalSet[Math.floor((k * normalSet.length) / count)]);
}
$("learn-run").onclick = () => guard(async () => {
  const marked = markedItems("normal");
  const set = [...rehearsal(state.model.normals ?? [], marked.length), ...marked];
  const rows = state.results.map((r) => ({ score: r.score, verdict: r.error ? "error" : dino.verdict(r.score, threshold()),
    slices: r.slices?.map((s) => ({ score: s.score, verdict: dino.verdict(s.score, threshold()) })) }));
  $("learn-cancel").hidden = false;
  render();
  const status = $("learn-status");
  status.textContent = "learning…";
  const started = performance.now();
  try {
    const { bundle } = await engine.learn(set, dino.learnDefaults(), (p) => {
      if (p.phase === "train") {
        status.textContent = `learning: epoch ${p.epoch}/${p.epochs}, loss ${p.loss.toFixed(5)}`;
        progress("learn-progress", (p.epoch - 1) * p.steps + p.step, p.epochs * p.steps);
      } else if (p.phase === "embed") status.textContent = `reading image ${p.image} of ${p.images}`;
    });
    // The model's normal set now holds the marked images too.
    const ruleBefore = state.model.info.rule;
    await hooks.learned(new Blob([bundle]), versionName(), [...(state.model.normals ?? []), ...marked]);
    // A threshold the person set by a rule on the marks is set again by it on the new scores:
    // learning alone would set it on its small hold-out (docs/results.md shows what that does).
    const kind = ruleBefore.split(":")[0];
    const needsAnomalous = kind === "f1" || kind === "recall";
    if ((kind === "fpr" || needsAnomalous) && (!needsAnomalous || markedItems("anomalous").length)) await calibrate(ruleBefore);
    status.textContent = "scoring the batch again…";
    const learnt = performance.now();
    state.results.forEach((r, i) => (r.before = rows[i]));
    await hooks.rescore();
    const secs = (a, b) => `${((b - a) / 1e3).toFixed(1)} s`;
    status.textContent = `learned from ${marked.length} marked image${marked.length === 1 ? "" : "s"}` +
      (set.length > marked.length ? ` and ${set.length - marked.length} of the images it was trained on` : "") +
      `: version ${state.model.info.version} (learning ${secs(started, learnt)}, scoring the batch again ${secs(learnt, performance.now())})`;
    report(rows);
  } catch (e) {
    status.textContent = e.kind === "cancelled" ? "learning cancelled" : "learning failed";
    if (e.kind !== "cancelled") throw e;
  } finally {
    $("learn-cancel").hidden = true;
    progress("learn-progress", null);
    render();
  }
});
$("learn-cancel").onclick = () => guard(() => engine.restart("learning cancelled"));

// What learning changed: verdicts that flipped, and the marked false alarms' new scores.
function report(before) {
  const lines = [];
  let flips = 0;
  state.results.forEach((r, i) => {
    if (r.error) return;
    const now = dino.verdict(r.score, threshold());
    if (now !== before[i].verdict) flips++;
    if (markOf(r, null) === "normal" && before[i].verdict === "anomalous") {
      lines.push(`${r.name}: ${fmt(before[i].score)} → ${fmt(r.score)} (${now})`);
    }
  });
  $("learn-report").replaceChildren(
    el("li", `${flips} verdict${flips === 1 ? "" : "s"} changed (marked in the table)`),
    ...lines.map((l) => el("li", l)),
  );
}

// ---- marks in and out ----------------------------------------------------------------------

$("marks-export").onclick = () => download(new Blob([dino.marksToCsv([...marks.values()])], { type: "text/csv" }), "dino-ar-marks.csv");
$("marks-import").onchange = (e) => guard(async () => {
  const f = e.target.files[0];
  e.target.value = "";
  if (!f) return;
  const read = dino.marksFromCsv(await f.text());
  replaceMarks([...marks.values(), ...read]);
  hooks.changed();
});
$("marks-clear").onclick = () => {
  replaceMarks([]);
  hooks.changed();
};

// ---- versions ------------------------------------------------------------------------------

// The versions made with the backbone loaded now (a model belongs to one backbone).
export async function renderVersions() {
  const backbone = state.backbone?.info.fingerprint;
  const list = (await storage.versions()).filter((v) => v.fingerprint === backbone);
  const select = $("versions");
  select.replaceChildren(...list.map((v) => el("option",
    `${v.n}. ${v.name} — version ${v.version}, threshold ${fmt(v.threshold)} (${v.rule}), ${v.at.slice(0, 16).replace("T", " ")}`,
    { value: v.n })));
  if (list.length) select.value = String(list[list.length - 1].n);
  $("version-use").disabled = list.length === 0;
  $("versions-note").textContent = (await storage.available())
    ? list.length ? "" : "each model trained, learned or calibrated here is kept on this device and listed here"
    : "this browser offers no private storage: versions are not kept";
}

$("version-use").onclick = () => guard(async () => {
  const n = Number($("versions").value);
  const bundle = await storage.loadVersion(n);
  if (!bundle) throw new Error(`version ${n} is no longer stored on this device`);
  const v = (await storage.versions()).find((x) => x.n === n);
  await hooks.learned(bundle, v?.name ?? versionName(), null, { version: false });
  $("learn-report").replaceChildren(el("li", `back to ${v?.name ?? "the model"} (stored version ${n})`));
  await hooks.rescore();
});
