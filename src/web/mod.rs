//! The JavaScript API (wasm32 only): what a page gets from `pkg/`. A thin shell over the library:
//! it picks the device, moves bytes in and numbers out, and turns every error into a JS `Error`
//! with the library's message. Every rule it exposes (fit settings, verdict, colours, CSV) is the
//! library's own; nothing is restated here.
//!
//! - [`device`]: the page's WebGPU device, and falling back to the CPU when it is lost
//!   (`device_none.rs` in the threaded build, which has no WebGPU).
//! - [`session`]: the state (backbone, model) and the work, in Rust types (the in-browser tests
//!   drive it directly).
//! - [`convert`]: JS values ⇄ Rust types (options, images, results, progress).
//! - [`api`]: the exported `Detector` class; every method returns a Promise.
//! - [`threads`]: the CPU backend's threads (one in `pkg/`, a pool of Web Workers in
//!   `pkg-threads/`, started by `pool`).
//! - [`page`]: free functions the page calls on its own thread: drawing an overlay, the verdict,
//!   the defaults its forms start from, the CSV.

mod api;
mod convert;
#[cfg(not(target_feature = "atomics"))]
mod device;
#[cfg(target_feature = "atomics")]
#[path = "device_none.rs"]
mod device;
mod page;
#[cfg(target_feature = "atomics")]
mod pool;
mod session;
mod threads;

pub use device::{lose_webgpu_device_for_tests, webgpu};
pub use session::{BackboneInfo, FitProgress, ModelInfo, Session, SessionError};

#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
