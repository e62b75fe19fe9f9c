// Training: the normal files picked (read by the library's rules), the form's settings as fit
// options (checked by the library), the run with its progress, cancel.
import * as files from "./files.js";
import { $, el, guard, progress } from "./ui.js";
import { engine } from "./state.js";

// What the page wires in: `trained(bundle, name)` loads a model just fit, `changed()` updates the
// controls that depend on the training state.
export const hooks = { trained: async () => {}, changed: () => {} };

// The form's settings as fit options; the library checks them (and names a bad one).
export function fitOptions() {
  const options = {};
  for (const input of document.querySelectorAll("[data-fit]")) {
    const v = input.value.trim();
    options[input.dataset.fit] = input.type === "number" && v !== "" ? Number(v) : v;
  }
  if (/^\d+$/.test(options.size)) options.size = Number(options.size);
  return options;
}
export let normals = [];
// The picked normal files as the library reads them: pictures, volumes, DICOM series; a file it
// does not read is named, not silently dropped.
export async function setNormals(picked) {
  const all = await files.items(picked);
  normals = all.filter((i) => !i.error);
  const skipped = all.filter((i) => i.error).map((i) => i.error);
  const named = skipped.slice(0, 3).join("; ") + (skipped.length > 3 ? ` and ${skipped.length - 3} more` : "");
  const volumes = normals.filter((i) => i.kind !== "picture").length;
  $("normal-count").textContent = (normals.length
    ? `${normals.length - volumes} normal images` + (volumes ? ` and ${volumes} volumes (their slices)` : "") + " chosen"
    : "no normal images chosen") + (skipped.length ? `; skipped ${skipped.length}: ${named}` : "");
  hooks.changed();
}
$("normal-files").onchange = (e) => guard(() => setNormals(e.target.files));
$("normal-folder").onchange = (e) => guard(() => setNormals(e.target.files));

$("fit-run").onclick = () =>
  guard(async () => {
    // The worker has the library check the options before it reads any image.
    await train(normals, fitOptions(), `model-${normals.length}-normals.safetensors`);
  });

export async function train(items, options, name) {
  $("fit-cancel").hidden = false;
  hooks.changed();
  $("fit-log").replaceChildren();
  progress("fit-progress", 0, 1);
  const status = $("fit-status");
  status.textContent = "reading the images…";
  try {
    // A DICOM series goes as one item; the library reads every file and cuts volumes into slices.
    const result = await engine.fit(items, options, (p) => {
      if (p.phase === "read") {
        status.textContent = `reading file ${p.image} of ${p.images}`;
      } else if (p.phase === "embed") {
        status.textContent = `embedding image ${p.image} of ${p.images} with the backbone` +
          (p.images > items.length ? " (volumes count each slice)" : "");
        progress("fit-progress", p.image, p.images * 2);
      } else {
        const done = (p.epoch - 1) * p.steps + p.step;
        status.textContent = `training: epoch ${p.epoch}/${p.epochs}, step ${p.step}/${p.steps}, loss ${p.loss.toFixed(5)}`;
        progress("fit-progress", p.epochs * p.steps + done, p.epochs * p.steps * 2);
        if (p.step === p.steps) $("fit-log").append(el("li", `epoch ${p.epoch}: loss ${p.loss.toFixed(5)}`));
      }
    });
    status.textContent = "trained; loading the model…";
    await hooks.trained(new Blob([result.bundle]), name);
    status.textContent = `trained on ${items.length} ${items.length === 1 ? "file" : "files"}. Score images below, or download the bundle.`;
  } catch (e) {
    status.textContent = e.kind === "cancelled" ? "training cancelled" : "training failed";
    if (e.kind !== "cancelled") throw e;
  } finally {
    $("fit-cancel").hidden = true;
    progress("fit-progress", null);
    hooks.changed();
  }
}

$("fit-cancel").onclick = () => guard(() => engine.restart("training cancelled"));
