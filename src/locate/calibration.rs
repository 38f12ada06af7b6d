//! Calibration study: locate synthetic events with known truth and count how often the
//! reported 68 % / 95 % regions hold it. Shared by the calibration test and the bench.

use rayon::prelude::*;
use std::time::Instant;

use super::{locate, LocateConfig, Observation, SearchBox};
use crate::domain::LocalPoint;
use crate::locate::summary::{CHI2_2_68, CHI2_2_95, Z_95};
use crate::synth::SynthEvent;
use crate::traveltime::{Receiver, TraveltimeModel};

/// Coverage and accuracy over a set of synthetic events.
#[derive(Debug, Clone, Default)]
pub struct CoverageReport {
    /// Events located.
    pub n: usize,
    /// Events that failed to locate.
    pub failed: usize,
    /// Fraction with the truth inside the 68 % horizontal ellipse.
    pub h68: f64,
    /// ... inside the 95 % horizontal ellipse.
    pub h95: f64,
    /// ... inside the 68 % depth interval.
    pub z68: f64,
    /// ... inside the 95 % depth interval.
    pub z95: f64,
    /// Coverage (h68, h95, z68, z95) had the regions been Gaussian (chi-square scales).
    pub gaussian: [f64; 4],
    /// Median horizontal error of the mean, km.
    pub median_h_err_km: f64,
    /// Median absolute depth error of the mean, km.
    pub median_z_err_km: f64,
    /// Per-event wall times, s (sorted).
    pub times_s: Vec<f64>,
    /// Median number of SVGD iterations.
    pub median_iterations: f64,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One located synthetic event: its posterior, the observations it was located from, and the
/// wall time, s.
pub type LocatedSynth = Option<(super::Posterior, Vec<Observation>, f64)>;

/// Locates every event (rayon over events); `sigma_of(event, pick)` is the uncertainty the
/// locator is told for each pick. The locate seed of event k is `config.seed + k`.
pub fn locate_all(
    model: &dyn TraveltimeModel,
    stations: &[LocalPoint],
    events: &[SynthEvent],
    bbox: &SearchBox,
    config: &LocateConfig,
    pick_sigma_s: [f64; 2],
) -> Vec<LocatedSynth> {
    events
        .par_iter()
        .enumerate()
        .map(|(k, ev)| {
            let obs: Vec<Observation> = ev
                .picks
                .iter()
                .map(|p| Observation {
                    receiver: Receiver {
                        phase: p.phase,
                        position: stations[p.station],
                    },
                    t_obs_s: p.t_s,
                    pick_sigma_s: pick_sigma_s[p.phase.index()],
                })
                .collect();
            let t = Instant::now();
            let post = locate(
                model,
                &obs,
                bbox,
                config,
                config.seed.wrapping_add(k as u64),
            )
            .ok()?;
            Some((post, obs, t.elapsed().as_secs_f64()))
        })
        .collect()
}

/// Locates every event (rayon over events) and measures coverage of the reported regions.
/// `pick_sigma_s(phase_index)` is the uncertainty the locator is told.
pub fn coverage(
    model: &dyn TraveltimeModel,
    stations: &[LocalPoint],
    events: &[SynthEvent],
    bbox: &SearchBox,
    config: &LocateConfig,
    pick_sigma_s: [f64; 2],
) -> CoverageReport {
    let located = locate_all(model, stations, events, bbox, config, pick_sigma_s);
    coverage_of(events, &located)
}

/// Coverage and accuracy of located events against their truth (`located[k]` belongs to
/// `events[k]`).
pub fn coverage_of(events: &[SynthEvent], located: &[LocatedSynth]) -> CoverageReport {
    let results: Vec<Option<([f64; 3], [[f64; 3]; 3], [f64; 3], f64, usize, [f64; 4])>> = events
        .iter()
        .zip(located)
        .map(|(ev, l)| {
            let (post, _, dt) = l.as_ref()?;
            Some((
                post.mean_km,
                post.cov_km2,
                ev.truth_km,
                *dt,
                post.iterations,
                [
                    post.h2_quantiles[0],
                    post.h2_quantiles[1],
                    post.z_quantiles[0],
                    post.z_quantiles[1],
                ],
            ))
        })
        .collect();
    let mut r = CoverageReport::default();
    let (mut he, mut ze, mut its) = (Vec::new(), Vec::new(), Vec::new());
    let (mut h68, mut h95, mut z68, mut z95) = (0, 0, 0, 0);
    let mut gauss = [0usize; 4];
    for res in results {
        let Some((m, c, t, dt, it, q)) = res else {
            r.failed += 1;
            continue;
        };
        r.n += 1;
        let (dx, dy, dz) = (t[0] - m[0], t[1] - m[1], t[2] - m[2]);
        let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
        let d2 = if det > 0.0 {
            (c[1][1] * dx * dx - 2.0 * c[0][1] * dx * dy + c[0][0] * dy * dy) / det
        } else {
            f64::INFINITY
        };
        // the regions as reported (empirical scales of the particles)
        h68 += usize::from(d2 <= q[0]);
        h95 += usize::from(d2 <= q[1]);
        let sz = c[2][2].max(0.0).sqrt();
        z68 += usize::from(dz.abs() <= q[2] * sz);
        z95 += usize::from(dz.abs() <= q[3] * sz);
        gauss[0] += usize::from(d2 <= CHI2_2_68);
        gauss[1] += usize::from(d2 <= CHI2_2_95);
        gauss[2] += usize::from(dz.abs() <= sz);
        gauss[3] += usize::from(dz.abs() <= Z_95 * sz);
        he.push(dx.hypot(dy));
        ze.push(dz.abs());
        r.times_s.push(dt);
        its.push(it as f64);
    }
    let n = r.n.max(1) as f64;
    r.h68 = h68 as f64 / n;
    r.h95 = h95 as f64 / n;
    r.z68 = z68 as f64 / n;
    r.z95 = z95 as f64 / n;
    r.gaussian = gauss.map(|g| g as f64 / n);
    r.median_h_err_km = median(&mut he);
    r.median_z_err_km = median(&mut ze);
    r.median_iterations = median(&mut its);
    r.times_s.sort_by(|a, b| a.total_cmp(b));
    r
}
