//! dino-ar: unsupervised visual anomaly detection with DINOv3 patch embeddings, on burn.
//!
//! Data flows one way: image → [`preprocess`] → [`backbone`] → embeddings → scorer ([`ar`] or
//! [`knn`]) → [`score`] (map, image score, verdict) → [`overlay`] (pixels). [`detector`] drives
//! that chain and fits models ([`train`] on [`grids`], calibration) as a [`spec::FitSpec`] says.
//!
//! Each rule lives in one module, and every front end calls it instead of restating it:
//! fit settings and their defaults in [`spec`], the verdict in [`score::is_anomalous`], colours and
//! contour in [`overlay`], the CSV of a scoring run in [`scores_csv`], the metrics report in
//! [`evaluate`], the model file in [`bundle`], volumes and intensity windows in [`volume`]. The front ends are thin: the native CLI
//! (`src/bin/dino-ar/`: files in, files out) and, compiled to wasm only, [`web`] (the JS API the
//! page and other pages use). The model code never knows which one drives it. Under all of it,
//! [`infra`] holds the plumbing that knows nothing of anomalies (devices, read-back, the
//! generator, ZIP, named settings); the one input path is [`input`], the training set of a fit
//! [`training_set`].

#[macro_use]
pub mod infra;

pub mod ar;
pub mod backbone;
pub mod bundle;
pub mod detector;
pub mod evaluate;
pub mod explain;
pub mod grids;
pub mod input;
pub mod knn;
pub mod limits;
pub mod marks;
pub mod metrics;
pub mod overlay;
pub mod preprocess;
pub mod score;
pub mod scores_csv;
pub mod spec;
pub mod threshold;
pub mod train;
pub mod training_set;
pub mod volume;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;
