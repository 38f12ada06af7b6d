//! Honesty under model error (issue 4): events made in a 3-D truth (the Ridgecrest 1-D model
//! with dipping, fault-offset interfaces, lateral velocity changes and station delays, solved
//! by the 3-D eikonal grid solver) and located with the 1-D model. With the default
//! model-error term (correlated between rays that leave the source in similar directions) the
//! reported regions must hold the truth about as often as they claim; with the old fixed
//! independent term they do not.
//!
//! A small, seeded version of `cargo bench --bench locate_model_error` (2 km truth grid,
//! 100 events) so it runs in well under a minute in release.

use std::path::Path;
use std::sync::Arc;

use eikoloc::config::ResolvedStationConfig;
use eikoloc::locate::calibration::{coverage_of, locate_all, LocatedSynth};
use eikoloc::locate::model_error::{fit_model_error_scale, posterior_scale_moments};
use eikoloc::locate::{LocateConfig, RadialTableModel, SearchBox, TableGrid};
use eikoloc::synth::{ModelErrorScenario, NoiseKind, SynthConfig};
use eikoloc::traveltime::{LayeredExact, TraveltimeModel};

#[test]
fn correlated_model_error_term_covers_the_truth_at_its_stated_rate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rc = ResolvedStationConfig::load(&root.join("station-configs/ridgecrest"))
        .expect("ridgecrest station config (needs ../shared/data)");
    let stations = rc.station_positions.clone();
    let scenario = ModelErrorScenario {
        grid_spacing_km: 2.0,
        ..Default::default()
    };
    let synth = SynthConfig {
        n_events: 100,
        noise: NoiseKind::Laplace,
        p_sigma_s: 0.05,
        s_sigma_s: 0.10,
        p_missing: 0.33,
        s_missing: 0.5,
        x_range_km: (-20.0, 20.0),
        y_range_km: (-20.0, 20.0),
        z_range_km: (1.0, 15.0),
        seed: 2024,
        ..Default::default()
    };
    let events = scenario.generate(&rc.velocity, &stations, &synth).unwrap();
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
    let model = RadialTableModel::build(exact, grid, &receivers).unwrap();

    let base = LocateConfig {
        model_error_floor_s: 0.05,
        model_error_fraction: 0.02,
        ..LocateConfig::known_noise()
    };
    // before: the fixed independent term
    let before = coverage_of(
        &events,
        &locate_all(&model, &stations, &events, &bbox, &base, [0.05, 0.10]),
    );
    let show = |r: &eikoloc::locate::calibration::CoverageReport| {
        format!(
            "h68 {:.2} h95 {:.2} z68 {:.2} z95 {:.2}, median error {:.3} km H {:.3} km Z",
            r.h68, r.h95, r.z68, r.z95, r.median_h_err_km, r.median_z_err_km
        )
    };
    eprintln!("fixed independent term: {}", show(&before));

    // after: the default term, max(0.05 s, 0.03 T) correlated between rays that leave the
    // source within about 30 degrees of each other, P and S alike
    let cfg = LocateConfig::default();
    let located = locate_all(&model, &stations, &events, &bbox, &cfg, [0.05, 0.10]);
    let after = coverage_of(&events, &located);
    eprintln!("correlated: {}", show(&after));
    // the residual-fitted size of that term is reported, not used: it comes out near the
    // configured one (the residuals cannot see the error the location absorbed)
    eprintln!(
        "residual-fitted scale of the correlated term: {:.3}",
        fit_scale(&model, &located, &cfg)
    );
    assert_eq!(after.failed, 0);
    // Bands: 100 events give a binomial standard deviation of 0.022 at 95 % and 0.047 at
    // 68 %. The 95 % regions must hold the truth within 2.5 of those of the claim (0.89-1.0).
    // The 68 % horizontal regions still under-cover (0.60 measured on 300 events, README;
    // 0.55 on this seed): most of the remaining error is a bias shared by all events (the
    // dipping, offset interfaces), which a per-event posterior cannot know the direction of.
    // Their band, 0.48-0.80, is 2.5 sigma around that measured level up to the claim, above
    // the station-distance kernel's 0.45-0.50 and far above the old term's.
    for (name, v, lo, hi) in [
        ("h68", after.h68, 0.48, 0.80),
        ("z68", after.z68, 0.48, 0.80),
        ("h95", after.h95, 0.89, 1.0),
        ("z95", after.z95, 0.89, 1.0),
    ] {
        assert!(
            (lo..=hi).contains(&v),
            "{name} coverage {v} outside {lo}..{hi}: {}",
            show(&after)
        );
    }
    // the old term is the problem this solves: it under-covers badly in the same scenario
    assert!(before.h95 < 0.8, "{}", show(&before));
    // and honesty costs no accuracy
    assert!(
        after.median_h_err_km <= 1.1 * before.median_h_err_km
            && after.median_z_err_km <= 1.1 * before.median_z_err_km,
        "{} / {}",
        show(&before),
        show(&after)
    );
}

fn fit_scale(model: &dyn TraveltimeModel, located: &[LocatedSynth], cfg: &LocateConfig) -> f64 {
    let moments: Vec<_> = located
        .iter()
        .flatten()
        .filter_map(|(post, obs, _)| posterior_scale_moments(model, post, obs, cfg))
        .collect();
    fit_model_error_scale(&moments).expect("scale")
}
