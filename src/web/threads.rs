//! How many threads the CPU backend (burn-flex and gemm) runs on in the browser.
//!
//! `pkg/` is built without threads: everything runs on the thread that calls the library.
//! `pkg-threads/` (the `atomics` target feature, `tools/build-threads.sh`) runs them on a rayon
//! pool of Web Workers sharing the wasm memory ([`super::pool`]); it has no WebGPU. A shared
//! memory exists only where the page is cross-origin isolated, so the page's worker runs the CPU
//! backend from that build there, and WebGPU and everything else from `pkg/`.
//!
//! The pool belongs to the wasm instance (rayon's global pool) and cannot be resized: the first
//! `Detector.create` starts it, later ones share it. Without a pool rayon would try to spawn a
//! thread (which wasm cannot) and abort, so every detector starts it before anything else.

use std::cell::RefCell;

use js_sys::{Promise, Reflect};
use wasm_bindgen_futures::JsFuture;

/// The threads a detector runs on, and what the page should tell the user about them.
#[derive(Debug, Clone)]
pub struct Threads {
    pub count: usize,
    /// Why fewer threads than asked for (or than the browser offers) are used; `None` when all
    /// is as asked.
    pub note: Option<String>,
}

/// What the browser offers: `navigator.hardwareConcurrency` (1 where it is unknown).
pub fn offered() -> usize {
    let global = js_sys::global();
    Reflect::get(&global, &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"hardwareConcurrency".into()))
        .ok()
        .and_then(|c| c.as_f64())
        .filter(|c| *c >= 1.0)
        .map_or(1, |c| c as usize)
}

/// Whether this build runs on several threads (`pkg-threads/`).
pub const THREADED: bool = cfg!(target_feature = "atomics");

/// The pool this wasm instance runs on, started on first use with `limit` threads (at most what
/// the browser offers; all of them by default).
pub async fn start(limit: Option<usize>) -> Result<Threads, String> {
    if limit == Some(0) {
        return Err("threads: 0 is not a thread count (at least 1)".into());
    }
    let offered = offered();
    if !THREADED {
        let note = match limit {
            Some(n) if n > 1 => Some(format!(
                "one thread, not {n}: this is the one-thread build (pkg/); pkg-threads/ uses \
                 several where the page is cross-origin isolated"
            )),
            _ => None,
        };
        return Ok(Threads { count: 1, note });
    }
    let (want, note) = match limit {
        Some(n) if n > offered => (
            offered,
            Some(format!(
                "{offered} threads, not {n}: this browser offers {offered} \
                 (navigator.hardwareConcurrency)"
            )),
        ),
        Some(n) => (n, None),
        None => (offered, None),
    };
    let (started, promise) = POOL.with(|p| {
        let mut p = p.borrow_mut();
        match p.as_ref() {
            Some((n, promise)) => (Some(*n), promise.clone()),
            None => {
                let promise = init_pool(want);
                *p = Some((want, promise.clone()));
                (None, promise)
            }
        }
    });
    // A pool already started (by an earlier detector in this worker) keeps its size.
    if let Some(n) = started
        && limit.is_some()
        && n != want
    {
        return Err(format!(
            "threads: this worker's thread pool already runs {n} threads (started by its first \
             Detector) and cannot be resized; create the Detector with {want} in a new worker"
        ));
    }
    if let Err(e) = JsFuture::from(promise).await {
        POOL.with(|p| *p.borrow_mut() = None);
        return Err(format!(
            "the thread pool did not start: {}",
            e.as_string()
                .or_else(|| Reflect::get(&e, &"message".into()).ok()?.as_string())
                .unwrap_or_else(|| format!("{e:?}"))
        ));
    }
    let count = started.unwrap_or(want);
    let note = note.filter(|_| started.is_none());
    Ok(Threads { count, note })
}

thread_local! {
    /// The pool's size and the Promise that resolves once its workers run: concurrent `create`s
    /// wait for the same start.
    static POOL: RefCell<Option<(usize, Promise)>> = const { RefCell::new(None) };
}

#[cfg(target_feature = "atomics")]
fn init_pool(threads: usize) -> Promise {
    super::pool::start(threads, CHANNEL)
}

#[cfg(not(target_feature = "atomics"))]
fn init_pool(_threads: usize) -> Promise {
    Promise::resolve(&wasm_bindgen::JsValue::UNDEFINED)
}

/// The `BroadcastChannel` on which a threaded build announces a pool thread's panic.
pub const CHANNEL: &str = "dino-ar:engine";
