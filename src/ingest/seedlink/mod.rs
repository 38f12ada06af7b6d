//! SeedLink v3: the waveform client that feeds the picker, and a playback server.
//!
//! Layout: [`protocol`] (framing, selectors, INFO records; shared), [`server`] (playback of
//! a miniSEED archive), [`client`] (tokio client with resume state, keepalive, timeouts and
//! reconnects), [`pipeline`] (client records -> [`crate::picker::Picker`] -> a stream of
//! [`crate::domain::Pick`]s, the pick source the service plugs in).

pub mod client;
pub mod pipeline;
pub mod protocol;
pub mod server;
