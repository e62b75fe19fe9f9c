// The CPU backend's thread pool in the threaded build (pkg-threads/): Web Workers that each
// instantiate the same module on the same shared memory and run one rayon thread (src/web/pool.rs).
// Workers start from this file's own URL, so the page's `worker-src 'self'` policy holds.

function next(target, type) {
  return new Promise((resolve, reject) => {
    const onMessage = ({ data }) => {
      if (data?.type !== type) return;
      target.removeEventListener("message", onMessage);
      resolve(data);
    };
    target.addEventListener("message", onMessage);
    target.addEventListener?.("error", (e) => reject(new Error(e.message || "a pool worker failed to start")), { once: true });
  });
}

// Announces that a pool thread stopped (a panic, or an abort such as memory exhausted) on the
// BroadcastChannel the page listens to: the thread that called the library now waits forever.
let announced = false;
export function announce(channel, message) {
  if (announced) return;
  announced = true;
  try {
    const c = new BroadcastChannel(channel);
    c.postMessage({ type: "panic", message });
    c.close();
  } catch {
    // No BroadcastChannel: nothing could listen.
  }
}

// In a pool worker: wait for the module, memory and work queue, then run a rayon thread until the
// pool ends. (In any other worker this listener never fires.)
if (typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope) {
  next(self, "dino-ar-pool-init").then(async ({ glue, module, memory, receiver, channel }) => {
    const pkg = await import(glue);
    await pkg.default({ module_or_path: module, memory });
    postMessage({ type: "dino-ar-pool-ready" });
    try {
      pkg.dino_ar_pool_thread(receiver);
    } catch (e) {
      announce(channel, `a worker thread stopped: ${e?.message ?? e}`);
      throw e;
    }
  });
}

// Keeps the workers referenced (a worker sharing memory must not be garbage-collected).
let workers = [];

export async function startWorkers(module, memory, glue, channel, builder) {
  const init = { type: "dino-ar-pool-init", glue, module, memory, receiver: builder.receiver(), channel };
  workers = await Promise.all(Array.from({ length: builder.threads() }, async () => {
    const worker = new Worker(new URL(import.meta.url), { type: "module", name: "dino-ar pool" });
    worker.postMessage(init);
    await next(worker, "dino-ar-pool-ready");
    return worker;
  }));
  builder.build();
}
