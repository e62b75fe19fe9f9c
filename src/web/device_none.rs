//! The threaded build's stand-in for [`device`](super::device) (`pkg-threads/`, CPU only): wgpu's
//! browser objects belong to one thread and cannot live in a shared-memory build, so WebGPU is
//! refused by name and `auto` takes the CPU. The page runs WebGPU from `pkg/`.

use burn::tensor::Device;

use crate::infra::compute::Adapter;

const NO_WEBGPU: &str = "WebGPU is not in the threaded build (pkg-threads/): use pkg/ for it";

pub(super) fn lost_reason() -> Option<String> {
    None
}

pub(super) struct WebGpu {
    pub device: Device,
    pub adapter: Adapter,
}

pub(super) async fn webgpu_device() -> Result<WebGpu, String> {
    Err(NO_WEBGPU.into())
}

/// Always an error here.
pub async fn webgpu() -> Result<(Device, String), String> {
    Err(NO_WEBGPU.into())
}

/// Nothing to lose.
#[doc(hidden)]
pub fn lose_webgpu_device_for_tests() {}
