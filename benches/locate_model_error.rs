//! Honesty under model error, with known truth: events whose arrival times come from a 3-D
//! structure (the Ridgecrest 1-D model with dipping, fault-offset interfaces and +-3 % lateral
//! velocity changes, solved by the crate's factored eikonal grid solver at 1 km, plus
//! per-station delays; `ModelErrorScenario::default()`) on the Ridgecrest stations, located with
//! the Ridgecrest 1-D model (exact solver behind the radial table). Prints, per model-error
//! treatment, the 68 % / 95 % coverage (horizontal and depth) and the median errors.
//!
//! Run: `cargo bench --bench locate_model_error`. Environment: EIKOLOC_ME_EVENTS (300),
//! EIKOLOC_ME_ONLY (comma-separated prefixes of the treatment names), EIKOLOC_ME_SPACING (truth grid, km),
//! EIKOLOC_ME_LATERAL (largest lateral change, fraction), EIKOLOC_ME_DELAY (P delay sigma, s),
//! EIKOLOC_ME_SEED (event seed), EIKOLOC_ME_ROUNDS (estimate-and-relocate rounds, 2),
//! EIKOLOC_ME_DIP / EIKOLOC_ME_OFFSET (truth interfaces), EIKOLOC_ME_CORR (station-distance
//! correlation lengths to try, km, `0,20`), EIKOLOC_ME_ANGLE (ray-direction correlation angles
//! to try, degrees, `0,30`; every pair but 0,0 is a treatment), EIKOLOC_ME_FLOOR /
//! EIKOLOC_ME_FRACTION / EIKOLOC_ME_PS (the correlated treatments' term, 0.05 s / 0.03 (a
//! comma list is a grid) / P-S correlation 1), EIKOLOC_ME_CONSISTENT=1 (picks made
//! in the 1-D model itself, no perturbation, no station delays: how much each term
//! over-covers when the model is right), EIKOLOC_ME_DIAG=1 (per treatment, the distribution
//! of the truth's normalised error: where in its own region the truth falls, and coverage by
//! depth, distance from the network centre and pick count).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use eikoloc::config::ResolvedStationConfig;
use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::locate::calibration::{coverage_of, locate_all, CoverageReport, LocatedSynth};
use eikoloc::locate::model_error::{
    fit_model_error, fit_model_error_scale, posterior_scale_moments, ResidualSample,
};
use eikoloc::locate::{LocateConfig, NoiseScale, RadialTableModel, SearchBox, TableGrid};
use eikoloc::synth::{generate, ModelErrorScenario, NoiseKind, SynthConfig, SynthEvent};
use eikoloc::traveltime::{LayeredExact, TraveltimeModel};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn residual_samples(located: &[LocatedSynth]) -> Vec<ResidualSample> {
    located
        .iter()
        .flatten()
        .flat_map(|(post, obs, _)| {
            (0..obs.len()).map(move |i| ResidualSample {
                traveltime_s: post.predicted_tt_s[i],
                residual_s: post.residual_s[i],
                pick_sigma_s: obs[i].pick_sigma_s,
                event_picks: obs.len(),
            })
        })
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Where the truth falls in each event's own region: the fraction of the event's particles
/// nearer the mean than the truth (horizontal Mahalanobis distance under the particle
/// covariance; depth offset), which is uniform on [0, 1] for calibrated regions; a 68 %
/// coverage short of 68 % with the 95 % right means mass in the 0.68-0.95 deciles.
/// (true depth km, epicentral distance from the network centre km, picks, truth inside h68,
/// h95, z68, z95).
type DiagRow = (f64, f64, usize, [bool; 4]);

fn diagnose(events: &[SynthEvent], located: &[LocatedSynth]) {
    let mut u = [Vec::new(), Vec::new()];
    let mut rows: Vec<DiagRow> = Vec::new();
    let mut zn = Vec::new();
    let mut hn = Vec::new();
    // signed errors truth - mean, km, and the rank of the truth with the events' median
    // error removed (an oracle: what a bias common to all events costs)
    let mut err: Vec<[f64; 3]> = Vec::new();
    for (ev, l) in events.iter().zip(located) {
        let Some((post, obs, _)) = l else { continue };
        let (m, c, t) = (post.mean_km, post.cov_km2, ev.truth_km);
        let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
        let d2 = |x: &[f64]| {
            let (dx, dy) = (x[0] - m[0], x[1] - m[1]);
            (c[1][1] * dx * dx - 2.0 * c[0][1] * dx * dy + c[0][0] * dy * dy) / det
        };
        let sz = c[2][2].sqrt();
        let dt = d2(&t);
        let np = post.particles.len() as f64;
        u[0].push(post.particles.iter().filter(|p| d2(&p[..]) < dt).count() as f64 / np);
        u[1].push(
            post.particles
                .iter()
                .filter(|p| (p[2] - m[2]).abs() < (t[2] - m[2]).abs())
                .count() as f64
                / np,
        );
        zn.push((t[2] - m[2]) / sz);
        err.push([t[0] - m[0], t[1] - m[1], t[2] - m[2]]);
        hn.push(dt.sqrt());
        let q = post.h2_quantiles;
        let qz = post.z_quantiles;
        rows.push((
            t[2],
            t[0].hypot(t[1]),
            obs.len(),
            [
                dt <= q[0],
                dt <= q[1],
                (t[2] - m[2]).abs() <= qz[0] * sz,
                (t[2] - m[2]).abs() <= qz[1] * sz,
            ],
        ));
    }
    for (k, name) in ["H", "Z"].iter().enumerate() {
        let n = u[k].len() as f64;
        let hist: Vec<String> = (0..10)
            .map(|d| {
                let lo = d as f64 / 10.0;
                let c = u[k]
                    .iter()
                    .filter(|&&x| x >= lo && (x < lo + 0.1 || d == 9))
                    .count();
                format!("{:.2}", c as f64 / n)
            })
            .collect();
        println!(
            "    truth's rank in its region, {name}, deciles (0.10 each if calibrated): {}",
            hist.join(" ")
        );
    }
    let mut zs = zn.clone();
    let mut hs = hn.clone();
    println!(
        "    normalised error: H Mahalanobis p50 {:.2} p68 {:.2} p95 {:.2} (Gaussian 1.18 / 1.51 / 2.45); \
         Z (truth - mean) / sigma mean {:+.2}, |.| p50 {:.2} p68 {:.2} p95 {:.2} (Gaussian 0.67 / 1.00 / 1.96)",
        pct(&mut hs, 0.5),
        pct(&mut hs, 0.68),
        pct(&mut hs, 0.95),
        zs.iter().sum::<f64>() / zs.len() as f64,
        {
            let mut a: Vec<f64> = zs.iter().map(|x| x.abs()).collect();
            pct(&mut a, 0.5)
        },
        {
            let mut a: Vec<f64> = zs.iter().map(|x| x.abs()).collect();
            pct(&mut a, 0.68)
        },
        {
            let mut a: Vec<f64> = zs.iter_mut().map(|x| x.abs()).collect();
            pct(&mut a, 0.95)
        },
    );
    let med3: Vec<f64> = (0..3)
        .map(|k| {
            let mut v: Vec<f64> = err.iter().map(|e| e[k]).collect();
            pct(&mut v, 0.5)
        })
        .collect();
    let (mut bh, mut bz, mut nb) = ([0usize; 2], [0usize; 2], 0usize);
    for ((ev, l), _) in events.iter().zip(located).zip(0..) {
        let Some((post, _, _)) = l else { continue };
        let (m, c) = (post.mean_km, post.cov_km2);
        let t = [
            ev.truth_km[0] - med3[0],
            ev.truth_km[1] - med3[1],
            ev.truth_km[2] - med3[2],
        ];
        let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
        let (dx, dy) = (t[0] - m[0], t[1] - m[1]);
        let d2 = (c[1][1] * dx * dx - 2.0 * c[0][1] * dx * dy + c[0][0] * dy * dy) / det;
        let dz = (t[2] - m[2]).abs() / c[2][2].sqrt();
        nb += 1;
        for k in 0..2 {
            bh[k] += usize::from(d2 <= post.h2_quantiles[k]);
            bz[k] += usize::from(dz <= post.z_quantiles[k]);
        }
    }
    let nb = nb.max(1) as f64;
    println!(
        "    median error (truth - mean) x {:+.3} y {:+.3} z {:+.3} km; with it removed (oracle): h68 {:.2} h95 {:.2} z68 {:.2} z95 {:.2}",
        med3[0],
        med3[1],
        med3[2],
        bh[0] as f64 / nb,
        bh[1] as f64 / nb,
        bz[0] as f64 / nb,
        bz[1] as f64 / nb
    );
    let split = |label: &str, key: &dyn Fn(&DiagRow) -> f64, edges: &[f64]| {
        let mut parts = Vec::new();
        for w in edges.windows(2) {
            let sel: Vec<_> = rows
                .iter()
                .filter(|r| key(r) >= w[0] && key(r) < w[1])
                .collect();
            let n = sel.len().max(1) as f64;
            let f = |k: usize| sel.iter().filter(|r| r.3[k]).count() as f64 / n;
            parts.push(format!(
                "[{}, {}): n {} {:.2}/{:.2} {:.2}/{:.2}",
                w[0],
                w[1],
                sel.len(),
                f(0),
                f(1),
                f(2),
                f(3)
            ));
        }
        println!("    by {label} (h68/h95 z68/z95): {}", parts.join("; "));
    };
    split("depth km", &|r| r.0, &[0.0, 5.0, 10.0, 100.0]);
    split(
        "distance from centre km",
        &|r| r.1,
        &[0.0, 10.0, 20.0, 100.0],
    );
    split("picks", &|r| r.2 as f64, &[0.0, 20.0, 30.0, 1000.0]);
}

/// One result row: coverage, median errors, median time per event, the model-error term and
/// `tail` (what else distinguishes the treatment).
fn print_row(name: &str, r: &CoverageReport, cfg: &LocateConfig, tail: String) {
    let t = &r.times_s;
    println!(
        "{:<44} {:>5.3} {:>5.3} {:>5.3} {:>5.3} {:>7.3} {:>7.3} {:>6.1}  max({:.3} s, {:.4} T){}{}",
        name,
        r.h68,
        r.h95,
        r.z68,
        r.z95,
        r.median_h_err_km,
        r.median_z_err_km,
        1e3 * t[t.len() / 2],
        cfg.model_error_floor_s,
        cfg.model_error_fraction,
        tail,
        if r.failed > 0 {
            format!(" ({} failed)", r.failed)
        } else {
            String::new()
        }
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rc = ResolvedStationConfig::load(&root.join("station-configs/ridgecrest"))
        .expect("ridgecrest station config (needs ../shared/data)");
    let n: usize = env("EIKOLOC_ME_EVENTS").unwrap_or(300);
    let only: Option<String> = env("EIKOLOC_ME_ONLY");
    let rounds: usize = env("EIKOLOC_ME_ROUNDS").unwrap_or(2);
    let mut scenario = ModelErrorScenario::default();
    if let Some(h) = env("EIKOLOC_ME_SPACING") {
        scenario.grid_spacing_km = h;
    }
    if let Some(a) = env("EIKOLOC_ME_LATERAL") {
        scenario.perturbation.lateral_fraction = a;
    }
    if let Some(d) = env("EIKOLOC_ME_DELAY") {
        scenario.delay_p_sigma_s = d;
    }
    if let Some(d) = env("EIKOLOC_ME_DIP") {
        scenario.perturbation.dip_deg = d;
    }
    if let Some(d) = env("EIKOLOC_ME_OFFSET") {
        scenario.perturbation.fault_offset_km = d;
    }
    let corr: Vec<f64> = std::env::var("EIKOLOC_ME_CORR")
        .unwrap_or_else(|_| "0,20".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let stations = rc.station_positions.clone();
    let synth = SynthConfig {
        n_events: n,
        noise: NoiseKind::Laplace,
        p_sigma_s: 0.05,
        s_sigma_s: 0.10,
        p_missing: 0.33,
        s_missing: 0.5,
        x_range_km: (-20.0, 20.0),
        y_range_km: (-20.0, 20.0),
        z_range_km: (1.0, 15.0),
        seed: env("EIKOLOC_ME_SEED").unwrap_or(11),
        ..Default::default()
    };
    let t = Instant::now();
    let consistent = env::<u8>("EIKOLOC_ME_CONSISTENT").unwrap_or(0) == 1;
    let diag = env::<u8>("EIKOLOC_ME_DIAG").unwrap_or(0) == 1;
    let exact: Arc<dyn TraveltimeModel> = Arc::new(LayeredExact::new(rc.velocity.clone()));
    let events = if consistent {
        // the locator's own 1-D model (exact solver) makes the picks: no model error at all
        generate(&*exact, &stations, &synth).expect("synth")
    } else {
        scenario
            .generate(&rc.velocity, &stations, &synth)
            .expect("scenario")
    };
    let t_truth = t.elapsed().as_secs_f64();

    let bbox = SearchBox::for_station_config(&rc);
    let receivers = rc.receivers();
    let grid = TableGrid {
        r_max_km: rc.max_source_receiver_distance_km().min(400.0),
        dr_km: 0.5,
        z_min_km: bbox.z_min_km,
        z_max_km: bbox.z_max_km,
        dz_km: 0.25,
    };
    let model = RadialTableModel::build(exact, grid, &receivers).expect("table");

    // the model error itself: true (3-D + delay) minus 1-D traveltime at the true hypocentre
    let mut dt: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for ev in &events {
        for p in &ev.picks {
            let t1 = model
                .traveltime_s(
                    p.phase,
                    LocalPoint::from_array(ev.truth_km),
                    stations[p.station],
                )
                .unwrap();
            dt[p.phase.index()].push((p.true_tt_s - t1).abs());
        }
    }
    let npicks: f64 = events.iter().map(|e| e.picks.len() as f64).sum::<f64>() / n as f64;
    if consistent {
        println!("model-consistent picks (EIKOLOC_ME_CONSISTENT=1): truth = the 1-D model, no station delays");
    }
    println!(
        "{n} events, {npicks:.1} picks per event, Laplace pick noise 0.05 s P / 0.10 s S; scenario: \
         lateral {:.0} %, dip {} deg, fault offset {} km, P delays sigma {} s, grid {} km ({t_truth:.1} s)",
        100.0 * scenario.perturbation.lateral_fraction,
        scenario.perturbation.dip_deg,
        scenario.perturbation.fault_offset_km,
        scenario.delay_p_sigma_s,
        scenario.grid_spacing_km
    );
    for ph in Phase::ALL {
        let v = &mut dt[ph.index()];
        println!(
            "model error |T_true - T_1D| at the truth, {ph}: median {:.3} s, p90 {:.3} s",
            pct(v, 0.5),
            pct(v, 0.9)
        );
    }
    println!(
        "{:<44} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>6}  model error used",
        "treatment", "h68", "h95", "z68", "z95", "medH_km", "medZ_km", "ms/ev"
    );
    let fixed = LocateConfig {
        model_error_floor_s: 0.05,
        model_error_fraction: 0.02,
        ..LocateConfig::known_noise()
    };
    // the correlated treatments' LOCGAU2 term and P-S correlation
    let corr_base = LocateConfig {
        model_error_floor_s: env("EIKOLOC_ME_FLOOR").unwrap_or(0.05),
        model_error_ps_correlation: env("EIKOLOC_ME_PS").unwrap_or(1.0),
        ..fixed.clone()
    };
    let fractions: Vec<f64> = std::env::var("EIKOLOC_ME_FRACTION")
        .unwrap_or_else(|_| "0.03".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // scale of the configured (correlated) model error from the residuals, accounting for what
    // location absorbs
    let fit_scale = |located: &[LocatedSynth], cfg: &LocateConfig| -> Option<f64> {
        let moments: Vec<_> = located
            .iter()
            .flatten()
            .filter_map(|(post, obs, _)| posterior_scale_moments(&model, post, obs, cfg))
            .collect();
        fit_model_error_scale(&moments)
    };
    let run_scaled = |name: &str, cfg: &LocateConfig| {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|x| name.starts_with(x)))
        {
            return;
        }
        let mut cfg = cfg.clone();
        let mut located = locate_all(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
        let mut lambdas = Vec::new();
        for _ in 0..rounds {
            let Some(l) = fit_scale(&located, &cfg) else {
                break;
            };
            lambdas.push(l);
            cfg.model_error_floor_s *= l;
            cfg.model_error_fraction *= l;
            located = locate_all(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
        }
        let r = coverage_of(&events, &located);
        print_row(
            name,
            &r,
            &cfg,
            format!(
                ", correlated over {} km, P-S {} (scale factors {:?})",
                cfg.model_error_correlation_km,
                cfg.model_error_ps_correlation,
                lambdas
                    .iter()
                    .map(|l| (l * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>()
            ),
        );
        if diag {
            diagnose(&events, &located);
        }
    };
    let run = |name: &str, cfg: &LocateConfig, estimate: bool| {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|x| name.starts_with(x)))
        {
            return;
        }
        let mut cfg = cfg.clone();
        let mut located = locate_all(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
        if estimate {
            for _ in 0..rounds {
                let Some(fit) = fit_model_error(&residual_samples(&located)) else {
                    break;
                };
                cfg.model_error_floor_s = fit.floor_s;
                cfg.model_error_fraction = fit.fraction;
                located = locate_all(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
            }
        }
        let r = coverage_of(&events, &located);
        let correlated =
            if cfg.model_error_correlation_km > 0.0 || cfg.model_error_correlation_deg > 0.0 {
                format!(
                    ", correlated over {} km, {} deg",
                    cfg.model_error_correlation_km, cfg.model_error_correlation_deg
                )
            } else {
                String::new()
            };
        let event_scale = if cfg.noise_scale == NoiseScale::Event {
            ", event scale"
        } else {
            ""
        };
        print_row(name, &r, &cfg, format!("{event_scale}{correlated}"));
        if diag {
            println!(
                "    Gaussian (chi-square scaled covariance) regions: h68 {:.3} h95 {:.3} z68 {:.3} z95 {:.3}",
                r.gaussian[0], r.gaussian[1], r.gaussian[2], r.gaussian[3]
            );
            diagnose(&events, &located);
        }
    };
    run(
        "none (pick sigma only)",
        &LocateConfig::known_noise(),
        false,
    );
    run("fixed max(0.05 s, 0.02 T) (old default)", &fixed, false);
    run(
        "default (LocateConfig::default())",
        &LocateConfig::default(),
        false,
    );
    run(
        "event scale, max(0.05 s, 0.02 T)",
        &LocateConfig {
            noise_scale: NoiseScale::Event,
            ..fixed.clone()
        },
        false,
    );
    run("estimated from residuals", &fixed, true);
    run(
        "estimated from residuals + event scale",
        &LocateConfig {
            noise_scale: NoiseScale::Event,
            ..fixed.clone()
        },
        true,
    );
    let angles: Vec<f64> = std::env::var("EIKOLOC_ME_ANGLE")
        .unwrap_or_else(|_| "0,30".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut grid = Vec::new();
    for &l in &corr {
        for &f in &fractions {
            for &a in &angles {
                grid.push((l, f, a));
            }
        }
    }
    for (l, fraction, angle) in grid {
        if l <= 0.0 && angle <= 0.0 {
            continue;
        }
        let corr_base = LocateConfig {
            model_error_fraction: fraction,
            model_error_correlation_deg: angle,
            ..corr_base.clone()
        };
        let mut fl = String::new();
        if angles.len() > 1 || angle > 0.0 {
            fl += &format!(" A={angle} deg");
        }
        if fractions.len() > 1 {
            fl += &format!(" f={fraction}");
        }
        run_scaled(
            &format!("scale-fitted + correlated L={l} km{fl}"),
            &LocateConfig {
                model_error_correlation_km: l,
                ..corr_base.clone()
            },
        );
        let c = LocateConfig {
            model_error_correlation_km: l,
            ..corr_base.clone()
        };
        run(&format!("correlated L={l} km{fl}"), &c, false);
        run(&format!("estimated + correlated L={l} km{fl}"), &c, true);
        run(
            &format!("estimated + correlated L={l} km{fl} + event scale"),
            &LocateConfig {
                noise_scale: NoiseScale::Event,
                ..c.clone()
            },
            true,
        );
    }
}
