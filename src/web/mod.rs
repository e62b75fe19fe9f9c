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
//! - [`files`]: the one input path (what a file holds, decoding, DICOM series, fingerprints) and
//!   the names and CSV rows of a run's outputs.
//! - [`screening`]: the loop's rules for the page — marks as CSV, threshold rules, the ROC.

mod api;
mod convert;
#[cfg(not(target_feature = "atomics"))]
mod device;
#[cfg(target_feature = "atomics")]
#[path = "device_none.rs"]
mod device;
mod files;
mod page;
#[cfg(target_feature = "atomics")]
mod pool;
mod screening;
mod session;
mod threads;

pub use device::{lose_webgpu_device_for_tests, webgpu};
pub use session::{BackboneInfo, FitProgress, ModelInfo, Session, SessionError};

#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    run_static_constructors();
    console_error_panic_hook::set_once();
}

unsafe extern "C" {
    /// Synthesised by the wasm linker: runs every static constructor of the module.
    fn __wasm_call_ctors();
}

/// Runs the module's static constructors (cubecl's compiler registers its IR dialects through
/// `inventory`: hundreds of them) once. Why it matters: a module that never calls
/// `__wasm_call_ctors` itself is linked "command-style", and wasm-ld then calls it at the top of
/// *every* exported function — including `__externref_table_alloc`, which runs for each JS object
/// that crosses into wasm, i.e. for every WebGPU call wgpu makes. That cost 90 % of the tiny
/// model's WebGPU forward and about a second of ViT-S/16's at 224² (BENCHMARKS.md §6). This
/// call, being in the module, switches the wrapping off; `start` runs it when the module is
/// instantiated, and the entry points that need the registrations run it too, for hosts that skip
/// `start` (the wasm test runner). Idempotent: `inventory`'s registrations guard themselves, and
/// `Once` skips the rest.
pub(crate) fn run_static_constructors() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the constructors are the crates' own registration functions, written to run once
    // before use; `Once` runs them at most once per instance (shared memory: once per page).
    ONCE.call_once(|| unsafe { __wasm_call_ctors() });
}
