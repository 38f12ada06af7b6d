//! Pick sources: everything that delivers picks to the associator.
//!
//! - [`tcp`]: the service's pick ingest: length-prefixed MessagePack frames or JSON lines over
//!   TCP, many clients, optional shared token; each record validated against the inventory.
//! - [`wire`]: the versioned wire schema of that ingest, kept apart from the domain types.
//! - [`seedlink`]: SeedLink v3 waveform client with the built-in [`crate::picker`], and the
//!   SeedLink playback server that serves a miniSEED archive.

pub mod seedlink;
pub mod tcp;
pub mod wire;

pub use tcp::{serve, IngestConfig, IngestError, IngestedPick};
pub use wire::{validate, PickLimits, Rejection, WireHello, WirePick, WIRE_VERSION};
