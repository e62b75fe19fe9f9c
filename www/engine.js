// The page's handle on the worker that owns the Detector. Each call is a Promise; progress
// arrives through a callback. Cancelling a long call terminates the worker and starts a fresh one
// with the same backbone and model: immediate, whatever the worker is in the middle of.

export class Engine {
  constructor() {
    this.pending = new Map();
    this.nextId = 1;
    this.worker = null;
    this.backend = "auto";
    this.precision = undefined; // the library's default unless the page picks one
    this.module = null; // the compiled wasm, handed to every worker (library.js)
    this.threads = { why: "not set" }; // pkg-threads/ for the worker, or why not (library.js)
    // What to load again after a restart.
    this.backbone = null; // { weights: Blob, config: Blob | null }
    this.model = null; // Blob
    this.fingerprint = null;
    this.onRestart = () => {};
    this.onLost = () => {}; // (why): the worker ended on its own, even with nothing pending
    this.restarting = Promise.resolve();
  }

  // A threaded build announces on `channel` that one of its pool threads panicked: the worker that
  // called it then waits for that thread forever, so reject what is pending with the message and
  // start a fresh worker.
  watch(channel) {
    if (typeof BroadcastChannel !== "function" || this.channel) return;
    this.channel = new BroadcastChannel(channel);
    this.channel.onmessage = ({ data }) => {
      if (data?.type !== "panic" || this.pending.size === 0) return;
      this.restart(`internal error in the engine (${data.message}); it was restarted`, "internal").catch(() => {});
    };
  }

  spawn() {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.worker = worker;
    this.watchLife(worker);
    this.worker.onmessage = ({ data }) => {
      const p = this.pending.get(data.id);
      if (!p) return;
      if (data.progress) return p.onProgress?.(data.progress);
      this.pending.delete(data.id);
      if ("error" in data) {
        p.reject(Object.assign(new Error(data.error), { kind: data.kind }));
        if (data.fatal) this.restart().catch(() => {});
      } else p.resolve(data.result);
    };
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.failAll(`the engine stopped: ${e.message || "it could not start (is pkg/ built? run tools/serve.sh)"}`);
    };
  }

  // A worker can end without a word (the browser reclaims its memory; devtools or an extension
  // close it): no event tells. So it holds a Web Lock for its whole life, and the page asks for
  // the same lock, which is granted the moment the worker is gone. A worker the page retired
  // itself (cancel, restart) is let go quietly; any other loss fails what was pending, saying
  // so, and a fresh worker takes over with the same backbone and model.
  watchLife(worker) {
    if (!navigator.locks?.request) return;
    const lock = `dino-ar-engine-${crypto.randomUUID?.() ?? Math.random()}`;
    const held = new Promise((resolve) => {
      const on = ({ data }) => {
        if (data?.held !== lock) return;
        worker.removeEventListener("message", on);
        resolve();
      };
      worker.addEventListener("message", on);
    });
    worker.postMessage({ op: "hold", lock });
    held.then(() => navigator.locks.request(lock, () => this.lost(worker)));
  }

  lost(worker) {
    if (worker !== this.worker) return;
    const busy = this.pending.size > 0;
    this.worker = null;
    // A worker that dies again and again (the backbone itself too large for the browser's memory)
    // is not respawned for ever: after three losses in a minute the page stops and says why.
    const now = Date.now();
    this.losses = [...(this.losses ?? []).filter((t) => now - t < 60_000), now];
    if (this.losses.length >= 3) {
      this.stopped = `the engine stopped ${this.losses.length} times in a minute (the browser ends its worker, likely for memory): it is not restarted — reload the page, or pick a smaller backbone`;
      this.failAll(this.stopped, "engine-lost");
      this.onLost(this.stopped);
      return;
    }
    const why = `the engine stopped unexpectedly${busy ? " in the middle of the work" : ""} (the browser ended its worker, perhaps for memory); a fresh one has started with the same backbone and model: try again`;
    this.onLost(why);
    this.restart(why, "engine-lost").catch(() => {});
  }

  // `kind` as the library's errors carry it (`"cancelled"` when the page stopped the work).
  failAll(message, kind) {
    for (const p of this.pending.values()) p.reject(Object.assign(new Error(message), { kind }));
    this.pending.clear();
  }

  // Requests from the page wait until a restart has loaded the backbone and model again.
  async call(op, args = {}, onProgress) {
    await this.restarting;
    if (this.stopped) throw Object.assign(new Error(this.stopped), { kind: "engine-lost" });
    return await this.post(op, args, onProgress);
  }

  post(op, args = {}, onProgress) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, ...args });
    });
  }

  async start(backend, precision) {
    this.backend = backend;
    this.precision = precision;
    // A start asked for by the person (another backend) tries again after a stop.
    this.stopped = null;
    this.losses = [];
    if (!this.worker) this.spawn();
    return await this.call("start", this.startArgs());
  }

  startArgs() {
    return { backend: this.backend, precision: this.precision, module: this.module, threads: this.threads };
  }

  async loadBackbone(weights, config) {
    const info = await this.call("loadBackbone", { weights, config });
    // The worker drops a model made for another backbone; so do we.
    const kept = this.model !== null && this.fingerprint === info.fingerprint;
    if (!kept) this.model = null;
    this.backbone = { weights, config };
    this.fingerprint = info.fingerprint;
    return { ...info, keptModel: kept };
  }

  async loadModel(bundle) {
    const info = await this.call("loadModel", { bundle });
    this.model = bundle;
    return info;
  }

  fit(images, options, onProgress) {
    return this.call("fit", { images, options }, onProgress);
  }

  // The loaded model goes on learning from `images` (items; `slices` picks a volume's): → { bundle }.
  learn(images, options, onProgress) {
    return this.call("learn", { images, options }, onProgress);
  }

  // The loaded model's threshold set by `rule` on normal and anomalous items: → { bundle, choice }.
  calibrate(normal, anomalous, rule) {
    return this.call("calibrate", { normal, anomalous, rule });
  }

  // A picture's result, or a volume's (`volume` set: every slice's and the worst's; progress
  // reports { slice, slices }).
  // `item` is one of www/files.js's items.
  score(item, onProgress) {
    return this.call("score", { item }, onProgress);
  }

  // A picture as the model read it (upright, 8-bit for drawing): { rgba, width, height }.
  picture(item) {
    return this.call("picture", { item });
  }

  // Slice `n` of a volume as the model sees it: { rgba, width, height }.
  slice(item, n) {
    return this.call("slice", { item, n });
  }

  // { explanation: { gridH, gridW, actual, predicted } | null } (null for a kNN model); `slice`
  // for a volume.
  explain(item, slice) {
    return this.call("explain", { item, slice });
  }

  // Stop whatever runs now: a fresh worker, with the backbone and model loaded again. What was
  // pending fails with `reason` (kind "cancelled" unless told: the page says nothing of those).
  restart(reason = "cancelled", kind = "cancelled") {
    this.worker?.terminate();
    this.worker = null;
    this.failAll(reason, kind);
    this.spawn();
    const done = this.reload();
    this.restarting = done.catch(() => {});
    return done;
  }

  async reload() {
    const started = await this.post("start", this.startArgs());
    if (this.backbone) await this.post("loadBackbone", this.backbone);
    let lost = null;
    if (this.model) {
      await this.post("loadModel", { bundle: this.model }).catch((e) => {
        lost = `the model could not be loaded again: ${e.message}`;
        this.model = null;
      });
    }
    this.onRestart(started, lost);
    return started;
  }
}
