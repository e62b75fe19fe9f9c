// The library on the page's own thread: the wasm module is compiled once here and handed to the
// worker (which runs the model), and the page calls the library's own rules — the overlay drawing,
// the verdict, the CSV, the fit settings and their defaults — instead of restating them in JS.
//
// This is pkg/ (one thread, with WebGPU). Where the page is cross-origin isolated the worker also
// runs pkg-threads/ (the CPU backend on every core; it needs the shared memory that browsers give
// only to isolated pages — tools/serve.py sends the headers, www/isolate.js covers static hosts).
import init, * as dino from "./pkg/dino_ar.js";

let module = null;

// What the worker needs to run the CPU backend on every core, or why it cannot.
export const threads = globalThis.crossOriginIsolated
  ? { glue: new URL("./pkg-threads/dino_ar.js", import.meta.url).href, wasm: new URL("./pkg-threads/dino_ar_bg.wasm", import.meta.url).href }
  : { why: "the page is not cross-origin isolated" };

// → the compiled WebAssembly.Module (also what the worker instantiates).
export async function load() {
  if (module) return module;
  const url = new URL("./pkg/dino_ar_bg.wasm", import.meta.url);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the engine is missing (${url.pathname}: HTTP ${response.status}); build pkg/ with tools/serve.sh`);
  // Streaming compilation needs the server to say application/wasm; otherwise compile the bytes.
  module = (response.headers.get("content-type") ?? "").startsWith("application/wasm")
    ? await WebAssembly.compileStreaming(response)
    : await WebAssembly.compile(await response.arrayBuffer());
  await init({ module_or_path: module });
  return module;
}

export { dino };
