//! The wasm-bindgen surface the page drives. A thin shell: it picks the device, moves bytes in and
//! numbers out, and turns every error into a JS `Error` with the library's message.
//!
//! Every method returns a Promise; nothing reads a tensor synchronously (WebGPU in the browser
//! cannot), and the WebGPU device is initialised before any tensor exists.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Float32Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::backbone::{DinoV3, load_backbone};
use crate::preprocess::RgbImage;

thread_local! {
    /// burn registers one wgpu runtime per page: initialise it once, share it afterwards.
    static WEBGPU: RefCell<Option<WebGpu>> = const { RefCell::new(None) };
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

#[derive(Clone)]
struct WebGpu {
    device: Device,
    label: String,
    /// A software adapter (SwiftShader and the like): much slower than the wasm CPU backend.
    software: bool,
}

async fn webgpu_device() -> Result<WebGpu, String> {
    if let Some(found) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(found);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU unavailable: {e}"))?;
    let info = setup.adapter.get_info();
    let name = if info.name.is_empty() {
        format!("{:?}", info.device_type)
    } else {
        info.name
    };
    let software = matches!(info.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu);
    let kind = if software { "software adapter" } else { "GPU" };
    let found = WebGpu {
        device,
        label: format!("webgpu: {name}, {kind} ({:?})", info.backend),
        software,
    };
    WEBGPU.with(|w| *w.borrow_mut() = Some(found.clone()));
    Ok(found)
}

/// What `loadBackbone` resolves to: the architecture read from the file.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BackboneInfo {
    layout: String,
    format: String,
    hidden_size: usize,
    layers: usize,
    heads: usize,
    registers: usize,
    patch_size: usize,
}

struct State {
    device: Device,
    backend: String,
    backbone: Option<DinoV3>,
}

/// Holds the device and the loaded models. One per page (or per worker).
#[wasm_bindgen]
pub struct Detector {
    state: Rc<RefCell<State>>,
}

fn js_err(msg: impl AsRef<str>) -> JsValue {
    JsError::new(msg.as_ref()).into()
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

#[wasm_bindgen]
impl Detector {
    /// `"webgpu"`, `"cpu"` or `"auto"`: WebGPU when the browser offers a hardware adapter, else the
    /// CPU backend (a software WebGPU adapter is far slower than it).
    pub fn create(kind: String) -> Promise {
        future_to_promise(async move {
            let (device, backend) = match kind.as_str() {
                "cpu" => (Device::flex(), "cpu".to_string()),
                "webgpu" => {
                    let gpu = webgpu_device().await.map_err(js_err)?;
                    (gpu.device, gpu.label)
                }
                "auto" => match webgpu_device().await {
                    Ok(gpu) if !gpu.software => (gpu.device, gpu.label),
                    Ok(gpu) => (
                        Device::flex(),
                        format!(
                            "cpu (the only WebGPU adapter is a software one: {})",
                            gpu.label
                        ),
                    ),
                    Err(why) => (Device::flex(), format!("cpu ({why})")),
                },
                other => {
                    return Err(js_err(format!(
                        "unknown backend `{other}`: use \"webgpu\", \"cpu\" or \"auto\""
                    )));
                }
            };
            let state = State {
                device,
                backend,
                backbone: None,
            };
            Ok(Detector {
                state: Rc::new(RefCell::new(state)),
            }
            .into())
        })
    }

    /// The backend in use, e.g. `webgpu: <adapter>` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.state.borrow().backend.clone()
    }

    /// Load DINOv3 weights (HF safetensors, Meta .pth, or Meta keys in safetensors) and, optionally,
    /// the Hugging Face `config.json` text. Resolves to a summary of the architecture.
    #[wasm_bindgen(js_name = loadBackbone)]
    pub fn load_backbone(&self, bytes: Vec<u8>, config_json: Option<String>) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let device = state.borrow().device.clone();
            let loaded = load_backbone(&bytes, config_json.as_deref(), &device)
                .map_err(|e| js_err(e.to_string()))?;
            let c = &loaded.model.config;
            let info = BackboneInfo {
                layout: loaded.layout.to_string(),
                format: loaded.format.to_string(),
                hidden_size: c.hidden_size,
                layers: c.num_layers,
                heads: c.num_heads,
                registers: c.num_registers,
                patch_size: c.patch_size,
            };
            let info = serde_wasm_bindgen::to_value(&info).map_err(|e| js_err(e.to_string()))?;
            state.borrow_mut().backbone = Some(loaded.model);
            Ok(info)
        })
    }

    /// Normalised pixels `[3·h·w]` → `{ data: Float32Array [D, gridH, gridW], gridH, gridW }`.
    #[wasm_bindgen(js_name = embedPixels)]
    pub fn embed_pixels(&self, pixels: Vec<f32>, height: usize, width: usize) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move { embed(&state, pixels, height, width).await })
    }

    /// RGBA bytes (a canvas `ImageData`) → resized to `sizeH × sizeW`, normalised and embedded.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(
        &self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
        size_h: usize,
        size_w: usize,
    ) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let img = RgbImage::from_rgba8(&rgba, width, height).map_err(js_err)?;
            embed(&state, img.to_model_input(size_h, size_w), size_h, size_w).await
        })
    }
}

async fn embed(
    state: &Rc<RefCell<State>>,
    pixels: Vec<f32>,
    height: usize,
    width: usize,
) -> Result<JsValue, JsValue> {
    let model = state
        .borrow()
        .backbone
        .clone()
        .ok_or_else(|| js_err("no backbone loaded: call loadBackbone first"))?;
    let input = model.pixels_tensor(pixels, height, width).map_err(js_err)?;
    let out = model.forward(input).map_err(js_err)?;
    let (gh, gw) = out.grid;
    let data = out
        .patch_grid()
        .into_data_async()
        .await
        .map_err(|e| js_err(format!("reading the embeddings back failed: {e:?}")))?;
    let values = data
        .as_slice::<f32>()
        .map_err(|e| js_err(format!("{e:?}")))?;
    let result = Object::new();
    set(&result, "data", Float32Array::from(values));
    set(&result, "gridH", gh as u32);
    set(&result, "gridW", gw as u32);
    Ok(result.into())
}
