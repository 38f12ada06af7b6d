//! The ingest wire schema (version 1), kept apart from the domain [`Pick`].
//!
//! One record is a map with named keys, the same in JSON and in MessagePack
//! (`rmp_serde::to_vec_named`):
//!
//! | key | type | |
//! |---|---|---|
//! | `v` | integer | schema version, must be 1 |
//! | `network`, `station` | string | FDSN codes; the station must be in the inventory |
//! | `location` | string, optional | location code |
//! | `phase` | string | P, Pg, Pn, Pb, S, Sg, Sn or Sb |
//! | `time` | string | ISO-8601 UTC arrival time (nanoseconds kept) ... |
//! | `time_s` | number | ... or Unix seconds; exactly one of `time` / `time_s` |
//! | `uncertainty_s` | number, optional | one-sigma pick uncertainty, s (default 0.1) |
//! | `id` | string, optional | the sender's pick id; default derived from content |
//!
//! When the service requires a token, the first record of a connection must be the
//! hello `{"v": 1, "token": "..."}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::time::{check_plausible, parse_utc};
use crate::domain::{Phase, Pick, StationCode, StationInventory};
use crate::metrics::RejectReason;

/// The schema version this service reads and writes.
pub const WIRE_VERSION: u32 = 1;

/// Default pick uncertainty when a record gives none, s.
pub const DEFAULT_UNCERTAINTY_S: f64 = 0.1;

/// A pick as sent by a client (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePick {
    /// Schema version.
    pub v: u32,
    /// Sender's pick id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// FDSN network code.
    pub network: String,
    /// FDSN station code.
    pub station: String,
    /// Location code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Phase name.
    pub phase: String,
    /// Arrival time, ISO-8601 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Arrival time, Unix seconds (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_s: Option<f64>,
    /// One-sigma uncertainty, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_s: Option<f64>,
}

impl WirePick {
    /// The wire form of a domain pick (ISO time, so nanoseconds survive).
    pub fn from_pick(p: &Pick) -> Self {
        Self {
            v: WIRE_VERSION,
            id: Some(p.id.clone()),
            network: p.station.network.clone(),
            station: p.station.station.clone(),
            location: (!p.station.location.is_empty()).then(|| p.station.location.clone()),
            phase: p.phase.as_str().to_string(),
            time: Some(crate::domain::format_utc(&p.time)),
            time_s: None,
            uncertainty_s: Some(p.uncertainty_s),
        }
    }
}

/// The authentication record that opens a connection when a token is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireHello {
    /// Schema version.
    pub v: u32,
    /// Shared ingest token.
    pub token: String,
}

/// Limits a record is checked against besides the inventory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PickLimits {
    /// Latest acceptable pick time ahead of the wall clock, s (clock skew allowance).
    pub max_future_s: f64,
    /// Oldest acceptable pick time behind the wall clock, s; `None`: any plausible time
    /// (1900..2200), e.g. for replaying an archive.
    pub max_age_s: Option<f64>,
    /// Largest acceptable uncertainty, s.
    pub max_uncertainty_s: f64,
}

impl Default for PickLimits {
    fn default() -> Self {
        Self {
            max_future_s: 300.0,
            max_age_s: None,
            max_uncertainty_s: 10.0,
        }
    }
}

/// A refused record: the reason and, when it could be read, the phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The record's phase, when readable.
    pub phase: Option<Phase>,
    /// A message for the log.
    pub detail: String,
}

fn reject(reason: RejectReason, phase: Option<Phase>, detail: String) -> Rejection {
    Rejection {
        reason,
        phase,
        detail,
    }
}

/// Checks a wire record against the schema, the inventory and the limits; `now` is the wall
/// clock. The station code is taken from the inventory, so every accepted pick names a
/// configured station exactly.
pub fn validate(
    w: WirePick,
    inventory: &StationInventory,
    limits: &PickLimits,
    now: DateTime<Utc>,
) -> Result<Pick, Rejection> {
    let phase = w.phase.parse::<Phase>().ok();
    if w.v != WIRE_VERSION {
        return Err(reject(
            RejectReason::Version,
            phase,
            format!("schema version {} (expected {WIRE_VERSION})", w.v),
        ));
    }
    let Some(phase) = phase else {
        return Err(reject(
            RejectReason::BadPhase,
            None,
            format!("phase {:?}", w.phase),
        ));
    };
    let Some(station) = inventory.get(w.network.trim(), w.station.trim()) else {
        return Err(reject(
            RejectReason::UnknownStation,
            Some(phase),
            format!(
                "station {}.{} is not in the inventory",
                w.network, w.station
            ),
        ));
    };
    let time = match (&w.time, w.time_s) {
        (Some(text), None) => match parse_utc(text) {
            Ok(t) => t,
            Err(crate::domain::TimeError::OutOfRange(m)) => {
                return Err(reject(RejectReason::TimeOutOfRange, Some(phase), m))
            }
            Err(e) => return Err(reject(RejectReason::BadTime, Some(phase), e.to_string())),
        },
        (None, Some(s)) => {
            if !s.is_finite() {
                return Err(reject(
                    RejectReason::BadTime,
                    Some(phase),
                    format!("time_s {s}"),
                ));
            }
            // 1e11 s is year 5138: anything beyond is out of range, and the cast stays exact.
            if s.abs() > 1e11 {
                return Err(reject(
                    RejectReason::TimeOutOfRange,
                    Some(phase),
                    format!("time_s {s}"),
                ));
            }
            // An f64 near 1.7e9 s resolves ~0.24 us: round the fraction to whole microseconds
            // (what a sender meant), rather than scaling the whole value to nanoseconds, which
            // leaves float noise in the last digits.
            let whole = s.floor();
            let micros = ((s - whole) * 1e6).round() as i64;
            let t = DateTime::<Utc>::from_timestamp(whole as i64, 0)
                .map(|t| t + chrono::TimeDelta::microseconds(micros))
                .ok_or_else(|| {
                    reject(
                        RejectReason::TimeOutOfRange,
                        Some(phase),
                        format!("time_s {s}"),
                    )
                })?;
            check_plausible(t)
                .map_err(|e| reject(RejectReason::TimeOutOfRange, Some(phase), e.to_string()))?
        }
        (Some(_), Some(_)) => {
            return Err(reject(
                RejectReason::BadTime,
                Some(phase),
                "both time and time_s given".into(),
            ))
        }
        (None, None) => {
            return Err(reject(
                RejectReason::BadTime,
                Some(phase),
                "no time or time_s".into(),
            ))
        }
    };
    let ahead_s = crate::domain::time::seconds_between(&now, &time);
    if ahead_s > limits.max_future_s {
        return Err(reject(
            RejectReason::TimeOutOfRange,
            Some(phase),
            format!(
                "pick time {} is {ahead_s:.0} s ahead of the clock",
                crate::domain::format_utc(&time)
            ),
        ));
    }
    if let Some(max_age) = limits.max_age_s {
        if -ahead_s > max_age {
            return Err(reject(
                RejectReason::TimeOutOfRange,
                Some(phase),
                format!(
                    "pick time {} is {:.0} s old",
                    crate::domain::format_utc(&time),
                    -ahead_s
                ),
            ));
        }
    }
    let sigma = w.uncertainty_s.unwrap_or(DEFAULT_UNCERTAINTY_S);
    if !(sigma.is_finite() && sigma > 0.0 && sigma <= limits.max_uncertainty_s) {
        return Err(reject(
            RejectReason::BadUncertainty,
            Some(phase),
            format!("uncertainty_s {sigma}"),
        ));
    }
    let mut code: StationCode = station.code.clone();
    if let Some(loc) = w.location.as_deref() {
        code.location = loc.trim().to_string();
    }
    let mut pick = Pick::new(code, phase, time, sigma);
    if let Some(id) = w.id.filter(|s| !s.trim().is_empty() && s.len() <= 256) {
        pick.id = id;
    }
    Ok(pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Station;

    fn inventory() -> StationInventory {
        StationInventory::new(vec![Station {
            code: StationCode::new("EK", "EK01"),
            lat_deg: 34.0,
            lon_deg: -117.3,
            elevation_m: 600.0,
        }])
        .unwrap()
    }

    fn wire(time: Option<&str>, time_s: Option<f64>) -> WirePick {
        WirePick {
            v: 1,
            id: None,
            network: "EK".into(),
            station: "EK01".into(),
            location: None,
            phase: "Pg".into(),
            time: time.map(str::to_string),
            time_s,
            uncertainty_s: None,
        }
    }

    #[test]
    fn accepts_both_time_forms_and_keeps_the_instant() {
        let now = parse_utc("2024-01-01T00:00:10Z").unwrap();
        let inv = inventory();
        let a = validate(
            wire(Some("2024-01-01T00:00:00.25Z"), None),
            &inv,
            &PickLimits::default(),
            now,
        )
        .unwrap();
        let b = validate(
            wire(None, Some(1_704_067_200.25)),
            &inv,
            &PickLimits::default(),
            now,
        )
        .unwrap();
        assert_eq!(a.time, b.time);
        assert_eq!(a.phase, Phase::P);
        assert_eq!(a.uncertainty_s, DEFAULT_UNCERTAINTY_S);
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn rejects_each_hostile_field_with_its_reason() {
        let now = parse_utc("2024-01-01T00:00:10Z").unwrap();
        let inv = inventory();
        let lim = PickLimits::default();
        let r = |w: WirePick| validate(w, &inv, &lim, now).unwrap_err().reason;
        assert_eq!(r(wire(None, Some(f64::NAN))), RejectReason::BadTime);
        assert_eq!(
            r(wire(Some("3000-01-01T00:00:00Z"), None)),
            RejectReason::TimeOutOfRange
        );
        assert_eq!(
            r(wire(None, Some(32_503_680_000.0))),
            RejectReason::TimeOutOfRange
        );
        assert_eq!(r(wire(None, Some(1e300))), RejectReason::TimeOutOfRange);
        // an hour ahead of the clock is beyond the 300 s skew allowance
        assert_eq!(
            r(wire(None, Some(1_704_067_200.0 + 3600.0))),
            RejectReason::TimeOutOfRange
        );
        assert_eq!(r(wire(None, None)), RejectReason::BadTime);
        let mut w = wire(None, Some(1_704_067_200.0));
        w.station = "NOPE".into();
        assert_eq!(r(w), RejectReason::UnknownStation);
        let mut w = wire(None, Some(1_704_067_200.0));
        w.phase = "Lg".into();
        assert_eq!(r(w), RejectReason::BadPhase);
        let mut w = wire(None, Some(1_704_067_200.0));
        w.v = 2;
        assert_eq!(r(w), RejectReason::Version);
        let mut w = wire(None, Some(1_704_067_200.0));
        w.uncertainty_s = Some(-1.0);
        assert_eq!(r(w), RejectReason::BadUncertainty);
    }
}
