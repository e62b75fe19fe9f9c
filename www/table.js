// The batch table: a row per scored file (a volume's row expands to its slices), sortable, with a
// thumbnail and the verdict at the threshold in use; and its CSV, written by the library.
import { dino } from "./library.js";
import { $, download, el, fmt, guard } from "./ui.js";
import { engine, markOf, setMark, state, threshold, verdictOf } from "./state.js";
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

// What the person says about a row: two toggles, normal and anomalous (pressed again: cleared).
// From the keyboard, on any control of a row: N marks it normal, A anomalous, C clears.
export const hooks = { marked: () => {} };
function markCell(r, slice) {
  const cell = el("td", undefined, { className: "marks" });
  if (r.error || !r.fingerprint) return cell;
  const now = markOf(r, slice);
  for (const [mark, label] of [["normal", "normal"], ["anomalous", "anomalous"]]) {
    const b = el("button", label, { type: "button", className: `mark mark-${mark}` });
    b.setAttribute("aria-pressed", String(now === mark));
    b.setAttribute("aria-label", `mark ${r.name}${slice !== null ? ` slice ${slice}` : ""} ${mark}`);
    b.onclick = () => mark_(r, slice, now === mark ? null : mark);
    cell.append(b);
  }
  return cell;
}
function mark_(r, slice, mark) {
  setMark(r, slice, mark);
  renderTable();
  hooks.marked();
}
// Keys on a row's controls mark that row (the focus stays on the same control).
$("results").addEventListener("keydown", (e) => {
  const row = e.target.closest?.("tr[data-row]");
  if (!row || e.ctrlKey || e.metaKey || e.altKey) return;
  const mark = { n: "normal", a: "anomalous", c: null }[e.key.toLowerCase()];
  if (mark === undefined) return;
  e.preventDefault();
  const r = state.results[Number(row.dataset.row)];
  const slice = row.dataset.slice === undefined ? null : Number(row.dataset.slice);
  const focused = e.target.getAttribute("aria-label") ?? e.target.textContent;
  mark_(r, slice, mark);
  // The table was drawn again: put the focus back on the same control.
  const again = [...$("results").querySelectorAll("button")].find((b) => (b.getAttribute("aria-label") ?? b.textContent) === focused);
  again?.focus();
});

// "0.9831 (was 1.2300)": what learning changed, until the next change.
const was = (now, before, show) => (before === undefined || before === now ? show(now) : `${show(now)} (was ${show(before)})`);

export function renderTable() {
  $("batch").hidden = state.results.length === 0;
  const body = $("results").tBodies[0];
  body.replaceChildren(...sorted().map(({ r, index }) => {
    const tr = el("tr");
    tr.dataset.row = index;
    if (index === state.current) tr.className = "current";
    r.thumb ??= r.error ? null : thumbnail(r);
    const name = r.error ? el("span", r.name) : el("button", r.name, { type: "button", onclick: () => show(index, r.worst) });
    const cell = el("td");
    cell.append(name);
    const verdict = verdictOf(r);
    tr.append(
      el("td").appendChild(r.thumb ?? el("span", "—")).parentNode,
      cell,
      el("td", r.error ? "" : was(r.score, r.before?.score, fmt)),
      el("td", r.error ? `could not be scored: ${r.error}` : was(verdict, r.before?.verdict, (v) => v),
        { className: `v-${verdict}` + (r.before && r.before.verdict !== verdict ? " flipped" : "") }),
      markCell(r, null),
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
      row.dataset.row = index;
      row.dataset.slice = n;
      const before = r.before?.slices?.[n];
      row.append(el("td"), el("td").appendChild(el("button", `${r.volume.plane} slice ${n}`, { type: "button", onclick: () => show(index, n) })).parentNode,
        el("td", was(s.score, before?.score, fmt)), el("td", was(v, before?.verdict, (x) => x), { className: `v-${v}` + (before && before.verdict !== v ? " flipped" : "") }),
        markCell(r, n));
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
