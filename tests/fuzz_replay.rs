//! The fuzz targets under `cargo test`, without libFuzzer (its AddressSanitizer build of burn takes
//! half an hour, past CI's budget; docs/FUZZING.md):
//!
//! 1. every input the long runs kept (`fuzz/corpus/<target>.corpus.gz`, minimised by `tools/fuzz.sh`), the
//!    seeds (`fuzz/seeds/`) and every crash ever found
//!    (`tests/fixtures/fuzz/<target>_*`) go through the target's code, always;
//! 2. then each target is fuzzed for a short, fixed time by a small mutator (bit flips, interesting
//!    integers, the target's dictionary, splices) from a fixed seed, so a failure replays.
//!
//! A panic names the target and the input (written to `target/fuzz-failure-<target>.bin` when it
//! came from the mutator). `DINO_AR_FUZZ_SECONDS` sets the time per target (default 8).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The corpus the long runs kept for `target` (`fuzz/corpus/<target>.corpus.gz`: gzip of
/// `[u32 LE length][bytes]`…, written by tools/fuzz.sh), named `corpus #n`.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let path = root()
        .join("fuzz/corpus")
        .join(format!("{target}.corpus.gz"));
    let Ok(packed) = std::fs::read(&path) else {
        return Vec::new();
    };
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut data)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut out, mut at) = (Vec::new(), 0);
    while at + 4 <= data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let input = data.get(at + 4..at + 4 + n).expect("a whole corpus input");
        out.push((format!("{} #{}", path.display(), out.len()), input.to_vec()));
        at += 4 + n;
    }
    out
}

/// Every input kept for `target`: its corpus, then its seeds and crashes ([`kept_files`]).
fn kept_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut inputs = corpus(target);
    for path in kept_files(target) {
        inputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    inputs
}

/// The seeds (hand-made ones in `fuzz/seeds/<target>/`, fixtures listed in
/// `fuzz/seeds/<target>.txt`, a folder meaning its files) and the crashes found.
fn kept_files(target: &str) -> Vec<PathBuf> {
    let mut inputs = files_in(&root().join("fuzz/seeds").join(target));
    let listed = root().join("fuzz/seeds").join(format!("{target}.txt"));
    for line in std::fs::read_to_string(&listed).unwrap().lines() {
        let path = root().join(line.trim());
        match path.is_dir() {
            true => inputs.extend(files_in(&path)),
            false => {
                assert!(path.is_file(), "{}: {line} is missing", listed.display());
                inputs.push(path);
            }
        }
    }
    inputs.extend(
        files_in(&root().join("tests/fixtures/fuzz"))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{target}_")))
            }),
    );
    inputs
}

/// Run `input` through `run`; a panic becomes an error naming what was run.
fn survive(run: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| run(input))).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

#[test]
fn every_kept_input_is_read_without_a_panic() {
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for (target, run) in harness::TARGETS {
        let inputs = kept_inputs(target);
        counts.push(format!("{target}: {}", inputs.len()));
        for (name, bytes) in inputs {
            if let Err(e) = survive(run, &bytes) {
                failures.push(format!("{target} on {name}: {e}"));
            }
        }
    }
    eprintln!("replayed {}", counts.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_target_has_seeds_and_a_dictionary() {
    for (target, _) in harness::TARGETS {
        assert!(!kept_inputs(target).is_empty(), "{target} has no inputs");
        let dict = dictionary(target);
        assert!(dict.len() >= 5, "{target}'s dictionary has {}", dict.len());
    }
}

/// A libFuzzer dictionary (`name="value"` lines, `\xNN` and `\\`/`\"` escapes) as byte strings.
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let path = root().join("fuzz/dict").join(format!("{target}.dict"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut words = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some(start) = line.find('"') else {
            panic!("{}: no value in {line}", path.display())
        };
        let quoted = &line[start + 1..line.len() - 1];
        let mut word = Vec::new();
        let mut bytes = quoted.bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                word.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'x') => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let hex = std::str::from_utf8(&hex).unwrap();
                    word.push(u8::from_str_radix(hex, 16).unwrap());
                }
                Some(other) => word.push(other),
                None => panic!("{}: a lone backslash in {line}", path.display()),
            }
        }
        words.push(word);
    }
    words
}

/// xorshift64*: the same mutations on every machine, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Integers that size things: the edges of each width, in both byte orders.
const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One to four mutations of `input`, in place.
fn mutate(input: &mut Vec<u8>, rng: &mut Rng, dict: &[Vec<u8>], pool: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            2 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1, 2, 4, 8][rng.below(4)];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let bytes = &bytes[..width];
                let end = (at + width).min(input.len());
                input.splice(at..end, bytes.iter().copied());
            }
            3 if !dict.is_empty() => {
                let word = &dict[rng.below(dict.len())];
                if rng.below(2) == 0 {
                    input.splice(at..at, word.iter().copied());
                } else {
                    let end = (at + word.len()).min(input.len());
                    input.splice(at..end, word.iter().copied());
                }
            }
            4 if !input.is_empty() => {
                let len = 1 + rng.below(input.len().min(64));
                let from = rng.below(input.len() - len + 1);
                input.drain(from..from + len);
            }
            5 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len() + 1);
                let len = rng.below(other.len() - from + 1).min(256);
                input.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => input.truncate(at),
        }
    }
}

#[test]
fn every_target_survives_mutated_inputs_for_a_fixed_time() {
    let seconds: u64 = std::env::var("DINO_AR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut report = Vec::new();
    for (n, (target, run)) in harness::TARGETS.into_iter().enumerate() {
        // Small inputs mutate and run fastest; the corpus holds the ones that reach far.
        let pool: Vec<Vec<u8>> = kept_inputs(target)
            .into_iter()
            .map(|(_, b)| b)
            .filter(|b| b.len() <= 64 << 10)
            .collect();
        assert!(
            !pool.is_empty(),
            "{target}: no input under 64 KiB to start from"
        );
        let dict = dictionary(target);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let (start, mut runs) = (Instant::now(), 0u64);
        while start.elapsed() < Duration::from_secs(seconds) {
            let mut input = pool[rng.below(pool.len())].clone();
            mutate(&mut input, &mut rng, &dict, &pool);
            if let Err(e) = survive(run, &input) {
                let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("fuzz-failure-{target}.bin"));
                std::fs::write(&kept, &input).unwrap();
                panic!(
                    "{target} panicked after {runs} mutated inputs: {e}\nthe input: {} \
                     (replay: cargo +$DINO_AR_NIGHTLY fuzz run {target} {0})",
                    kept.display()
                );
            }
            runs += 1;
        }
        report.push(format!("{target}: {runs}"));
    }
    eprintln!(
        "mutated inputs run in {seconds} s each: {}",
        report.join(", ")
    );
}
