//! The synthetic live pick stream of `eikoloc serve --demo`: earthquakes at random places in
//! the configured box, their P and S arrivals at every station computed with the exact 1-D
//! layered traveltimes of the configured velocity model, Gaussian pick noise, some missed
//! picks, some false picks, and now and then a hostile record so the reject counters move.
//!
//! Pick times are on the wall clock: an event "happens" when it is generated and each pick
//! is sent when its arrival time comes, as a real picker would.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::config::ResolvedStationConfig;
use crate::domain::{LocalPoint, Phase};
use crate::ingest::WirePick;
use crate::traveltime::{LayeredExact, TraveltimeModel};

/// Configures the synthetic stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Mean time between events, s.
    pub event_interval_s: f64,
    /// Pick noise, one sigma, s.
    pub pick_sigma_s: f64,
    /// Probability that a station's pick of a phase is missed.
    pub miss_probability: f64,
    /// False picks per station per minute.
    pub false_picks_per_station_min: f64,
    /// Random seed.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            event_interval_s: 20.0,
            pick_sigma_s: 0.05,
            miss_probability: 0.1,
            false_picks_per_station_min: 0.2,
            seed: 7,
        }
    }
}

/// One synthetic earthquake.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoEvent {
    /// Hypocentre, local km.
    pub hypocentre: LocalPoint,
    /// Origin time, s after the stream start.
    pub origin_time_s: f64,
}

/// A record to send `at_s` seconds after the stream start.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoRecord {
    /// When to send, s after the stream start (the arrival time itself for picks).
    pub at_s: f64,
    /// The record (a pick, or a hostile record when `hostile`).
    pub pick: WirePick,
    /// True for a deliberately bad record.
    pub hostile: bool,
}

/// Generates the records of `n_events` earthquakes spaced by about `event_interval_s`,
/// starting 2 s after `start_unix_s` (Unix seconds), sorted by send time.
pub fn generate(
    station: &ResolvedStationConfig,
    config: &DemoConfig,
    n_events: usize,
    start_unix_s: f64,
) -> (Vec<DemoEvent>, Vec<DemoRecord>) {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let model = LayeredExact::new(station.velocity.clone());
    let noise = Normal::new(0.0, config.pick_sigma_s.max(1e-6)).expect("positive sigma");
    let stations = station.inventory.stations();
    // Sources inside the stations' footprint (shrunk a little), at crustal depths.
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &station.station_positions {
        x0 = x0.min(p.x_km);
        x1 = x1.max(p.x_km);
        y0 = y0.min(p.y_km);
        y1 = y1.max(p.y_km);
    }
    let b = &station.model_box;
    let z1 = b.z_max_km.min(20.0);
    let mut events = Vec::new();
    let mut records = Vec::new();
    let mut t = 2.0;
    for k in 0..n_events {
        let h = LocalPoint::new(
            rng.gen_range(0.8 * x0 + 0.2 * x1..0.2 * x0 + 0.8 * x1),
            rng.gen_range(0.8 * y0 + 0.2 * y1..0.2 * y0 + 0.8 * y1),
            rng.gen_range(2.0_f64.max(b.z_min_km)..z1),
        );
        events.push(DemoEvent {
            hypocentre: h,
            origin_time_s: t,
        });
        for (s, pos) in stations.iter().zip(&station.station_positions) {
            for phase in Phase::ALL {
                if rng.gen::<f64>() < config.miss_probability {
                    continue;
                }
                let Ok(tt) = model.traveltime_s(phase, h, *pos) else {
                    continue;
                };
                let at = t + tt + noise.sample(&mut rng);
                records.push(DemoRecord {
                    at_s: at,
                    pick: wire(
                        s.code.network.as_str(),
                        s.code.station.as_str(),
                        phase,
                        start_unix_s + at,
                        config,
                    ),
                    hostile: false,
                });
            }
        }
        // One hostile record per event: each kind in turn.
        let s = &stations[k % stations.len()].code;
        let mut bad = wire(
            &s.network,
            &s.station,
            Phase::P,
            start_unix_s + t + 1.0,
            config,
        );
        match k % 3 {
            0 => bad.station = "NOPE".into(),
            1 => bad.time_s = Some(f64::NAN),
            _ => bad.time_s = Some(32_503_680_000.0), // the year 3000
        }
        records.push(DemoRecord {
            at_s: t + 1.0,
            pick: bad,
            hostile: true,
        });
        let gap = config.event_interval_s * (0.5 + rng.gen::<f64>());
        t += gap;
    }
    // False picks, uniformly in time over the whole stream.
    let n_false =
        (config.false_picks_per_station_min * stations.len() as f64 * t / 60.0).round() as usize;
    for _ in 0..n_false {
        let s = &stations[rng.gen_range(0..stations.len())].code;
        let at = rng.gen_range(0.0..t);
        let phase = if rng.gen::<bool>() {
            Phase::P
        } else {
            Phase::S
        };
        records.push(DemoRecord {
            at_s: at,
            pick: wire(&s.network, &s.station, phase, start_unix_s + at, config),
            hostile: false,
        });
    }
    records.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    (events, records)
}

fn wire(
    network: &str,
    station: &str,
    phase: Phase,
    time_unix_s: f64,
    config: &DemoConfig,
) -> WirePick {
    WirePick {
        v: crate::ingest::WIRE_VERSION,
        id: None,
        network: network.to_string(),
        station: station.to_string(),
        location: None,
        phase: phase.as_str().to_string(),
        time: None,
        time_s: Some(time_unix_s),
        uncertainty_s: Some(config.pick_sigma_s.max(0.01)),
    }
}
