//! Synthetic pick streams for testing and benchmarking association: stations in a square box,
//! events at a Poisson rate, P and S picks with Laplace noise and detection probability falling
//! with distance, per-station static errors, and a fraction of false picks uniform in time.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Normal};

use super::{AssocPick, AssociateError, TruthPick};
use crate::domain::{LocalPoint, Phase};
use crate::traveltime::TraveltimeModel;

/// Configures [`synth_stream`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSynthConfig {
    /// Seed of the ChaCha8 generator: same seed, same stream.
    pub seed: u64,
    /// Number of stations, uniform in the box.
    pub n_stations: usize,
    /// Side of the square box `[0, width] x [0, width]`, km.
    pub width_km: f64,
    /// Largest station elevation, km (uniform 0..max; z = -elevation).
    pub station_elevation_max_km: f64,
    /// Shallowest event depth, km.
    pub depth_min_km: f64,
    /// Deepest event depth, km.
    pub depth_max_km: f64,
    /// Stream length, s (events start in `[0, duration)`).
    pub duration_s: f64,
    /// Mean event rate, events per day (Poisson).
    pub events_per_day: f64,
    /// Fraction of all picks that are false (0.2: one pick in five is noise).
    pub false_pick_fraction: f64,
    /// Smallest detection reach (a magnitude proxy), km; reaches are log-uniform.
    pub reach_min_km: f64,
    /// Largest detection reach, km.
    pub reach_max_km: f64,
    /// Detection probability of a P pick at zero distance; falls as exp(-(d / reach)^2).
    pub p_detect_max: f64,
    /// S detection probability relative to P.
    pub s_detect_ratio: f64,
    /// Laplace scale of P pick noise, s.
    pub noise_p_s: f64,
    /// Laplace scale of S pick noise, s.
    pub noise_s_s: f64,
    /// Standard deviation of per-station, per-phase static time errors (model error), s.
    pub station_static_s: f64,
}

impl Default for StreamSynthConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            n_stations: 100,
            width_km: 200.0,
            station_elevation_max_km: 1.0,
            depth_min_km: 2.0,
            depth_max_km: 20.0,
            duration_s: 86_400.0,
            events_per_day: 2000.0,
            false_pick_fraction: 0.2,
            reach_min_km: 15.0,
            reach_max_km: 150.0,
            p_detect_max: 0.95,
            s_detect_ratio: 0.8,
            noise_p_s: 0.05,
            noise_s_s: 0.1,
            station_static_s: 0.05,
        }
    }
}

/// One synthetic event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthEvent {
    /// Origin time, s from stream start.
    pub origin_time_s: f64,
    /// Hypocentre, local km.
    pub hypocentre: LocalPoint,
    /// Detection reach, km.
    pub reach_km: f64,
}

/// One synthetic pick with its truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthPick {
    /// Index in the time-sorted stream.
    pub id: u64,
    /// Station index.
    pub station: usize,
    /// Labelled phase.
    pub phase: Phase,
    /// Arrival time, s from stream start.
    pub time_s: f64,
    /// True event index, None for a false pick.
    pub event: Option<usize>,
}

/// A synthetic stream: stations, events, and time-sorted picks.
#[derive(Debug, Clone)]
pub struct SynthStream {
    /// Station positions, local km.
    pub stations: Vec<LocalPoint>,
    /// True events in origin-time order.
    pub events: Vec<SynthEvent>,
    /// Picks sorted by time (ids are their indices).
    pub picks: Vec<SynthPick>,
}

impl SynthStream {
    /// The picks as associator input.
    pub fn assoc_picks(&self) -> Vec<AssocPick> {
        self.picks
            .iter()
            .map(|p| AssocPick {
                id: p.id,
                station: p.station,
                phase: p.phase,
                time_s: p.time_s,
            })
            .collect()
    }
    /// The truth per pick id, for [`super::score_association`].
    pub fn truth(&self) -> Vec<TruthPick> {
        self.picks
            .iter()
            .map(|p| TruthPick {
                event: p.event,
                station: p.station,
            })
            .collect()
    }
    /// Number of false picks.
    pub fn n_false(&self) -> usize {
        self.picks.iter().filter(|p| p.event.is_none()).count()
    }
}

fn laplace(rng: &mut ChaCha8Rng, scale: f64) -> f64 {
    let u: f64 = rng.gen_range(-0.5..0.5);
    -scale * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
}

/// Generates a stream with `model` traveltimes.
pub fn synth_stream(
    cfg: &StreamSynthConfig,
    model: &dyn TraveltimeModel,
) -> Result<SynthStream, AssociateError> {
    let ok = cfg.n_stations > 0
        && [
            cfg.width_km,
            cfg.duration_s,
            cfg.events_per_day,
            cfg.reach_min_km,
            cfg.reach_max_km,
        ]
        .iter()
        .all(|v| v.is_finite() && *v > 0.0)
        && cfg.reach_max_km >= cfg.reach_min_km
        && (0.0..1.0).contains(&cfg.false_pick_fraction)
        && (0.0..=1.0).contains(&cfg.p_detect_max)
        && (0.0..=1.0).contains(&cfg.s_detect_ratio)
        && [
            cfg.noise_p_s,
            cfg.noise_s_s,
            cfg.station_static_s,
            cfg.station_elevation_max_km,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
        && cfg.depth_min_km.is_finite()
        && cfg.depth_max_km >= cfg.depth_min_km;
    if !ok {
        return Err(AssociateError::InvalidConfig(format!(
            "stream synthesis parameters out of range: {cfg:?}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let stations: Vec<LocalPoint> = (0..cfg.n_stations)
        .map(|_| {
            LocalPoint::new(
                rng.gen_range(0.0..cfg.width_km),
                rng.gen_range(0.0..cfg.width_km),
                -rng.gen_range(0.0..=cfg.station_elevation_max_km),
            )
        })
        .collect();
    let statics = Normal::new(0.0, cfg.station_static_s.max(1e-12))
        .map_err(|e| AssociateError::InvalidConfig(e.to_string()))?;
    let station_static: Vec<[f64; 2]> = (0..cfg.n_stations)
        .map(|_| [statics.sample(&mut rng), statics.sample(&mut rng)])
        .collect();
    let gap = Exp::new(cfg.events_per_day / 86_400.0)
        .map_err(|e| AssociateError::InvalidConfig(e.to_string()))?;
    let mut events = Vec::new();
    let mut t = gap.sample(&mut rng);
    let (lr0, lr1) = (cfg.reach_min_km.ln(), cfg.reach_max_km.ln());
    while t < cfg.duration_s {
        let hyp = LocalPoint::new(
            rng.gen_range(0.0..cfg.width_km),
            rng.gen_range(0.0..cfg.width_km),
            rng.gen_range(cfg.depth_min_km..=cfg.depth_max_km),
        );
        let reach = (lr0 + (lr1 - lr0) * rng.gen::<f64>()).exp();
        events.push(SynthEvent {
            origin_time_s: t,
            hypocentre: hyp,
            reach_km: reach,
        });
        t += gap.sample(&mut rng);
    }
    let mut picks: Vec<SynthPick> = Vec::new();
    for (ei, ev) in events.iter().enumerate() {
        for (s, st) in stations.iter().enumerate() {
            let d = ev.hypocentre.horizontal_distance_km(st);
            let p_det = cfg.p_detect_max * (-(d / ev.reach_km).powi(2)).exp();
            for ph in Phase::ALL {
                let p = if ph == Phase::P {
                    p_det
                } else {
                    p_det * cfg.s_detect_ratio
                };
                if rng.gen::<f64>() >= p {
                    continue;
                }
                let tt = model.traveltime_s(ph, ev.hypocentre, *st).map_err(|e| {
                    AssociateError::Traveltime {
                        phase: ph,
                        station: s,
                        x_km: ev.hypocentre.x_km,
                        y_km: ev.hypocentre.y_km,
                        z_km: ev.hypocentre.z_km,
                        message: e.to_string(),
                    }
                })?;
                let noise = laplace(
                    &mut rng,
                    if ph == Phase::P {
                        cfg.noise_p_s
                    } else {
                        cfg.noise_s_s
                    },
                );
                let time_s = ev.origin_time_s + tt + station_static[s][ph.index()] + noise;
                picks.push(SynthPick {
                    id: 0,
                    station: s,
                    phase: ph,
                    time_s,
                    event: Some(ei),
                });
            }
        }
    }
    let n_true = picks.len();
    let n_false = (cfg.false_pick_fraction / (1.0 - cfg.false_pick_fraction) * n_true as f64)
        .round() as usize;
    for _ in 0..n_false {
        let ph = if rng.gen::<bool>() {
            Phase::P
        } else {
            Phase::S
        };
        picks.push(SynthPick {
            id: 0,
            station: rng.gen_range(0..cfg.n_stations),
            phase: ph,
            time_s: rng.gen_range(0.0..cfg.duration_s),
            event: None,
        });
    }
    picks.sort_by(|a, b| {
        a.time_s
            .total_cmp(&b.time_s)
            .then(a.station.cmp(&b.station))
            .then(a.phase.cmp(&b.phase))
    });
    for (i, p) in picks.iter_mut().enumerate() {
        p.id = i as u64;
    }
    Ok(SynthStream {
        stations,
        events,
        picks,
    })
}
