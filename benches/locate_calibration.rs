//! Calibration, accuracy and speed of the locator on model-consistent synthetic events, for
//! each likelihood, origin-time mode and refinement setting. Run:
//! `cargo bench --bench locate_calibration` (EIKOLOC_CALIB_EVENTS sets the event count).

use eikoloc::domain::LocalPoint;
use eikoloc::locate::calibration::coverage;
use eikoloc::locate::{LikelihoodKind, LocateConfig, OriginTimeMode, SearchBox};
use eikoloc::synth::{generate, NoiseKind, SynthConfig};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;

fn network() -> Vec<LocalPoint> {
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

fn main() {
    let n: usize = std::env::var("EIKOLOC_CALIB_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let only = std::env::var("EIKOLOC_CALIB_ONLY").ok();
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap());
    let stations = network();
    let synth = SynthConfig {
        n_events: n,
        noise: NoiseKind::Laplace,
        p_sigma_s: 0.05,
        s_sigma_s: 0.10,
        p_missing: 0.3,
        s_missing: 0.5,
        x_range_km: (-25.0, 25.0),
        y_range_km: (-25.0, 25.0),
        z_range_km: (0.0, 25.0),
        seed: 7,
        ..Default::default()
    };
    let events = generate(&model, &stations, &synth).unwrap();
    let npicks: f64 = events.iter().map(|e| e.picks.len() as f64).sum::<f64>() / n as f64;
    let bbox = SearchBox {
        x_min_km: -80.0,
        x_max_km: 80.0,
        y_min_km: -80.0,
        y_max_km: 80.0,
        z_min_km: -1.2,
        z_max_km: 40.0,
    };
    println!(
        "{n} events, {npicks:.1} picks per event on average, Laplace noise 0.05 s P / 0.10 s S"
    );
    println!(
        "{:<34} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>8} {:>8} {:>6}  gaussian h68/h95/z68/z95",
        "config", "h68", "h95", "z68", "z95", "medH_km", "medZ_km", "t50_ms", "t90_ms", "iters"
    );
    // model-consistent picks with known noise: no model-error term
    let base = LocateConfig::known_noise();
    let mut configs: Vec<(String, LocateConfig)> = Vec::new();
    for kind in [
        LikelihoodKind::Laplace,
        LikelihoodKind::Huber,
        LikelihoodKind::Edt,
    ] {
        for mode in [OriginTimeMode::Profiled, OriginTimeMode::Differential] {
            if kind == LikelihoodKind::Edt && mode == OriginTimeMode::Differential {
                continue;
            }
            configs.push((
                format!("{kind:?}/{mode:?}"),
                LocateConfig {
                    likelihood: kind,
                    origin_time: mode,
                    ..base.clone()
                },
            ));
        }
    }
    for (np, mh) in [
        (32, 0),
        (64, 0),
        (96, 0),
        (192, 0),
        (64, 20),
        (64, 40),
        (96, 20),
        (96, 40),
        (128, 30),
    ] {
        configs.push((
            format!("Laplace/Profiled N={np} mh={mh}"),
            LocateConfig {
                n_particles: np,
                mh_steps: mh,
                ..base.clone()
            },
        ));
    }
    for (name, cfg) in configs {
        if let Some(o) = &only {
            if !name.contains(o.as_str()) {
                continue;
            }
        }
        let r = coverage(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
        let t = &r.times_s;
        println!(
            "{:<34} {:>5.3} {:>5.3} {:>5.3} {:>5.3} {:>7.3} {:>7.3} {:>8.2} {:>8.2} {:>6.0}  {:.2}/{:.2}/{:.2}/{:.2}{}",
            name, r.h68, r.h95, r.z68, r.z95, r.median_h_err_km, r.median_z_err_km,
            1e3 * t[t.len() / 2], 1e3 * t[t.len() * 9 / 10], r.median_iterations, r.gaussian[0], r.gaussian[1], r.gaussian[2], r.gaussian[3],
            if r.failed > 0 { format!("  ({} failed)", r.failed) } else { String::new() }
        );
    }

    // Robustness: the same events with 1 % of P and 4 % of S picks shifted by 0.4-1.4 s.
    if only.as_deref().is_none_or(|o| o.contains("outlier")) {
        let dirty = generate(
            &model,
            &stations,
            &SynthConfig {
                p_outlier_fraction: 0.01,
                s_outlier_fraction: 0.04,
                outlier_range_s: (0.4, 1.4),
                ..synth.clone()
            },
        )
        .unwrap();
        for kind in [
            LikelihoodKind::Laplace,
            LikelihoodKind::Huber,
            LikelihoodKind::Edt,
        ] {
            let cfg = LocateConfig {
                likelihood: kind,
                ..base.clone()
            };
            let a = coverage(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
            let b = coverage(&model, &stations, &dirty, &bbox, &cfg, [0.05, 0.10]);
            println!(
                "outliers {kind:?}: median error clean {:.3}/{:.3} km, with outliers {:.3}/{:.3} km (ratio {:.2}/{:.2}); coverage with outliers h95 {:.3} z95 {:.3}",
                a.median_h_err_km, a.median_z_err_km, b.median_h_err_km, b.median_z_err_km,
                b.median_h_err_km / a.median_h_err_km, b.median_z_err_km / a.median_z_err_km, b.h95, b.z95
            );
        }
    }
}
