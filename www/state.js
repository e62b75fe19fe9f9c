// What the page holds: the engine (the worker that owns the Detector) and the state every part of
// the page reads — the backbone, the model, the scored results, the view, the threshold in use.
import { Engine } from "./engine.js";
import { dino } from "./library.js";
import { $, fmt } from "./ui.js";

export const engine = new Engine();

export const state = {
  backbone: null, // { name, size, source, info }
  model: null, // { name, info, bundle: Blob }
  // { name, item, score, top1, grid, gridH, gridW, width, height, error } (`item`: www/files.js's,
  // with the output names' `stem`); a volume also has
  // `volume` (how the model cuts it), `slices` (each slice's result), `worst`, `slice` (the one
  // shown: its grid and size are the row's grid and size) and `anomalyMap` (.nii.gz bytes).
  results: [],
  current: -1,
  sort: { key: null, dir: 1 },
  view: null, // { base: ImageData, map: Float32Array, result }
  probe: null, // patch [row, col] under the pointer or the keyboard cursor
  threshold: NaN, // the verdict threshold in use: the model's, or the slider's
  device: null, // where the engine computes: "cpu" or "gpu" (the library's answer to `auto`)
};

// The names a row's exports take, as `dino-ar score` names its outputs.
export const outputsOf = (r, slice) => dino.outputNames(r.item.stem, r.volume?.plane, slice);
// The threshold is kept exactly (the model's own value, not the slider's nearest step).
export function threshold() {
  return state.threshold;
}
export function setThreshold(t) {
  state.threshold = t;
  $("threshold").value = t;
  $("threshold-value").textContent = fmt(t);
}
export const verdictOf = (r) => (r.error ? "error" : dino.verdict(r.score, threshold()));

// ---- marks: what the person said about a row ----------------------------------------------
// Keyed by the file's fingerprint (the library's: the start of its SHA-256) and the slice, so a
// mark follows the image, not its name; kept on this device (localStorage, as the library's
// marks CSV) so a reload keeps them. Nothing leaves the device.
const MARKS_KEY = "dino-ar.marks";
const keyOf = (fingerprint, slice) => `${fingerprint}:${slice ?? ""}`;
export const marks = new Map(); // key → { file, slice, fingerprint, mark }

export function loadMarks() {
  marks.clear();
  const text = globalThis.localStorage?.getItem(MARKS_KEY);
  if (!text) return;
  try {
    for (const m of dino.marksFromCsv(text)) marks.set(keyOf(m.fingerprint, m.slice), m);
  } catch {
    // Marks this version cannot read are left where they are, not silently rewritten.
  }
}

function saveMarks() {
  try {
    globalThis.localStorage?.setItem(MARKS_KEY, dino.marksToCsv([...marks.values()]));
  } catch {
    // Storage full or refused: the marks still hold for this visit (and export as CSV).
  }
}

// The mark of a row (`slice` for one of a volume's slices; null: the whole file), or undefined.
export const markOf = (r, slice = null) => (r.fingerprint ? marks.get(keyOf(r.fingerprint, slice))?.mark : undefined);

// `mark`: "normal" | "anomalous" | null (clears it).
export function setMark(r, slice, mark) {
  if (!r.fingerprint) return;
  const key = keyOf(r.fingerprint, slice);
  if (mark) marks.set(key, { file: r.name, slice, fingerprint: r.fingerprint, mark });
  else marks.delete(key);
  saveMarks();
}

export function replaceMarks(list) {
  marks.clear();
  for (const m of list) marks.set(keyOf(m.fingerprint, m.slice), m);
  saveMarks();
}
