// Cross-origin isolation where the server does not send COOP/COEP (a static host): register the
// page's own service worker (isolate-sw.js), which adds them, and reload once under it. Where that
// is impossible (no service workers, a private window that refuses them, a reload that did not
// isolate) the page runs the one-thread build and its engine line says why.
const TRIED = "dino-ar:isolation-tried";

export async function isolate() {
  if (globalThis.crossOriginIsolated || !("serviceWorker" in navigator)) return;
  // One attempt per tab: never a reload loop.
  if (sessionStorage.getItem(TRIED)) return;
  sessionStorage.setItem(TRIED, "1");
  try {
    await navigator.serviceWorker.register(new URL("./isolate-sw.js", import.meta.url), { scope: "./" });
    // A browser that accepts the registration but never activates it must not hold the page.
    const active = await Promise.race([
      navigator.serviceWorker.ready.then(() => true),
      new Promise((resolve) => setTimeout(() => resolve(false), 5000)),
    ]);
    if (!active) throw new Error("it did not activate within 5 s");
  } catch (e) {
    console.warn(`cross-origin isolation: the service worker could not be used (${e.message}); one thread`);
    return;
  }
  location.reload();
  await new Promise(() => {}); // the page reloads: start nothing here
}
