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
