//! Calibration of the locator's reported regions on model-consistent synthetic events:
//! the truth must fall inside the 95 % region 93-97 % of the time and inside the 68 % region
//! 65-71 % of the time (the bands), horizontally and in depth. The picks carry known
//! noise and no model error, so the locator is told exactly that
//! (`LocateConfig::known_noise()`: the default without its model-error term, which would
//! widen the regions for an error these picks do not have).

use eikoloc::domain::LocalPoint;
use eikoloc::locate::calibration::coverage;
use eikoloc::locate::{LocateConfig, SearchBox};
use eikoloc::synth::{generate, NoiseKind, SynthConfig};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;

/// A 14-station local network (ring plus inner stations), elevations to 1.2 km.
pub fn network() -> Vec<LocalPoint> {
    let mut v = Vec::new();
    for k in 0..9 {
        let a = k as f64 * 40.0_f64.to_radians() + 0.3;
        v.push(LocalPoint::new(
            35.0 * a.sin(),
            35.0 * a.cos(),
            -0.1 * (k % 4) as f64 - 0.2,
        ));
    }
    for (x, y) in [
        (5.0, 3.0),
        (-8.0, 10.0),
        (12.0, -9.0),
        (-6.0, -12.0),
        (0.0, 20.0),
    ] {
        v.push(LocalPoint::new(x, y, -1.2 + 0.2 * (x + y).abs() / 10.0));
    }
    v
}

fn n_events() -> usize {
    std::env::var("EIKOLOC_CALIB_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

#[test]
fn reported_regions_hold_the_truth_at_their_stated_rate() {
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap());
    let stations = network();
    let synth = SynthConfig {
        n_events: n_events(),
        noise: NoiseKind::Laplace,
        p_sigma_s: 0.05,
        s_sigma_s: 0.10,
        p_missing: 0.3,
        s_missing: 0.5,
        x_range_km: (-25.0, 25.0),
        y_range_km: (-25.0, 25.0),
        z_range_km: (0.0, 25.0),
        seed: 20240601,
        ..Default::default()
    };
    let events = generate(&model, &stations, &synth).unwrap();
    let bbox = SearchBox {
        x_min_km: -80.0,
        x_max_km: 80.0,
        y_min_km: -80.0,
        y_max_km: 80.0,
        z_min_km: -1.2,
        z_max_km: 40.0,
    };
    let config = LocateConfig::known_noise();
    let r = coverage(&model, &stations, &events, &bbox, &config, [0.05, 0.10]);
    eprintln!("{r:?}");
    assert_eq!(r.failed, 0);
    assert!(
        (0.93..=0.97).contains(&r.h95),
        "horizontal 95 % coverage {}",
        r.h95
    );
    assert!(
        (0.93..=0.97).contains(&r.z95),
        "depth 95 % coverage {}",
        r.z95
    );
    // 68 %: the band, 65-71 % (one binomial standard error at 500 events is 2.1
    // points, so this is a tight check). Measured on this seed: h68 0.652, z68 0.696 (with the
    // origin time profiled instead of marginalised in the Metropolis target: 0.644, 0.688).
    assert!(
        (0.65..=0.71).contains(&r.h68),
        "horizontal 68 % coverage {}",
        r.h68
    );
    assert!(
        (0.65..=0.71).contains(&r.z68),
        "depth 68 % coverage {}",
        r.z68
    );
}

/// The preliminary origin's regions (the sandwich covariance of the linearized Huber
/// estimate, Gaussian chi-square scales) on the same synthetic events: they are published as
/// honest uncertainty, so the truth must fall inside the 95 % region nearly as often. The band
/// is wider than the posterior's (88-99 %): a linearization cannot follow the curved,
/// heavy-tailed posterior of an event at the edge of the network, and 300 events give a
/// binomial standard error of 1.3 points. (With the Laplace model's Fisher information instead
/// of the sandwich: 82.7 % horizontally, 84.7 % in depth on this seed.)
#[test]
fn linearized_regions_are_close_to_their_stated_rate() {
    use eikoloc::locate::summary::{CHI2_2_95, Z_95};
    use eikoloc::locate::{linearized, Observation};
    use eikoloc::traveltime::Receiver;
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap());
    let stations = network();
    let synth = SynthConfig {
        n_events: 300,
        noise: NoiseKind::Laplace,
        p_sigma_s: 0.05,
        s_sigma_s: 0.10,
        p_missing: 0.3,
        s_missing: 0.5,
        x_range_km: (-25.0, 25.0),
        y_range_km: (-25.0, 25.0),
        z_range_km: (0.0, 25.0),
        seed: 20240602,
        ..Default::default()
    };
    let events = generate(&model, &stations, &synth).unwrap();
    let bbox = SearchBox {
        x_min_km: -80.0,
        x_max_km: 80.0,
        y_min_km: -80.0,
        y_max_km: 80.0,
        z_min_km: -1.2,
        z_max_km: 40.0,
    };
    let config = LocateConfig::known_noise();
    let (mut h95, mut z95, mut n) = (0usize, 0usize, 0usize);
    let mut h_err = Vec::new();
    for ev in &events {
        let obs: Vec<Observation> = ev
            .picks
            .iter()
            .map(|p| Observation {
                receiver: Receiver {
                    phase: p.phase,
                    position: stations[p.station],
                },
                t_obs_s: p.t_s,
                pick_sigma_s: [0.05, 0.10][p.phase.index()],
            })
            .collect();
        let Ok(p) = linearized(&model, &obs, &bbox, &config) else {
            continue;
        };
        n += 1;
        let (m, c, t) = (p.mean_km, p.cov_km2, ev.truth_km);
        let (dx, dy, dz) = (t[0] - m[0], t[1] - m[1], t[2] - m[2]);
        let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
        let d2 = (c[1][1] * dx * dx - 2.0 * c[0][1] * dx * dy + c[0][0] * dy * dy) / det;
        h95 += usize::from(d2 <= CHI2_2_95);
        z95 += usize::from(dz.abs() <= Z_95 * c[2][2].sqrt());
        h_err.push(dx.hypot(dy));
    }
    h_err.sort_by(f64::total_cmp);
    let (h95, z95) = (h95 as f64 / n as f64, z95 as f64 / n as f64);
    eprintln!(
        "linearized: {n} of {} located, h95 {h95:.3}, z95 {z95:.3}, median horizontal error {:.3} km",
        events.len(),
        h_err[h_err.len() / 2]
    );
    assert!(n >= events.len() * 99 / 100, "{n} located");
    assert!(
        (0.85..=0.99).contains(&h95),
        "horizontal 95 % coverage {h95}"
    );
    assert!((0.85..=0.99).contains(&z95), "depth 95 % coverage {z95}");
}
