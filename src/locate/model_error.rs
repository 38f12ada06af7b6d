//! The model-error term estimated from the located events' own residuals: the robust spread
//! of the residuals as a function of traveltime, less the pick uncertainty, fitted by the
//! LOCGAU2-like form sigma_model(T)^2 = floor^2 + (fraction T)^2. Iterated with relocation
//! (locate, fit, relocate) it replaces a guessed floor and fraction by measured ones.
//!
//! Residuals after location understate the errors behind them: each event's four unknowns
//! absorb part of its misfit. Each residual is therefore scaled by sqrt(n / (n - 4)) (n: the
//! event's pick count), the least-squares degrees-of-freedom correction.

use nalgebra::{Matrix3, Matrix4, SymmetricEigen, Vector3, Vector4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::likelihood::HUBER_K;
use super::svgd::region_quantiles;
use super::{model_error_sigma, LocateConfig, LocateError, Observation, Posterior, SearchBox};
use crate::domain::LocalPoint;
use crate::traveltime::{TimeAndGradient, TraveltimeModel};

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

/// Correlation of the model errors of picks `i` and `j` (i != j): the station-distance kernel
/// exp(-d^2 / (2 L^2)) (L: `model_error_correlation_km`; 0 = none) and, with
/// `model_error_correlation_deg` > 0, the ray-direction kernel exp(-theta^2 / (2 Theta^2))
/// (theta: the angle between the two rays where they leave the source, from the traveltime
/// gradients, which point away from the ray), which describes error fields that change
/// smoothly with the direction of the path from the source (a dipping interface, a regional
/// velocity gradient): rays that leave together share their path. With both, their mean.
/// Times the P-S correlation across phases.
pub fn correlation(
    config: &LocateConfig,
    obs: &[Observation],
    tg: &[TimeAndGradient],
    i: usize,
    j: usize,
) -> f64 {
    let mut kernels = 0;
    let mut rho = 0.0;
    let l = config.model_error_correlation_km;
    if l > 0.0 {
        let (pi, pj) = (obs[i].receiver.position, obs[j].receiver.position);
        let d2 = (pi.x_km - pj.x_km).powi(2) + (pi.y_km - pj.y_km).powi(2);
        rho += (-0.5 * d2 / (l * l)).exp();
        kernels += 1;
    }
    let a = config.model_error_correlation_deg;
    if a > 0.0 {
        let (gi, gj) = (tg[i].grad_s_per_km, tg[j].grad_s_per_km);
        let norm = |g: [f64; 3]| (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
        let (ni, nj) = (norm(gi), norm(gj));
        if ni > 0.0 && nj > 0.0 {
            let cos =
                ((gi[0] * gj[0] + gi[1] * gj[1] + gi[2] * gj[2]) / (ni * nj)).clamp(-1.0, 1.0);
            let theta = cos.acos().to_degrees();
            rho += (-0.5 * (theta / a).powi(2)).exp();
        }
        kernels += 1;
    }
    if kernels == 0 {
        return 0.0;
    }
    rho /= kernels as f64;
    if obs[i].receiver.phase != obs[j].receiver.phase {
        rho *= config.model_error_ps_correlation.clamp(0.0, 1.0);
    }
    rho
}

/// Covariance of the hypocentre shift caused by the *correlated* part of the model error,
/// km^2, linearised at `x_km`: with G the rows (dT_i/dx, dT_i/dy, dT_i/dz, 1), W the weights
/// 1/sigma_i^2 (Huber-downweighted beyond HUBER_K sigma, as the robust fit treats outliers)
/// and K the hypocentre rows of (G^T W G)^-1 G^T W, it is K (C - diag C) K^T with
/// C_ij = m_i m_j rho_ij (m: the model-error term, rho: exp(-d_ij^2 / (2 L^2)), times the P-S
/// correlation across phases). The diagonal is left out because the likelihood's sigmas
/// already carry it. Negative eigenvalues (errors common to all picks that the origin time
/// absorbs) are clipped to zero: the correction only widens. `None` when G^T W G is singular.
pub fn correlated_shift_covariance(
    tg: &[TimeAndGradient],
    obs: &[Observation],
    sigma_s: &[f64],
    residual_s: &[f64],
    config: &LocateConfig,
) -> Option<Matrix3<f64>> {
    let n = obs.len();
    let mut a = Matrix4::<f64>::zeros();
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let g = tg[i].grad_s_per_km;
        let row = Vector4::new(g[0], g[1], g[2], 1.0);
        let u = residual_s.get(i).copied().unwrap_or(0.0) / sigma_s[i];
        let w = (1.0 / (sigma_s[i] * sigma_s[i])) * (HUBER_K / u.abs().max(1e-12)).min(1.0);
        a += row * row.transpose() * w;
        rows.push((row, w));
    }
    let ainv = a.try_inverse()?;
    // K_i: the hypocentre response to a unit error on pick i
    let k: Vec<Vector3<f64>> = rows
        .iter()
        .map(|(row, w)| {
            let v = ainv * row * *w;
            Vector3::new(v[0], v[1], v[2])
        })
        .collect();
    let m: Vec<f64> = tg
        .iter()
        .map(|t| model_error_sigma(config, t.t_s))
        .collect();
    let mut c = Matrix3::<f64>::zeros();
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let rho = correlation(config, obs, tg, i, j);
            if rho < 1e-6 {
                continue;
            }
            c += k[i] * k[j].transpose() * (m[i] * m[j] * rho);
        }
    }
    let c = 0.5 * (c + c.transpose());
    let e = SymmetricEigen::new(c);
    let lam = e.eigenvalues.map(|v| v.max(0.0));
    Some(e.eigenvectors * Matrix3::from_diagonal(&lam) * e.eigenvectors.transpose())
}

/// One event's second moments for [`fit_model_error_scale`], s^2: the observed sum of squared
/// residuals (each clipped at 4 sigma, so a wild pick does not count as model error), and
/// what the pick noise and the model error (at the configured size, with its correlation)
/// would leave after location: tr((I - H) C (I - H)^T) with H the weighted least-squares hat
/// matrix of (x, y, z, origin time). Correlated error that the location absorbs leaves no
/// residual; this accounts for it, where a plain residual spread does not.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScaleMoments {
    /// Sum of squared (clipped) residuals, s^2.
    pub observed_s2: f64,
    /// Expected part from the pick noise, s^2.
    pub pick_s2: f64,
    /// Expected part from the model error at scale 1, s^2.
    pub model_s2: f64,
}

/// The moments of one located event (see [`ScaleMoments`]); `tg` at the located hypocentre,
/// `sigma_s` the sigmas the locator used. `None` when the geometry is singular.
pub fn scale_moments(
    tg: &[TimeAndGradient],
    obs: &[Observation],
    sigma_s: &[f64],
    residual_s: &[f64],
    config: &LocateConfig,
) -> Option<ScaleMoments> {
    let n = obs.len();
    if n <= 4 {
        return None;
    }
    let g = nalgebra::DMatrix::from_fn(
        n,
        4,
        |i, k| {
            if k < 3 {
                tg[i].grad_s_per_km[k]
            } else {
                1.0
            }
        },
    );
    let w = nalgebra::DVector::from_fn(n, |i, _| 1.0 / (sigma_s[i] * sigma_s[i]));
    let gtw = g.transpose() * nalgebra::DMatrix::from_diagonal(&w);
    let a = (&gtw * &g).try_inverse()?;
    let h = &g * a * gtw;
    let r = nalgebra::DMatrix::<f64>::identity(n, n) - h;
    let m: Vec<f64> = tg
        .iter()
        .map(|t| model_error_sigma(config, t.t_s))
        .collect();
    let c = nalgebra::DMatrix::from_fn(n, n, |i, j| {
        if i == j {
            return m[i] * m[i];
        }
        m[i] * m[j] * correlation(config, obs, tg, i, j)
    });
    let model_s2 = (&r * c * r.transpose()).trace();
    let d = nalgebra::DMatrix::from_diagonal(&nalgebra::DVector::from_fn(n, |i, _| {
        obs[i].pick_sigma_s.powi(2)
    }));
    let pick_s2 = (&r * d * r.transpose()).trace();
    let observed_s2 = residual_s
        .iter()
        .zip(sigma_s)
        .map(|(x, s)| x.abs().min(4.0 * s).powi(2))
        .sum();
    Some(ScaleMoments {
        observed_s2,
        pick_s2,
        model_s2,
    })
}

/// [`scale_moments`] of a located event, at its posterior mean with the sigmas and residuals
/// the locator reported. `None` when the model cannot be evaluated there or the geometry is
/// singular.
pub fn posterior_scale_moments(
    model: &dyn TraveltimeModel,
    post: &Posterior,
    obs: &[Observation],
    config: &LocateConfig,
) -> Option<ScaleMoments> {
    let rec: Vec<crate::traveltime::Receiver> = obs.iter().map(|o| o.receiver).collect();
    let mut tg = vec![TimeAndGradient::default(); obs.len()];
    model
        .batch_with_gradient(&[LocalPoint::from_array(post.mean_km)], &rec, &mut tg)
        .ok()?;
    scale_moments(&tg, obs, &post.sigma_s, &post.residual_s, config)
}

/// The factor by which the configured model error (floor and fraction together) should be
/// multiplied so that the residuals it predicts match those observed, summed over events:
/// lambda^2 = (sum observed - sum pick) / sum model, at least 0. `None` without events or
/// with no model-error term to scale.
pub fn fit_model_error_scale(moments: &[ScaleMoments]) -> Option<f64> {
    let (o, p, m) = moments.iter().fold((0.0, 0.0, 0.0), |acc, x| {
        (acc.0 + x.observed_s2, acc.1 + x.pick_s2, acc.2 + x.model_s2)
    });
    if moments.is_empty() || m <= 0.0 || !(o.is_finite() && p.is_finite() && m.is_finite()) {
        return None;
    }
    Some(((o - p) / m).max(0.0).sqrt())
}

/// Widens a posterior for correlated model error: every particle moves by a draw of the
/// shift [`correlated_shift_covariance`] describes at the posterior mean (antithetic pairs, so
/// the mean stays), which is the posterior marginalised over that error to first order; then
/// covariance and region scales are recomputed about the unchanged mean. Particles stay
/// inside the box.
pub fn widen_for_correlated_error(
    model: &dyn TraveltimeModel,
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
    post: &mut Posterior,
    seed: u64,
) -> Result<(), LocateError> {
    let receivers: Vec<_> = obs.iter().map(|o| o.receiver).collect();
    let mut tg = vec![TimeAndGradient::default(); obs.len()];
    model.batch_with_gradient(&[LocalPoint::from_array(post.mean_km)], &receivers, &mut tg)?;
    let Some(c) = correlated_shift_covariance(&tg, obs, &post.sigma_s, &post.residual_s, config)
    else {
        return Ok(());
    };
    let e = SymmetricEigen::new(c);
    let root = e.eigenvectors * Matrix3::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt()));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0de_ca11);
    let np = post.particles.len();
    let half = np / 2;
    let draws: Vec<Vector3<f64>> = (0..half)
        .map(|_| {
            root * Vector3::new(
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
            )
        })
        .collect();
    for (i, p) in post.particles.iter_mut().enumerate() {
        let d = if i < half {
            draws[i]
        } else if i < 2 * half {
            -draws[i - half]
        } else {
            Vector3::zeros()
        };
        let x = bbox.clamp([p[0] + d[0], p[1] + d[1], p[2] + d[2]]);
        p[0] = x[0];
        p[1] = x[1];
        p[2] = x[2];
    }
    let xs: Vec<[f64; 3]> = post.particles.iter().map(|p| [p[0], p[1], p[2]]).collect();
    // The shift is symmetric about the estimate, so the mean stays where the likelihood put
    // it, and the spread is measured about it: draws clamped at the box (a shallow event with
    // a wide depth widening) would otherwise drag the cloud's own mean off by kilometres.
    let mean = post.mean_km;
    let mut cov = [[0.0; 3]; 3];
    let dof = (xs.len() as f64 - 1.0).max(1.0);
    for x in &xs {
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += (x[i] - mean[i]) * (x[j] - mean[j]) / dof;
            }
        }
    }
    let (h2, z) = region_quantiles(&xs, &mean, &cov);
    post.cov_km2 = cov;
    post.h2_quantiles = h2;
    post.z_quantiles = z;
    Ok(())
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

    /// Residuals left by a least-squares location of errors drawn with the correlation model
    /// at twice the configured size give back a scale of 2, though location absorbs much of
    /// the correlated part.
    #[test]
    fn scale_fit_recovers_the_size_of_correlated_error() {
        use crate::domain::Phase;
        use crate::traveltime::Receiver;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let config = LocateConfig {
            model_error_floor_s: 0.05,
            model_error_fraction: 0.02,
            model_error_correlation_km: 15.0,
            model_error_ps_correlation: 1.0,
            ..Default::default()
        };
        let truth = 2.0;
        let mut moments = Vec::new();
        for _ in 0..300 {
            let mut obs = Vec::new();
            let mut tg = Vec::new();
            for k in 0..12 {
                let pos =
                    LocalPoint::new(rng.gen_range(-40.0..40.0), rng.gen_range(-40.0..40.0), 0.0);
                for phase in Phase::ALL {
                    let d: f64 = (pos.x_km.powi(2) + pos.y_km.powi(2) + 64.0).sqrt();
                    let v = if phase == Phase::P { 6.0 } else { 3.5 };
                    obs.push(Observation {
                        receiver: Receiver {
                            phase,
                            position: pos,
                        },
                        t_obs_s: 0.0,
                        pick_sigma_s: if phase == Phase::P { 0.05 } else { 0.1 },
                    });
                    tg.push(TimeAndGradient {
                        t_s: d / v,
                        grad_s_per_km: [-pos.x_km / d / v, -pos.y_km / d / v, 8.0 / d / v],
                    });
                }
                let _ = k;
            }
            let n = obs.len();
            // e = pick noise + truth * correlated model error (Cholesky of C)
            let m: Vec<f64> = tg
                .iter()
                .map(|t| model_error_sigma(&config, t.t_s))
                .collect();
            let c = nalgebra::DMatrix::from_fn(n, n, |i, j| {
                let (pi, pj) = (obs[i].receiver.position, obs[j].receiver.position);
                let d2 = (pi.x_km - pj.x_km).powi(2) + (pi.y_km - pj.y_km).powi(2);
                m[i] * m[j] * (-0.5 * d2 / 225.0).exp() + if i == j { 1e-12 } else { 0.0 }
            });
            let l = c.cholesky().unwrap().l();
            let z = nalgebra::DVector::from_fn(n, |_, _| rng.sample::<f64, _>(StandardNormal));
            let me = l * z * truth;
            let e: Vec<f64> = (0..n)
                .map(|i| me[i] + obs[i].pick_sigma_s * rng.sample::<f64, _>(StandardNormal))
                .collect();
            let sigma: Vec<f64> = (0..n)
                .map(|i| (obs[i].pick_sigma_s.powi(2) + m[i] * m[i]).sqrt())
                .collect();
            // weighted least-squares residuals of (x, y, z, t0)
            let g =
                nalgebra::DMatrix::from_fn(
                    n,
                    4,
                    |i, k| if k < 3 { tg[i].grad_s_per_km[k] } else { 1.0 },
                );
            let w = nalgebra::DMatrix::from_diagonal(&nalgebra::DVector::from_fn(n, |i, _| {
                1.0 / sigma[i].powi(2)
            }));
            let gtw = g.transpose() * w;
            let h = &g * (&gtw * &g).try_inverse().unwrap() * gtw;
            let r = (nalgebra::DMatrix::<f64>::identity(n, n) - h) * nalgebra::DVector::from_vec(e);
            let res: Vec<f64> = r.iter().copied().collect();
            moments.push(scale_moments(&tg, &obs, &sigma, &res, &config).unwrap());
        }
        let lambda = fit_model_error_scale(&moments).unwrap();
        assert!((lambda - truth).abs() < 0.15, "{lambda}");
    }

    /// The ray-direction kernel follows the angle between the rays at the source (from the
    /// gradients, which point away from the ray): same direction 1, 30 degrees exp(-1/2) at a
    /// 30-degree correlation angle, opposite rays none; across phases times the P-S
    /// correlation; with a station-distance kernel too, the mean of the two.
    #[test]
    fn ray_direction_correlation_follows_the_angle_between_rays() {
        use crate::domain::Phase;
        use crate::traveltime::Receiver;
        let config = LocateConfig {
            model_error_correlation_km: 0.0,
            model_error_correlation_deg: 30.0,
            model_error_ps_correlation: 0.5,
            ..LocateConfig::default()
        };
        let dir = |deg: f64| {
            let a = deg.to_radians();
            // slowness 1/6 s/km, pointing away from a station at azimuth `deg`
            [-a.sin() / 6.0, -a.cos() / 6.0, 0.0]
        };
        let mk = |deg: f64, phase: Phase, x: f64| {
            (
                Observation {
                    receiver: Receiver {
                        phase,
                        position: LocalPoint::new(x, 0.0, 0.0),
                    },
                    t_obs_s: 0.0,
                    pick_sigma_s: 0.05,
                },
                TimeAndGradient {
                    t_s: 5.0,
                    grad_s_per_km: dir(deg),
                },
            )
        };
        let picks = [
            mk(10.0, Phase::P, 0.0),
            mk(10.0, Phase::P, 30.0),
            mk(40.0, Phase::P, 60.0),
            mk(190.0, Phase::P, 90.0),
            mk(10.0, Phase::S, 120.0),
        ];
        let obs: Vec<Observation> = picks.iter().map(|p| p.0).collect();
        let tg: Vec<TimeAndGradient> = picks.iter().map(|p| p.1).collect();
        let rho = |c: &LocateConfig, i, j| correlation(c, &obs, &tg, i, j);
        assert!((rho(&config, 0, 1) - 1.0).abs() < 1e-12);
        assert!((rho(&config, 0, 2) - (-0.5f64).exp()).abs() < 1e-9);
        // opposite rays, 180 degrees: exp(-18)
        assert!((rho(&config, 0, 3) - (-18f64).exp()).abs() < 1e-15);
        assert!((rho(&config, 0, 4) - 0.5).abs() < 1e-12);
        // stations 30 km apart at L = 30 km: exp(-1/2); averaged with the ray kernel's 1
        let both = LocateConfig {
            model_error_correlation_km: 30.0,
            ..config.clone()
        };
        assert!((rho(&both, 0, 1) - 0.5 * (1.0 + (-0.5f64).exp())).abs() < 1e-9);
        let none = LocateConfig {
            model_error_correlation_deg: 0.0,
            ..config
        };
        assert_eq!(rho(&none, 0, 1), 0.0);
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
