// The batch table: a row per scored file (a volume's row expands to its slices), sortable, with a
// thumbnail and the verdict at the threshold in use; and its CSV, written by the library.
import { dino } from "./library.js";
import { $, download, el, fmt, guard } from "./ui.js";
import { engine, state, threshold, verdictOf } from "./state.js";
import { overlayOptions, renderOverlay, show } from "./viewer.js";

function sorted() {
  const { key, dir } = state.sort;
  const rows = state.results.map((r, index) => ({ r, index }));
  if (!key) return rows;
  const value = (r) => (key === "score" ? (r.error ? -Infinity : r.score) : key === "verdict" ? verdictOf(r) : r.name);
  return rows.sort((a, b) => {
    const [x, y] = [value(a.r), value(b.r)];
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
}

const THUMB = 72;
function thumbnail(r) {
  const c = el("canvas", undefined, { width: THUMB, height: Math.max(1, Math.round((THUMB * r.height) / r.width)) });
  c.setAttribute("aria-hidden", "true");
  // A volume's thumbnail is its worst slice.
  const source = (r.slices ? engine.slice(r.item, r.worst) : engine.picture(r.item))
    .then((img) => new ImageData(new Uint8ClampedArray(img.rgba.buffer), img.width, img.height));
  const [grid, gridH, gridW] = r.slices ? [r.slices[r.worst].grid, r.slices[r.worst].gridH, r.slices[r.worst].gridW] : [r.grid, r.gridH, r.gridW];
  source.then((src) => createImageBitmap(src, { resizeWidth: c.width, resizeHeight: c.height, resizeQuality: "medium" }))
    .then((bmp) => {
      const ctx = c.getContext("2d");
      ctx.drawImage(bmp, 0, 0);
      bmp.close();
      const base = ctx.getImageData(0, 0, c.width, c.height);
      const map = dino.upsampleMap(grid, gridH, gridW, c.height, c.width);
      ctx.putImageData(renderOverlay(base, map, { ...overlayOptions(), contour: false }), 0, 0);
    })
    .catch(() => {});
  return c;
}

export function renderTable() {
  $("batch").hidden = state.results.length === 0;
  const body = $("results").tBodies[0];
  body.replaceChildren(...sorted().map(({ r, index }) => {
    const tr = el("tr");
    if (index === state.current) tr.className = "current";
    r.thumb ??= r.error ? null : thumbnail(r);
    const name = r.error ? el("span", r.name) : el("button", r.name, { type: "button", onclick: () => show(index, r.worst) });
    const cell = el("td");
    cell.append(name);
    const verdict = verdictOf(r);
    tr.append(
      el("td").appendChild(r.thumb ?? el("span", "—")).parentNode,
      cell,
      el("td", r.error ? "" : fmt(r.score)),
      el("td", r.error ? `could not be scored: ${r.error}` : verdict, { className: `v-${verdict}` }),
    );
    if (!r.slices) return [tr];
    // A volume lists its slices on demand, each a way into the viewer at that slice.
    const toggle = el("button", r.expanded ? "hide slices" : `${r.slices.length} slices`, {
      type: "button", className: "slices-toggle",
      onclick: () => { r.expanded = !r.expanded; renderTable(); },
    });
    toggle.setAttribute("aria-expanded", String(!!r.expanded));
    cell.append(el("span", ` worst: ${r.volume.plane} slice ${r.worst} `, { className: "hint" }), toggle);
    if (!r.expanded) return [tr];
    return [tr, ...r.slices.map((s, n) => {
      const v = verdictOf({ score: s.score });
      const row = el("tr", undefined, { className: "slice-row" + (index === state.current && n === r.slice ? " current" : "") });
      row.append(el("td"), el("td").appendChild(el("button", `${r.volume.plane} slice ${n}`, { type: "button", onclick: () => show(index, n) })).parentNode,
        el("td", fmt(s.score)), el("td", v, { className: `v-${v}` }));
      return row;
    })];
  }).flat());
  for (const th of $("results").tHead.rows[0].cells) {
    const key = th.querySelector("button")?.dataset.sort;
    if (key) th.setAttribute("aria-sort", state.sort.key === key ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
}

for (const b of $("results").tHead.querySelectorAll("button[data-sort]")) {
  b.onclick = () => {
    const key = b.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : key === "score" ? -1 : 1 };
    renderTable();
  };
}

// The same file as `dino-ar score` writes (the library writes both), at the threshold in use.
$("export-csv").onclick = () => guard(() => {
  const rows = sorted().flatMap(({ r }) => (r.error
    ? [{ file: r.name, threshold: threshold(), error: r.error }]
    : r.slices
      ? dino.volumeRows(r.name, r.slices, r.worst, threshold(), [...r.volume.notes, r.volume.warning].filter(Boolean))
      : [{ file: r.name, score: r.score, scoreTop1: r.top1, threshold: threshold() }]));
  download(new Blob([dino.scoresCsv(rows)], { type: "text/csv" }), "dino-ar-scores.csv");
});
