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
  let w;
  try {
    w = await (await d.getFileHandle(name, { create: true })).createWritable();
    if (typeof data === "string") data = new Blob([data]);
    for (let at = 0; at < data.size; at += CHUNK) {
      await w.write(data.slice(at, at + CHUNK));
      onBytes(Math.min(at + CHUNK, data.size));
    }
    await w.close();
  } catch (e) {
    await w?.abort().catch(() => {});
    throw new Error(`could not store ${name} on this device: ${e.message}`);
  }
}

// One save or forget of an entry at a time, across the page's tabs too: a second tab's cleanup
// must not remove the files a first one is switching to.
const locked = (kind, f) => (navigator.locks?.request ? navigator.locks.request(`dino-ar-storage:${kind}`, f) : f());

async function readFile(d, name) {
  try {
    return await (await d.getFileHandle(name)).getFile();
  } catch {
    return null;
  }
}

// kind: "backbone" | "model" | "version.N". `files`: { name: Blob }, `meta`: anything JSON;
// `onBytes(done)` counts the bytes written over all files.
//
// Never a torn entry: the new files are written under new names beside the old ones, then the
// meta file — written whole or not at all (OPFS writes to a swap file that `close` moves into
// place) — switches to them, and only then are the old files removed. A reload, a crash or a full
// disk at any point leaves the last complete entry readable. Throws (saying why) where storage
// is refused or full; what was stored before stays.
export function save(kind, files, meta, onBytes = () => {}) {
  return locked(kind, () => saveNow(kind, files, meta, onBytes));
}

async function saveNow(kind, files, meta, onBytes) {
  const d = await dir();
  if (!d) throw new Error("this browser offers no private file storage (OPFS): nothing is kept between visits");
  const generation = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const names = {};
  let before = 0;
  try {
    for (const [name, blob] of Object.entries(files)) {
      names[name] = `${kind}.${generation}.${name}`;
      await writeFile(d, names[name], blob, (n) => onBytes(before + n));
      before += blob.size;
    }
    await writeFile(d, `${kind}.json`, JSON.stringify({ ...meta, files: names }));
  } catch (e) {
    for (const name of Object.values(names)) await d.removeEntry(name).catch(() => {});
    throw e;
  }
  const keep = new Set([`${kind}.json`, ...Object.values(names)]);
  for (const name of await entriesOf(d, kind)) if (!keep.has(name)) await d.removeEntry(name).catch(() => {});
  // Ask the browser not to evict it under storage pressure (it may say no; that is fine).
  navigator.storage.persist?.().catch(() => {});
}

// The names of `kind`'s entry: its meta file and its files (`kind.*`; the dot keeps
// `version.1` from matching `version.12`).
async function entriesOf(d, kind) {
  const names = [];
  for await (const name of d.keys()) if (name.startsWith(`${kind}.`)) names.push(name);
  return names;
}

// → { meta, files: { name: File } } or null.
export async function load(kind) {
  const d = await dir();
  if (!d) return null;
  const metaFile = await readFile(d, `${kind}.json`);
  if (!metaFile) return null;
  try {
    const meta = JSON.parse(await metaFile.text());
    // `files`: { name: stored name }; entries of earlier versions of the page list names only.
    const stored = Array.isArray(meta.files) ? Object.fromEntries(meta.files.map((n) => [n, `${kind}.${n}`])) : meta.files;
    const files = {};
    for (const [name, file] of Object.entries(stored)) {
      const f = await readFile(d, file);
      if (!f) return null;
      files[name] = f;
    }
    return { meta, files };
  } catch {
    return null;
  }
}

export function forget(kind) {
  return locked(kind, () => forgetNow(kind));
}

async function forgetNow(kind) {
  const d = await dir();
  if (!d) return;
  // The meta file first: from here on the entry reads as absent.
  await d.removeEntry(`${kind}.json`).catch(() => {});
  for (const name of await entriesOf(d, kind)) await d.removeEntry(name).catch(() => {});
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
