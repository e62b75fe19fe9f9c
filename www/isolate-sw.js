// The page's own service worker, for static hosts that cannot send headers (GitHub Pages and the
// like): it adds the two headers that make the page cross-origin isolated (COOP/COEP) to every
// response of this site, so that the browser gives it shared memory and the threaded build
// (pkg-threads/, every core) can run. It touches nothing else: the site loads nothing from other
// origins (its Content-Security-Policy forbids it), and this worker never answers for them.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (new URL(request.url).origin !== self.location.origin) return;
  // A quirk of Chromium's devtools: such requests must not be answered by a fetch of our own.
  if (request.cache === "only-if-cached" && request.mode !== "same-origin") return;
  event.respondWith(
    fetch(request).then((response) => {
      if (response.status === 0) return response; // opaque: nothing to add to
      const headers = new Headers(response.headers);
      headers.set("Cross-Origin-Opener-Policy", "same-origin");
      headers.set("Cross-Origin-Embedder-Policy", "require-corp");
      headers.set("Cross-Origin-Resource-Policy", "same-origin");
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
    }),
  );
});
