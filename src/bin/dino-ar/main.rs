//! The native command line: a thin shell over the library (files in, files out), one file per
//! command over the shared flags in `args.rs`.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod calibrate;
#[cfg(not(target_arch = "wasm32"))]
mod data;
#[cfg(not(target_arch = "wasm32"))]
mod embed;
#[cfg(not(target_arch = "wasm32"))]
mod eval;
#[cfg(not(target_arch = "wasm32"))]
mod fit;
#[cfg(not(target_arch = "wasm32"))]
mod overlay;
#[cfg(not(target_arch = "wasm32"))]
mod random_backbone;
#[cfg(not(target_arch = "wasm32"))]
mod score;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};

    #[derive(Parser)]
    #[command(
        name = "dino-ar",
        version,
        about = "Unsupervised visual anomaly detection with DINOv3 embeddings (native CLI).",
        long_about = "Unsupervised visual anomaly detection with DINOv3 embeddings.\n\n\
            Runs on a GPU (wgpu: Vulkan, Metal, DX12) or the CPU (burn-flex): see --device. DINOv3 \
            weights are yours to obtain (Hugging Face `model.safetensors` or Meta's `.pth`); \
            nothing is uploaded anywhere."
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run the backbone on one image (or a normalised pixel tensor) and save the embeddings.
        ///
        /// Writes a safetensors file with `patch_tokens` [1, h·w, D] (raster order, after the
        /// final norm) and `cls_token` [1, D], both float32.
        Embed(embed::EmbedArgs),
        /// Fit a model (AR head or kNN baseline) on normal images or volumes.
        ///
        /// A hold-out share of the images is kept out of training and calibrates the threshold
        /// and the display normalisation stored in the bundle.
        ///
        /// With --resume MODEL it goes on learning from that model's weights (a few epochs on
        /// the images a person marked normal, say), and the new model's history continues it.
        Fit(fit::FitArgs),
        /// Set a model's threshold again by a rule: a target false-alarm rate on normal images
        /// (fpr:0.01), the best F1 or a target recall on marked anomalous ones, or a quantile.
        ///
        /// The scorer is unchanged; the new model records the rule and what it rested on.
        Calibrate(calibrate::CalibrateArgs),
        /// Score images: writes scores.csv and an overlay PNG per image.
        Score(score::ScoreArgs),
        /// Benchmarks (BENCHMARKS.md): `heads` (AR vs kNN scoring), `backbone`, `train`.
        Bench(bench::BenchArgs),
        /// Evaluate on an MVTec-style dataset (test/good, test/<defect>, ground_truth/<defect>).
        Eval(eval::EvalArgs),
        /// Write a DINOv3 ViT with random weights (Hugging Face safetensors), ViT-S/16 by default.
        ///
        /// For benchmarks and demos where no pretrained weights may be used: it embeds colour and
        /// texture, not meaning, so it shows the pipeline, not the method's accuracy.
        RandomBackbone(random_backbone::RandomBackboneArgs),
    }

    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The fit settings given on the command line: with --resume only they override the model's.
    let explicit: Vec<String> = matches
        .subcommand_matches("fit")
        .map(|m| {
            let spec = dino_ar::spec::FitSpec::augment_args(clap::Command::new("spec"));
            spec.get_arguments()
                .map(|a| a.get_id().to_string())
                .filter(|id| m.value_source(id) == Some(ValueSource::CommandLine))
                .collect()
        })
        .unwrap_or_default();
    let result = match cli.command {
        Command::Embed(args) => embed::run(args),
        Command::Fit(args) => fit::run(args, &explicit),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Score(args) => score::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::RandomBackbone(args) => random_backbone::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
