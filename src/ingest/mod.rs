//! Pick sources: everything that delivers picks to the associator.
//!
//! - [`seedlink`]: SeedLink v3 waveform client with the built-in [`crate::picker`], and the
//!   SeedLink playback server that serves a miniSEED archive.

pub mod seedlink;
