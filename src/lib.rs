//! eikoloc: real-time earthquake hypocentre location with eikonal-PINN traveltimes and
//! Stein variational (SVGD) posteriors.
//!
//! # Layout
//!
//! - [`domain`]: plain value types (time, geography, stations, picks, events); no I/O.
//! - [`velocity`]: velocity models (1-D layered, constant gradient, 3-D grid).
//! - `pinn` (feature `train`): the offline eikonal-network trainer (burn).
//! - [`traveltime`]: the [`traveltime::TraveltimeModel`] trait and its implementations
//!   (analytic oracles, exact 1-D layered solver, eikonal grid solver, network evaluator).
//!
//! Frames and units: local Cartesian km (x east, y north, z depth below sea level, positive
//! down), times UTC, field names carry their unit (`_s`, `_km`, `_m`, `_deg`).

pub mod domain;
#[cfg(feature = "train")]
pub mod pinn;
pub mod traveltime;
pub mod velocity;
