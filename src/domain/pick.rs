//! Phases and picks (QuakeML Pick: a time measured on one station's record).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

use super::station::StationCode;
use super::time::UtcTime;

/// A seismic phase the locator uses: first-arriving P or S.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Compressional first arrival (P, Pg, Pn, Pb, p).
    P,
    /// Shear first arrival (S, Sg, Sn, Sb, s).
    S,
}

impl Phase {
    /// Both phases, P first.
    pub const ALL: [Phase; 2] = [Phase::P, Phase::S];
    /// `"P"` or `"S"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::P => "P",
            Phase::S => "S",
        }
    }
    /// 0 for P, 1 for S (index into per-phase arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A phase name that is neither a P nor an S first arrival.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("unknown phase {0:?} (expected P, Pg, Pn, Pb, S, Sg, Sn or Sb)")]
pub struct PhaseError(pub String);

impl FromStr for Phase {
    type Err = PhaseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "P" | "p" | "Pg" | "Pn" | "Pb" | "P*" => Ok(Phase::P),
            "S" | "s" | "Sg" | "Sn" | "Sb" | "S*" => Ok(Phase::S),
            other => Err(PhaseError(other.to_string())),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase pick: arrival time of one phase at one station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    /// Deterministic id (derived from station, phase and time unless given).
    pub id: String,
    /// Station that recorded it.
    pub station: StationCode,
    /// P or S.
    pub phase: Phase,
    /// Arrival time, UTC.
    pub time: UtcTime,
    /// One-sigma time uncertainty, s.
    pub uncertainty_s: f64,
}

impl Pick {
    /// A pick with an id derived from its content: `NET.STA.P.<unix micro-seconds>`.
    pub fn new(station: StationCode, phase: Phase, time: UtcTime, uncertainty_s: f64) -> Self {
        let id = format!("{}.{}.{}", station, phase, time.timestamp_micros());
        Self {
            id,
            station,
            phase,
            time,
            uncertainty_s,
        }
    }
}
