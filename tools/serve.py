#!/usr/bin/env python3
"""Serve the app locally: `/` is www/, `/pkg/` and `/pkg-threads/` the wasm-pack outputs. Loopback only.

    tools/serve.py [PORT] [--root DIR] [--no-isolation]

With `--root DIR`, serve a static folder written by tools/site.sh instead (as a static host would).

Sends the same Content-Security-Policy as the page's meta tag, so the browser refuses any
connection outside this origin, and the two headers that make the page cross-origin isolated
(COOP/COEP): only then does the browser give it shared memory, which the threaded build
(pkg-threads/, every core) needs. `--no-isolation` leaves them out, as a plain static host would
(the page then isolates itself with its service worker, www/isolate-sw.js, where it can).
"""
import http.server
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
       "img-src 'self' blob: data:; style-src 'self'; worker-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'none'")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}

    site = None  # a tools/site.sh folder, served as it is
    isolation = True

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        if self.site:
            base, rest = self.site, path.lstrip("/")
        elif path.startswith("/pkg/"):
            base, rest = os.path.join(ROOT, "pkg"), path[len("/pkg/"):]
        elif path.startswith("/pkg-threads/"):
            base, rest = os.path.join(ROOT, "pkg-threads"), path[len("/pkg-threads/"):]
        else:
            base, rest = os.path.join(ROOT, "www"), path.lstrip("/")
        full = os.path.normpath(os.path.join(base, rest))
        return full if full.startswith(base) else base

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        if self.isolation:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


def main():
    args = sys.argv[1:]
    if "--root" in args:
        i = args.index("--root")
        Handler.site = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    if "--no-isolation" in args:
        Handler.isolation = False
        args.remove("--no-isolation")
    port = int(args[0]) if args else 8080
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # Port 0 asks the system for a free one: print the port actually bound.
    print(f"dino-ar is at http://localhost:{server.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
