//! eikoloc: real-time earthquake hypocentre location with eikonal-PINN traveltimes and
//! Stein variational (SVGD) posteriors.
//!
//! # Layout
//!
//! - [`domain`]: plain value types (time, geography, stations, picks, events); no I/O.
//! - [`velocity`]: velocity models (1-D layered, constant gradient, 3-D grid).
//! - [`traveltime`]: the [`traveltime::TraveltimeModel`] trait and its implementations
//!   (analytic oracles, exact 1-D layered solver, eikonal grid solver, network evaluator).
//! - [`locate`]: the Bayesian locator (robust likelihood, first estimate, SVGD, summary).
//! - [`synth`]: synthetic events and picks with known truth.
//!
//! Frames and units: local Cartesian km (x east, y north, z depth below sea level, positive
//! down), times UTC, field names carry their unit (`_s`, `_km`, `_m`, `_deg`).

pub mod domain;
pub mod locate;
pub mod synth;
pub mod traveltime;
pub mod velocity;
