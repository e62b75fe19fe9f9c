// The experiment behind src/backbone/gpu_linear.rs (BENCHMARKS.md §6): candidate WGSL matmuls for
// the ViT's linear layers, y[M,N] = x[M,K]·w[K,N] + b[N], timed one by one in headless Chromium on
// its WebGPU adapter (SwiftShader here) and checked against a JS product on 200 sampled outputs.
//   node tests/js/matmul_variants.mjs [SHAPES] [VARIANTS]
//   SHAPES: JSON [[M,K,N],...], default ViT-S/16 at 224² (201 tokens): MLP in, MLP out, q/k/v/o.
//   VARIANTS: comma-separated names, default all.
// `tiledShared` is onnxruntime-web's structure (8×8 invocations, 4×4 outputs each, 32×32 tiles
// through workgroup memory); `regRxC` keeps R rows × 4C columns per invocation in registers and
// reads vec4s straight from the buffers — dino-ar's kernel is reg8x4 (generated in Rust, with the
// sizes as constants; here they are read from a buffer).
import { launch, serve } from "./harness.mjs";

const regTile = (R, C4) => {
  const rows = [...Array(R).keys()], cols = [...Array(C4).keys()];
  const each = (f) => rows.flatMap((i) => cols.map((j) => f(i, j))).join(" ");
  return `
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dims: array<u32>;
@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let M = dims[0]; let K4 = dims[1] / 4u; let N4 = dims[2] / 4u;
  let c0 = gid.x * ${C4}u; let rb = gid.y * ${R}u;
  if (c0 >= N4 || rb >= M) { return; }
  ${rows.map((i) => `let r${i} = min(rb + ${i}u, M - 1u) * K4;`).join(" ")}
  ${each((i, j) => `var acc${i}_${j} = vec4<f32>(0.0);`)}
  for (var k4 = 0u; k4 < K4; k4++) {
    ${rows.map((i) => `let a${i} = x[r${i} + k4];`).join(" ")}
    ${[0, 1, 2, 3].map((e) => `{ let row = (k4 * 4u + ${e}u) * N4 + c0;
      ${cols.map((j) => `let w${j} = w[row + min(c0 + ${j}u, N4 - 1u) - c0];`).join(" ")}
      ${each((i, j) => `acc${i}_${j} = fma(vec4<f32>(a${i}.${"xyzw"[e]}), w${j}, acc${i}_${j});`)} }`).join("\n    ")}
  }
  ${each((i, j) => `if (rb + ${i}u < M && c0 + ${j}u < N4) { y[(rb + ${i}u) * N4 + c0 + ${j}u] = acc${i}_${j} + b[c0 + ${j}u]; }`)}
}`;
};
const regGroups = (R, C4) => (M, K, N) => [Math.ceil(N / 4 / C4 / 16), Math.ceil(M / R / 4), 1];

const tiledShared = `
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dims: array<u32>;
var<workgroup> As: array<array<vec4<f32>, 8>, 32>;
var<workgroup> Bs: array<array<vec4<f32>, 8>, 32>;
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let M = dims[0]; let K = dims[1]; let N = dims[2]; let K4 = K / 4u; let N4 = N / 4u;
  let rowBase = wid.y * 32u; let colBase4 = wid.x * 8u;
  var acc: array<vec4<f32>, 4>;
  for (var t = 0u; t < K; t += 32u) {
    for (var i = 0u; i < 4u; i++) {
      let ar = rowBase + lid.y * 4u + i; let ak4 = t / 4u + lid.x;
      As[lid.y * 4u + i][lid.x] = select(vec4<f32>(0.0), x[min(ar, M - 1u) * K4 + min(ak4, K4 - 1u)], ar < M && ak4 < K4);
      let bk = t + lid.y * 4u + i; let bc4 = colBase4 + lid.x;
      Bs[lid.y * 4u + i][lid.x] = select(vec4<f32>(0.0), w[min(bk, K - 1u) * N4 + min(bc4, N4 - 1u)], bk < K && bc4 < N4);
    }
    workgroupBarrier();
    for (var k4 = 0u; k4 < 8u; k4++) {
      let b0 = Bs[k4 * 4u][lid.x]; let b1 = Bs[k4 * 4u + 1u][lid.x];
      let b2 = Bs[k4 * 4u + 2u][lid.x]; let b3 = Bs[k4 * 4u + 3u][lid.x];
      for (var i = 0u; i < 4u; i++) {
        let a = As[lid.y * 4u + i][k4];
        acc[i] = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc[i]))));
      }
    }
    workgroupBarrier();
  }
  let c4 = colBase4 + lid.x;
  if (c4 < N4) {
    for (var i = 0u; i < 4u; i++) {
      let r = rowBase + lid.y * 4u + i;
      if (r < M) { y[r * N4 + c4] = acc[i] + b[c4]; }
    }
  }
}`;

const variants = {
  tiledShared: [tiledShared, (M, K, N) => [Math.ceil(N / 32), Math.ceil(M / 32), 1]],
  reg2x8: [regTile(2, 2), regGroups(2, 2)],
  reg4x4: [regTile(4, 1), regGroups(4, 1)],
  reg4x8: [regTile(4, 2), regGroups(4, 2)],
  reg4x16: [regTile(4, 4), regGroups(4, 4)],
  reg8x4: [regTile(8, 1), regGroups(8, 1)],
};
const shapes = JSON.parse(process.argv[2] || "[[201,384,1536],[201,1536,384],[201,384,384]]");
const names = process.argv[3] ? process.argv[3].split(",") : Object.keys(variants);
for (const n of names) if (!variants[n]) throw new Error(`no variant ${n}; there are ${Object.keys(variants)}`);

const server = await serve();
const browser = await launch();
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto(`${server.origin}/`);
  console.log("# median of 5 dispatches, ms (one submission each, timed to completion); max|err| on 200 sampled outputs");
  console.log(["shape", ...names].join("\t"));
  for (const [M, K, N] of shapes) {
    const row = [`${M}x${K}x${N}`];
    for (const name of names) {
      const [code, groups] = variants[name];
      const r = await page.evaluate(async ({ code, M, K, N, groups }) => {
        const adapter = await navigator.gpu.requestAdapter();
        if (!adapter) return { error: "no WebGPU adapter" };
        const dev = await adapter.requestDevice();
        let seed = 1;
        const rnd = (n) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5);
        const xs = rnd(M * K), ws = rnd(K * N), bs = rnd(N);
        const S = GPUBufferUsage.STORAGE;
        const buf = (data) => {
          const b = dev.createBuffer({ size: data.byteLength, usage: S | GPUBufferUsage.COPY_DST });
          dev.queue.writeBuffer(b, 0, data);
          return b;
        };
        const out = dev.createBuffer({ size: M * N * 4, usage: S | GPUBufferUsage.COPY_SRC });
        const buffers = [buf(xs), buf(ws), buf(bs), out, buf(new Uint32Array([M, K, N, 0]))];
        dev.pushErrorScope("validation");
        const pipe = dev.createComputePipeline({ layout: "auto", compute: { module: dev.createShaderModule({ code }), entryPoint: "main" } });
        const bg = dev.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
        const run = async () => {
          const e = dev.createCommandEncoder(); const p = e.beginComputePass();
          p.setPipeline(pipe); p.setBindGroup(0, bg); p.dispatchWorkgroups(...groups); p.end();
          dev.queue.submit([e.finish()]);
          await dev.queue.onSubmittedWorkDone();
        };
        await run();
        const err = await dev.popErrorScope();
        if (err) return { error: err.message };
        const times = [];
        for (let i = 0; i < 5; i++) { const t = performance.now(); await run(); times.push(performance.now() - t); }
        const rb = dev.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        const e = dev.createCommandEncoder(); e.copyBufferToBuffer(out, 0, rb, 0, M * N * 4); dev.queue.submit([e.finish()]);
        await rb.mapAsync(GPUMapMode.READ);
        const y = new Float32Array(rb.getMappedRange().slice(0));
        let worst = 0;
        for (let t = 0; t < 200; t++) {
          const i = (t * 7919) % M, j = (t * 104729) % N;
          let s = bs[j];
          for (let k = 0; k < K; k++) s += xs[i * K + k] * ws[k * N + j];
          worst = Math.max(worst, Math.abs(s - y[i * N + j]));
        }
        dev.destroy();
        return { median: times.sort((a, b) => a - b)[2], worst };
      }, { code, M, K, N, groups: groups(M, K, N) });
      if (r.error || !(r.worst <= 1e-5 * K)) {
        failed = true;
        console.error(`${name} at ${M}x${K}x${N}: ${r.error ?? `off by ${r.worst}`}`);
      }
      row.push(r.error ? "error" : `${r.median.toFixed(1)} (${r.worst.toExponential(0)})`);
    }
    console.log(row.join("\t"));
  }
} finally {
  await browser.close();
  server.stop();
}
if (failed) process.exit(1);
