// Anomaly map → pixels: upsampling of the patch scores, colormaps, the blended overlay and the
// contour of the region above the threshold. Pure functions of their inputs (no page state), so
// the batch thumbnails, the viewer and the PNG export all draw the same thing.

// Inferno sampled at nine points (as the CLI's overlays) and jet, both interpolated to 256 entries.
const INFERNO = [
  [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
  [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
];
const JET = [[0, 0, 128], [0, 0, 255], [0, 128, 255], [0, 255, 255], [128, 255, 128],
  [255, 255, 0], [255, 128, 0], [255, 0, 0], [128, 0, 0]];

function lut(stops) {
  const out = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2);
    const f = x - k;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f);
  }
  return out;
}

export const COLORMAPS = { inferno: lut(INFERNO), jet: lut(JET) };

// Bilinear upsampling of a row-major gh×gw grid to h×w, align_corners=false (as the Rust side
// and torch's interpolate), so the map is only ever kept as its small grid.
export function upsample(grid, gh, gw, h, w) {
  const out = new Float32Array(w * h);
  const axis = (n, m) => {
    const i0 = new Int32Array(m), i1 = new Int32Array(m), f = new Float32Array(m);
    for (let o = 0; o < m; o++) {
      const src = Math.max(((o + 0.5) * n) / m - 0.5, 0);
      const a = Math.min(Math.floor(src), n - 1);
      i0[o] = a;
      i1[o] = Math.min(a + 1, n - 1);
      f[o] = src - a;
    }
    return { i0, i1, f };
  };
  const ys = axis(gh, h), xs = axis(gw, w);
  for (let y = 0; y < h; y++) {
    const r0 = ys.i0[y] * gw, r1 = ys.i1[y] * gw, fy = ys.f[y];
    for (let x = 0; x < w; x++) {
      const a = xs.i0[x], b = xs.i1[x], fx = xs.f[x];
      const top = grid[r0 + a] * (1 - fx) + grid[r0 + b] * fx;
      const bottom = grid[r1 + a] * (1 - fx) + grid[r1 + b] * fx;
      out[y * w + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

// Blend the map over the image pixels (`base`: ImageData of the image at the map's size).
// Scores are shown in the model's display units: `low` (a typical normal patch) is transparent
// dark, `high` (the calibrated threshold) and above is the hot end, the same for every image of
// the dataset, so a normal image stays cold.
export function renderOverlay(base, map, { colormap = "inferno", opacity = 0.7, threshold, low, high, contour = true }) {
  const { width: w, height: h } = base;
  const out = new ImageData(new Uint8ClampedArray(base.data), w, h);
  const px = out.data;
  const table = COLORMAPS[colormap] ?? COLORMAPS.inferno;
  const span = high > low ? high - low : 1;
  for (let i = 0; i < w * h; i++) {
    const t = Math.min(Math.max((map[i] - low) / span, 0), 1);
    const alpha = opacity * (0.25 + 0.75 * t);
    const c = Math.round(t * 255) * 3;
    for (let k = 0; k < 3; k++) px[i * 4 + k] = px[i * 4 + k] * (1 - alpha) + table[c + k] * alpha;
    px[i * 4 + 3] = 255;
  }
  if (contour) {
    // Edge of the above-threshold region, thickened so it stays visible when the canvas is scaled.
    const r = Math.max(1, Math.round(Math.max(w, h) / 400));
    const above = (x, y) => x >= 0 && y >= 0 && x < w && y < h && map[y * w + x] >= threshold;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (!above(x, y)) continue;
        if (above(x - 1, y) && above(x + 1, y) && above(x, y - 1) && above(x, y + 1)) continue;
        for (let yy = Math.max(0, y - r + 1); yy < Math.min(h, y + r); yy++) {
          for (let xx = Math.max(0, x - r + 1); xx < Math.min(w, x + r); xx++) {
            const i = (yy * w + xx) * 4;
            px[i] = 0;
            px[i + 1] = 255;
            px[i + 2] = 255;
          }
        }
      }
    }
  }
  return out;
}
