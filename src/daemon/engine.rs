//! The service's science: the streaming [`Associator`] and the SVGD locator
//! ([`crate::locate::locate`]) behind the pipeline's [`Association`] and [`Locator`] traits.
//!
//! The associator's traveltimes come from the exact 1-D layered solver of the configured
//! velocity model ([`LayeredExact`]); the locator's from the region's trained network when
//! there is one ([`configured_network`]), else from the same exact solver, tabulated
//! ([`RadialTableModel`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::associate::{AssocPick, Associator, AssociatorConfig, AssociatorOutput};
use crate::config::ResolvedStationConfig;
use crate::domain::{Phase, Pick};
use crate::locate::event::{linearize_picks_corrected, locate_picks_corrected};
use crate::locate::station_terms::{
    EventCorrections, SsstConfig, StaticTerms, StationTerms, StationTermsError,
};
use crate::locate::{LocateConfig, RadialTableModel, SearchBox, TableGrid};
use crate::traveltime::{LayeredExact, TraveltimeModel};

use super::clock::unix_s;
use super::pipeline::{Association, EventChange, LocateRequest, Located, Locator};
use super::Engine;

/// Kept beyond the associator's retention, s of stream time (picks arrive a little out of
/// order), so the id map stays small and bounded on a months-long stream.
const ID_MARGIN_S: f64 = 60.0;

/// Builds the engine for a station configuration: the exact 1-D traveltimes of its velocity
/// model, tabulated once per (phase, station depth) over the box (the locator's fast path, as
/// `eikoloc locate` does), the associator over the configured box, and the SVGD locator.
pub fn build(station: &ResolvedStationConfig) -> Result<Engine, String> {
    let exact: Arc<dyn TraveltimeModel> = Arc::new(LayeredExact::new(station.velocity.clone()));
    build_with(station, exact, associator_config(station))
}

/// The trained network the station config names (`model = ...`), checked against the
/// config: `Ok(None)` when it names none or the folder holds no model yet (`manifest.json`);
/// an error naming the folder when the model cannot be read or was trained for another
/// velocity model or a box that does not cover the stations and the search region.
pub fn configured_network(
    station: &ResolvedStationConfig,
) -> Result<Option<crate::traveltime::PinnModel>, String> {
    let Some(dir) = &station.model_dir else {
        return Ok(None);
    };
    if !dir.join("manifest.json").is_file() {
        return Ok(None);
    }
    let model = crate::traveltime::PinnModel::load(dir)
        .map_err(|e| format!("region {}: trained network: {e}", station.name))?;
    let needed = crate::traveltime::pinn::ModelBounds::for_config(station);
    model
        .check_compatible(
            &crate::velocity::VelocityModel::content_hash(&station.velocity),
            &needed,
        )
        .map_err(|e| format!("region {}: {e}", station.name))?;
    Ok(Some(model))
}

/// The associator's settings for a region: its defaults, searching the configured box, but
/// no farther than the associator's `box_margin_km` outside the stations' bounding box, from
/// sea level (or the box top, if deeper) down to the box bottom (at most the default depth).
///
/// Why the margin: candidate sources far outside the network fit chance alignments of picks
/// and split real events (Ridgecrest synthetic, 1000 events: 1698 associated over the
/// configured +-75 km box, 1176 over the network's box plus 20 km).
pub fn associator_config(station: &ResolvedStationConfig) -> AssociatorConfig {
    let b = station.model_box;
    let top = b
        .z_min_km
        .max(-station.inventory.max_elevation_m() / 1000.0);
    let assoc_top = top.max(0.0);
    let d = AssociatorConfig::default();
    let ext = |f: fn(&crate::domain::LocalPoint) -> f64, m: fn(f64, f64) -> f64, init: f64| {
        station.station_positions.iter().map(f).fold(init, m)
    };
    let (x0, x1) = (
        ext(|p| p.x_km, f64::min, f64::INFINITY) - d.box_margin_km,
        ext(|p| p.x_km, f64::max, f64::NEG_INFINITY) + d.box_margin_km,
    );
    let (y0, y1) = (
        ext(|p| p.y_km, f64::min, f64::INFINITY) - d.box_margin_km,
        ext(|p| p.y_km, f64::max, f64::NEG_INFINITY) + d.box_margin_km,
    );
    // no stations, or a box beside the network: keep the configured box
    let (x0, x1) = if x0.max(b.x_min_km) < x1.min(b.x_max_km) {
        (x0.max(b.x_min_km), x1.min(b.x_max_km))
    } else {
        (b.x_min_km, b.x_max_km)
    };
    let (y0, y1) = if y0.max(b.y_min_km) < y1.min(b.y_max_km) {
        (y0.max(b.y_min_km), y1.min(b.y_max_km))
    } else {
        (b.y_min_km, b.y_max_km)
    };
    AssociatorConfig {
        box_km: Some([x0, x1, y0, y1]),
        depth_min_km: assoc_top,
        depth_max_km: b
            .z_max_km
            .min(AssociatorConfig::default().depth_max_km)
            .max(assoc_top),
        ..AssociatorConfig::default()
    }
}

/// [`build`] with another traveltime engine for the locator (a trained network, an analytic
/// medium), tabulated the same way, and other associator settings (e.g. wider tolerances for
/// picks made in a 3-D medium); the associator keeps the exact 1-D traveltimes of the
/// configured velocity model.
pub fn build_with(
    station: &ResolvedStationConfig,
    locate_model: Arc<dyn TraveltimeModel>,
    acfg: AssociatorConfig,
) -> Result<Engine, String> {
    build_with_terms(station, locate_model, acfg, None)
}

/// [`build_with`] whose locator applies static station terms (s, subtracted from each
/// observed time, as [`crate::locate::event::locate_picks_corrected`] does) to every event.
pub fn build_with_terms(
    station: &ResolvedStationConfig,
    locate_model: Arc<dyn TraveltimeModel>,
    acfg: AssociatorConfig,
    terms: Option<Arc<StaticTerms>>,
) -> Result<Engine, String> {
    let exact: Arc<dyn TraveltimeModel> = Arc::new(LayeredExact::new(station.velocity.clone()));
    let b = station.model_box;
    let assoc = Associator::new(&station.station_positions, exact.as_ref(), acfg)
        .map_err(|e| e.to_string())?;
    let search = SearchBox::for_station_config(station);
    let receivers = station.receivers();
    let corners = [
        (b.x_min_km, b.y_min_km),
        (b.x_min_km, b.y_max_km),
        (b.x_max_km, b.y_min_km),
        (b.x_max_km, b.y_max_km),
    ];
    let r_max = station
        .station_positions
        .iter()
        .flat_map(|p| corners.map(|(x, y)| (x - p.x_km).hypot(y - p.y_km)))
        .fold(0.0, f64::max);
    // a network ends at its box (which covers r_max, or the loader refused it): the grid's
    // last nodes sit exactly on its edges in distance and depth
    let r_table = (r_max + 1.0)
        .min(400.0)
        .min(locate_model.max_distance_km().unwrap_or(f64::INFINITY));
    let grid = TableGrid {
        r_max_km: r_table,
        dr_km: r_table / (r_table / 0.5).ceil().max(1.0),
        z_min_km: search.z_min_km,
        z_max_km: b.z_max_km,
        dz_km: (b.z_max_km - search.z_min_km)
            / ((b.z_max_km - search.z_min_km) / 0.25).ceil().max(1.0),
    };
    let table: Arc<dyn TraveltimeModel> = Arc::new(
        RadialTableModel::build(locate_model, grid, &receivers)
            .map_err(|e| format!("traveltime table: {e}"))?,
    );
    let config = LocateConfig {
        distance_weighting: station.locator.distance_weighting,
        ..LocateConfig::default()
    };
    Ok(Engine {
        association: Box::new(StreamAssociation::new(assoc, station.clone())),
        locator: Arc::new(SvgdLocator {
            model: table,
            station: station.clone(),
            search,
            config,
            terms,
            last_runs: Mutex::new(HashMap::new()),
        }),
    })
}

/// Reads a static station-terms file (`network,station,phase,correction_s,n`) for the
/// service. Terms of stations the inventory does not know are dropped with a warning (an
/// older or wider network's file still applies to the stations it shares); an SSST residual
/// table is refused (the service applies static terms only); a malformed line is an error
/// naming file, line and field. Returns the terms and the dropped stations (`NET.STA`).
pub fn load_static_terms(
    path: &std::path::Path,
    station: &ResolvedStationConfig,
) -> Result<(StaticTerms, Vec<String>), StationTermsError> {
    // The SSST settings only matter for residual tables, which are refused below.
    let read = StationTerms::read_path(path, &station.frame, SsstConfig::default(), 1)?;
    let StationTerms::Static(t) = read else {
        return Err(StationTermsError::Config(format!(
            "{}: an SSST residual table; the service applies static terms only \
             (network,station,phase,correction_s,n)",
            path.display()
        )));
    };
    let mut terms = (*t).clone();
    let mut unknown = std::collections::BTreeSet::new();
    terms.terms.retain(|(net, sta, _), _| {
        let known = station.inventory.position(net, sta).is_some();
        if !known {
            unknown.insert(format!("{net}.{sta}"));
        }
        known
    });
    let unknown: Vec<String> = unknown.into_iter().collect();
    if !unknown.is_empty() {
        tracing::warn!(
            file = %path.display(),
            "station terms of stations not in the inventory ignored: {}",
            unknown.join(", ")
        );
    }
    Ok((terms, unknown))
}

/// The associator with the service's pick ids and UTC times (Unix seconds on its clock).
pub struct StreamAssociation {
    assoc: Associator,
    station: ResolvedStationConfig,
    ids: BTreeMap<u64, (String, f64)>,
    next: u64,
}

impl StreamAssociation {
    /// Wraps an associator built over `station.station_positions`.
    pub fn new(assoc: Associator, station: ResolvedStationConfig) -> Self {
        Self {
            assoc,
            station,
            ids: BTreeMap::new(),
            next: 0,
        }
    }

    fn translate(&mut self, outs: Vec<AssociatorOutput>) -> Vec<EventChange> {
        let name = |ids: &BTreeMap<u64, (String, f64)>, k: u64| ids.get(&k).map(|v| v.0.clone());
        let changes = outs
            .into_iter()
            .map(|o| match o {
                AssociatorOutput::EventOpened { id, picks, .. } => EventChange::Opened {
                    id,
                    pick_ids: picks
                        .iter()
                        .filter_map(|p| name(&self.ids, p.pick.id))
                        .collect(),
                },
                AssociatorOutput::EventUpdated { id, new_picks, .. } => EventChange::Updated {
                    id,
                    pick_ids: new_picks
                        .iter()
                        .filter_map(|p| name(&self.ids, p.pick.id))
                        .collect(),
                },
                AssociatorOutput::EventClosed { id, .. } => EventChange::Closed { id },
            })
            .collect();
        // ids grow with arrival, so the oldest arrivals are at the front; popping them is
        // O(1) per pick where a full `retain` walked every remembered pick on every push
        let horizon = self.assoc.now_s() - self.assoc.retention_s() - ID_MARGIN_S;
        while let Some(entry) = self.ids.first_entry() {
            if entry.get().1 >= horizon {
                break;
            }
            entry.remove();
        }
        changes
    }
}

impl Association for StreamAssociation {
    fn push(&mut self, pick: &Pick) -> Vec<EventChange> {
        let Some(station) = self
            .station
            .inventory
            .position(&pick.station.network, &pick.station.station)
        else {
            return Vec::new();
        };
        let id = self.next;
        self.next += 1;
        let time_s = unix_s(&pick.time);
        self.ids.insert(id, (pick.id.clone(), time_s));
        let outs = self.assoc.push(AssocPick {
            id,
            station,
            phase: pick.phase,
            time_s,
        });
        self.translate(outs)
    }

    fn advance_to(&mut self, t: DateTime<Utc>) -> Vec<EventChange> {
        let outs = self.assoc.advance_to(unix_s(&t));
        self.translate(outs)
    }

    fn finish(&mut self) -> Vec<EventChange> {
        let outs = self.assoc.flush();
        self.translate(outs)
    }

    fn retention_s(&self) -> f64 {
        self.assoc.retention_s()
    }
}

/// The SVGD locator over the configured box.
pub struct SvgdLocator {
    model: Arc<dyn TraveltimeModel>,
    station: ResolvedStationConfig,
    search: SearchBox,
    config: LocateConfig,
    terms: Option<Arc<StaticTerms>>,
    /// Each open event's last full run: its picks and result. A run is deterministic in the
    /// event id and its picks, so a final run whose picks have not changed since (the usual
    /// case once an event's picks are in) reuses that result instead of sampling again.
    last_runs: Mutex<HashMap<String, (Vec<Pick>, Located)>>,
}

/// Open events whose last run is remembered; beyond it the memory starts over (events that
/// never get a final run, e.g. across a restart, must not accumulate).
const LAST_RUNS_CAP: usize = 4096;

/// Picks further than this from an event's median pick time are set aside, s.
const MAX_SPAN_S: f64 = 300.0;

impl Locator for SvgdLocator {
    fn locate(&self, r: &LocateRequest) -> Result<Located, String> {
        let remembered = self.last_runs.lock().ok().and_then(|mut m| {
            if r.is_final {
                m.remove(&r.event_id)
            } else {
                m.get(&r.event_id).cloned()
            }
        });
        if let Some((picks, located)) = remembered {
            if picks == r.picks {
                return Ok(located);
            }
        }
        let result = match &self.terms {
            Some(t) => self.locate_with(r, &|n, s, p| t.correction_s(n, s, p)),
            None => self.locate_with(r, &|_, _, _| 0.0),
        };
        if let (false, Ok(located)) = (r.is_final, &result) {
            if let Ok(mut m) = self.last_runs.lock() {
                if m.len() >= LAST_RUNS_CAP {
                    m.clear();
                }
                m.insert(r.event_id.clone(), (r.picks.clone(), located.clone()));
            }
        }
        result
    }

    fn locate_corrected(
        &self,
        r: &LocateRequest,
        corrections: &EventCorrections,
    ) -> Result<Located, String> {
        self.locate_with(r, &|n, s, p| corrections.correction_s(n, s, p))
    }

    fn locate_preliminary(&self, r: &LocateRequest) -> Option<Result<Located, String>> {
        let outcome = match &self.terms {
            Some(t) => self.linearize_with(r, &|n, s, p| t.correction_s(n, s, p)),
            None => self.linearize_with(r, &|_, _, _| 0.0),
        };
        Some(outcome)
    }
}

impl SvgdLocator {
    /// The linearized preliminary solution with `correction_s` (s) subtracted from each pick.
    fn linearize_with(
        &self,
        r: &LocateRequest,
        correction_s: &dyn Fn(&str, &str, Phase) -> f64,
    ) -> Result<Located, String> {
        let pos_of = |net: &str, sta: &str| self.station.station_position(net, sta);
        let outcome = linearize_picks_corrected(
            self.model.as_ref(),
            &pos_of,
            &self.station.frame,
            &r.picks,
            &self.search,
            &self.config,
            MAX_SPAN_S,
            String::new(),
            correction_s,
        );
        let (summary, _) = outcome.result.map_err(|e| e.to_string())?;
        Ok(Located {
            origin: summary.origin,
            particles: None,
        })
    }

    /// Locates with `correction_s(network, station, phase)` (s) subtracted from each pick.
    fn locate_with(
        &self,
        r: &LocateRequest,
        correction_s: &dyn Fn(&str, &str, Phase) -> f64,
    ) -> Result<Located, String> {
        // Deterministic per event and pick count: the same picks give the same posterior,
        // also after a restart.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&r.event_id, &mut h);
        let seed = std::hash::Hasher::finish(&h) ^ r.picks.len() as u64;
        let pos_of = |net: &str, sta: &str| self.station.station_position(net, sta);
        let outcome = locate_picks_corrected(
            self.model.as_ref(),
            &pos_of,
            &self.station.frame,
            &r.picks,
            &self.search,
            &self.config,
            MAX_SPAN_S,
            seed,
            String::new(),
            correction_s,
        );
        if outcome.problems.total() > 0 {
            tracing::info!(event = %r.event_id, "picks set aside before locating: {}", outcome.problems.describe());
        }
        let (summary, post) = outcome.result.map_err(|e| e.to_string())?;
        let particles = post
            .particles
            .iter()
            .map(|p| {
                let g = self.station.frame.to_geo(p[0], p[1]);
                [g.lat_deg, g.lon_deg, p[2], p[3] - post.t0_s]
            })
            .collect();
        Ok(Located {
            origin: summary.origin,
            particles: Some(particles),
        })
    }
}
