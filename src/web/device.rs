//! The page's WebGPU device: initialised once (burn registers one wgpu runtime per page, before
//! any tensor exists), shared afterwards, and watched for loss (a driver reset, a tab sent to the
//! background) so that sessions can move to the CPU and say why.

use std::cell::RefCell;

use burn::tensor::Device;

use crate::infra::compute::Adapter;

thread_local! {
    static WEBGPU: RefCell<Option<WebGpu>> = const { RefCell::new(None) };
    /// Set by the device-lost callback: why the page's WebGPU device went away.
    static LOST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Why the page's WebGPU device was lost, if it was.
pub(super) fn lost_reason() -> Option<String> {
    LOST.with(|l| l.borrow().clone())
}

#[derive(Clone)]
pub(super) struct WebGpu {
    pub device: Device,
    /// The wgpu handle behind `device`, for the lost-device callback (and the test hook).
    handle: burn::tensor::wgpu::wgpu::Device,
    /// Its name, and whether it is a software one (SwiftShader and the like: much slower than
    /// the wasm CPU backend).
    pub adapter: Adapter,
}

/// The page's WebGPU device, initialised on first use.
pub(super) async fn webgpu_device() -> Result<WebGpu, String> {
    super::run_static_constructors();
    if let Some(reason) = lost_reason() {
        return Err(format!(
            "the WebGPU device was lost earlier ({reason}); reload the page to use it again"
        ));
    }
    if let Some(found) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(found);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU unavailable: {e}"))?;
    let adapter = Adapter::describe("webgpu", &setup.adapter.get_info());
    crate::infra::compute::record_limits(&device, &setup.device.limits());
    setup.device.set_device_lost_callback(|reason, message| {
        let why = if message.is_empty() {
            format!("{reason:?}")
        } else {
            format!("{reason:?}: {message}")
        };
        LOST.with(|l| *l.borrow_mut() = Some(why));
    });
    let found = WebGpu {
        device,
        handle: setup.device.clone(),
        adapter,
    };
    WEBGPU.with(|w| *w.borrow_mut() = Some(found.clone()));
    Ok(found)
}

/// The page's WebGPU device (initialised on first use, shared afterwards), with its label.
/// Anything else on the page that needs burn on WebGPU must come through here.
pub async fn webgpu() -> Result<(Device, String), String> {
    webgpu_device().await.map(|g| (g.device, g.adapter.label))
}

/// Test hook: destroy the page's WebGPU device, as a driver reset or a tab in the background
/// might. Everything on WebGPU is unusable afterwards.
#[doc(hidden)]
pub fn lose_webgpu_device_for_tests() {
    WEBGPU.with(|w| {
        if let Some(gpu) = w.borrow().as_ref() {
            gpu.handle.destroy();
        }
    });
}
