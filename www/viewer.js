// The viewer: one result drawn with its anomaly map (the library's drawing rule), the patch under
// the pointer, what the model saw (its receptive field and blind spot, the embedding and prediction
// grids), a volume's slices, and the exports of what is shown.
import { dino } from "./library.js";
import { $, download, fmt, guard, showError } from "./ui.js";
import { engine, outputsOf, setThreshold, state, threshold, verdictOf } from "./state.js";

// What the page wires in: called when what the viewer shows changed (the table marks its row).
export const hooks = { changed: () => {} };

// Show slice `n` of a volume's row: its grid and size become the row's (the table keeps the
// volume's own score, its worst slice's).
export function setSlice(r, n) {
  const s = r.slices[n];
  Object.assign(r, { slice: n, grid: s.grid, gridH: s.gridH, gridW: s.gridW, width: s.width, height: s.height });
  r.explanation = null;
}

// What the viewer draws the map over: the picture, or the volume's slice as the model saw it.
async function baseBitmap(r) {
  const img = r.slices ? await engine.slice(r.item, r.slice) : await engine.picture(r.item);
  return await createImageBitmap(new ImageData(new Uint8ClampedArray(img.rgba.buffer), img.width, img.height));
}

export async function show(index, slice) {
  const r = state.results[index];
  if (!r || r.error) return;
  state.current = index;
  if (r.slices && slice !== undefined && slice !== r.slice) setSlice(r, slice);
  const bitmap = await baseBitmap(r);
  const canvas = $("overlay");
  [canvas.width, canvas.height] = [r.width, r.height];
  canvas.dataset.gridRows = r.gridH; // the patch grid's rows, for whoever reads the canvas
  // Shown at a comfortable size whatever the image's: up to 34 rem wide, 75 % of the window high.
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize);
  canvas.style.width = `${Math.round(Math.min(34 * rem, (0.75 * innerHeight * r.width) / r.height))}px`;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, r.width, r.height);
  bitmap.close();
  state.view = { base: ctx.getImageData(0, 0, r.width, r.height), map: dino.upsampleMap(r.grid, r.gridH, r.gridW, r.height, r.width), result: r };
  state.probe = null;
  $("viewer").hidden = false;
  $("view-name").textContent = r.slices ? `${r.name} — ${r.volume.plane} slice ${r.slice} of ${r.slices.length}` : r.name;
  $("slice-control").hidden = !r.slices;
  $("export-nifti").hidden = !r.slices;
  $("export-overlays").hidden = !r.slices;
  $("view-volume").hidden = !r.slices;
  if (r.slices) {
    $("slice").max = r.slices.length - 1;
    $("slice").value = r.slice;
    $("slice-value").textContent = `${r.slice} of ${r.slices.length}`;
    const notes = [r.volume.warning, ...r.volume.notes].filter(Boolean).join("; ");
    $("view-volume").textContent = `Volume: ${r.volume.plane} slices through the model's window (${r.volume.window}); ` +
      `its score is its worst slice's (slice ${r.worst}: ${fmt(r.score)}, ${verdictOf(r)})` + (notes ? `. ${notes}` : "");
  }
  drawView();
  hooks.changed();
}

$("slice").oninput = () =>
  guard(async () => {
    if (state.current >= 0) await show(state.current, Number($("slice").value));
  });

// Every slice's overlay as a PNG (as `dino-ar score` writes them), in one ZIP.
$("export-overlays").onclick = () =>
  guard(async () => {
    const r = state.view?.result;
    if (!r?.slices) return;
    const names = [];
    const files = [];
    for (const [n, s] of r.slices.entries()) {
      $("score-status").textContent = `drawing the overlay of slice ${n + 1} of ${r.slices.length}`;
      const img = await engine.slice(r.item, n);
      const base = new ImageData(new Uint8ClampedArray(img.rgba.buffer), img.width, img.height);
      const map = dino.upsampleMap(s.grid, s.gridH, s.gridW, img.height, img.width);
      const canvas = new OffscreenCanvas(img.width, img.height);
      canvas.getContext("2d").putImageData(renderOverlay(base, map, overlayOptions()), 0, 0);
      const png = await canvas.convertToBlob({ type: "image/png" });
      names.push(outputsOf(r, n).sliceOverlay);
      files.push(new Uint8Array(await png.arrayBuffer()));
    }
    $("score-status").textContent = "";
    download(new Blob([dino.zipFiles(names, files)], { type: "application/zip" }), `${outputsOf(r).sliceOverlays}.zip`);
  });

// The anomaly map of the volume on its own voxel grid, with its affine: it opens aligned over the
// scan in 3D Slicer or ITK-SNAP.
$("export-nifti").onclick = () => {
  const r = state.view?.result;
  if (r?.anomalyMap) download(new Blob([r.anomalyMap], { type: "application/gzip" }), outputsOf(r).anomalyMap);
};

export function overlayOptions() {
  const i = state.model.info;
  return { colormap: $("colormap").value, opacity: Number($("opacity").value), threshold: threshold(),
    displayLow: i.displayLow, displayHigh: i.displayHigh, contour: $("contour").checked };
}

// The library draws the map over the image (the same rule as the CLI's overlay PNGs).
export function renderOverlay(base, map, options) {
  const px = dino.renderOverlay(base.data, base.width, base.height, map, options);
  return new ImageData(new Uint8ClampedArray(px.buffer, px.byteOffset, px.length), base.width, base.height);
}

export function drawView() {
  const v = state.view;
  if (!v) return;
  const r = v.result;
  const ctx = $("overlay").getContext("2d");
  ctx.putImageData(renderOverlay(v.base, v.map, overlayOptions()), 0, 0);
  const explain = $("explain").checked;
  let counts = null; // patches of the grid the probed prediction sees / cannot see
  if (state.probe) {
    // Outline the probed patch; with "show what the model saw", lighten the patches its
    // prediction could use (the receptive field; outside the grid they are zero padding) and
    // darken those before it, within reach, that it cannot see (the blind spot).
    const [row, col] = state.probe;
    const [sx, sy] = [r.width / r.gridW, r.height / r.gridH];
    if (explain) {
      const shade = (offsets, style) => {
        ctx.fillStyle = style;
        let n = 0;
        for (let k = 0; k < offsets.length; k += 2) {
          const [y, x] = [row + offsets[k], col + offsets[k + 1]];
          if (y >= 0 && x >= 0 && y < r.gridH && x < r.gridW) {
            ctx.fillRect(x * sx, y * sy, sx, sy);
            n++;
          }
        }
        return n;
      };
      counts = {
        seen: shade(state.model.field, "rgba(255, 255, 255, 0.45)"),
        blind: shade(state.model.blindSpot, "rgba(0, 0, 0, 0.55)"),
      };
    }
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = Math.max(1, r.width / 300);
    ctx.strokeRect(col * sx, row * sy, sx, sy);
  }
  $("explain-caption").hidden = !explain;
  if (explain) $("explain-caption").textContent = explainCaption(counts);
  drawExplanation(explain ? r : null);
  // A volume's viewer judges the slice shown; the table judges the volume (its worst slice).
  const shown = r.slices ? { score: r.slices[r.slice].score, top1: r.slices[r.slice].scoreTop1 } : r;
  const verdict = verdictOf(shown);
  $("view-verdict").textContent = verdict;
  $("view-verdict").className = `verdict v-${verdict}`;
  $("view-score").textContent = fmt(shown.score);
  $("view-top1").textContent = fmt(shown.top1);
  $("view-threshold").textContent = `${fmt(threshold())} (calibrated ${fmt(state.model.info.threshold)})`;
  if (state.probe) {
    const [row, col] = state.probe;
    $("view-hover").textContent = `patch row ${row + 1}, column ${col + 1}: ${fmt(r.grid[row * r.gridW + col])}`;
  } else $("view-hover").textContent = "—";
}

// The embeddings, the prediction and the error, one pixel per patch. The explanation is asked of
// the worker once per result, when first wanted, and the grids are painted when it arrives or when
// the result or the overlay's settings change — not on every move of the probe.
function drawExplanation(r) {
  const box = $("explain-grids");
  if (!r || state.model.field.length === 0) {
    box.hidden = true;
    box.dataset.painted = "";
    return;
  }
  if (!r.explanation) {
    box.hidden = true; // not another image's grids while this one's are computed
    r.explanation = engine.explain(r.item, r.slice).then((x) => x.explanation, (e) => {
      showError(e.message);
      return null;
    });
    r.explanation.then(() => { if (state.view?.result === r) drawExplanation(r); });
    return;
  }
  const options = { ...overlayOptions(), opacity: 1, contour: false };
  const key = JSON.stringify([state.current, options]);
  if (box.dataset.painted === key) return;
  box.dataset.painted = key;
  r.explanation.then((e) => {
    if (state.view?.result !== r || !$("explain").checked) return;
    if (!e) {
      box.hidden = true;
      return;
    }
    const paint = (id, rgba) => {
      const c = $(id);
      [c.width, c.height] = [e.gridW, e.gridH];
      c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), e.gridW, e.gridH), 0, 0);
    };
    paint("explain-actual", e.actual);
    paint("explain-predicted", e.predicted);
    // The error grid in the overlay's colours: the map drawn at full opacity on opaque black.
    const black = new Uint8ClampedArray(e.gridW * e.gridH * 4);
    for (let i = 3; i < black.length; i += 4) black[i] = 255;
    paint("explain-error", dino.renderOverlay(black, e.gridW, e.gridH, r.grid, options));
    box.hidden = false;
  });
}

// What "show what the model saw" says, for the model in use and, once a patch is pointed at, the
// number of patches of this image its prediction sees and cannot see (`counts`).
function explainCaption(counts) {
  const spec = state.model.info.spec;
  if (state.model.field.length === 0) {
    return "The kNN baseline scores each patch on its own: its distance to the closest patch of the normal images.";
  }
  const blindHead = state.model.blindSpot.length > 0;
  const seen = counts ? `the ${counts.seen} patches before it that it can see (lightened)` : "patches before it (point at a patch or use the arrow keys to see which)";
  const holes = !blindHead
    ? " It sees every patch before it within its reach: no blind spot."
    : counts
      ? ` Darkened: ${counts.blind} patches before it, within its reach, that its masked convolutions never see (its blind spot).`
      : " Some patches before it, within its reach, its masked convolutions never see (its blind spot, darkened).";
  return `The model (${spec.variant} head) reads the image's patches in raster order, like text: left to right, top to bottom. ` +
    `It predicts each patch's embedding from ${seen}, never from the patch itself or anything after it. ` +
    `The map shows how far the real embedding is from the prediction.${holes}`;
}

for (const id of ["colormap", "opacity", "contour", "explain"]) $(id).oninput = drawView;
$("threshold").oninput = () => {
  state.threshold = Number($("threshold").value);
  $("threshold-value").textContent = fmt(threshold());
  drawView();
  hooks.changed();
};
$("threshold-reset").onclick = () => {
  setThreshold(state.model.info.threshold);
  drawView();
  hooks.changed();
};

// The pointer probes a patch: hovering with a mouse, or tapping on a touch screen (where the probe
// stays until the next tap, since a finger does not hover).
const probeAt = (e) => {
  const v = state.view;
  if (!v) return;
  const rect = e.target.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * v.result.gridW;
  const y = ((e.clientY - rect.top) / rect.height) * v.result.gridH;
  state.probe = [Math.min(Math.max(Math.floor(y), 0), v.result.gridH - 1), Math.min(Math.max(Math.floor(x), 0), v.result.gridW - 1)];
  drawView();
};
$("overlay").onpointermove = probeAt;
$("overlay").onpointerdown = probeAt;
$("overlay").onpointerleave = (e) => {
  if (e.pointerType !== "mouse") return;
  state.probe = null;
  drawView();
};
// Keyboard: arrows move the probed patch.
$("overlay").onkeydown = (e) => {
  const v = state.view;
  const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
  if (!v || !step) return;
  e.preventDefault();
  const [row, col] = state.probe ?? [0, 0];
  state.probe = [Math.min(Math.max(row + step[0], 0), v.result.gridH - 1), Math.min(Math.max(col + step[1], 0), v.result.gridW - 1)];
  drawView();
};

// The overlay at the image's own size, without the probe's outline.
$("export-png").onclick = () => {
  const v = state.view;
  const r = v.result;
  const name = r.slices ? outputsOf(r, r.slice).sliceOverlayAlone : outputsOf(r).overlay;
  const canvas = new OffscreenCanvas(v.base.width, v.base.height);
  canvas.getContext("2d").putImageData(renderOverlay(v.base, v.map, overlayOptions()), 0, 0);
  canvas.convertToBlob({ type: "image/png" }).then((blob) => download(blob, name));
};
