//! Velocity models: 1-D layered, constant gradient, (in `grid`) 3-D regular grids, and (in
//! `perturbed`) a layered model made 3-D by dipping, offset interfaces and lateral changes.
//!
//! Coordinates are the local frame of [`crate::domain::LocalPoint`]: km east, km north,
//! km depth below sea level (positive down).

pub mod gradient;
pub mod grid;
pub mod layered;
pub mod perturbed;

pub use gradient::GradientModel;
pub use grid::GridModel;
pub use layered::{load_layered, Layer, LayeredModel};
pub use perturbed::{Perturbation, PerturbedModel};

use crate::domain::Phase;
use std::path::PathBuf;
use thiserror::Error;

/// Something a velocity file or parameter set got wrong, naming where.
#[derive(Debug, Error)]
pub enum VelocityError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: field {field:?}: {message}")]
    Field {
        file: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("invalid velocity model: {0}")]
    Invalid(String),
}

/// A seismic velocity field in the local frame.
pub trait VelocityModel: Send + Sync {
    /// Velocity of `phase` at (x_km, y_km, z_km), km/s. Points above the model top take the
    /// velocity of the top; points beyond a finite model take the nearest edge value.
    fn velocity_km_s(&self, phase: Phase, x_km: f64, y_km: f64, z_km: f64) -> f64;

    /// True when velocity depends on depth only (the traveltime is then cylindrically
    /// symmetric about the vertical through the source).
    fn is_one_dimensional(&self) -> bool;

    /// Hex SHA-256 of a canonical text of the model: equal models hash equal, so a trained
    /// network can be matched to the model it was trained for.
    fn content_hash(&self) -> String;
}

/// Hex SHA-256 of `text`.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}
