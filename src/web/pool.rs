//! The rayon pool of the threaded build (`pkg-threads/`): one Web Worker per thread, each running
//! the same module on the same shared memory (`pool.js`). The same scheme as wasm-bindgen-rayon,
//! kept here because its bundler-free helper starts workers from `blob:` URLs, which the page's
//! Content-Security-Policy (`worker-src 'self'`) refuses, and so that a thread that stops is
//! announced to the page on the channel [`start`] is given ([`panics`]).

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use js_sys::{JsString, Promise};
use rayon::{ThreadBuilder, ThreadPoolBuilder};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/web/pool.js")]
extern "C" {
    #[wasm_bindgen(js_name = startWorkers)]
    fn start_workers(
        module: JsValue,
        memory: JsValue,
        glue: JsString,
        channel: &str,
        builder: PoolBuilder,
    ) -> Promise;

    /// Posts `{ type: "panic", message }` on `channel` (once per thread).
    pub fn announce(channel: &str, message: &str);
}

#[wasm_bindgen]
extern "C" {
    /// The URL of the JS glue (`dino_ar.js`), which each pool worker imports.
    #[wasm_bindgen(thread_local_v2, js_namespace = ["import", "meta"], js_name = url)]
    static GLUE_URL: JsString;
}

/// Hands each pool worker its rayon thread once all of them run.
#[wasm_bindgen]
#[doc(hidden)]
pub struct PoolBuilder {
    threads: usize,
    sender: Sender<ThreadBuilder>,
    receiver: Mutex<Receiver<ThreadBuilder>>,
}

#[wasm_bindgen]
impl PoolBuilder {
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Where the workers take their threads from (shared memory: the same address everywhere).
    pub fn receiver(&self) -> *const Mutex<Receiver<ThreadBuilder>> {
        &self.receiver
    }

    /// Called by `pool.js` once every worker waits on the receiver.
    pub fn build(&mut self) -> Result<(), JsValue> {
        let sender = self.sender.clone();
        ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .spawn_handler(move |thread| {
                sender
                    .send(thread)
                    .map_err(|_| std::io::Error::other("no pool worker took the thread"))
            })
            .build_global()
            .map_err(|e| JsValue::from_str(&format!("the thread pool did not start: {e}")))
    }
}

/// Starts `threads` workers; resolves once rayon's global pool runs on them. A pool thread's
/// panic is announced on the `BroadcastChannel` named `announce_on`.
pub fn start(threads: usize, announce_on: &'static str) -> Promise {
    panics::install(announce_on);
    let (sender, receiver) = channel();
    let builder = PoolBuilder {
        threads,
        sender,
        receiver: Mutex::new(receiver),
    };
    start_workers(
        wasm_bindgen::module(),
        wasm_bindgen::memory(),
        GLUE_URL.with(Clone::clone),
        announce_on,
        builder,
    )
}

/// Run in each pool worker: take one rayon thread and run it until the pool ends.
#[wasm_bindgen]
#[doc(hidden)]
pub fn dino_ar_pool_thread(receiver: *const Mutex<Receiver<ThreadBuilder>>) -> Result<(), JsValue> {
    // SAFETY: the pointer is `PoolBuilder::receiver`'s, in the memory every worker shares; the
    // builder lives (held by `startWorkers`) until every worker has taken its thread.
    let receiver = unsafe { &*receiver };
    let thread = receiver
        .lock()
        .map_err(|_| JsValue::from_str("the pool's queue was poisoned"))?
        .recv()
        .map_err(|_| JsValue::from_str("the pool was dropped before this worker got a thread"))?;
    thread.run();
    Ok(())
}

/// A panic on a pool thread cannot unwind in wasm (panic = abort): that thread stops, and the
/// thread that called the library waits for it forever. The panic hook therefore announces it on
/// a `BroadcastChannel` before the abort, where a thread that is not blocked — the page's own —
/// hears it, rejects the pending call with the message and starts a fresh worker
/// (`engineChannel()`, `www/engine.js`). An abort without a panic (memory exhausted) is announced
/// by the pool worker's script (`pool.js`) without the message.
pub mod panics {
    use std::sync::Once;

    use wasm_bindgen::prelude::*;

    use super::announce;

    /// Test hook: a pool thread panics while the calling thread waits for it (it never returns).
    #[doc(hidden)]
    #[wasm_bindgen(js_name = panicOnPoolThreadForTests)]
    pub fn panic_on_pool_thread_for_tests() {
        rayon::join(|| (), || panic!("a test panic on a pool thread"));
    }

    /// The hook, announcing on the `BroadcastChannel` named `channel`.
    pub fn install(channel: &'static str) {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let before = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if rayon::current_thread_index().is_some() {
                    announce(channel, &format!("a worker thread panicked: {info}"));
                }
                before(info);
            }));
        });
    }
}
