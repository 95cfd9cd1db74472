//! anondistill: soft-label dataset distillation (Wang et al. 2018; Sucholutsky & Schonlau 2019;
//! Li et al. 2020) of labelled grayscale image patches, generic over the burn backend.
//!
//! The pieces, in the order a run uses them: [`data`] loads and splits images, [`config`] holds
//! every setting, [`net`] defines the functional networks, [`distill`] learns the distilled
//! images, labels and learning rates, [`eval`] measures them against baselines, and [`export`]
//! writes (and reads) the result archive. [`parallel`] spreads an iteration's networks over
//! several workers (the page's helper Web Workers) with the same result.

pub mod adam;
pub mod audit;
pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod data;
pub mod demo;
pub mod distill;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod grad;
pub mod kernels;
pub mod loss;
pub mod metrics;
pub mod net;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod once;
pub mod parallel;
pub mod pipeline;
pub mod privacy;
pub mod rng;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use config::{Config, ConvNorm, ImageInit, LabelMode, NetKind, Objective};
pub use engine::{ConvImpl, Engine, InnerGrad, OnceImpl};
pub use distill::{Distilled, Distiller, StepReport};
pub use error::{Error, Result};
