//! The fast first estimate: a coarse-to-fine grid on the robust misfit, then
//! Levenberg-Marquardt with Huber re-weighting over (x, y, z, t0). Its Gauss-Newton
//! covariance whitens the SVGD coordinates.

use nalgebra::{Matrix3, Matrix4, Vector4};

use super::likelihood::{Likelihood, LikelihoodKind, OriginTimeMode, Scratch, HUBER_K};
use super::{apply_weights, pick_sigmas, LocateConfig, LocateError, Observation, SearchBox};
use crate::domain::LocalPoint;
use crate::traveltime::{Receiver, TimeAndGradient, TraveltimeModel};

/// Result of the first estimate.
#[derive(Debug, Clone)]
pub struct FirstEstimate {
    /// Hypocentre, local km.
    pub x_km: [f64; 3],
    /// Origin time, s after the reference time.
    pub t0_s: f64,
    /// Gauss-Newton covariance of (x, y, z), km^2 (marginal over t0), regularised.
    pub cov_km2: [[f64; 3]; 3],
    /// Residual sigmas with the model-error term evaluated here, s.
    pub sigma_s: Vec<f64>,
}

/// Robust misfit (-ln L, Laplace, profiled origin time) at many candidate sources at once.
fn misfit_many(
    model: &dyn TraveltimeModel,
    receivers: &[Receiver],
    lik: &Likelihood,
    nodes: &[[f64; 3]],
    buf: &mut Vec<f64>,
) -> Result<Vec<f64>, LocateError> {
    let n = receivers.len();
    let src: Vec<LocalPoint> = nodes.iter().map(|p| LocalPoint::from_array(*p)).collect();
    buf.resize(src.len() * n, 0.0);
    model.batch_times(&src, receivers, buf)?;
    let mut sc = Scratch::default();
    let mut out = Vec::with_capacity(nodes.len());
    for i in 0..nodes.len() {
        // A non-finite misfit must lose: total_cmp sorts -NaN before every number, so one
        // NaN traveltime used to win the grid (issue 4: the box top, 6 of 7 demo events).
        let v = -lik.eval_value(&buf[i * n..(i + 1) * n], &mut sc).0;
        out.push(if v.is_finite() { v } else { f64::INFINITY });
    }
    Ok(out)
}

fn grid(center: [f64; 3], half: [f64; 3], counts: [usize; 3], bbox: &SearchBox) -> Vec<[f64; 3]> {
    let mut v = Vec::with_capacity(counts.iter().product());
    let lin = |c: f64, h: f64, k: usize, m: usize| {
        if m == 1 {
            c
        } else {
            c - h + 2.0 * h * k as f64 / (m - 1) as f64
        }
    };
    for i in 0..counts[0] {
        for j in 0..counts[1] {
            for k in 0..counts[2] {
                v.push(bbox.clamp([
                    lin(center[0], half[0], i, counts[0]),
                    lin(center[1], half[1], j, counts[1]),
                    lin(center[2], half[2], k, counts[2]),
                ]));
            }
        }
    }
    v
}

/// Grid, then Levenberg-Marquardt; never fails on geometry, only on the traveltime model.
pub fn first_estimate(
    model: &dyn TraveltimeModel,
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
) -> Result<FirstEstimate, LocateError> {
    first_estimate_weighted(model, obs, bbox, config, None)
}

/// [`first_estimate`] with a-priori pick weights in [0, 1] dividing the residual sigmas
/// (distance weighting); the returned sigmas include them.
pub fn first_estimate_weighted(
    model: &dyn TraveltimeModel,
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
    weights: Option<&[f64]>,
) -> Result<FirstEstimate, LocateError> {
    let sigmas = |tt: &[f64]| {
        let mut s = pick_sigmas(config, obs, tt);
        apply_weights(&mut s, weights);
        s
    };
    let receivers: Vec<Receiver> = obs.iter().map(|o| o.receiver).collect();
    let t_obs: Vec<f64> = obs.iter().map(|o| o.t_obs_s).collect();
    // Model error needs traveltimes; before any location, use the floor only.
    let sig0 = sigmas(&vec![0.0; obs.len()]);
    let lik = Likelihood::new(
        LikelihoodKind::Laplace,
        OriginTimeMode::Profiled,
        t_obs.clone(),
        sig0,
        config.max_pairs,
    );
    let mut buf = Vec::new();
    let mut tbuf = Vec::new();

    // Level 0: around the station with the earliest pick, wide enough to reach the far picked stations.
    let first = obs
        .iter()
        .min_by(|a, b| a.t_obs_s.total_cmp(&b.t_obs_s))
        .expect("non-empty");
    let c0 = first.receiver.position;
    let reach = obs
        .iter()
        .map(|o| o.receiver.position.horizontal_distance_km(&c0))
        .fold(0.0, f64::max);
    let half_h = (0.6 * reach).clamp(10.0, 200.0);
    let zc = 0.5 * (bbox.z_min_km + bbox.z_max_km.min(bbox.z_min_km + 60.0));
    let zh = 0.5 * (bbox.z_max_km.min(bbox.z_min_km + 60.0) - bbox.z_min_km);
    let mut center = bbox.clamp([c0.x_km, c0.y_km, zc]);
    let mut half = [half_h, half_h, zh];
    let mut counts = [11, 11, 7];
    for _level in 0..4 {
        let nodes = grid(center, half, counts, bbox);
        let m = misfit_many(model, &receivers, &lik, &nodes, &mut tbuf)?;
        let best = m
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        center = nodes[best];
        for k in 0..3 {
            half[k] = 2.0 * half[k] / (counts[k] - 1) as f64;
        }
        counts = [5, 5, 5];
    }

    // Levenberg-Marquardt on (x, y, z, t0) with Huber weights.
    let n = obs.len();
    let mut x = center;
    let eval = |x: [f64; 3],
                buf: &mut Vec<TimeAndGradient>|
     -> Result<Vec<TimeAndGradient>, LocateError> {
        buf.resize(n, TimeAndGradient::default());
        model.batch_with_gradient(&[LocalPoint::from_array(x)], &receivers, buf)?;
        Ok(buf.clone())
    };
    let robust_cost = |tg: &[TimeAndGradient], t0: f64, sigma: &[f64]| -> f64 {
        tg.iter()
            .zip(&t_obs)
            .zip(sigma)
            .map(|((g, o), s)| {
                super::likelihood::rho(LikelihoodKind::Huber, (o - t0 - g.t_s) / s).0
            })
            .sum()
    };
    let t0_of = |tg: &[TimeAndGradient], sigma: &[f64]| -> f64 {
        let e: Vec<f64> = tg.iter().zip(&t_obs).map(|(g, o)| o - g.t_s).collect();
        super::likelihood::solve_origin_time(
            LikelihoodKind::Huber,
            &e,
            sigma,
            &mut Vec::new(),
            &mut Vec::new(),
        )
    };
    let mut tg = eval(x, &mut buf)?;
    let mut sigma = sigmas(&tg.iter().map(|g| g.t_s).collect::<Vec<_>>());
    let mut t0 = t0_of(&tg, &sigma);
    let mut cost = robust_cost(&tg, t0, &sigma);
    let mut lambda = 1e-3;
    let mut hess = Matrix4::<f64>::zeros();
    for _iter in 0..30 {
        let mut h = Matrix4::<f64>::zeros();
        let mut b = Vector4::<f64>::zeros();
        for i in 0..n {
            let r = (t_obs[i] - t0 - tg[i].t_s) / sigma[i];
            let w = if r.abs() <= HUBER_K {
                1.0
            } else {
                HUBER_K / r.abs()
            };
            let g = tg[i].grad_s_per_km;
            let j = Vector4::new(g[0], g[1], g[2], 1.0) / sigma[i];
            h += w * j * j.transpose();
            b += w * j * r;
        }
        hess = h;
        let mut improved = false;
        for _try in 0..8 {
            let mut a = h;
            for k in 0..4 {
                a[(k, k)] += lambda * h[(k, k)].max(1e-9) + 1e-9;
            }
            let Some(d) = a.cholesky().map(|c| c.solve(&b)) else {
                lambda *= 10.0;
                continue;
            };
            let xn = bbox.clamp([x[0] + d[0], x[1] + d[1], x[2] + d[2]]);
            let tgn = eval(xn, &mut buf)?;
            let t0n = t0_of(&tgn, &sigma);
            let cn = robust_cost(&tgn, t0n, &sigma);
            if cn < cost {
                let moved =
                    ((xn[0] - x[0]).powi(2) + (xn[1] - x[1]).powi(2) + (xn[2] - x[2]).powi(2))
                        .sqrt();
                x = xn;
                tg = tgn;
                t0 = t0n;
                let small = cost - cn < 1e-6 * cost.max(1.0) || moved < 1e-4;
                cost = cn;
                lambda = (lambda * 0.3).max(1e-7);
                improved = !small;
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    sigma = sigmas(&tg.iter().map(|g| g.t_s).collect::<Vec<_>>());
    // Marginal covariance of the hypocentre: the 3x3 block of the inverse 4x4 Gauss-Newton
    // matrix. Regularised so that an unconstrained axis gets the box size, not infinity.
    let extent = [
        bbox.x_max_km - bbox.x_min_km,
        bbox.y_max_km - bbox.y_min_km,
        bbox.z_max_km - bbox.z_min_km,
    ];
    let mut hreg = hess;
    for k in 0..3 {
        hreg[(k, k)] += 1.0 / (0.25 * extent[k]).powi(2);
    }
    hreg[(3, 3)] += 1e-6;
    let inv = hreg.try_inverse().unwrap_or_else(Matrix4::identity);
    let mut c = Matrix3::<f64>::zeros();
    for i in 0..3 {
        for j in 0..3 {
            c[(i, j)] = inv[(i, j)];
        }
    }
    // a floor of 10 m keeps the whitening invertible for a perfectly constrained event
    for k in 0..3 {
        c[(k, k)] = c[(k, k)].max(1e-4);
    }
    let mut cov = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            cov[i][j] = c[(i, j)];
        }
    }
    Ok(FirstEstimate {
        x_km: x,
        t0_s: t0,
        cov_km2: cov,
        sigma_s: sigma,
    })
}
