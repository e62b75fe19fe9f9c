// Keeps the user's backbone weights (and the last model bundle) on this device, in the origin
// private file system (OPFS), so a reload does not ask for them again. Nothing is sent anywhere.
// Every function degrades to "not stored" where OPFS is missing (older browsers, private windows).

const DIR = "dino-ar";

async function dir() {
  if (!navigator.storage?.getDirectory) return null;
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(DIR, { create: true });
  } catch {
    return null;
  }
}

export async function available() {
  return (await dir()) !== null;
}

const CHUNK = 16 << 20;

// Writes in chunks so a large file reports progress (`onBytes(written)`).
async function writeFile(d, name, data, onBytes = () => {}) {
  const handle = await d.getFileHandle(name, { create: true });
  const w = await handle.createWritable();
  try {
    if (typeof data === "string") data = new Blob([data]);
    for (let at = 0; at < data.size; at += CHUNK) {
      await w.write(data.slice(at, at + CHUNK));
      onBytes(Math.min(at + CHUNK, data.size));
    }
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw new Error(`could not store ${name} on this device: ${e.message}`);
  }
}

async function readFile(d, name) {
  try {
    return await (await d.getFileHandle(name)).getFile();
  } catch {
    return null;
  }
}

// kind: "backbone" | "model". `files`: { name: Blob }, `meta`: anything JSON;
// `onBytes(done)` counts the bytes written over all files.
export async function save(kind, files, meta, onBytes = () => {}) {
  const d = await dir();
  if (!d) throw new Error("this browser offers no private file storage (OPFS); the weights are not kept");
  await forget(kind);
  let before = 0;
  for (const [name, blob] of Object.entries(files)) {
    await writeFile(d, `${kind}.${name}`, blob, (n) => onBytes(before + n));
    before += blob.size;
  }
  // The meta file goes last: a half-written save is never read back as complete.
  await writeFile(d, `${kind}.json`, JSON.stringify({ ...meta, files: Object.keys(files) }));
  // Ask the browser not to evict it under storage pressure (it may say no; that is fine).
  navigator.storage.persist?.().catch(() => {});
}

// → { meta, files: { name: File } } or null.
export async function load(kind) {
  const d = await dir();
  if (!d) return null;
  const metaFile = await readFile(d, `${kind}.json`);
  if (!metaFile) return null;
  try {
    const meta = JSON.parse(await metaFile.text());
    const files = {};
    for (const name of meta.files) {
      const f = await readFile(d, `${kind}.${name}`);
      if (!f) return null;
      files[name] = f;
    }
    return { meta, files };
  } catch {
    return null;
  }
}

export async function forget(kind) {
  const d = await dir();
  if (!d) return;
  const names = [];
  for await (const name of d.keys()) if (name.startsWith(`${kind}.`)) names.push(name);
  // The meta file first: from here on the entry reads as absent.
  names.sort((a, b) => (b.endsWith(".json") ? 1 : 0) - (a.endsWith(".json") ? 1 : 0));
  for (const name of names) await d.removeEntry(name).catch(() => {});
}

// ---- a model's versions --------------------------------------------------------------------
// Every model the page learned or calibrated is kept, so the person can go back to any of them.
// Each is its own entry (`version.N`): its bundle and { n, name, version, rule, threshold, at }.

const VERSION = /^version\.(\d+)\.json$/;

export async function versions() {
  const d = await dir();
  if (!d) return [];
  const list = [];
  for await (const name of d.keys()) {
    const m = VERSION.exec(name);
    if (!m) continue;
    const entry = await load(`version.${m[1]}`);
    if (entry) list.push(entry.meta);
  }
  return list.sort((a, b) => a.n - b.n);
}

// How many versions are kept: a model is a few MB (ViT-S/16's head: 14 MB), so the oldest go.
export const KEEP_VERSIONS = 20;

// Keeps `bundle` as the next version (the oldest beyond KEEP_VERSIONS are removed); → its number.
// Throws (with why) where storage refuses.
export async function saveVersion(bundle, meta) {
  const before = await versions();
  const n = Math.max(0, ...before.map((v) => v.n)) + 1;
  await save(`version.${n}`, { bundle }, { ...meta, n, at: new Date().toISOString() });
  for (const old of before.slice(0, Math.max(0, before.length + 1 - KEEP_VERSIONS))) await forget(`version.${old.n}`);
  return n;
}

export async function loadVersion(n) {
  return (await load(`version.${n}`))?.files.bundle ?? null;
}

export async function forgetVersions() {
  for (const v of await versions()) await forget(`version.${v.n}`);
}
