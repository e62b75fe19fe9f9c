//! dino-ar: unsupervised visual anomaly detection with DINOv3 patch embeddings, on burn.
//!
//! Data flows one way: image → [`preprocess`] → [`backbone`] → embeddings. File formats live in
//! [`weights`]; nothing here touches the file system or the browser.

pub mod ar;
pub mod backbone;
pub mod bundle;
pub mod detector;
pub mod knn;
pub mod metrics;
pub mod preprocess;
pub mod rng;
pub mod score;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;
