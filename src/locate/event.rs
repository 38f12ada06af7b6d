//! One event's picks to a located origin: input checks (unknown stations, duplicates, S
//! before P, picks far from the rest, too few picks) that are counted and reported, never
//! fatal, then [`super::locate`] and [`super::summarize`].

use std::collections::HashMap;

use super::summary::{summarize, ArrivalInput, EventSummary};
use super::{locate, LocateConfig, LocateError, Observation, Posterior, SearchBox};
use crate::domain::time::seconds_between;
use crate::domain::{LocalFrame, LocalPoint, Phase, Pick, UtcTime};
use crate::traveltime::{Receiver, TraveltimeModel};

/// Counts of picks set aside before locating, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputProblems {
    /// Picks at stations the inventory does not know.
    pub unknown_station: usize,
    /// Second picks of one phase at one station (the first is kept).
    pub duplicate: usize,
    /// S picks earlier than (or equal to) the P pick at the same station (the S is dropped).
    pub s_before_p: usize,
    /// Picks more than the allowed span from the event's median pick time.
    pub far_in_time: usize,
}

impl InputProblems {
    /// Total picks set aside.
    pub fn total(&self) -> usize {
        self.unknown_station + self.duplicate + self.s_before_p + self.far_in_time
    }
    /// `reason=count` pairs joined by `;`, empty when there were none.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        for (name, n) in [
            ("unknown_station", self.unknown_station),
            ("duplicate", self.duplicate),
            ("s_before_p", self.s_before_p),
            ("far_in_time", self.far_in_time),
        ] {
            if n > 0 {
                v.push(format!("{name}={n}"));
            }
        }
        v.join(";")
    }
}

/// What happened to one event.
#[derive(Debug)]
pub struct EventOutcome {
    /// Picks set aside, by reason.
    pub problems: InputProblems,
    /// The summary (origin with arrivals), or why the event was not located.
    pub result: Result<(EventSummary, Posterior), LocateError>,
    /// Reference time the posterior's times count from (earliest used pick).
    pub reference_time: Option<UtcTime>,
}

/// Cleans the picks and locates. `station_position` maps (network, station) to local km.
#[allow(clippy::too_many_arguments)]
pub fn locate_picks(
    model: &dyn TraveltimeModel,
    station_position: &dyn Fn(&str, &str) -> Option<LocalPoint>,
    frame: &LocalFrame,
    picks: &[Pick],
    bbox: &SearchBox,
    config: &LocateConfig,
    max_span_s: f64,
    seed: u64,
    origin_id: String,
) -> EventOutcome {
    locate_picks_corrected(
        model,
        station_position,
        frame,
        picks,
        bbox,
        config,
        max_span_s,
        seed,
        origin_id,
        &|_, _, _| 0.0,
    )
}

/// [`locate_picks`] with a station correction: `correction_s(network, station, phase)`
/// (s, positive = the phase arrives later than the model predicts) is subtracted from each
/// observed time before the likelihood, so arrival residuals are relative to the corrected
/// prediction (model traveltime plus correction), as Hypoinverse reports them with delays.
#[allow(clippy::too_many_arguments)]
pub fn locate_picks_corrected(
    model: &dyn TraveltimeModel,
    station_position: &dyn Fn(&str, &str) -> Option<LocalPoint>,
    frame: &LocalFrame,
    picks: &[Pick],
    bbox: &SearchBox,
    config: &LocateConfig,
    max_span_s: f64,
    seed: u64,
    origin_id: String,
    correction_s: &dyn Fn(&str, &str, Phase) -> f64,
) -> EventOutcome {
    solve_picks(
        station_position,
        frame,
        picks,
        config,
        max_span_s,
        origin_id,
        correction_s,
        &|obs| locate(model, obs, bbox, config, seed),
    )
}

/// [`locate_picks_corrected`] with the quick linearized solution instead of the SVGD
/// posterior ([`super::linearized()`]): the same input checks, an origin whose
/// [`OriginMethod`](crate::domain::OriginMethod) is `Linearized`, no particles.
#[allow(clippy::too_many_arguments)]
pub fn linearize_picks_corrected(
    model: &dyn TraveltimeModel,
    station_position: &dyn Fn(&str, &str) -> Option<LocalPoint>,
    frame: &LocalFrame,
    picks: &[Pick],
    bbox: &SearchBox,
    config: &LocateConfig,
    max_span_s: f64,
    origin_id: String,
    correction_s: &dyn Fn(&str, &str, Phase) -> f64,
) -> EventOutcome {
    let mut out = solve_picks(
        station_position,
        frame,
        picks,
        config,
        max_span_s,
        origin_id,
        correction_s,
        &|obs| super::linearized(model, obs, bbox, config),
    );
    if let Ok((s, _)) = &mut out.result {
        s.origin.method = crate::domain::OriginMethod::Linearized;
    }
    out
}

/// The input checks, then `solve` on the observations, then the summary.
#[allow(clippy::too_many_arguments)]
fn solve_picks(
    station_position: &dyn Fn(&str, &str) -> Option<LocalPoint>,
    frame: &LocalFrame,
    picks: &[Pick],
    config: &LocateConfig,
    max_span_s: f64,
    origin_id: String,
    correction_s: &dyn Fn(&str, &str, Phase) -> f64,
    solve: &dyn Fn(&[Observation]) -> Result<Posterior, LocateError>,
) -> EventOutcome {
    let mut problems = InputProblems::default();
    let mut kept: Vec<(&Pick, LocalPoint)> = Vec::new();
    let mut seen: HashMap<(&str, &str, Phase), usize> = HashMap::new();
    for p in picks {
        let Some(pos) = station_position(&p.station.network, &p.station.station) else {
            problems.unknown_station += 1;
            continue;
        };
        let key = (
            p.station.network.as_str(),
            p.station.station.as_str(),
            p.phase,
        );
        if seen.contains_key(&key) {
            problems.duplicate += 1;
            continue;
        }
        seen.insert(key, kept.len());
        kept.push((p, pos));
    }
    // picks far from the median time (e.g. hours apart) are not this event's
    if !kept.is_empty() {
        let t_ref = kept[0].0.time;
        let mut offs: Vec<f64> = kept
            .iter()
            .map(|(p, _)| seconds_between(&t_ref, &p.time))
            .collect();
        offs.sort_by(|a, b| a.total_cmp(b));
        let med = offs[offs.len() / 2];
        let before = kept.len();
        kept.retain(|(p, _)| (seconds_between(&t_ref, &p.time) - med).abs() <= max_span_s);
        problems.far_in_time += before - kept.len();
    }
    // S not after P at the same station: the S is the suspect one (P is the clearer onset)
    let p_time: HashMap<(&str, &str), UtcTime> = kept
        .iter()
        .filter(|(p, _)| p.phase == Phase::P)
        .map(|(p, _)| {
            (
                (p.station.network.as_str(), p.station.station.as_str()),
                p.time,
            )
        })
        .collect();
    let before = kept.len();
    kept.retain(|(p, _)| {
        p.phase != Phase::S
            || p_time
                .get(&(p.station.network.as_str(), p.station.station.as_str()))
                .is_none_or(|tp| p.time > *tp)
    });
    problems.s_before_p += before - kept.len();

    let Some(reference_time) = kept.iter().map(|(p, _)| p.time).min() else {
        return EventOutcome {
            problems,
            result: Err(LocateError::TooFewPicks {
                picks: 0,
                stations: 0,
                min_picks: config.min_picks.max(4),
            }),
            reference_time: None,
        };
    };
    let obs: Vec<Observation> = kept
        .iter()
        .map(|(p, pos)| Observation {
            receiver: Receiver {
                phase: p.phase,
                position: *pos,
            },
            t_obs_s: seconds_between(&reference_time, &p.time)
                - correction_s(&p.station.network, &p.station.station, p.phase),
            pick_sigma_s: p.uncertainty_s,
        })
        .collect();
    let inputs: Vec<ArrivalInput> = kept
        .iter()
        .map(|(p, pos)| ArrivalInput {
            pick_id: p.id.clone(),
            station: p.station.clone(),
            phase: p.phase,
            x_km: pos.x_km,
            y_km: pos.y_km,
        })
        .collect();
    let result = solve(&obs).map(|post| {
        let s = summarize(&post, &inputs, frame, &reference_time, origin_id);
        (s, post)
    });
    EventOutcome {
        problems,
        result,
        reference_time: Some(reference_time),
    }
}
