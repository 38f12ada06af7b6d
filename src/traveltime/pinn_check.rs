//! Accuracy of a trained network against a reference solver over its whole box
//! (`eikoloc model check`, and the validation errors written into every manifest).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::pinn::{
    DistanceBin, InputKind, ModelBounds, PhaseErrors, PinnModel, ValidationReport, VelocityInfo,
};
use super::{TimeAndGradient, TraveltimeError, TraveltimeModel};
use crate::domain::{LocalPoint, Phase};

/// One validation row: phase, source, receiver.
pub type Row = (Phase, LocalPoint, LocalPoint);

/// `n` rows per phase drawn uniformly over the box of `bounds` (for the radial architecture:
/// distance, source depth and receiver depth uniform, azimuth random; for the 3-D one: source
/// and receiver uniform in their boxes).
pub fn sample_rows(
    inputs: InputKind,
    bounds: &ModelBounds,
    phases: &[Phase],
    n: usize,
    seed: u64,
) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(n * phases.len());
    for &p in phases {
        for _ in 0..n {
            let zs = rng.gen_range(bounds.source_depth_min_km..=bounds.source_depth_max_km);
            let zr = if bounds.receiver_depth_max_km > bounds.receiver_depth_min_km {
                rng.gen_range(bounds.receiver_depth_min_km..=bounds.receiver_depth_max_km)
            } else {
                bounds.receiver_depth_min_km
            };
            let (s, r) = match inputs {
                InputKind::Radial1d => {
                    let d = rng.gen_range(0.0..=bounds.max_distance_km);
                    let az: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
                    let rx = rng.gen_range(-20.0..20.0);
                    let ry = rng.gen_range(-20.0..20.0);
                    (
                        LocalPoint::new(rx + d * az.cos(), ry + d * az.sin(), zs),
                        LocalPoint::new(rx, ry, zr),
                    )
                }
                InputKind::Cartesian3d => {
                    let h = bounds.cartesian_half_width_km();
                    let mut c = || rng.gen_range(-h..=h);
                    (LocalPoint::new(c(), c(), zs), LocalPoint::new(c(), c(), zr))
                }
            };
            rows.push((p, s, r));
        }
    }
    rows
}

/// Reference traveltimes and gradients for `rows`, in parallel.
pub fn reference_values(
    reference: &dyn TraveltimeModel,
    rows: &[Row],
) -> Result<Vec<TimeAndGradient>, TraveltimeError> {
    rows.par_iter()
        .map(|(p, s, r)| reference.traveltime_and_gradient(*p, *s, *r))
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Errors of `pred` against `truth` on `rows`, per phase and by distance bin.
pub fn summarize(
    reference_name: &str,
    seed: u64,
    rows: &[Row],
    pred: &[TimeAndGradient],
    truth: &[TimeAndGradient],
    max_distance_km: f64,
) -> ValidationReport {
    let edges: Vec<f64> = [
        0.0, 5.0, 10.0, 20.0, 40.0, 70.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
    ]
    .into_iter()
    .filter(|&e| e < max_distance_km)
    .chain([max_distance_km + 1e-9])
    .collect();
    let mut phases = Vec::new();
    for phase in Phase::ALL {
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].0 == phase).collect();
        if idx.is_empty() {
            continue;
        }
        let mut abs: Vec<f64> = Vec::with_capacity(idx.len());
        let mut rel_sum = 0.0;
        let mut grad_rel = Vec::with_capacity(idx.len());
        let mut bins: Vec<Vec<f64>> = vec![Vec::new(); edges.len() - 1];
        for &i in &idx {
            let e = (pred[i].t_s - truth[i].t_s).abs();
            abs.push(e);
            rel_sum += e / truth[i].t_s.max(1e-6);
            let gt = truth[i].grad_s_per_km;
            let gp = pred[i].grad_s_per_km;
            let nt = (gt[0] * gt[0] + gt[1] * gt[1] + gt[2] * gt[2]).sqrt();
            let nd = ((gp[0] - gt[0]).powi(2) + (gp[1] - gt[1]).powi(2) + (gp[2] - gt[2]).powi(2))
                .sqrt();
            if nt > 0.0 {
                grad_rel.push(nd / nt);
            }
            let d = rows[i].1.horizontal_distance_km(&rows[i].2);
            if let Some(b) = edges.windows(2).position(|w| d >= w[0] && d < w[1]) {
                bins[b].push(e);
            }
        }
        let n = abs.len();
        let mae = abs.iter().sum::<f64>() / n as f64;
        abs.sort_by(f64::total_cmp);
        grad_rel.sort_by(f64::total_cmp);
        let by_distance = bins
            .into_iter()
            .enumerate()
            .map(|(b, mut v)| {
                v.sort_by(f64::total_cmp);
                DistanceBin {
                    from_km: edges[b],
                    to_km: edges[b + 1].min(max_distance_km),
                    n: v.len(),
                    mae_s: if v.is_empty() {
                        f64::NAN
                    } else {
                        v.iter().sum::<f64>() / v.len() as f64
                    },
                    p99_abs_s: quantile(&v, 0.99),
                }
            })
            .collect();
        phases.push(PhaseErrors {
            phase,
            n,
            rmae: rel_sum / n as f64,
            mae_s: mae,
            median_abs_s: quantile(&abs, 0.5),
            p99_abs_s: quantile(&abs, 0.99),
            max_abs_s: *abs.last().unwrap_or(&f64::NAN),
            grad_median_rel: quantile(&grad_rel, 0.5),
            by_distance,
        });
    }
    ValidationReport {
        reference: reference_name.to_string(),
        seed,
        phases,
    }
}

/// The exact reference solver for the velocity model recorded in a manifest; refuses a
/// manifest whose recorded model does not hash to its recorded hash.
pub fn reference_for(info: &VelocityInfo) -> Result<Box<dyn TraveltimeModel>, String> {
    use crate::velocity::{GradientModel, LayeredModel, VelocityModel};
    let check = |h: String| {
        if h == info.hash {
            Ok(())
        } else {
            Err(format!(
                "recorded velocity model hashes to {h}, manifest says {}",
                info.hash
            ))
        }
    };
    if let Some(l) = &info.layered {
        let m = LayeredModel::new(l.layers().to_vec()).map_err(|e| e.to_string())?;
        check(m.content_hash())?;
        return Ok(Box::new(crate::traveltime::LayeredExact::new(m)));
    }
    if let Some(g) = &info.gradient {
        let m = GradientModel::new(
            g.z0_km,
            g.vp0_km_s,
            g.vs0_km_s,
            g.gradient_p_per_s,
            g.gradient_s_per_s,
        )
        .map_err(|e| e.to_string())?;
        check(m.content_hash())?;
        return Ok(Box::new(crate::traveltime::AnalyticModel::new(m)));
    }
    Err(format!(
        "velocity model kind {:?} has no exact reference solver",
        info.kind
    ))
}

/// Compares `model` with `reference` on `n` fresh rows per phase over the model's box.
pub fn validate(
    model: &PinnModel,
    reference: &dyn TraveltimeModel,
    n: usize,
    seed: u64,
) -> Result<ValidationReport, TraveltimeError> {
    let m = model.manifest();
    let rows = sample_rows(m.architecture.inputs, &m.bounds, &m.phases, n, seed);
    let truth = reference_values(reference, &rows)?;
    let pred = model.eval_pairs(&rows, true)?;
    Ok(summarize(
        &reference.name(),
        seed,
        &rows,
        &pred,
        &truth,
        m.bounds.max_distance_km,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traveltime::AnalyticModel;
    use crate::velocity::GradientModel;

    #[test]
    fn a_perfect_prediction_has_zero_error_and_an_offset_is_measured() {
        let b = ModelBounds {
            max_distance_km: 100.0,
            source_depth_min_km: 0.0,
            source_depth_max_km: 20.0,
            receiver_depth_min_km: -2.0,
            receiver_depth_max_km: 0.0,
        };
        let rows = sample_rows(InputKind::Radial1d, &b, &Phase::ALL, 500, 1);
        assert!(rows
            .iter()
            .all(|(_, s, r)| s.horizontal_distance_km(r) <= 100.0 + 1e-9
                && (0.0..=20.0).contains(&s.z_km)));
        let oracle = AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap());
        let truth = reference_values(&oracle, &rows).unwrap();
        let rep = summarize("oracle", 1, &rows, &truth, &truth, 100.0);
        assert_eq!(rep.phases.len(), 2);
        assert!(rep
            .phases
            .iter()
            .all(|p| p.rmae == 0.0 && p.max_abs_s == 0.0));
        let shifted: Vec<_> = truth
            .iter()
            .map(|t| TimeAndGradient {
                t_s: t.t_s + 0.01,
                ..*t
            })
            .collect();
        let rep = summarize("oracle", 1, &rows, &shifted, &truth, 100.0);
        for p in &rep.phases {
            assert!((p.median_abs_s - 0.01).abs() < 1e-9 && (p.p99_abs_s - 0.01).abs() < 1e-9);
            assert_eq!(p.by_distance.iter().map(|b| b.n).sum::<usize>(), 500);
        }
    }
}
