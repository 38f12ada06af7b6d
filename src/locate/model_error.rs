//! The model-error term estimated from the located events' own residuals: the robust spread
//! of the residuals as a function of traveltime, less the pick uncertainty, fitted by the
//! LOCGAU2-like form sigma_model(T)^2 = floor^2 + (fraction T)^2. Iterated with relocation
//! (locate, fit, relocate) it replaces a guessed floor and fraction by measured ones.
//!
//! Residuals after location understate the errors behind them: each event's four unknowns
//! absorb part of its misfit. Each residual is therefore scaled by sqrt(n / (n - 4)) (n: the
//! event's pick count), the least-squares degrees-of-freedom correction.

use serde::{Deserialize, Serialize};

/// One arrival of one located event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResidualSample {
    /// Predicted traveltime at the located hypocentre, s.
    pub traveltime_s: f64,
    /// Observed minus predicted arrival time at the located hypocentre and origin time, s.
    pub residual_s: f64,
    /// The pick's own uncertainty (one sigma), s.
    pub pick_sigma_s: f64,
    /// Number of picks the event was located with.
    pub event_picks: usize,
}

/// A fitted model-error term (one sigma).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelErrorFit {
    /// Floor, s.
    pub floor_s: f64,
    /// Fraction of the traveltime.
    pub fraction: f64,
    /// Samples used.
    pub n: usize,
    /// Traveltime bins used.
    pub bins: usize,
}

/// Fewest samples per traveltime bin.
const MIN_PER_BIN: usize = 40;
/// Most traveltime bins.
const MAX_BINS: usize = 12;
/// Gaussian consistency factor of the median absolute deviation.
const MAD_TO_SIGMA: f64 = 1.4826;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Fits floor and fraction to the residuals: equal-count traveltime bins, in each the
/// degrees-of-freedom-corrected robust variance (1.4826 MAD)^2 less the mean pick variance,
/// then non-negative least squares of floor^2 + fraction^2 T^2 on the bins. `None` with fewer
/// than `2 * MIN_PER_BIN` usable samples (events with more than four picks, finite values).
pub fn fit_model_error(samples: &[ResidualSample]) -> Option<ModelErrorFit> {
    let mut s: Vec<(f64, f64, f64)> = samples
        .iter()
        .filter(|x| {
            x.event_picks > 4
                && x.traveltime_s.is_finite()
                && x.residual_s.is_finite()
                && x.pick_sigma_s.is_finite()
        })
        .map(|x| {
            let dof = (x.event_picks as f64 / (x.event_picks as f64 - 4.0)).sqrt();
            (x.traveltime_s.abs(), x.residual_s * dof, x.pick_sigma_s)
        })
        .collect();
    if s.len() < 2 * MIN_PER_BIN {
        return None;
    }
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bins = (s.len() / MIN_PER_BIN).clamp(2, MAX_BINS);
    // (mean T^2, model variance) per bin
    let mut pts = Vec::with_capacity(bins);
    for b in 0..bins {
        let chunk = &s[b * s.len() / bins..(b + 1) * s.len() / bins];
        let mut r: Vec<f64> = chunk.iter().map(|c| c.1).collect();
        let m = median(&mut r);
        let mut dev: Vec<f64> = r.iter().map(|x| (x - m).abs()).collect();
        let sd = MAD_TO_SIGMA * median(&mut dev);
        let pick_var = chunk.iter().map(|c| c.2 * c.2).sum::<f64>() / chunk.len() as f64;
        let t2 = chunk.iter().map(|c| c.0 * c.0).sum::<f64>() / chunk.len() as f64;
        pts.push((t2, (sd * sd - pick_var).max(0.0)));
    }
    // least squares y = a + b x with a, b >= 0 (a = floor^2, b = fraction^2)
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let mut b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let mut a = my - b * mx;
    if b < 0.0 {
        b = 0.0;
        a = my;
    }
    if a < 0.0 {
        a = 0.0;
        let sxx0: f64 = pts.iter().map(|p| p.0 * p.0).sum();
        b = if sxx0 > 0.0 {
            pts.iter().map(|p| p.0 * p.1).sum::<f64>() / sxx0
        } else {
            0.0
        };
    }
    Some(ModelErrorFit {
        floor_s: a.max(0.0).sqrt(),
        fraction: b.max(0.0).sqrt(),
        n: s.len(),
        bins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// Residuals drawn with a known floor and fraction (and pick noise on top) give them back.
    #[test]
    fn recovers_a_known_floor_and_fraction() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (floor, fraction, pick) = (0.06, 0.015, 0.03);
        let n_picks = 24;
        let samples: Vec<ResidualSample> = (0..20_000)
            .map(|_| {
                let t: f64 = rng.gen_range(1.0..20.0);
                let model = (floor * floor + (fraction * t).powi(2)).sqrt();
                let sd = (model * model + pick * pick).sqrt();
                // what location leaves: the spread shrunk by sqrt((n - 4) / n)
                let shrink = ((n_picks as f64 - 4.0) / n_picks as f64).sqrt();
                ResidualSample {
                    traveltime_s: t,
                    residual_s: sd * shrink * rng.sample::<f64, _>(StandardNormal),
                    pick_sigma_s: pick,
                    event_picks: n_picks,
                }
            })
            .collect();
        let f = fit_model_error(&samples).unwrap();
        assert!((f.floor_s - floor).abs() < 0.012, "{f:?}");
        assert!((f.fraction - fraction).abs() < 0.002, "{f:?}");
        assert_eq!(f.bins, MAX_BINS);
    }

    /// Residuals no larger than the pick noise give no model error; too few samples, none.
    #[test]
    fn pick_noise_alone_gives_no_model_error() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let samples: Vec<ResidualSample> = (0..5000)
            .map(|_| ResidualSample {
                traveltime_s: rng.gen_range(1.0..20.0),
                residual_s: 0.02 * rng.sample::<f64, _>(StandardNormal),
                pick_sigma_s: 0.05,
                event_picks: 30,
            })
            .collect();
        let f = fit_model_error(&samples).unwrap();
        assert!(f.floor_s < 1e-9 && f.fraction < 1e-9, "{f:?}");
        assert!(fit_model_error(&samples[..50]).is_none());
    }
}
