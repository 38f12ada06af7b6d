//! eikoloc: real-time earthquake hypocentre location with eikonal-PINN traveltimes and
//! Stein variational (SVGD) posteriors.
//!
//! # Layout
//!
//! - [`associate`]: streaming phase association (picks in, candidate events out).
//! - [`compare`]: match two catalogs, measure their differences and coverage, draw SVG figures.
//! - [`catalog`]: pick and catalog formats, one module each (CSV, QuakeML, NonLinLoc,
//!   Hypoinverse): sniff, read (good records plus per-record problems), write.
//! - [`domain`]: plain value types (time, geography, stations, picks, events); no I/O.
//! - [`velocity`]: velocity models (1-D layered, constant gradient, 3-D grid).
//! - [`traveltime`]: the [`traveltime::TraveltimeModel`] trait and its implementations
//!   (analytic oracles, exact 1-D layered solver, eikonal grid solver, network evaluator).
//! - [`locate`]: the Bayesian locator (robust likelihood, first estimate, SVGD, summary) and
//!   station terms (static and source-specific, [`locate::station_terms`]).
//! - [`synth`]: synthetic events and picks with known truth.
//! - [`inventory`]: station file readers (neutral CSV, FDSN StationXML) with validation.
//! - [`waveform`]: miniSEED 2 records in and out (miniseed-rs), traces, synthetic seismograms.
//! - [`picker`]: streaming STA/LTA + AIC picker, P on verticals and S on horizontals.
//! - [`ingest`]: pick sources: the service's TCP pick ingest (MessagePack frames, JSON lines;
//!   wire schema in [`ingest::wire`], apart from the domain types; validation against the
//!   inventory) and [`ingest::seedlink`] (SeedLink v3 protocol, client, playback server and the
//!   client -> picker -> picks pipeline).
//! - `pinn` (feature `train`): the offline burn trainer of the traveltime network; the
//!   service only needs the burn-free evaluator in [`traveltime::pinn`].
//! - [`config`]: station configurations (`station-configs/<name>/config.toml`): raw TOML ->
//!   resolved (stations and velocity loaded, local frame, model box).
//! - [`store`]: the SQLite event store (picks, events, every origin version, arrivals).
//! - [`publish`]: publishers (push model): per-event QuakeML files, the TCP origin stream.
//! - [`metrics`]: the Prometheus metrics of the service.
//! - [`replay`]: `eikoloc replay`: a pick archive through the service's own pipeline under a
//!   virtual clock (deterministic), into a store, per-event QuakeML and a catalog.
//! - [`daemon`]: `eikoloc serve`: `run(config, listeners, engine, metrics, shutdown)` wires
//!   ingest, association, location, store, publishers and the HTTP API.
//!
//! Outside `src/`: `station-configs/` (one folder per region; `demo/` is the bundled default),
//! `trained-models/` (trained networks), `deploy/` (operations files), `tests/` (integration
//! tests; external data is read by path from `../shared/data`).
//!
//! Frames and units: local Cartesian km (x east, y north, z depth below sea level, positive
//! down), times UTC, field names carry their unit (`_s`, `_km`, `_m`, `_deg`).

pub mod associate;
pub mod catalog;
pub mod compare;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod ingest;
pub mod inventory;
pub mod locate;
pub mod metrics;
pub mod picker;
#[cfg(feature = "train")]
pub mod pinn;
pub mod publish;
pub mod replay;
pub mod store;
pub mod synth;
pub mod traveltime;
pub mod velocity;
pub mod waveform;
