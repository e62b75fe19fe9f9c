// The page's small tools: finding and making elements, numbers for people, messages, progress
// bars, downloads and drop zones. Nothing here knows about models.

export const $ = (id) => document.getElementById(id);
export const mb = (n) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
export const fmt = (x) => (Number.isFinite(x) ? x.toFixed(4) : "—");

export function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  Object.assign(e, attrs);
  return e;
}

export function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}
$("error-close").onclick = () => ($("error").hidden = true);

export function progress(id, value, max) {
  const p = $(id);
  p.hidden = value === null;
  if (value === undefined) p.removeAttribute("value");
  else if (value !== null) [p.max, p.value] = [max, value];
}

// Runs an action from a control: errors are shown, the page stays usable.
export async function guard(action) {
  try {
    $("error").hidden = true;
    return await action();
  } catch (e) {
    showError(e.message ?? String(e));
  }
}

export function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

export function dropZone(id, onFiles) {
  const zone = $(id);
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    guard(() => onFiles([...e.dataTransfer.files]));
  });
}
// A file dropped outside a zone must not navigate away from the page (and lose its state).
for (const ev of ["dragover", "drop"]) window.addEventListener(ev, (e) => e.preventDefault());
