//! The linear layers' matmul on a GPU, `x · Wᵀ + b`, as one hand-written WGSL kernel.
//!
//! Why not burn's matmul: on an adapter without cooperative matrices (browsers' WebGPU
//! today, and the software adapters CI runs) burn runs cubek's `SimpleUnit` kernel, which
//! spent 1.6–1.9× onnxruntime-web's time on the ViT's linear layers — the whole of the WebGPU gap
//! (BENCHMARKS.md §6). This kernel keeps each invocation's 8 × 4 outputs in registers, reads
//! `x` and `Wᵀ` as `vec4`s straight from the storage buffers (no workgroup memory, so no
//! barriers, which a software adapter pays for dearly: 2.5–4× faster than shared-memory tiles on
//! SwiftShader; `tests/js/matmul_variants.mjs`) and adds the bias as it writes: 0.32× of
//! onnxruntime-web's forward at 224², where burn's matmul took 1.86×. The sizes are baked into
//! the WGSL text, so the shader compiler sees constant loop bounds; one pipeline per
//! (rows, in, out) shape, a handful per model.
//!
//! It is a burn backend extension (`LinearOps`): under burn's fusion it is a node of the lazy
//! graph like any other op, so nothing is read back or flushed around it. [`applies`] says when
//! it runs; everything else (the CPU, f16, shapes that are not multiples of 4) keeps burn's
//! matmul.

use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, Device, Shape, Tensor};
use burn_cubecl::cubecl::ir::settings::Dim3;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::server::KernelArguments;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::template::{KernelSource, SourceKernel, SourceTemplate};
use burn_cubecl::{CubeBackend, tensor::CubeTensor};

/// Output rows per invocation (each of them 4 columns, one `vec4`), and invocations per workgroup
/// (x: columns, y: rows). Among the register tiles tried (2×8 … 4×16, BENCHMARKS.md §6) 8 × 4 was
/// among the fastest at ViT-S/16's shapes, and it needs only `n % 4 == 0`.
const ROWS: usize = 8;
const GROUP: (usize, usize) = (16, 4);
const WORKGROUP: Dim3 = Dim3::new_2d(GROUP.0 as u32, GROUP.1 as u32);
/// WebGPU's guaranteed largest workgroup count per dimension.
const MAX_GROUPS: usize = 65_535;

#[backend_extension(Cube, Fusion)]
pub trait LinearOps: Backend {
    /// `x [m, k] · w [k, n] + b [n]`, all f32.
    #[fusion(dtype = x, shape = output_shape(x, w))]
    fn linear_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `x [m, k] · w [k, n]`, all f32.
    #[fusion(dtype = x, shape = output_shape(x, w))]
    fn linear_no_bias(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn output_shape(x: &Shape, w: &Shape) -> Shape {
    Shape::from([x[0], w[1]])
}

impl LinearOps for CubeBackend {
    fn linear_bias(x: CubeTensor, w: CubeTensor, b: CubeTensor) -> CubeTensor {
        launch(x, w, Some(b))
    }

    fn linear_no_bias(x: CubeTensor, w: CubeTensor) -> CubeTensor {
        launch(x, w, None)
    }
}

/// Whether `x [m, k] · w [k, n] (+ b [n])` takes this kernel: shapes that agree, a GPU, f32
/// throughout, `k` and `n` multiples of 4 (the `vec4` reads; every DINOv3 width is), rows within
/// one dispatch, and no autodiff graph (the extension has no backward pass); not when
/// `DINO_AR_BACKEND_KERNELS=1` asks for burn's own matmul.
pub fn applies(x: &Tensor<2>, w: &Tensor<2>, b: Option<&Tensor<1>>) -> bool {
    let ([m, k], [w_k, n]) = (x.dims(), w.dims());
    let agree = w_k == k && b.is_none_or(|b| b.dims() == [n]);
    let f32s = x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.is_none_or(|b| b.dtype() == DType::F32);
    let tracked =
        x.is_require_grad() || w.is_require_grad() || b.is_some_and(|b| b.is_require_grad());
    agree
        && x.device() != Device::flex()
        && !super::cpu_kernels::backend_kernels_asked()
        && f32s
        && !tracked
        && m > 0
        && k > 0
        && k % 4 == 0
        && n % 4 == 0
        && {
            let (columns, rows) = workgroups(m, n);
            columns <= MAX_GROUPS && rows <= MAX_GROUPS
        }
}

/// Workgroups along the output's `vec4` columns and its row blocks.
fn workgroups(m: usize, n: usize) -> (usize, usize) {
    ((n / 4).div_ceil(GROUP.0), m.div_ceil(ROWS * GROUP.1))
}

/// `x · w + b` through the kernel; call only where [`applies`] holds.
pub fn linear(x: Tensor<2>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<2> {
    let out = match b {
        Some(b) => Dispatch::linear_bias(x.into_dispatch(), w.into_dispatch(), b.into_dispatch()),
        None => Dispatch::linear_no_bias(x.into_dispatch(), w.into_dispatch()),
    };
    Tensor::from_dispatch(out)
}

fn launch(x: CubeTensor, w: CubeTensor, b: Option<CubeTensor>) -> CubeTensor {
    let (x, w, b) = (
        into_contiguous(x),
        into_contiguous(w),
        b.map(into_contiguous),
    );
    let (m, k, n) = (x.meta.shape()[0], x.meta.shape()[1], w.meta.shape()[1]);
    let client = x.client.clone();
    let handle = client.empty(m * n * size_of::<f32>());
    let out = CubeTensor::new_contiguous(
        client.clone(),
        x.device.clone(),
        Shape::from([m, n]),
        handle,
        DType::F32,
    );
    let kernel = LinearKernel {
        m,
        k,
        n,
        bias: b.is_some(),
    };
    let (columns, rows) = workgroups(m, n);
    let groups = CubeCount::Static(columns as u32, rows as u32, 1);
    let mut args = KernelArguments::new()
        .with_buffer_io(x.handle.clone().binding(), BufferIOAttr::ReadOnly)
        .with_buffer_io(w.handle.clone().binding(), BufferIOAttr::ReadOnly);
    if let Some(b) = &b {
        args = args.with_buffer_io(b.handle.clone().binding(), BufferIOAttr::ReadOnly);
    }
    args = args.with_buffer_io(out.handle.clone().binding(), BufferIOAttr::WriteOnly);
    client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim(WORKGROUP))),
        groups,
        args,
    );
    out
}

/// One shape of the kernel: its WGSL is written for these sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LinearKernel {
    m: usize,
    k: usize,
    n: usize,
    bias: bool,
}

impl KernelSource for LinearKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(self.wgsl())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(*self).cube_dim(WORKGROUP)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

impl LinearKernel {
    /// Invocation (col, row-block) computes `y[row0 .. row0 + ROWS][col·4 .. col·4 + 4]`. Rows
    /// past the end read the last row (always in bounds) and are not written.
    ///
    /// Every binding is `read_write`, as in cubecl's own kernels: tensors share pooled buffers, and
    /// wgpu refuses a buffer bound read-only and read-write in one dispatch.
    fn wgsl(&self) -> String {
        let rows = 0..ROWS;
        let each = |f: &dyn Fn(usize) -> String| rows.clone().map(f).collect::<Vec<_>>().join("\n");
        let (bias_binding, bias_value, out_binding) = if self.bias {
            (
                "@group(0) @binding(2) var<storage, read_write> b: array<vec4<f32>>;",
                "b[col]",
                3,
            )
        } else {
            ("", "vec4<f32>(0.0)", 2)
        };
        let lanes = ["x", "y", "z", "w"];
        let fmas = lanes
            .iter()
            .enumerate()
            .map(|(e, lane)| {
                let w = format!("    let w{e} = w[(k4 * 4u + {e}u) * N4 + col];\n");
                w + &each(&|i| format!("    acc{i} = fma(vec4<f32>(a{i}.{lane}), w{e}, acc{i});"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "\
@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
{bias_binding}
@group(0) @binding({out_binding}) var<storage, read_write> y: array<vec4<f32>>;

const M: u32 = {m}u;
const K4: u32 = {k4}u;
const N4: u32 = {n4}u;

@compute @workgroup_size({gx}, {gy}, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
  let col = gid.x;
  let row0 = gid.y * {rows}u;
  if (col >= N4 || row0 >= M) {{ return; }}
{starts}
{accs}
  for (var k4 = 0u; k4 < K4; k4++) {{
{loads}
{fmas}
  }}
  let bias = {bias_value};
{stores}
}}
",
            m = self.m,
            k4 = self.k / 4,
            n4 = self.n / 4,
            gx = GROUP.0,
            gy = GROUP.1,
            rows = ROWS,
            starts = each(&|i| format!("  let x{i} = min(row0 + {i}u, M - 1u) * K4;")),
            accs = each(&|i| format!("  var acc{i} = vec4<f32>(0.0);")),
            loads = each(&|i| format!("    let a{i} = x[x{i} + k4];")),
            stores = each(&|i| format!(
                "  if (row0 + {i}u < M) {{ y[(row0 + {i}u) * N4 + col] = acc{i} + bias; }}"
            )),
        )
    }
}
