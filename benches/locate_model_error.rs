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
//! EIKOLOC_ME_DIP / EIKOLOC_ME_OFFSET (truth interfaces), EIKOLOC_ME_CORR (correlation lengths
//! to try, km, 20), EIKOLOC_ME_FLOOR / EIKOLOC_ME_FRACTION / EIKOLOC_ME_PS (the correlated
//! treatments' term, 0.05 s / 0.03 / P-S correlation 1).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use eikoloc::config::ResolvedStationConfig;
use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::locate::calibration::{coverage_of, locate_all, LocatedSynth};
use eikoloc::locate::model_error::{
    fit_model_error, fit_model_error_scale, posterior_scale_moments, ResidualSample,
};
use eikoloc::locate::{LocateConfig, NoiseScale, RadialTableModel, SearchBox, TableGrid};
use eikoloc::synth::{ModelErrorScenario, NoiseKind, SynthConfig};
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
        .unwrap_or_else(|_| "20".into())
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
    let events = scenario
        .generate(&rc.velocity, &stations, &synth)
        .expect("scenario");
    let t_truth = t.elapsed().as_secs_f64();

    let bbox = SearchBox::for_station_config(&rc);
    let receivers = rc.receivers();
    let exact: Arc<dyn TraveltimeModel> = Arc::new(LayeredExact::new(rc.velocity.clone()));
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
    println!(
        "{n} events, {npicks:.1} picks per event, Laplace pick noise 0.05 s P / 0.10 s S; truth: \
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
        ..LocateConfig::default()
    };
    // the correlated treatments' LOCGAU2 term and P-S correlation
    let corr_base = LocateConfig {
        model_error_floor_s: env("EIKOLOC_ME_FLOOR").unwrap_or(0.05),
        model_error_fraction: env("EIKOLOC_ME_FRACTION").unwrap_or(0.03),
        model_error_ps_correlation: env("EIKOLOC_ME_PS").unwrap_or(1.0),
        ..fixed.clone()
    };
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
        let t = &r.times_s;
        println!(
            "{:<44} {:>5.3} {:>5.3} {:>5.3} {:>5.3} {:>7.3} {:>7.3} {:>6.1}  max({:.3} s, {:.4} T), correlated over {} km, P-S {} (scale factors {:?})",
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
            cfg.model_error_correlation_km,
            cfg.model_error_ps_correlation,
            lambdas.iter().map(|l| (l * 1000.0).round() / 1000.0).collect::<Vec<_>>()
        );
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
        let t = &r.times_s;
        println!(
            "{:<44} {:>5.3} {:>5.3} {:>5.3} {:>5.3} {:>7.3} {:>7.3} {:>6.1}  max({:.3} s, {:.4} T){}{}{}",
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
            if cfg.noise_scale == NoiseScale::Event { ", event scale" } else { "" },
            if cfg.model_error_correlation_km > 0.0 {
                format!(", correlated over {} km", cfg.model_error_correlation_km)
            } else {
                String::new()
            },
            if r.failed > 0 { format!(" ({} failed)", r.failed) } else { String::new() }
        );
    };
    run("none (pick sigma only)", &LocateConfig::default(), false);
    run("fixed max(0.05 s, 0.02 T) (before)", &fixed, false);
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
    for &l in &corr {
        run_scaled(
            &format!("scale-fitted + correlated L={l} km"),
            &LocateConfig {
                model_error_correlation_km: l,
                ..corr_base.clone()
            },
        );
        let c = LocateConfig {
            model_error_correlation_km: l,
            ..corr_base.clone()
        };
        run(&format!("correlated L={l} km"), &c, false);
        run(&format!("estimated + correlated L={l} km"), &c, true);
        run(
            &format!("estimated + correlated L={l} km + event scale"),
            &LocateConfig {
                noise_scale: NoiseScale::Event,
                ..c.clone()
            },
            true,
        );
    }
}
