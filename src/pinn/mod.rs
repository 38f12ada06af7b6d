//! Offline trainer of the eikonal traveltime network (burn, flex CPU backend).
//!
//! - [`model`]: the burn MLP and its forward-mode input tangents.
//! - [`data`]: collocation sampling and reference values.
//! - [`training`]: the loss, the optimiser loop, validation.
//! - [`lbfgs`]: the L-BFGS fine-tuning stage on large fixed batches (argmin).
//! - [`artifact`]: writing `trained-models/NAME/` (burn-free weights, burnpack, manifest,
//!   loss curve CSV and SVG).
//!
//! The evaluator the service uses is [`crate::traveltime::pinn`], which never needs burn.

pub mod artifact;
pub mod data;
pub mod lbfgs;
pub mod model;
pub mod training;

pub use training::{train, TrainConfig, TrainInputs, Trained};

use thiserror::Error;

/// burn version the trainer is built against (written into every manifest).
pub const BURN_VERSION: &str = "0.22.1";

/// Why training or writing an artifact failed.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error("reference solver failed: {0}")]
    Reference(String),
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("{file}: {message}")]
    Io {
        file: std::path::PathBuf,
        message: String,
    },
    #[error(transparent)]
    Model(#[from] crate::traveltime::pinn::PinnError),
    #[error("validation failed: {0}")]
    Validation(#[from] crate::traveltime::TraveltimeError),
}
