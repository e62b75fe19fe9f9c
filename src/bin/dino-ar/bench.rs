//! `dino-ar bench`: the timings behind BENCHMARKS.md. Each prints medians of `--runs` timed runs
//! after `--warmup` untimed ones, with min and max, and the peak resident memory of each case.
//!
//! Inputs are random (seeded): speed does not depend on the values, and no weights are needed
//! except for `backbone`, which times whatever weights it is given.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use clap::{Args, Subcommand};
use dino_ar::ar::{ArConfig, ArHead, Variant};
use dino_ar::backbone::load_backbone;
use dino_ar::infra::compute::{DeviceChoice, Precision, fits_in_one_buffer};
use dino_ar::infra::readback::read_back;
use dino_ar::infra::rng::Rng;
use dino_ar::knn::MemoryBank;
use dino_ar::score::patch_scores;
use dino_ar::spec::{FitSpec, InputSize};
use dino_ar::train::fit;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
    /// Timed runs per case (the median is reported, with min and max).
    #[arg(long, default_value_t = 5, global = true)]
    runs: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 1, global = true)]
    warmup: usize,
    /// Where to run: auto (a hardware GPU, else the CPU), cpu, gpu.
    #[arg(long, default_value_t = DeviceChoice::Auto, global = true,
          value_parser = crate::args::choice::<DeviceChoice>())]
    device: DeviceChoice,
}

#[derive(Subcommand)]
enum What {
    /// Per-image scoring: the AR head vs kNN memory banks of growing size, on identical grids.
    Heads {
        /// Normal images in each memory bank.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,4000")]
        banks: Vec<usize>,
        /// Embedding width (ViT-S: 384).
        #[arg(long, default_value_t = 384)]
        dim: usize,
        /// Grid side (448² input / patch 16 = 28).
        #[arg(long, default_value_t = 28)]
        grid: usize,
    },
    /// Backbone forward pass of one image at each size (pixels in, patch grid read back).
    Backbone {
        /// DINOv3 weights (a random ViT-S/16: `tools/fixtures/make_fixtures.py --full`).
        #[arg(long)]
        backbone: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_delimiter = ',', default_value = "224,448")]
        sizes: Vec<String>,
        /// f16: half-precision matmuls on a GPU with shader-f16 (else f32, saying why).
        #[arg(long, default_value_t = Precision::default(),
              value_parser = crate::args::choice::<Precision>())]
        precision: Precision,
    },
    /// Seconds per epoch of AR-head training.
    Train {
        /// Training images (their grids are random).
        #[arg(long, default_value_t = 200)]
        images: usize,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, default_value_t = 28)]
        grid: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
    },
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>10.2} {:>10.2} {:>10.2}",
            self.median, self.min, self.max
        )
    }
}

/// Milliseconds per call of `f`, after `warmup` untimed calls; the first failure ends the case
/// with its message.
fn time(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Stats, String> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Stats {
        median: ms[ms.len() / 2],
        min: ms[0],
        max: ms[ms.len() - 1],
    })
}

/// Peak resident memory (MB) since the last reset, from /proc (Linux); None elsewhere.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Start a new peak-memory window (Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_text() -> String {
    peak_rss_mb().map_or("n/a".into(), |m| format!("{m:.0}"))
}

/// The GPU allocator's state in MB: (in use, reserved). It only grows its reservation (pages are
/// kept for reuse), so `reserved` read after a case is at least that case's peak in use. None on
/// the CPU, whose tensors live on the process heap (peak_rss_MB covers them).
fn gpu_memory_mb(device: &Device) -> Option<(f64, f64)> {
    let usage = device.memory_pool_usage()?;
    Some((
        usage.bytes_in_use as f64 / 1e6,
        usage.bytes_reserved as f64 / 1e6,
    ))
}

fn gpu_reserved_text(device: &Device) -> String {
    gpu_memory_mb(device).map_or("n/a".into(), |(_, reserved)| format!("{reserved:.0}"))
}

fn random_grid(rng: &mut Rng, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(rng.uniform(-1.0, 1.0, n), shape), device)
}

/// Reading back is part of scoring: it waits for the work to finish, and on a GPU it is where
/// failed work (a buffer over the device's limit) surfaces, as the library's error.
fn read<const N: usize>(t: Tensor<N>, what: &'static str) -> Result<(), String> {
    pollster::block_on(read_back(t, what))
        .map(drop)
        .map_err(|e| e.to_string())
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let compute = dino_ar::infra::compute::open(args.device)?;
    let device = compute.device;
    let (warmup, runs) = (args.warmup, args.runs);
    println!(
        "# dino-ar bench on {}; times in ms: median, min, max of {runs} runs after {warmup} warm-up",
        compute.label
    );
    match args.what {
        What::Heads { banks, dim, grid } => heads(&device, warmup, runs, &banks, dim, grid),
        What::Backbone {
            backbone,
            config,
            sizes,
            precision,
        } => backbone_forward(&device, precision, warmup, runs, &backbone, config, &sizes),
        What::Train {
            images,
            dim,
            grid,
            batch_size,
        } => train(&device, warmup, runs, images, dim, grid, batch_size),
    }
}

fn heads(
    device: &Device,
    warmup: usize,
    runs: usize,
    banks: &[usize],
    dim: usize,
    g: usize,
) -> Result<(), String> {
    if banks.contains(&0) || dim == 0 || g == 0 {
        return Err("--banks, --dim and --grid must be at least 1".into());
    }
    let mut rng = Rng::new(7);
    let test = random_grid(&mut rng, [1, dim, g, g], device);
    println!("# one image's grid {dim}×{g}×{g}; model MB = AR weights or the bank's f32 rows");
    println!(
        "{:<12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>13}",
        "method", "bank_images", "model_MB", "median_ms", "min_ms", "max_ms", "peak_rss_MB"
    );

    // Every AR variant at the paper's other settings; kNN is compared with the default one.
    let mut ar = None;
    for &variant in Variant::ALL {
        reset_peak();
        let config = ArConfig {
            variant,
            ..ArConfig::new(dim)
        };
        let head = ArHead::new(&config, &mut rng, device).map_err(|e| e.to_string())?;
        let params = head.num_params();
        let t = time(warmup, runs, || {
            read(
                patch_scores(head.forward(test.clone()), test.clone()),
                "patch scores",
            )
        })?;
        println!(
            "{:<12} {:>12} {:>10.1} {t} {:>13}",
            format!("ar:{variant}"),
            "-",
            params as f64 * 4.0 / 1e6,
            peak_text()
        );
        if variant == FitSpec::default().variant {
            ar = Some(t);
        }
    }
    let ar = ar.ok_or("the default variant is among the variants")?;

    let mut knn_at = Vec::new();
    for &n in banks {
        reset_peak();
        // Random unit rows: as many as the bank of n images holds, built in place — unless the
        // bank is more than the device takes in one buffer: that size is reported and skipped.
        let rows = n * g * g;
        let bytes = (rows * dim * size_of::<f32>()) as u64;
        let image_bytes = (g * g * dim * size_of::<f32>()) as u64;
        let what = format!("the kNN bank of {n} images");
        if let Err(e) = fits_in_one_buffer(device, bytes, &what, |limit| {
            format!("use banks of at most {} images here", limit / image_bytes)
        }) {
            println!("# knn {n}: skipped, {e}");
            continue;
        }
        let mut data = rng.uniform(-1.0, 1.0, rows * dim);
        for row in data.chunks_mut(dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let bank = MemoryBank {
            bank: Tensor::from_data(TensorData::new(data, [rows, dim]), device),
        };
        let t = time(warmup, runs, || {
            read(bank.patch_scores(test.clone()), "patch scores")
        })?;
        println!(
            "{:<12} {:>12} {:>10.1} {t} {:>13}",
            "knn",
            n,
            (rows * dim * 4) as f64 / 1e6,
            peak_text()
        );
        knn_at.push((n, t.median));
    }
    let (n, knn) = knn_at
        .iter()
        .find(|(n, _)| *n == 1000)
        .or(knn_at.last())
        .copied()
        .ok_or("no kNN bank fitted this device")?;
    println!("knn_over_ar_at_{n}={:.2}", knn / ar.median);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn backbone_forward(
    device: &Device,
    precision: Precision,
    warmup: usize,
    runs: usize,
    path: &PathBuf,
    config: Option<PathBuf>,
    sizes: &[String],
) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = config.or_else(|| {
        let beside = path.with_file_name("config.json");
        beside.exists().then_some(beside)
    });
    let config_text = match &config {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let loaded = load_backbone(&bytes, config_text.as_deref(), device)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (model, note) = loaded.model.with_precision(precision);
    let c = &model.config;
    println!(
        "# backbone {}: width {}, {} layers, {} heads, patch {}, {}{}",
        path.display(),
        c.hidden_size,
        c.num_layers,
        c.num_heads,
        c.patch_size,
        model.precision(),
        note.map(|n| format!(" ({n})")).unwrap_or_default()
    );
    if let Some((in_use, reserved)) = gpu_memory_mb(device) {
        println!(
            "# GPU memory after loading the weights: {in_use:.1} MB in use, {reserved:.1} MB reserved"
        );
    }
    println!("# first_ms: the first forward at that size (on a GPU: shader compilation included)");
    println!(
        "# gpu_reserved_MB: GPU memory the allocator holds after that size's runs (≥ their peak)"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>13} {:>16}",
        "size", "first_ms", "median_ms", "min_ms", "max_ms", "peak_rss_MB", "gpu_reserved_MB"
    );
    let mut rng = Rng::new(3);
    for size in sizes {
        let (h, w) = size.parse::<InputSize>().map_err(|e| e.to_string())?.hw();
        model.config.grid(h, w)?;
        let pixels = rng.uniform(-2.0, 2.0, 3 * h * w);
        reset_peak();
        let forward = || {
            let x = model.pixels_tensor(pixels.clone(), h, w)?;
            read(model.forward(x)?.patch_grid(), "patch grid")
        };
        let first = time(0, 1, forward)?;
        let t = time(warmup, runs, forward)?;
        println!(
            "{:<10} {:>10.2} {t} {:>13} {:>16}",
            format!("{h}x{w}"),
            first.median,
            peak_text(),
            gpu_reserved_text(device)
        );
    }
    Ok(())
}

fn train(
    device: &Device,
    warmup: usize,
    runs: usize,
    images: usize,
    dim: usize,
    g: usize,
    batch_size: usize,
) -> Result<(), String> {
    if images == 0 || dim == 0 || g == 0 || batch_size == 0 {
        return Err("--images, --dim, --grid and --batch-size must be at least 1".into());
    }
    let mut rng = Rng::new(11);
    let grids = random_grid(&mut rng, [images, dim, g, g], device);
    println!(
        "# AR head (paper defaults) on {images} random grids {dim}×{g}×{g}, batch {batch_size}"
    );
    if let Some((in_use, _)) = gpu_memory_mb(device) {
        println!("# GPU memory in use with the grids uploaded: {in_use:.1} MB");
    }
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>13} {:>16}",
        "variant", "median_ms", "min_ms", "max_ms", "peak_rss_MB", "gpu_reserved_MB"
    );
    // Both variants cost the same (dilation changes where the taps are, not how many).
    let spec = FitSpec {
        epochs: 1,
        batch_size,
        ..FitSpec::default()
    };
    reset_peak();
    let t = time(warmup, runs, || {
        pollster::block_on(fit(grids.clone(), &spec, |_| ControlFlow::Continue(())))
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    println!(
        "{:<10} {t} {:>13} {:>16}",
        spec.variant,
        peak_text(),
        gpu_reserved_text(device)
    );
    println!("# one timed run = one epoch over all {images} images (ms)");
    Ok(())
}
