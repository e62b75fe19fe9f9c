//! Where tensors live: the CPU (burn-flex) or a GPU through burn's wgpu backend — WebGPU in the
//! page, Vulkan / Metal / DX12 natively (the same WGSL kernels either way).
//!
//! One rule for `auto`, used by the page's `Detector.create("auto")` and the CLI's `--device auto`
//! alike: a hardware GPU when there is one, never a software adapter (SwiftShader, lavapipe,
//! llvmpipe run the GPU kernels on the CPU, several times slower than burn-flex), else the CPU,
//! saying why.

use burn::tensor::{Device, FloatDType};

named_choice! {
    /// What the backbone's matmuls and patch convolution compute in: `--precision` on the CLI,
    /// `precision` in `Detector.create`'s options. The default comes first: the page's menu
    /// starts on the first choice.
    #[derive(Default)]
    pub enum Precision ("precision") {
        /// The default until f16's error is shown harmless with pretrained weights
        /// (BENCHMARKS.md §6).
        #[default]
        F32 = "f32", "32-bit floats throughout (the default)";
        F16 = "f16", "half precision in the matmuls and their weights (a GPU with shader-f16; half the weights' GPU memory), f32 for norms, softmax and the residual stream";
    }
}

impl Precision {
    /// What `self` becomes on `device`, with the reason when that is not what was asked: f16 needs
    /// a GPU whose adapter computes in it (WebGPU's `shader-f16`); the CPU kernels are f32 only.
    pub fn on(self, device: &Device) -> (Precision, Option<String>) {
        match self {
            Precision::F32 => (Precision::F32, None),
            Precision::F16 if *device == Device::flex() => (
                Precision::F32,
                Some("f16 runs on a GPU; the CPU computes in f32".into()),
            ),
            Precision::F16 if !device.supports_dtype(FloatDType::F16) => (
                Precision::F32,
                Some("this GPU adapter has no shader-f16: computing in f32".into()),
            ),
            Precision::F16 => (Precision::F16, None),
        }
    }

    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }
}

/// A GPU adapter that was found, as people should read it.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// e.g. `gpu: NVIDIA H200, GPU (Vulkan)` or `webgpu: SwiftShader, software adapter (Vulkan)`.
    pub label: String,
    /// A software adapter: the GPU kernels emulated on the CPU.
    pub software: bool,
}

// wgpu exists in every build but the threaded browser one (`atomics`: CPU only, see Cargo.toml).
#[cfg(not(target_feature = "atomics"))]
impl Adapter {
    /// From wgpu's description of the adapter; `api` names the path (`gpu`, `webgpu`).
    pub fn describe(api: &str, info: &burn::tensor::wgpu::wgpu::AdapterInfo) -> Self {
        let name = if info.name.is_empty() {
            format!("{:?}", info.device_type)
        } else {
            info.name.clone()
        };
        let software = matches!(info.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu);
        let kind = if software { "software adapter" } else { "GPU" };
        Self {
            label: format!("{api}: {name}, {kind} ({:?})", info.backend),
            software,
        }
    }
}

/// The largest buffer each GPU device takes (bytes), recorded when the device is acquired.
static BUFFER_LIMITS: std::sync::Mutex<Vec<(Device, u64)>> = std::sync::Mutex::new(Vec::new());

/// Record `device`'s single-buffer limit, from the limits it was created with.
#[cfg(not(target_feature = "atomics"))]
pub fn record_limits(device: &Device, limits: &burn::tensor::wgpu::wgpu::Limits) {
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    if let Ok(mut all) = BUFFER_LIMITS.lock() {
        all.retain(|(d, _)| d != device);
        all.push((device.clone(), limit));
    }
}

/// The largest buffer `device` takes, if it is a GPU whose limits were recorded.
pub fn buffer_limit(device: &Device) -> Option<u64> {
    let all = BUFFER_LIMITS.lock().ok()?;
    all.iter().find(|(d, _)| d == device).map(|(_, l)| *l)
}

/// Whether `bytes` fit in one buffer of `device` (always, on the CPU): [`fits_in_one_buffer`]'s
/// rule, without the message.
pub fn buffer_fits(device: &Device, bytes: u64) -> bool {
    fits_in_one_buffer(device, bytes, "", |_| String::new()).is_ok()
}

/// `Err` saying what to lower when `bytes` of `what` (e.g. "the 200 training grids") would not fit
/// in one buffer of `device` — a GPU refuses such a buffer, and the failure would otherwise surface
/// only at read-back. `lower` writes the advice from the device's limit, only when it is needed.
/// Always `Ok` on the CPU.
pub fn fits_in_one_buffer(
    device: &Device,
    bytes: u64,
    what: &str,
    lower: impl FnOnce(u64) -> String,
) -> Result<(), String> {
    match buffer_limit(device) {
        Some(limit) if bytes > limit => Err(format!(
            "{what}: a {:.1} MB buffer, more than this GPU takes in one ({:.1} MB): {}, \
             or use the CPU",
            bytes as f64 / 1e6,
            limit as f64 / 1e6,
            lower(limit)
        )),
        _ => Ok(()),
    }
}

/// The `auto` rule: `None` to use the adapter found, or why the CPU is used instead.
pub fn auto_declines(found: Result<&Adapter, &str>) -> Option<String> {
    match found {
        Ok(gpu) if !gpu.software => None,
        Ok(gpu) => Some(format!(
            "the only GPU adapter is a software one: {}",
            gpu.label
        )),
        Err(why) => Some(why.to_string()),
    }
}

named_choice! {
    /// Where to compute, chosen the same way everywhere (`--device`, `Detector.create`, the
    /// page's menu); `auto` is decided by one rule, [`auto_declines`].
    pub enum DeviceChoice ("device") {
        Auto = "auto", "auto (a hardware GPU, else the CPU)";
        Cpu = "cpu", "CPU (every core the build can use)";
        Gpu = "gpu", "GPU (WebGPU in the browser, wgpu natively), even a software one";
    }
}

impl DeviceChoice {
    /// The choice named `s`; `webgpu`, the JS API's first spelling of `gpu`, is still read.
    pub fn parse_any(s: &str) -> Result<Self, crate::infra::named::SettingError> {
        match s {
            "webgpu" => Ok(DeviceChoice::Gpu),
            other => other.parse(),
        }
    }
}

named_choice! {
    /// Where a detector computes once `auto` is decided (the JS API's `det.device`).
    pub enum DeviceKind ("device kind") {
        Cpu = "cpu", "the CPU";
        Gpu = "gpu", "a GPU";
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{Compute, open};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::sync::OnceLock;

    use burn::tensor::Device;

    use super::{Adapter, DeviceChoice, DeviceKind, auto_declines, record_limits};

    /// The device chosen, and the line that tells the user what it is.
    #[derive(Clone)]
    pub struct Compute {
        pub device: Device,
        pub kind: DeviceKind,
        pub label: String,
    }

    /// burn registers one wgpu runtime per process: acquired once, shared afterwards.
    static GPU: OnceLock<Result<(Device, Adapter), String>> = OnceLock::new();

    fn gpu() -> &'static Result<(Device, Adapter), String> {
        GPU.get_or_init(|| {
            // wgpu reports most failures as errors, but a broken driver can panic inside it.
            let init = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
            match init {
                Ok(Ok((device, setup))) => {
                    record_limits(&device, &setup.device.limits());
                    Ok((device, Adapter::describe("gpu", &setup.adapter.get_info())))
                }
                Ok(Err(e)) => Err(format!("no usable GPU adapter: {e}")),
                Err(_) => Err("no usable GPU adapter: the graphics driver panicked while \
                               starting (see the message above)"
                    .into()),
            }
        })
    }

    fn cpu(label: String) -> Compute {
        Compute {
            device: Device::flex(),
            kind: DeviceKind::Cpu,
            label,
        }
    }

    fn cpu_label(why: Option<&str>) -> String {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        match why {
            None => format!("cpu (burn-flex, {threads} threads)"),
            Some(why) => format!("cpu (burn-flex, {threads} threads; {why})"),
        }
    }

    /// The device for `choice`; `gpu` fails with the reason when no adapter works.
    pub fn open(choice: DeviceChoice) -> Result<Compute, String> {
        match choice {
            DeviceChoice::Cpu => Ok(cpu(cpu_label(None))),
            DeviceChoice::Gpu => match gpu() {
                Ok((device, adapter)) => Ok(Compute {
                    device: device.clone(),
                    kind: DeviceKind::Gpu,
                    label: adapter.label.clone(),
                }),
                Err(why) => Err(format!("the GPU was asked for: {why}")),
            },
            DeviceChoice::Auto => {
                let found = gpu().as_ref().map(|(_, a)| a).map_err(String::as_str);
                match auto_declines(found) {
                    None => open(DeviceChoice::Gpu),
                    Some(why) => Ok(cpu(cpu_label(Some(&why)))),
                }
            }
        }
    }
}
