//! Stein variational gradient descent over the hypocentre (Liu & Wang 2016), in coordinates
//! whitened by the first estimate's covariance so one isotropic RBF kernel (median-heuristic
//! bandwidth) and one step size fit every event. Then, optionally, Metropolis steps with the
//! exact target, which remove SVGD's finite-particle under-dispersion without tuning.

use nalgebra::Matrix3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::estimate::FirstEstimate;
use super::likelihood::{fast_exp, Likelihood, Scratch};
use super::{LocateConfig, LocateError, Observation, Posterior, SearchBox};
use crate::domain::LocalPoint;
use crate::traveltime::{Receiver, TimeAndGradient, TraveltimeModel};

/// SVGD iterations between convergence checks; two calm checks in a row stop it.
const CHECK_EVERY: usize = 5;

struct Target<'a> {
    model: &'a dyn TraveltimeModel,
    receivers: Vec<Receiver>,
    lik: Likelihood,
    config: &'a LocateConfig,
    bbox: SearchBox,
    buf: Vec<TimeAndGradient>,
    tbuf: Vec<f64>,
    t: Vec<f64>,
    g: Vec<[f64; 3]>,
    sc: Scratch,
}

impl Target<'_> {
    /// Log posterior, its gradient and the profiled origin time at every point.
    fn eval(&mut self, xs: &[[f64; 3]]) -> Result<Vec<(f64, [f64; 3], f64)>, LocateError> {
        let n = self.receivers.len();
        let src: Vec<LocalPoint> = xs.iter().map(|p| LocalPoint::from_array(*p)).collect();
        self.buf.resize(src.len() * n, TimeAndGradient::default());
        self.model
            .batch_with_gradient(&src, &self.receivers, &mut self.buf)?;
        let mut out = Vec::with_capacity(xs.len());
        for (i, x) in xs.iter().enumerate() {
            for j in 0..n {
                self.t[j] = self.buf[i * n + j].t_s;
                self.g[j] = self.buf[i * n + j].grad_s_per_km;
            }
            let l = self.lik.eval(&self.t, &self.g, &mut self.sc);
            let (mut v, mut g) = (l.value, l.grad);
            if let Some(dp) = self.config.depth_prior {
                let u = (x[2] - dp.mean_km) / dp.sigma_km;
                v -= 0.5 * u * u;
                g[2] -= u / dp.sigma_km;
            }
            let b = &self.bbox;
            if !(v.is_finite() && g.iter().all(|c| c.is_finite())) {
                // a failed traveltime is no evidence: reject the point, move nothing
                v = f64::NEG_INFINITY;
                g = [0.0; 3];
            }
            if x[0] < b.x_min_km
                || x[0] > b.x_max_km
                || x[1] < b.y_min_km
                || x[1] > b.y_max_km
                || x[2] < b.z_min_km
                || x[2] > b.z_max_km
            {
                v = f64::NEG_INFINITY;
            }
            out.push((v, g, l.t0_s));
        }
        Ok(out)
    }
}

impl Target<'_> {
    /// Log posterior with the origin time integrated out (Laplace; other forms as in `eval`)
    /// and the profiled origin time at every point, traveltimes only: the Metropolis target.
    fn eval_values(&mut self, xs: &[[f64; 3]]) -> Result<Vec<(f64, f64)>, LocateError> {
        let n = self.receivers.len();
        let src: Vec<LocalPoint> = xs.iter().map(|p| LocalPoint::from_array(*p)).collect();
        self.tbuf.resize(src.len() * n, 0.0);
        self.model
            .batch_times(&src, &self.receivers, &mut self.tbuf)?;
        let mut out = Vec::with_capacity(xs.len());
        for (i, x) in xs.iter().enumerate() {
            let (mut v, t0) = self
                .lik
                .eval_marginal_value(&self.tbuf[i * n..(i + 1) * n], &mut self.sc);
            if let Some(dp) = self.config.depth_prior {
                let u = (x[2] - dp.mean_km) / dp.sigma_km;
                v -= 0.5 * u * u;
            }
            let b = &self.bbox;
            if !v.is_finite()
                || x[0] < b.x_min_km
                || x[0] > b.x_max_km
                || x[1] < b.y_min_km
                || x[1] > b.y_max_km
                || x[2] < b.z_min_km
                || x[2] > b.z_max_km
            {
                v = f64::NEG_INFINITY;
            }
            out.push((v, t0));
        }
        Ok(out)
    }
}

/// Buffers of [`stein_direction`], reused across iterations: positions, gradients and the
/// direction by coordinate (structure of arrays, so the per-pair loops vectorise), and the
/// upper triangle of squared distances row by row.
#[derive(Default)]
struct KernelWork {
    u: [Vec<f64>; 3],
    g: [Vec<f64>; 3],
    p: [Vec<f64>; 3],
    tri: Vec<f64>,
    all: Vec<f64>,
    krow: Vec<f64>,
}

/// The SVGD direction phi_i = 1/n sum_j k(u_j, u_i) grad_j + grad_{u_j} k(u_j, u_i) with the
/// RBF kernel k = exp(-|u_i - u_j|^2 / h), h = med(d^2) / ln(n + 1) (median heuristic).
/// The kernel is symmetric: one exp per pair.
fn stein_direction(us: &[[f64; 3]], grads: &[[f64; 3]], w: &mut KernelWork, phi: &mut [[f64; 3]]) {
    let np = us.len();
    for c in 0..3 {
        w.u[c].clear();
        w.u[c].extend(us.iter().map(|u| u[c]));
        w.g[c].clear();
        w.g[c].extend(grads.iter().map(|g| g[c]));
        // each particle's own term: k(u_i, u_i) = 1, no repulsion
        w.p[c].clear();
        w.p[c].extend_from_slice(&w.g[c]);
    }
    w.tri.clear();
    w.tri.resize(np * np.saturating_sub(1) / 2, 0.0);
    let mut off = 0;
    for i in 0..np {
        let m = np - i - 1;
        let (x, y, z) = (w.u[0][i], w.u[1][i], w.u[2][i]);
        let row = &mut w.tri[off..off + m];
        for (((d, xj), yj), zj) in row
            .iter_mut()
            .zip(&w.u[0][i + 1..])
            .zip(&w.u[1][i + 1..])
            .zip(&w.u[2][i + 1..])
        {
            let (dx, dy, dz) = (x - xj, y - yj, z - zj);
            *d = dx * dx + dy * dy + dz * dz;
        }
        off += m;
    }
    w.all.clear();
    w.all.extend_from_slice(&w.tri);
    let mid = w.all.len() / 2;
    let med = if w.all.is_empty() {
        1.0
    } else {
        *w.all.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
    };
    let h = (med / ((np + 1) as f64).ln()).max(1e-8);
    let inv_h = 1.0 / h;
    let c2 = 2.0 * inv_h;
    w.krow.resize(np, 0.0);
    let mut off = 0;
    for i in 0..np {
        let m = np - i - 1;
        let kr = &mut w.krow[..m];
        for (k, d) in kr.iter_mut().zip(&w.tri[off..off + m]) {
            *k = fast_exp(-d * inv_h);
        }
        off += m;
        for c in 0..3 {
            let (ui, gi) = (w.u[c][i], w.g[c][i]);
            let uj = &w.u[c][i + 1..];
            let gj = &w.g[c][i + 1..];
            // particle i pushes on every j > i (a loop without a carried sum: it vectorises)
            let (lo, hi) = w.p[c].split_at_mut(i + 1);
            for ((pj, k), u) in hi.iter_mut().zip(kr.iter()).zip(uj) {
                *pj += k * gi - c2 * k * (ui - u);
            }
            // and every j > i on particle i
            let mut acc = 0.0;
            for ((k, u), g) in kr.iter().zip(uj).zip(gj) {
                acc += k * g + c2 * k * (ui - u);
            }
            lo[i] += acc;
        }
    }
    let inv_n = 1.0 / np as f64;
    for (i, p) in phi.iter_mut().enumerate() {
        for c in 0..3 {
            p[c] = w.p[c][i] * inv_n;
        }
    }
}

fn to_mat(c: &[[f64; 3]; 3]) -> Matrix3<f64> {
    Matrix3::from_fn(|i, j| c[i][j])
}

/// Particle mean and covariance.
pub fn mean_cov(xs: &[[f64; 3]]) -> ([f64; 3], [[f64; 3]; 3]) {
    let n = xs.len().max(1) as f64;
    let mut m = [0.0; 3];
    for x in xs {
        for k in 0..3 {
            m[k] += x[k] / n;
        }
    }
    let mut c = [[0.0; 3]; 3];
    for x in xs {
        for i in 0..3 {
            for j in 0..3 {
                c[i][j] += (x[i] - m[i]) * (x[j] - m[j]) / (n - 1.0).max(1.0);
            }
        }
    }
    (m, c)
}

/// The order statistic ceil(p (n + 1)) of `v` (clamped to the largest): for n exchangeable
/// draws a new draw falls below it with probability p.
fn order_quantile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let k = ((p * (v.len() + 1) as f64).ceil() as usize).clamp(1, v.len());
    v[k - 1]
}

/// Empirical region scales of the particles: squared horizontal Mahalanobis radius and
/// standardised depth offset holding 68 % and 95 %.
pub fn region_quantiles(
    xs: &[[f64; 3]],
    mean: &[f64; 3],
    cov: &[[f64; 3]; 3],
) -> ([f64; 2], [f64; 2]) {
    let det = cov[0][0] * cov[1][1] - cov[0][1] * cov[1][0];
    let sz = cov[2][2].max(1e-12).sqrt();
    let mut h2: Vec<f64> = xs
        .iter()
        .map(|x| {
            let (dx, dy) = (x[0] - mean[0], x[1] - mean[1]);
            if det > 0.0 {
                (cov[1][1] * dx * dx - 2.0 * cov[0][1] * dx * dy + cov[0][0] * dy * dy) / det
            } else {
                0.0
            }
        })
        .collect();
    let mut z: Vec<f64> = xs.iter().map(|x| (x[2] - mean[2]).abs() / sz).collect();
    (
        [
            order_quantile(&mut h2, 0.6827),
            order_quantile(&mut h2, 0.95),
        ],
        [order_quantile(&mut z, 0.6827), order_quantile(&mut z, 0.95)],
    )
}

/// Runs SVGD (and the Metropolis refinement) from a first estimate.
pub fn run(
    model: &dyn TraveltimeModel,
    obs: &[Observation],
    bbox: &SearchBox,
    config: &LocateConfig,
    first: &FirstEstimate,
    seed: u64,
) -> Result<Posterior, LocateError> {
    let n_obs = obs.len();
    let np = config.n_particles;
    let lik = Likelihood::new(
        config.likelihood,
        config.origin_time,
        obs.iter().map(|o| o.t_obs_s).collect(),
        first.sigma_s.clone(),
        config.max_pairs,
    )
    .with_noise_scale(config.noise_scale);
    let mut target = Target {
        model,
        receivers: obs.iter().map(|o| o.receiver).collect(),
        lik,
        config,
        bbox: *bbox,
        buf: Vec::new(),
        tbuf: Vec::new(),
        t: vec![0.0; n_obs],
        g: vec![[0.0; 3]; n_obs],
        sc: Scratch::default(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // Whitening: x = m + L u with L L^T the first estimate's covariance.
    let m0 = first.x_km;
    let l = to_mat(&first.cov_km2)
        .cholesky()
        .map(|c| c.l())
        .unwrap_or_else(|| Matrix3::from_diagonal(&nalgebra::Vector3::new(1.0, 1.0, 1.0)));
    let lt = l.transpose();
    let linv = l.try_inverse().unwrap_or_else(Matrix3::identity);
    let to_x = |u: &[f64; 3]| -> [f64; 3] {
        let v = l * nalgebra::Vector3::new(u[0], u[1], u[2]);
        [m0[0] + v[0], m0[1] + v[1], m0[2] + v[2]]
    };
    let to_u = |x: &[f64; 3]| -> [f64; 3] {
        let v = linv * nalgebra::Vector3::new(x[0] - m0[0], x[1] - m0[1], x[2] - m0[2]);
        [v[0], v[1], v[2]]
    };

    let mut xs: Vec<[f64; 3]> = (0..np)
        .map(|_| {
            let u: [f64; 3] = [
                rng.sample(StandardNormal),
                rng.sample(StandardNormal),
                rng.sample(StandardNormal),
            ];
            bbox.clamp(to_x(&u))
        })
        .collect();
    let mut us: Vec<[f64; 3]> = xs.iter().map(to_u).collect();
    let mut m_adam = vec![[0.0; 3]; np];
    let mut v_adam = vec![[0.0; 3]; np];
    let (b1, b2) = (0.9f64, 0.99f64);
    let mut grads_u = vec![[0.0; 3]; np];
    let mut phi = vec![[0.0; 3]; np];
    let mut kw = KernelWork::default();
    let mut iterations = 0;
    let mut converged = false;
    let mut calm = 0;
    let mut last_moments: Option<([f64; 3], [[f64; 3]; 3])> = None;
    let mut evals = target.eval(&xs)?;
    for it in 0..config.max_iterations {
        iterations = it + 1;
        for i in 0..np {
            let gx = nalgebra::Vector3::from(evals[i].1);
            let gu = lt * gx;
            grads_u[i] = [gu[0], gu[1], gu[2]];
        }
        stein_direction(&us, &grads_u, &mut kw, &mut phi);
        // Adam ascent along phi
        let t = (it + 1) as i32;
        let mut moved = 0.0;
        let lr = config.step / (1.0 + it as f64 / 50.0).sqrt();
        for i in 0..np {
            let mut step = [0.0; 3];
            for c in 0..3 {
                m_adam[i][c] = b1 * m_adam[i][c] + (1.0 - b1) * phi[i][c];
                v_adam[i][c] = b2 * v_adam[i][c] + (1.0 - b2) * phi[i][c] * phi[i][c];
                let mh = m_adam[i][c] / (1.0 - b1.powi(t));
                let vh = v_adam[i][c] / (1.0 - b2.powi(t));
                step[c] = lr * mh / (vh.sqrt() + 1e-8);
            }
            let un = [us[i][0] + step[0], us[i][1] + step[1], us[i][2] + step[2]];
            let xn = bbox.clamp(to_x(&un));
            let uc = to_u(&xn);
            moved += ((uc[0] - us[i][0]).powi(2)
                + (uc[1] - us[i][1]).powi(2)
                + (uc[2] - us[i][2]).powi(2))
            .sqrt();
            us[i] = uc;
            xs[i] = xn;
        }
        let _ = moved;
        evals = target.eval(&xs)?;
        // Convergence is judged on the ensemble, not single particles: the robust likelihood's
        // gradient is discontinuous, so particles jitter while the distribution is settled.
        if (it + 1) % CHECK_EVERY == 0 {
            let (m, c) = mean_cov(&us);
            if let Some((pm, pc)) = last_moments {
                let dm = (0..3).map(|k| (m[k] - pm[k]).abs()).fold(0.0, f64::max);
                let dc = (0..3)
                    .flat_map(|i| (0..3).map(move |j| (i, j)))
                    .map(|(i, j)| (c[i][j] - pc[i][j]).abs())
                    .fold(0.0, f64::max);
                let scale = (c[0][0] + c[1][1] + c[2][2]).max(1e-6) / 3.0;
                calm = if dm < config.tolerance * scale.sqrt()
                    && dc < 2.0 * config.tolerance * scale
                {
                    calm + 1
                } else {
                    0
                };
            }
            last_moments = Some((m, c));
            if it + 1 >= config.min_iterations && calm >= 2 {
                converged = true;
                break;
            }
        }
    }

    // Metropolis refinement: random walk with the (scaled) particle covariance, exact target.
    let mut accepted = 0usize;
    let mut proposed = 0usize;
    if config.mh_steps > 0 {
        // the exact target (origin time marginalised), not SVGD's profiled one
        for (e, v) in evals.iter_mut().zip(target.eval_values(&xs)?) {
            *e = (v.0, [0.0; 3], v.1);
        }
        let (_, c) = mean_cov(&xs);
        let scale = 2.38 / 3f64.sqrt();
        let lp = (to_mat(&c) * scale * scale + Matrix3::identity() * 1e-8)
            .cholesky()
            .map(|c| c.l())
            .unwrap_or_else(|| l * scale);
        for _ in 0..config.mh_steps {
            let props: Vec<[f64; 3]> = xs
                .iter()
                .map(|x| {
                    let z = nalgebra::Vector3::new(
                        rng.sample(StandardNormal),
                        rng.sample(StandardNormal),
                        rng.sample(StandardNormal),
                    );
                    let d = lp * z;
                    [x[0] + d[0], x[1] + d[1], x[2] + d[2]]
                })
                .collect();
            let pe = target.eval_values(&props)?;
            for i in 0..np {
                proposed += 1;
                let a = pe[i].0 - evals[i].0;
                if a >= 0.0 || rng.gen::<f64>().ln() < a {
                    xs[i] = props[i];
                    // the gradient is not used after SVGD
                    evals[i] = (pe[i].0, [0.0; 3], pe[i].1);
                    accepted += 1;
                }
            }
        }
    }

    let (mean, cov) = mean_cov(&xs);
    let (h2_quantiles, z_quantiles) = region_quantiles(&xs, &mean, &cov);
    let best = (0..np)
        .max_by(|&a, &b| evals[a].0.total_cmp(&evals[b].0))
        .unwrap_or(0);
    let map = xs[best];
    // Predictions at the mean; sigmas re-evaluated there (model error grows with T).
    let at_mean = target.eval(&[mean])?;
    let tt: Vec<f64> = target.buf[..n_obs].iter().map(|g| g.t_s).collect();
    // the sigmas the likelihood used, so weights and outlier flags match the solution
    let sigma_s = target.lik.sigma_s.clone();
    let t0_mean = at_mean[0].2;
    let t0s: Vec<f64> = evals.iter().map(|e| e.2).collect();
    let t0_avg = t0s.iter().sum::<f64>() / np as f64;
    let t0_var = t0s.iter().map(|t| (t - t0_avg).powi(2)).sum::<f64>() / (np - 1) as f64;
    // conditional origin-time variance given the hypocentre: 1 / sum(1 / sigma^2)
    let cond = 1.0 / sigma_s.iter().map(|s| 1.0 / (s * s)).sum::<f64>();
    let residual_s: Vec<f64> = obs
        .iter()
        .zip(&tt)
        .map(|(o, t)| o.t_obs_s - t0_mean - t)
        .collect();
    Ok(Posterior {
        particles: xs
            .iter()
            .zip(&t0s)
            .map(|(x, t)| [x[0], x[1], x[2], *t])
            .collect(),
        log_post: evals.iter().map(|e| e.0).collect(),
        mean_km: mean,
        map_km: map,
        cov_km2: cov,
        h2_quantiles,
        z_quantiles,
        t0_s: t0_mean,
        t0_sigma_s: (t0_var + cond).sqrt(),
        sigma_s,
        weights: vec![1.0; n_obs],
        predicted_tt_s: tt,
        residual_s,
        first_estimate_km: first.x_km,
        iterations,
        converged,
        mh_acceptance: if proposed > 0 {
            accepted as f64 / proposed as f64
        } else {
            f64::NAN
        },
    })
}
