//! The Bayesian hypocentre locator: robust likelihood, a fast first estimate (coarse grid +
//! Levenberg-Marquardt), then Stein variational gradient descent (SVGD, Liu & Wang 2016) over
//! the hypocentre with the origin time eliminated without bias, then an honest posterior
//! summary ([`summary`]).
//!
//! Frame: local km (x east, y north, z depth below sea level, positive down); times are
//! seconds after an event reference time chosen by the caller (e.g. its first pick).

// Loops over the three coordinates index several arrays at once, which iterators would hide;
// the per-event result tuples are local to one function.
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod calibration;
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod estimate;
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod event;
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod likelihood;
#[allow(clippy::needless_range_loop)]
pub mod linearized;
pub mod model_error;
pub mod station_terms;
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod summary;
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod svgd;
#[allow(clippy::needless_range_loop, clippy::type_complexity)]
pub mod table;

pub use likelihood::{LikelihoodKind, NoiseScale, OriginTimeMode, SigmaCombine};
pub use linearized::linearized;
pub use summary::{summarize, ArrivalInput, EventSummary};
pub use table::{RadialTableModel, TableGrid};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::traveltime::{Receiver, TraveltimeError, TraveltimeModel};

/// Why an event could not be located.
#[derive(Debug, Error)]
pub enum LocateError {
    #[error("too few usable picks: {picks} picks at {stations} stations (need >= {min_picks} picks at >= 3 stations)")]
    TooFewPicks {
        picks: usize,
        stations: usize,
        min_picks: usize,
    },
    #[error("traveltime model failed: {0}")]
    Traveltime(#[from] TraveltimeError),
    #[error("invalid locator configuration: {0}")]
    Config(String),
}

/// The region the hypocentre may lie in (the uniform prior's support), local km.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchBox {
    /// West edge, km east.
    pub x_min_km: f64,
    /// East edge, km east.
    pub x_max_km: f64,
    /// South edge, km north.
    pub y_min_km: f64,
    /// North edge, km north.
    pub y_max_km: f64,
    /// Shallowest depth, km below sea level: minus the highest station elevation (no airquakes).
    pub z_min_km: f64,
    /// Deepest depth, km below sea level.
    pub z_max_km: f64,
}

impl SearchBox {
    /// The search box of a station configuration: its model box, from minus the highest
    /// station elevation (or the box top, if deeper) down to the box bottom.
    pub fn for_station_config(station: &crate::config::ResolvedStationConfig) -> Self {
        let b = station.model_box;
        SearchBox {
            x_min_km: b.x_min_km,
            x_max_km: b.x_max_km,
            y_min_km: b.y_min_km,
            y_max_km: b.y_max_km,
            z_min_km: (-station.inventory.max_elevation_m() / 1000.0).max(b.z_min_km),
            z_max_km: b.z_max_km,
        }
    }

    /// Clamps a point into the box.
    pub fn clamp(&self, p: [f64; 3]) -> [f64; 3] {
        [
            p[0].clamp(self.x_min_km, self.x_max_km),
            p[1].clamp(self.y_min_km, self.y_max_km),
            p[2].clamp(self.z_min_km, self.z_max_km),
        ]
    }
    /// True when the box has positive extent on every axis and finite edges.
    pub fn is_valid(&self) -> bool {
        let v = [
            self.x_min_km,
            self.x_max_km,
            self.y_min_km,
            self.y_max_km,
            self.z_min_km,
            self.z_max_km,
        ];
        v.iter().all(|a| a.is_finite())
            && self.x_max_km > self.x_min_km
            && self.y_max_km > self.y_min_km
            && self.z_max_km > self.z_min_km
    }
}

/// Gaussian prior on depth (in addition to the box), km.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DepthPrior {
    /// Mean depth, km below sea level.
    pub mean_km: f64,
    /// Standard deviation, km.
    pub sigma_km: f64,
}

/// Smallest a-priori weight: a pick weighted to zero keeps a finite sigma (1000 times its own),
/// so it still gets a residual but no say in the solution.
pub const MIN_PICK_WEIGHT: f64 = 1e-3;

/// Distance weighting of the picks (Hypoinverse's `DIS` command): full weight out to
/// `full_km` or to the distance of the `min_stations`-th nearest picked station, whichever is
/// larger, then a cosine taper to zero at `zero_factor` times that distance. Distances are
/// epicentral, from the unweighted first estimate. Where the velocity model is wrong far out
/// (Calaveras: -1.5 s at 100 km), the near stations that fix the depth then decide it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistanceWeighting {
    /// Stations always kept at full weight (the nearest ones), at least 3.
    pub min_stations: usize,
    /// Full weight out to this epicentral distance at least, km.
    pub full_km: f64,
    /// The weight reaches zero at this multiple of the full-weight distance (>= 1).
    pub zero_factor: f64,
}

impl DistanceWeighting {
    /// Checks the ranges; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_stations < 3 {
            return Err(format!(
                "distance weighting: min_stations {} must be at least 3",
                self.min_stations
            ));
        }
        if !(self.full_km.is_finite() && self.full_km > 0.0) {
            return Err(format!(
                "distance weighting: full_km {} must be a positive distance",
                self.full_km
            ));
        }
        if !(self.zero_factor.is_finite() && self.zero_factor >= 1.0) {
            return Err(format!(
                "distance weighting: zero_factor {} must be at least 1",
                self.zero_factor
            ));
        }
        Ok(())
    }

    /// Parses `MIN_STATIONS,FULL_KM,ZERO_FACTOR` (e.g. `6,25,2`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let [n, full, factor] = parts.as_slice() else {
            return Err(format!(
                "distance weighting {text:?}: expected MIN_STATIONS,FULL_KM,ZERO_FACTOR"
            ));
        };
        let dw = Self {
            min_stations: n
                .parse()
                .map_err(|_| format!("distance weighting: min_stations {n:?} is not a count"))?,
            full_km: full
                .parse()
                .map_err(|_| format!("distance weighting: full_km {full:?} is not a number"))?,
            zero_factor: factor.parse().map_err(|_| {
                format!("distance weighting: zero_factor {factor:?} is not a number")
            })?,
        };
        dw.validate()?;
        Ok(dw)
    }

    /// The weight in [0, 1] of each observation for an epicentre at `(x_km, y_km)`.
    pub fn weights(&self, epicentre_km: [f64; 2], obs: &[Observation]) -> Vec<f64> {
        let d: Vec<f64> = obs
            .iter()
            .map(|o| {
                (o.receiver.position.x_km - epicentre_km[0])
                    .hypot(o.receiver.position.y_km - epicentre_km[1])
            })
            .collect();
        // distances of distinct stations (P and S at one station count once)
        let mut stations: Vec<f64> = d.clone();
        stations.sort_by(|a, b| a.total_cmp(b));
        stations.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let nth = stations
            .get(self.min_stations.saturating_sub(1))
            .or(stations.last())
            .copied()
            .unwrap_or(0.0);
        let inner = self.full_km.max(nth);
        let outer = inner * self.zero_factor;
        d.iter()
            .map(|&r| {
                if r <= inner {
                    1.0
                } else if r >= outer {
                    0.0
                } else {
                    0.5 * (1.0 + (std::f64::consts::PI * (r - inner) / (outer - inner)).cos())
                }
            })
            .collect()
    }
}

/// Divides each sigma by its pick's a-priori weight (floored at [`MIN_PICK_WEIGHT`]).
pub fn apply_weights(sigma_s: &mut [f64], weights: Option<&[f64]>) {
    if let Some(w) = weights {
        for (s, w) in sigma_s.iter_mut().zip(w) {
            *s /= w.max(MIN_PICK_WEIGHT);
        }
    }
}

/// Everything that tunes the locator. Defaults are the measured choices (see the bench).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocateConfig {
    /// Residual density.
    pub likelihood: LikelihoodKind,
    /// How the origin time is eliminated.
    pub origin_time: OriginTimeMode,
    /// Largest number of pick pairs for the differential forms and EDT.
    pub max_pairs: usize,
    /// Model-error floor, s (one sigma; like NonLinLoc LOCGAU2's minimum).
    pub model_error_floor_s: f64,
    /// Model error as a fraction of the traveltime (one sigma).
    pub model_error_fraction: f64,
    /// Model-error ceiling, s.
    pub model_error_max_s: f64,
    /// How the model error combines with the pick uncertainty.
    pub model_error_combine: SigmaCombine,
    /// Sigmas as given, or scaled per event by an unknown factor integrated out.
    pub noise_scale: NoiseScale,
    /// Correlation length of the model error between stations, km (NonLinLoc LOCGAU's
    /// CorrLen): the model-error terms of picks at stations d km apart correlate by
    /// exp(-d^2 / (2 L^2)). 0 = independent errors (the likelihood alone). Correlated errors
    /// move the event coherently where independent ones average out; the posterior is widened
    /// by that shift's covariance, propagated linearly ([`model_error::widen_for_correlated_error`]).
    pub model_error_correlation_km: f64,
    /// Correlation angle of the model error between rays, degrees: the model-error terms of
    /// picks whose rays leave the source theta degrees apart correlate by
    /// exp(-theta^2 / (2 Theta^2)) (errors that change smoothly with path direction, such as
    /// a dipping interface). 0 = off; with a correlation length too, the two kernels are
    /// averaged ([`model_error::correlation`]).
    pub model_error_correlation_deg: f64,
    /// Correlation of the P and S model errors at one station (0..1), with the correlation
    /// length above.
    pub model_error_ps_correlation: f64,
    /// Number of SVGD particles.
    pub n_particles: usize,
    /// SVGD iteration cap.
    pub max_iterations: usize,
    /// SVGD iterations always run.
    pub min_iterations: usize,
    /// Adam learning rate in whitened units (posterior standard deviations).
    pub step: f64,
    /// Convergence: largest change of the particle mean (in ensemble standard deviations)
    /// over 5 iterations; the covariance may change by twice this, relative.
    pub tolerance: f64,
    /// Metropolis steps per particle after SVGD (0 = pure SVGD). SVGD with few particles
    /// under-disperses; these exact-target steps restore the spread (see the calibration test).
    pub mh_steps: usize,
    /// Optional Gaussian depth prior.
    pub depth_prior: Option<DepthPrior>,
    /// Optional distance weighting of the picks (Hypoinverse `DIS`); None = all at full weight.
    pub distance_weighting: Option<DistanceWeighting>,
    /// Fewest picks an event needs.
    pub min_picks: usize,
    /// Random seed (particles are deterministic given it and the event).
    pub seed: u64,
}

impl LocateConfig {
    /// The default locator without a model-error term (pick sigmas alone, nothing
    /// correlated): for picks made in the locator's own traveltime model with known noise,
    /// as in the calibration test. Real picks always carry model error; use the default.
    pub fn known_noise() -> Self {
        Self {
            model_error_floor_s: 0.0,
            model_error_fraction: 0.0,
            model_error_correlation_km: 0.0,
            model_error_correlation_deg: 0.0,
            ..Self::default()
        }
    }
}

impl Default for LocateConfig {
    /// The model-error term is max(0.05 s, 0.03 T), correlated between picks whose rays leave
    /// the source within about 30 degrees of each other, P and S alike: on picks made in a
    /// 3-D truth and located with its 1-D model it is the measured choice (README, "Honesty
    /// under model error"); on model-consistent picks it over-covers
    /// ([`LocateConfig::known_noise`] is the locator for those).
    fn default() -> Self {
        Self {
            likelihood: LikelihoodKind::Laplace,
            origin_time: OriginTimeMode::Profiled,
            max_pairs: 500,
            model_error_floor_s: 0.05,
            model_error_fraction: 0.03,
            model_error_max_s: 2.0,
            model_error_combine: SigmaCombine::Quadrature,
            noise_scale: NoiseScale::Fixed,
            model_error_correlation_km: 0.0,
            model_error_correlation_deg: 30.0,
            model_error_ps_correlation: 1.0,
            n_particles: 96,
            max_iterations: 300,
            min_iterations: 20,
            step: 0.1,
            tolerance: 0.03,
            mh_steps: 30,
            depth_prior: None,
            distance_weighting: None,
            min_picks: 4,
            seed: 1,
        }
    }
}

/// One observation for the locator: where, which phase, when, and how well.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Receiver (phase and position).
    pub receiver: Receiver,
    /// Arrival time, s after the event's reference time.
    pub t_obs_s: f64,
    /// Pick uncertainty (one sigma), s.
    pub pick_sigma_s: f64,
}

/// The located posterior in the local frame, times after the reference time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Posterior {
    /// Particles: (x km, y km, z km, origin time s).
    pub particles: Vec<[f64; 4]>,
    /// Log posterior of each particle (profiled origin time), up to a constant.
    pub log_post: Vec<f64>,
    /// Particle mean hypocentre, km.
    pub mean_km: [f64; 3],
    /// Highest-posterior particle, km.
    pub map_km: [f64; 3],
    /// Particle covariance of (x, y, z), km^2.
    pub cov_km2: [[f64; 3]; 3],
    /// Squared horizontal Mahalanobis radii (particle covariance) holding 68 % and 95 % of
    /// the particles, order statistic ceil(p (N + 1)): the regions' scale, measured, not
    /// assumed Gaussian (the robust-likelihood posterior has heavier tails than a Gaussian).
    pub h2_quantiles: [f64; 2],
    /// Depth offsets from the mean, in particle standard deviations, holding 68 % and 95 %.
    pub z_quantiles: [f64; 2],
    /// Origin time at the mean hypocentre, s.
    pub t0_s: f64,
    /// Origin-time one-sigma: particle spread plus its conditional uncertainty, s.
    pub t0_sigma_s: f64,
    /// Residual sigma of each observation (pick uncertainty with model error, divided by its
    /// a-priori weight), s.
    pub sigma_s: Vec<f64>,
    /// A-priori weight of each observation in [0, 1] (distance weighting; all 1 without).
    #[serde(default)]
    pub weights: Vec<f64>,
    /// Predicted traveltime of each observation from the mean hypocentre, s.
    pub predicted_tt_s: Vec<f64>,
    /// Observed minus predicted arrival time at the mean hypocentre and origin time, s.
    pub residual_s: Vec<f64>,
    /// The first estimate (grid + Levenberg-Marquardt), km.
    pub first_estimate_km: [f64; 3],
    /// SVGD iterations run.
    pub iterations: usize,
    /// True when SVGD met its tolerance before the cap.
    pub converged: bool,
    /// Metropolis acceptance rate (NaN when no Metropolis steps ran).
    pub mh_acceptance: f64,
}

/// The model-error term of one pick (one sigma, s) for traveltime `tt_s`: the fraction of T
/// clamped to [floor, max].
pub fn model_error_sigma(config: &LocateConfig, tt_s: f64) -> f64 {
    (config.model_error_fraction * tt_s.abs()).clamp(
        config.model_error_floor_s,
        config.model_error_max_s.max(config.model_error_floor_s),
    )
}

/// Residual sigmas: pick uncertainty combined (in quadrature or summed, see
/// [`LocateConfig::model_error_combine`]) with a model error that grows with the traveltime
/// (NonLinLoc LOCGAU2 form: fraction of T clamped to [floor, max]).
pub fn pick_sigmas(config: &LocateConfig, obs: &[Observation], tt_s: &[f64]) -> Vec<f64> {
    obs.iter()
        .zip(tt_s)
        .map(|(o, t)| {
            let model = model_error_sigma(config, *t);
            let s = match config.model_error_combine {
                SigmaCombine::Quadrature => (o.pick_sigma_s.powi(2) + model * model).sqrt(),
                SigmaCombine::Sum => o.pick_sigma_s + model,
            };
            s.max(1e-4)
        })
        .collect()
}

/// Locates one event: first estimate, SVGD, optional Metropolis refinement.
pub fn locate(
    model: &dyn TraveltimeModel,
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
    seed: u64,
) -> Result<Posterior, LocateError> {
    check_inputs(obs, bbox, config)?;
    let (first, weights) = weighted_first_estimate(model, obs, bbox, config)?;
    let mut post = svgd::run(model, obs, bbox, config, &first, seed)?;
    post.weights = weights;
    if config.model_error_correlation_km > 0.0 || config.model_error_correlation_deg > 0.0 {
        model_error::widen_for_correlated_error(model, obs, bbox, config, &mut post, seed)?;
    }
    Ok(post)
}

/// The first estimate with the configured distance weighting: an unweighted first estimate
/// gives the epicentre the weights are measured from, then the first estimate is redone with
/// them (grid included: with the far picks down-weighted the depth can move by kilometres).
/// Returns the weights too (all 1 without weighting).
pub fn weighted_first_estimate(
    model: &dyn TraveltimeModel,
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
) -> Result<(estimate::FirstEstimate, Vec<f64>), LocateError> {
    let first = estimate::first_estimate(model, obs, bbox, config)?;
    let Some(dw) = &config.distance_weighting else {
        return Ok((first, vec![1.0; obs.len()]));
    };
    dw.validate().map_err(LocateError::Config)?;
    let w = dw.weights([first.x_km[0], first.x_km[1]], obs);
    if w.iter().all(|&w| w >= 1.0) {
        return Ok((first, w));
    }
    let refined = estimate::first_estimate_weighted(model, obs, bbox, config, Some(&w))?;
    Ok((refined, w))
}

/// What every solution needs: a valid box, enough particles, at least `min_picks` (and 4)
/// picks at 3 or more stations.
fn check_inputs(
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
) -> Result<(), LocateError> {
    if !bbox.is_valid() {
        return Err(LocateError::Config(format!(
            "search box is empty or not finite: {bbox:?}"
        )));
    }
    if config.n_particles < 4 {
        return Err(LocateError::Config("need at least 4 particles".into()));
    }
    let mut stations: Vec<(u64, u64)> = obs
        .iter()
        .map(|o| {
            (
                o.receiver.position.x_km.to_bits(),
                o.receiver.position.y_km.to_bits(),
            )
        })
        .collect();
    stations.sort_unstable();
    stations.dedup();
    if obs.len() < config.min_picks.max(4) || stations.len() < 3 {
        return Err(LocateError::TooFewPicks {
            picks: obs.len(),
            stations: stations.len(),
            min_picks: config.min_picks.max(4),
        });
    }
    Ok(())
}
