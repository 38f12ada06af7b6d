//! Station terms: corrections to observed arrival times that absorb what a 1-D model cannot
//! explain, estimated from the residuals of located events and iterated with relocation.
//!
//! - **Static** terms: one correction per (network, station, phase), the median raw residual
//!   over all located events that have that arrival.
//! - **Source-specific station terms** (SSST; Richards-Dinger & Shearer 2000, Lin & Shearer
//!   2005, NonLinLoc's LOCSTACORR with SSST, HypoSVI): the correction for one event at one
//!   station/phase is the median raw residual of its `k` nearest *other* located events
//!   (within a radius) that have that arrival. Iterated with relocation, the radius shrinking
//!   from `radius_start_km` to `radius_end_km`, so the terms follow 3-D structure near the
//!   source that a single static term averages away. Where fewer than `min_neighbours`
//!   neighbours have the arrival, the static term stands in.
//!
//! The event itself is left out of its own neighbourhood, so a term never absorbs the
//! event's own pick noise (with small `k` it would otherwise pull each residual towards zero
//! and hide real misfit).
//!
//! A *raw residual* is the uncorrected observed arrival time minus the origin time minus the
//! model traveltime, at the event's located hypocentre and origin time (s). Positive: the
//! phase arrives later than the model predicts; the correction is subtracted from the
//! observed time before the likelihood ([`super::event::locate_picks_corrected`]).
//!
//! Files (CSV, one header line; read back by [`StationTerms::read_path`], which tells them
//! apart by header):
//! - static: `network,station,phase,correction_s,n` (`n`: residuals behind the median);
//! - SSST: the residual table the terms are computed from,
//!   `event_id,lat,lon,depth_km,network,station,phase,residual_s` (WGS84 degrees, depth km
//!   below sea level, raw residual s). SSST terms depend on where the new event is, so the
//!   table, not a fixed list of terms, is what a later run (or the service) needs: it
//!   recomputes each event's terms at that event's position.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use rayon::prelude::*;
use thiserror::Error;

use crate::domain::time::seconds_between;
use crate::domain::{GeoPoint, LocalFrame, LocalPoint, Origin, Phase, Pick};
use crate::traveltime::{TraveltimeError, TraveltimeModel};

/// Why station terms could not be read, written or estimated.
#[derive(Debug, Error)]
pub enum StationTermsError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// One field of one line is bad.
    #[error("{path}:{line}: field {field}: {message}")]
    Parse {
        /// File.
        path: String,
        /// Line number, 1-based.
        line: usize,
        /// Column name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The header names neither format.
    #[error("{path}: header {header:?} is neither a static-terms file ({STATIC_HEADER}) nor an SSST residual table ({RESIDUAL_HEADER})")]
    UnknownFormat {
        /// File.
        path: String,
        /// The header line found.
        header: String,
    },
    /// A configuration value is out of range.
    #[error("invalid station-terms configuration: {0}")]
    Config(String),
}

/// Header of the static-terms CSV.
pub const STATIC_HEADER: &str = "network,station,phase,correction_s,n";
/// Header of the SSST residual-table CSV.
pub const RESIDUAL_HEADER: &str = "event_id,lat,lon,depth_km,network,station,phase,residual_s";

/// (network, station, phase): what one term belongs to (location codes are not told apart).
pub type TermKey = (String, String, Phase);

/// One arrival of a located event, as the terms need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalResidual {
    /// Network code.
    pub network: String,
    /// Station code.
    pub station: String,
    /// Phase.
    pub phase: Phase,
    /// Raw residual: uncorrected observed time minus origin time minus model traveltime, s.
    pub residual_s: f64,
    /// Correction that was applied when the event was located, s (0 without terms).
    pub correction_s: f64,
}

/// A located event: hypocentre and raw residuals, the input to term estimation.
#[derive(Debug, Clone, PartialEq)]
pub struct LocatedEvent {
    /// Event id (SSST leaves the event with this id out of its own neighbourhood).
    pub event_id: String,
    /// Latitude, WGS84 degrees.
    pub lat_deg: f64,
    /// Longitude, WGS84 degrees.
    pub lon_deg: f64,
    /// Depth, km below sea level.
    pub depth_km: f64,
    /// Its arrivals.
    pub arrivals: Vec<ArrivalResidual>,
}

impl LocatedEvent {
    /// From a located origin whose arrival residuals are relative to the corrected prediction
    /// (as [`super::event::locate_picks_corrected`] reports them); `correction_s` is the
    /// correction that was applied, added back so the stored residuals are raw.
    pub fn from_origin(
        event_id: &str,
        origin: &Origin,
        correction_s: &dyn Fn(&str, &str, Phase) -> f64,
    ) -> Self {
        let arrivals = origin
            .arrivals
            .iter()
            .filter(|a| a.residual_s.is_finite())
            .map(|a| {
                let c = correction_s(&a.station.network, &a.station.station, a.phase);
                ArrivalResidual {
                    network: a.station.network.clone(),
                    station: a.station.station.clone(),
                    phase: a.phase,
                    residual_s: a.residual_s + c,
                    correction_s: c,
                }
            })
            .collect();
        Self {
            event_id: event_id.to_string(),
            lat_deg: origin.lat_deg,
            lon_deg: origin.lon_deg,
            depth_km: origin.depth_km,
            arrivals,
        }
    }

    /// Raw residuals of `picks` at a fixed hypocentre (WGS84 degrees, depth km below sea
    /// level), e.g. a reference catalogue's, with the origin time their median: what station
    /// terms calibrated on known hypocentres are estimated from. Picks at stations
    /// `station_position` does not know, and second picks of one station/phase, are skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn at_hypocentre(
        event_id: &str,
        model: &dyn TraveltimeModel,
        station_position: &dyn Fn(&str, &str) -> Option<LocalPoint>,
        frame: &LocalFrame,
        picks: &[Pick],
        lat_deg: f64,
        lon_deg: f64,
        depth_km: f64,
    ) -> Result<Self, TraveltimeError> {
        let (x, y) = frame.to_local(GeoPoint { lat_deg, lon_deg });
        let src = LocalPoint::new(x, y, depth_km);
        let mut seen = std::collections::HashSet::new();
        let mut rows = Vec::new();
        let Some(t_ref) = picks.iter().map(|p| p.time).min() else {
            return Ok(Self {
                event_id: event_id.into(),
                lat_deg,
                lon_deg,
                depth_km,
                arrivals: Vec::new(),
            });
        };
        for p in picks {
            let Some(pos) = station_position(&p.station.network, &p.station.station) else {
                continue;
            };
            if !seen.insert((&p.station.network, &p.station.station, p.phase)) {
                continue;
            }
            let tt = model.traveltime_s(p.phase, src, pos)?;
            rows.push((p, seconds_between(&t_ref, &p.time) - tt));
        }
        let mut e: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let t0 = if e.is_empty() { 0.0 } else { median(&mut e) };
        Ok(Self {
            event_id: event_id.into(),
            lat_deg,
            lon_deg,
            depth_km,
            arrivals: rows
                .into_iter()
                .map(|(p, ei)| ArrivalResidual {
                    network: p.station.network.clone(),
                    station: p.station.station.clone(),
                    phase: p.phase,
                    residual_s: ei - t0,
                    correction_s: 0.0,
                })
                .collect(),
        })
    }

    /// Hypocentre in a local frame, km (x east, y north, z depth).
    pub fn local_km(&self, frame: &LocalFrame) -> [f64; 3] {
        let (x, y) = frame.to_local(GeoPoint {
            lat_deg: self.lat_deg,
            lon_deg: self.lon_deg,
        });
        [x, y, self.depth_km]
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One static correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaticTerm {
    /// Correction, s (subtracted from the observed time).
    pub correction_s: f64,
    /// Number of residuals behind the median.
    pub n: usize,
}

/// Static per-(station, phase) corrections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaticTerms {
    /// The terms, sorted by key (so written files are deterministic).
    pub terms: BTreeMap<TermKey, StaticTerm>,
}

impl StaticTerms {
    /// Median raw residual per (station, phase) over `events`; keys with fewer than
    /// `min_count` residuals get no term (their correction is 0).
    pub fn estimate(events: &[LocatedEvent], min_count: usize) -> Self {
        let mut by: HashMap<TermKey, Vec<f64>> = HashMap::new();
        for e in events {
            for a in &e.arrivals {
                by.entry((a.network.clone(), a.station.clone(), a.phase))
                    .or_default()
                    .push(a.residual_s);
            }
        }
        let terms = by
            .into_iter()
            .filter(|(_, v)| v.len() >= min_count.max(1))
            .map(|(k, mut v)| {
                let n = v.len();
                (
                    k,
                    StaticTerm {
                        correction_s: median(&mut v),
                        n,
                    },
                )
            })
            .collect();
        Self { terms }
    }

    /// The correction for one station/phase, s (0 where there is no term).
    pub fn correction_s(&self, network: &str, station: &str, phase: Phase) -> f64 {
        self.terms
            .get(&(network.to_string(), station.to_string(), phase))
            .map_or(0.0, |t| t.correction_s)
    }

    /// Writes the CSV form (`network,station,phase,correction_s,n`).
    pub fn write_csv<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        writeln!(w, "{STATIC_HEADER}")?;
        for ((net, sta, ph), t) in &self.terms {
            writeln!(w, "{net},{sta},{ph},{:.4},{}", t.correction_s, t.n)?;
        }
        w.flush()
    }
}

/// How SSST neighbourhoods are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsstConfig {
    /// Most neighbours whose residuals enter one term.
    pub k_neighbours: usize,
    /// Largest hypocentral distance of a neighbour, km.
    pub radius_km: f64,
    /// Fewest neighbours for a source-specific term; below it the static term is used.
    pub min_neighbours: usize,
}

impl Default for SsstConfig {
    fn default() -> Self {
        Self {
            k_neighbours: 30,
            radius_km: 5.0,
            min_neighbours: 5,
        }
    }
}

/// Source-specific station terms: a residual table indexed for neighbour queries.
#[derive(Debug, Clone)]
pub struct SsstTerms {
    /// The located events the terms come from.
    pub events: Vec<LocatedEvent>,
    /// Their hypocentres in the frame given to [`SsstTerms::new`], km.
    positions_km: Vec<[f64; 3]>,
    /// Neighbourhood rules.
    pub config: SsstConfig,
    /// Static terms from the same table, used where neighbours are too few.
    pub fallback: std::sync::Arc<StaticTerms>,
    frame: LocalFrame,
}

impl SsstTerms {
    /// Indexes `events` (positions projected into `frame`); `min_count` is the static
    /// fallback's threshold.
    pub fn new(
        events: Vec<LocatedEvent>,
        frame: &LocalFrame,
        config: SsstConfig,
        min_count: usize,
    ) -> Self {
        let positions_km = events.iter().map(|e| e.local_km(frame)).collect();
        let fallback = std::sync::Arc::new(StaticTerms::estimate(&events, min_count));
        Self {
            events,
            positions_km,
            config,
            fallback,
            frame: frame.clone(),
        }
    }

    /// Source-specific terms for a source at `at_km` (local km in this table's frame),
    /// leaving out the event `exclude_event`: for every (station, phase) that at least
    /// `min_neighbours` of the `k_neighbours` nearest events within the radius observed, the
    /// median of their raw residuals.
    pub fn terms_at(&self, at_km: [f64; 3], exclude_event: Option<&str>) -> HashMap<TermKey, f64> {
        let r2 = self.config.radius_km * self.config.radius_km;
        let mut near: Vec<(f64, usize)> = self
            .positions_km
            .iter()
            .enumerate()
            .filter(|(i, _)| exclude_event != Some(self.events[*i].event_id.as_str()))
            .map(|(i, p)| {
                let d2 = (p[0] - at_km[0]).powi(2)
                    + (p[1] - at_km[1]).powi(2)
                    + (p[2] - at_km[2]).powi(2);
                (d2, i)
            })
            .filter(|(d2, _)| *d2 <= r2)
            .collect();
        // ties broken by index so the result does not depend on the sort's stability
        near.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let k = self.config.k_neighbours.max(1);
        let mut by: HashMap<TermKey, Vec<f64>> = HashMap::new();
        for (_, i) in near {
            for a in &self.events[i].arrivals {
                let v = by
                    .entry((a.network.clone(), a.station.clone(), a.phase))
                    .or_default();
                if v.len() < k {
                    v.push(a.residual_s);
                }
            }
        }
        by.into_iter()
            .filter(|(_, v)| v.len() >= self.config.min_neighbours.max(1))
            .map(|(key, mut v)| (key, median(&mut v)))
            .collect()
    }

    /// Writes the residual table (`event_id,lat,lon,depth_km,network,station,phase,residual_s`).
    pub fn write_csv<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        writeln!(w, "{RESIDUAL_HEADER}")?;
        for e in &self.events {
            for a in &e.arrivals {
                writeln!(
                    w,
                    "{},{:.6},{:.6},{:.4},{},{},{},{:.4}",
                    e.event_id,
                    e.lat_deg,
                    e.lon_deg,
                    e.depth_km,
                    a.network,
                    a.station,
                    a.phase,
                    a.residual_s
                )?;
            }
        }
        w.flush()
    }

    /// The frame the positions were projected into.
    pub fn frame(&self) -> &LocalFrame {
        &self.frame
    }
}

/// Corrections for one event: a lookup of (station, phase) to seconds.
#[derive(Debug, Clone, Default)]
pub struct EventCorrections {
    specific: HashMap<TermKey, f64>,
    fallback: Option<std::sync::Arc<StaticTerms>>,
}

impl EventCorrections {
    /// No corrections at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when every correction is 0 because there are no terms at all (the first pass
    /// of [`relocate_with_terms`] without starting terms).
    pub fn is_none(&self) -> bool {
        self.specific.is_empty() && self.fallback.is_none()
    }

    /// The correction for one arrival, s: the source-specific term, else the static one,
    /// else 0.
    pub fn correction_s(&self, network: &str, station: &str, phase: Phase) -> f64 {
        if !self.specific.is_empty() {
            if let Some(c) = self
                .specific
                .get(&(network.to_string(), station.to_string(), phase))
            {
                return *c;
            }
        }
        self.fallback
            .as_ref()
            .map_or(0.0, |s| s.correction_s(network, station, phase))
    }
}

/// Static or source-specific terms, behind one lookup.
#[derive(Debug, Clone)]
pub enum StationTerms {
    /// One correction per station/phase.
    Static(std::sync::Arc<StaticTerms>),
    /// Corrections that depend on the source position.
    Ssst(std::sync::Arc<SsstTerms>),
}

/// Which kind of terms to estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TermsKind {
    /// Static per-station/phase terms.
    #[default]
    Static,
    /// Source-specific station terms.
    Ssst,
}

impl std::str::FromStr for TermsKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "static" => Ok(Self::Static),
            "ssst" => Ok(Self::Ssst),
            o => Err(format!("unknown station terms {o:?} (static, ssst)")),
        }
    }
}

/// How terms are estimated and iterated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TermsConfig {
    /// Static or SSST.
    pub kind: TermsKind,
    /// Estimate-and-relocate rounds after the first location without terms.
    pub iterations: usize,
    /// Fewest residuals for a static term.
    pub min_count: usize,
    /// Most neighbours per SSST term.
    pub k_neighbours: usize,
    /// Fewest neighbours per SSST term (else the static term).
    pub min_neighbours: usize,
    /// SSST radius of the first round, km.
    pub radius_start_km: f64,
    /// SSST radius of the last round, km (geometric steps in between).
    pub radius_end_km: f64,
}

impl Default for TermsConfig {
    fn default() -> Self {
        Self {
            kind: TermsKind::Static,
            iterations: 3,
            min_count: 5,
            k_neighbours: 30,
            min_neighbours: 5,
            radius_start_km: 20.0,
            radius_end_km: 5.0,
        }
    }
}

impl TermsConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), StationTermsError> {
        let r = [self.radius_start_km, self.radius_end_km];
        if r.iter().any(|x| !x.is_finite() || *x <= 0.0) {
            return Err(StationTermsError::Config(format!(
                "SSST radii must be positive km, got {} and {}",
                self.radius_start_km, self.radius_end_km
            )));
        }
        if self.k_neighbours == 0 {
            return Err(StationTermsError::Config(
                "k_neighbours must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// SSST radius of round `round` (1-based) of `iterations`, km: geometric from the start
    /// to the end radius.
    pub fn radius_km(&self, round: usize) -> f64 {
        if self.iterations <= 1 {
            return self.radius_end_km;
        }
        let f = (round.saturating_sub(1)) as f64 / (self.iterations - 1) as f64;
        self.radius_start_km * (self.radius_end_km / self.radius_start_km).powf(f.min(1.0))
    }
}

impl StationTerms {
    /// Estimates terms of `config.kind` from located events (SSST with radius `radius_km`);
    /// positions are projected into `frame`.
    pub fn estimate(
        events: &[LocatedEvent],
        frame: &LocalFrame,
        config: &TermsConfig,
        radius_km: f64,
    ) -> Self {
        match config.kind {
            TermsKind::Static => Self::Static(std::sync::Arc::new(StaticTerms::estimate(
                events,
                config.min_count,
            ))),
            TermsKind::Ssst => Self::Ssst(std::sync::Arc::new(SsstTerms::new(
                events.to_vec(),
                frame,
                SsstConfig {
                    k_neighbours: config.k_neighbours,
                    radius_km,
                    min_neighbours: config.min_neighbours,
                },
                config.min_count,
            ))),
        }
    }

    /// Corrections for one event: `at` is its hypocentre (WGS84 degrees, depth km) when a
    /// location is known; SSST without one falls back to the static terms. `event_id` is
    /// left out of its own SSST neighbourhood.
    pub fn corrections_for(&self, at: Option<(f64, f64, f64)>, event_id: &str) -> EventCorrections {
        match self {
            Self::Static(s) => EventCorrections {
                specific: HashMap::new(),
                fallback: Some(s.clone()),
            },
            Self::Ssst(t) => {
                let specific = match at {
                    Some((lat, lon, depth)) => {
                        let (x, y) = t.frame.to_local(GeoPoint {
                            lat_deg: lat,
                            lon_deg: lon,
                        });
                        t.terms_at([x, y, depth], Some(event_id))
                    }
                    None => HashMap::new(),
                };
                EventCorrections {
                    specific,
                    fallback: Some(t.fallback.clone()),
                }
            }
        }
    }

    /// Writes the file form (static terms, or the SSST residual table).
    pub fn write_path(&self, path: &Path) -> Result<(), StationTermsError> {
        let io = |source| StationTermsError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        match self {
            Self::Static(s) => s.write_csv(f),
            Self::Ssst(t) => t.write_csv(f),
        }
        .map_err(io)
    }

    /// Reads either file form, told apart by the header. SSST tables are projected into
    /// `frame` and queried with `ssst`; `min_count` is the static threshold (SSST fallback).
    pub fn read_path(
        path: &Path,
        frame: &LocalFrame,
        ssst: SsstConfig,
        min_count: usize,
    ) -> Result<Self, StationTermsError> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|source| StationTermsError::Io {
            path: name.clone(),
            source,
        })?;
        Self::read(BufReader::new(f), &name, frame, ssst, min_count)
    }

    /// [`StationTerms::read_path`] from any reader; `name` labels errors.
    pub fn read<R: BufRead>(
        r: R,
        name: &str,
        frame: &LocalFrame,
        ssst: SsstConfig,
        min_count: usize,
    ) -> Result<Self, StationTermsError> {
        let mut lines = r.lines().enumerate();
        let header = match lines.next() {
            Some((_, l)) => l.map_err(|source| StationTermsError::Io {
                path: name.into(),
                source,
            })?,
            None => String::new(),
        };
        let cols: Vec<String> = header
            .trim()
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        let find = |c: &str| cols.iter().position(|x| x == c);
        let is_static = find("correction_s").is_some();
        let is_table = find("residual_s").is_some() && find("event_id").is_some();
        let needed: &[&str] = if is_static {
            &["network", "station", "phase", "correction_s"]
        } else if is_table {
            &[
                "event_id",
                "lat",
                "lon",
                "depth_km",
                "network",
                "station",
                "phase",
                "residual_s",
            ]
        } else {
            &[]
        };
        let idx: Option<Vec<usize>> = needed.iter().map(|c| find(c)).collect();
        let Some(idx) = idx.filter(|_| is_static || is_table) else {
            return Err(StationTermsError::UnknownFormat {
                path: name.into(),
                header,
            });
        };
        let n_idx = find("n");
        let mut terms = BTreeMap::new();
        let mut events: Vec<LocatedEvent> = Vec::new();
        let mut event_index: HashMap<String, usize> = HashMap::new();
        for (i, line) in lines {
            let line = line.map_err(|source| StationTermsError::Io {
                path: name.into(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = |field: &str, message: String| StationTermsError::Parse {
                path: name.into(),
                line: i + 1,
                field: field.into(),
                message,
            };
            let get = |k: usize| -> Result<&str, StationTermsError> {
                f.get(idx[k])
                    .copied()
                    .ok_or_else(|| bad(needed[k], "missing".into()))
            };
            let num = |k: usize| -> Result<f64, StationTermsError> {
                let s = get(k)?;
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(needed[k], format!("not a finite number: {s:?}")))
            };
            let phase = |k: usize| -> Result<Phase, StationTermsError> {
                let s = get(k)?;
                s.parse::<Phase>()
                    .map_err(|e| bad(needed[k], e.to_string()))
            };
            if is_static {
                let n = match n_idx.and_then(|k| f.get(k)) {
                    Some(s) if !s.is_empty() => s
                        .parse::<usize>()
                        .map_err(|_| bad("n", format!("not a count: {s:?}")))?,
                    _ => 0,
                };
                terms.insert(
                    (get(0)?.to_string(), get(1)?.to_string(), phase(2)?),
                    StaticTerm {
                        correction_s: num(3)?,
                        n,
                    },
                );
            } else {
                let id = get(0)?.to_string();
                let (lat, lon, depth) = (num(1)?, num(2)?, num(3)?);
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=360.0).contains(&lon) {
                    return Err(bad("lat", format!("not a position: {lat}, {lon}")));
                }
                let a = ArrivalResidual {
                    network: get(4)?.to_string(),
                    station: get(5)?.to_string(),
                    phase: phase(6)?,
                    residual_s: num(7)?,
                    correction_s: 0.0,
                };
                let k = *event_index.entry(id.clone()).or_insert_with(|| {
                    events.push(LocatedEvent {
                        event_id: id,
                        lat_deg: lat,
                        lon_deg: lon,
                        depth_km: depth,
                        arrivals: Vec::new(),
                    });
                    events.len() - 1
                });
                events[k].arrivals.push(a);
            }
        }
        Ok(if is_static {
            Self::Static(std::sync::Arc::new(StaticTerms { terms }))
        } else {
            Self::Ssst(std::sync::Arc::new(SsstTerms::new(
                events, frame, ssst, min_count,
            )))
        })
    }
}

/// One location pass of [`relocate_with_terms`].
#[derive(Debug, Clone, PartialEq)]
pub struct PassStats {
    /// 0: the first pass (no terms, or the starting terms); then one per round.
    pub pass: usize,
    /// SSST radius of the terms applied in this pass, km (NaN for static or none).
    pub radius_km: f64,
    /// Events located.
    pub located: usize,
    /// Median over located events of the RMS corrected residual, s.
    pub median_rms_s: f64,
    /// Median |correction| applied over all arrivals, s.
    pub median_abs_correction_s: f64,
}

/// The result of [`relocate_with_terms`].
#[derive(Debug)]
pub struct TermsRun<T> {
    /// The caller's outcome of each event from the last pass.
    pub outcomes: Vec<T>,
    /// The located events of the last pass (None: not located).
    pub catalog: Vec<Option<LocatedEvent>>,
    /// Terms estimated from the last pass (what a later run or the service should apply);
    /// None when no terms were asked for.
    pub terms: Option<StationTerms>,
    /// One entry per pass.
    pub passes: Vec<PassStats>,
    /// The located events of every pass (index 0: the first pass), to measure the gain.
    pub pass_catalogs: Vec<Vec<Option<LocatedEvent>>>,
}

fn pass_stats(pass: usize, radius_km: f64, catalog: &[Option<LocatedEvent>]) -> PassStats {
    let mut rms = Vec::new();
    let mut corr = Vec::new();
    for e in catalog.iter().flatten() {
        if e.arrivals.is_empty() {
            continue;
        }
        let ss: f64 = e
            .arrivals
            .iter()
            .map(|a| (a.residual_s - a.correction_s).powi(2))
            .sum();
        rms.push((ss / e.arrivals.len() as f64).sqrt());
        corr.extend(e.arrivals.iter().map(|a| a.correction_s.abs()));
    }
    let m = |v: &mut Vec<f64>| if v.is_empty() { f64::NAN } else { median(v) };
    PassStats {
        pass,
        radius_km,
        located: catalog.iter().flatten().count(),
        median_rms_s: m(&mut rms),
        median_abs_correction_s: m(&mut corr),
    }
}

/// The relocation loop: locate every event (pass 0, with `start` terms if given, else
/// none), then `config.iterations` rounds of estimate-terms-from-the-catalog and relocate
/// with them. SSST terms for an event are computed at its location of the previous pass.
///
/// `event_ids[i]` names event `i`; `locate(i, corrections)` locates event `i` with the
/// corrections and returns the caller's outcome and the located event (None when it could
/// not be located; build it with [`LocatedEvent::from_origin`] so residuals are raw). Events
/// are located in parallel (rayon); the result does not depend on the thread count when
/// `locate` is deterministic.
///
/// With `config.iterations == 0` and SSST `start` terms, a second pass applies them at the
/// first pass's positions (the first has only the static fallback).
pub fn relocate_with_terms<T, F>(
    event_ids: &[String],
    frame: &LocalFrame,
    config: &TermsConfig,
    start: Option<&StationTerms>,
    locate: F,
) -> Result<TermsRun<T>, StationTermsError>
where
    T: Send,
    F: Fn(usize, &EventCorrections) -> (T, Option<LocatedEvent>) + Sync,
{
    config.validate()?;
    let run_pass = |terms: Option<&StationTerms>, prev: Option<&[Option<LocatedEvent>]>| {
        let out: Vec<(T, Option<LocatedEvent>)> = event_ids
            .par_iter()
            .enumerate()
            .map(|(i, id)| {
                let at = prev
                    .and_then(|p| p[i].as_ref())
                    .map(|e| (e.lat_deg, e.lon_deg, e.depth_km));
                let c = terms.map_or_else(EventCorrections::none, |t| t.corrections_for(at, id));
                locate(i, &c)
            })
            .collect();
        out.into_iter()
            .unzip::<_, _, Vec<T>, Vec<Option<LocatedEvent>>>()
    };
    let radius_of = |t: Option<&StationTerms>| match t {
        Some(StationTerms::Ssst(s)) => s.config.radius_km,
        _ => f64::NAN,
    };
    let (mut outcomes, mut catalog) = run_pass(start, None);
    let mut passes = vec![pass_stats(0, radius_of(start), &catalog)];
    let mut pass_catalogs = vec![catalog.clone()];
    if config.iterations == 0 {
        if let Some(t @ StationTerms::Ssst(_)) = start {
            let (o, c) = run_pass(Some(t), Some(&catalog));
            outcomes = o;
            catalog = c;
            passes.push(pass_stats(1, radius_of(start), &catalog));
            pass_catalogs.push(catalog.clone());
        }
        return Ok(TermsRun {
            outcomes,
            catalog,
            terms: start.cloned(),
            passes,
            pass_catalogs,
        });
    }
    for round in 1..=config.iterations {
        let located: Vec<LocatedEvent> = catalog.iter().flatten().cloned().collect();
        let terms = StationTerms::estimate(&located, frame, config, config.radius_km(round));
        let (o, c) = run_pass(Some(&terms), Some(&catalog));
        outcomes = o;
        catalog = c;
        passes.push(pass_stats(round, radius_of(Some(&terms)), &catalog));
        pass_catalogs.push(catalog.clone());
    }
    let located: Vec<LocatedEvent> = catalog.iter().flatten().cloned().collect();
    let terms =
        StationTerms::estimate(&located, frame, config, config.radius_km(config.iterations));
    Ok(TermsRun {
        outcomes,
        catalog,
        terms: Some(terms),
        passes,
        pass_catalogs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> LocalFrame {
        LocalFrame::new(GeoPoint {
            lat_deg: 36.0,
            lon_deg: -120.0,
        })
    }

    fn ev(id: &str, x_km: f64, res: &[(&str, Phase, f64)]) -> LocatedEvent {
        let g = frame().to_geo(x_km, 0.0);
        LocatedEvent {
            event_id: id.into(),
            lat_deg: g.lat_deg,
            lon_deg: g.lon_deg,
            depth_km: 5.0,
            arrivals: res
                .iter()
                .map(|(s, p, r)| ArrivalResidual {
                    network: "XX".into(),
                    station: (*s).into(),
                    phase: *p,
                    residual_s: *r,
                    correction_s: 0.0,
                })
                .collect(),
        }
    }

    #[test]
    fn static_terms_are_medians_and_respect_the_count() {
        let evs: Vec<_> = [0.1, 0.2, 0.9, 0.3, 0.25]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                ev(
                    &i.to_string(),
                    0.0,
                    &[
                        ("A", Phase::P, *r),
                        ("B", Phase::S, if i < 2 { 1.0 } else { 0.0 }),
                    ],
                )
            })
            .collect();
        let s = StaticTerms::estimate(&evs, 3);
        assert!((s.correction_s("XX", "A", Phase::P) - 0.25).abs() < 1e-12);
        assert_eq!(s.correction_s("XX", "A", Phase::S), 0.0);
        // B has 5 residuals (1, 1, 0, 0, 0): median 0
        assert_eq!(s.correction_s("XX", "B", Phase::S), 0.0);
        assert_eq!(StaticTerms::estimate(&evs, 6).terms.len(), 0);
    }

    #[test]
    fn ssst_uses_only_near_neighbours_and_leaves_the_event_out() {
        // residual at A grows with x: events at x = 0..9 km, residual 0.1 x
        let evs: Vec<_> = (0..10)
            .map(|i| ev(&i.to_string(), i as f64, &[("A", Phase::P, 0.1 * i as f64)]))
            .collect();
        let f = frame();
        let t = SsstTerms::new(
            evs,
            &f,
            SsstConfig {
                k_neighbours: 3,
                radius_km: 100.0,
                min_neighbours: 2,
            },
            1,
        );
        let key = ("XX".to_string(), "A".to_string(), Phase::P);
        // from x = 8: nearest others are 7, 9, 6 -> median 0.7 (itself, 0.8, left out)
        let m = t.terms_at([8.0, 0.0, 5.0], Some("8"));
        assert!((m[&key] - 0.7).abs() < 1e-9, "{m:?}");
        // a small radius leaves too few neighbours: no specific term, static fallback
        let t2 = SsstTerms::new(
            t.events.clone(),
            &f,
            SsstConfig {
                k_neighbours: 3,
                radius_km: 1.5,
                min_neighbours: 3,
            },
            1,
        );
        assert!(t2.terms_at([0.0, 0.0, 5.0], Some("0")).is_empty());
        let terms = StationTerms::Ssst(std::sync::Arc::new(t2));
        let g = f.to_geo(0.0, 0.0);
        let c = terms.corrections_for(Some((g.lat_deg, g.lon_deg, 5.0)), "0");
        assert!((c.correction_s("XX", "A", Phase::P) - 0.45).abs() < 1e-9);
    }

    #[test]
    fn files_round_trip_and_bad_lines_are_named() {
        let f = frame();
        let evs = vec![
            ev("e1", 0.0, &[("A", Phase::P, 0.1), ("A", Phase::S, -0.2)]),
            ev("e2", 1.0, &[("A", Phase::P, 0.3)]),
        ];
        let s = StaticTerms::estimate(&evs, 1);
        let mut buf = Vec::new();
        s.write_csv(&mut buf).unwrap();
        let back = StationTerms::read(&buf[..], "mem", &f, SsstConfig::default(), 1).unwrap();
        let StationTerms::Static(b) = back else {
            panic!("static file read as SSST")
        };
        assert!((b.correction_s("XX", "A", Phase::P) - 0.2).abs() < 1e-9);
        assert_eq!(b.terms.len(), 2);

        let t = SsstTerms::new(evs.clone(), &f, SsstConfig::default(), 1);
        let mut buf = Vec::new();
        t.write_csv(&mut buf).unwrap();
        let back = StationTerms::read(&buf[..], "mem", &f, SsstConfig::default(), 1).unwrap();
        let StationTerms::Ssst(b) = back else {
            panic!("table read as static")
        };
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.events[0].arrivals.len(), 2);
        assert!((b.events[1].lat_deg - evs[1].lat_deg).abs() < 1e-6);

        let bad = format!("{STATIC_HEADER}\nXX,A,P,0.1,3\nXX,B,Q,0.2,3\n");
        let e = StationTerms::read(bad.as_bytes(), "t.csv", &f, SsstConfig::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:3") && e.contains("phase"), "{e}");
        let e = StationTerms::read(&b"a,b\n"[..], "u.csv", &f, SsstConfig::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("u.csv") && e.contains("neither"), "{e}");
    }

    #[test]
    fn radius_shrinks_geometrically() {
        let c = TermsConfig {
            iterations: 3,
            radius_start_km: 20.0,
            radius_end_km: 5.0,
            ..Default::default()
        };
        assert!((c.radius_km(1) - 20.0).abs() < 1e-9);
        assert!((c.radius_km(2) - 10.0).abs() < 1e-9);
        assert!((c.radius_km(3) - 5.0).abs() < 1e-9);
    }
}
