// What the browser tests share: the repository root, the app's own server (tools/serve.py, the
// same CSP as in production) on a free port, and Debian's Chromium with the flags that give it
// WebGPU headless here (docs/TOOLCHAIN.md).
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

// → { origin, stop }. Port 0: the server picks a free port and prints it. With `site`, a static
// folder from tools/site.sh is served as it is, as a static host would; `isolation: false` leaves
// out the COOP/COEP headers, as most static hosts do.
export async function serve({ site, isolation = true } = {}) {
  const args = [join(root, "tools", "serve.py"), "0", ...(site ? ["--root", site] : []), ...(isolation ? [] : ["--no-isolation"])];
  const server = spawn("python3", args, { stdio: ["ignore", "pipe", "inherit"] });
  const origin = await new Promise((resolve, reject) => {
    server.stdout.once("data", (d) => {
      const m = String(d).match(/http:\/\/localhost:\d+/);
      m ? resolve(m[0]) : reject(new Error(`tools/serve.py said: ${d}`));
    });
    server.once("exit", (code) => reject(new Error(`tools/serve.py exited (${code}) before serving`)));
  });
  return { origin, stop: () => server.kill() };
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
