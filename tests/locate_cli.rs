//! `eikoloc synth` then `eikoloc locate` end to end on the bundled demo configuration: the
//! catalog CSV's column contract, located epicentres inside their own 95 % regions around the
//! synthetic truth, the QuakeML read back by our reader, and `--model` refusals (missing
//! folder, another velocity model, a box smaller than the config's) plus a network that fits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use eikoloc::catalog::quakeml::read_quakeml_file;
use eikoloc::catalog::PickOptions;
use eikoloc::domain::Phase;
use eikoloc::traveltime::pinn::{
    Architecture, InputKind, InputScaling, LayerSpec, ModelBounds, NetSpec, PhaseMode,
    PinnManifest, TrainingSettings, VelocityInfo, FORMAT_VERSION,
};
use eikoloc::velocity::{GradientModel, LayeredModel};
use rand::{Rng, SeedableRng};

mod cli_support;
use cli_support::*;

/// Synthetic picks and truth for `n` events on the demo config, exact traveltimes.
fn synth(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let picks = dir.join("picks.csv");
    let truth = dir.join("truth.csv");
    ok(&run(&[
        "synth",
        "--config",
        demo().to_str().unwrap(),
        "--traveltime",
        "exact",
        "--events",
        &n.to_string(),
        "--seed",
        "7",
        "--picks-out",
        picks.to_str().unwrap(),
        "--truth-out",
        truth.to_str().unwrap(),
    ]));
    (picks, truth)
}

#[test]
fn synth_then_locate_writes_contract_csv_quakeml_and_honest_regions() {
    let dir = tempfile::tempdir().unwrap();
    let n_events = 24;
    let (picks, truth) = synth(dir.path(), n_events);
    let out = dir.path().join("catalog.csv");
    let qml = dir.path().join("catalog.xml");
    let post = dir.path().join("posterior.jsonl");
    ok(&run(&[
        "locate",
        "--config",
        demo().to_str().unwrap(),
        "--traveltime",
        "exact",
        "--picks",
        picks.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quakeml",
        qml.to_str().unwrap(),
        "--posterior",
        post.to_str().unwrap(),
        "--quiet",
    ]));

    let (header, rows) = read_csv(&out);
    assert_eq!(&header[..CONTRACT.len()], CONTRACT, "column contract");
    assert_eq!(rows.len(), n_events);
    let (_, truth_rows) = read_csv(&truth);
    let truth: HashMap<&str, &HashMap<String, String>> = truth_rows
        .iter()
        .map(|r| (r["event_id"].as_str(), r))
        .collect();
    let (mut located, mut inside_h, mut inside_z) = (0usize, 0usize, 0usize);
    for r in &rows {
        if r["status"] != "located" {
            continue;
        }
        located += 1;
        let t = truth[r["event_id"].as_str()];
        // truth offset from the posterior mean in the 95 % ellipse's axes
        let (dx, dy) = (
            num(t, "x_km") - num(r, "x_km"),
            num(t, "y_km") - num(r, "y_km"),
        );
        let az = num(r, "h95_azimuth_deg").to_radians();
        let along = dx * az.sin() + dy * az.cos();
        let across = dx * az.cos() - dy * az.sin();
        let (a, b) = (num(r, "h95_major_km"), num(r, "h95_minor_km"));
        assert!(a >= b && b > 0.0, "ellipse {a} {b}");
        if (along / a).powi(2) + (across / b).powi(2) <= 1.0 {
            inside_h += 1;
        }
        if (num(t, "depth_km") - num(r, "depth_km")).abs() <= num(r, "z95_km") {
            inside_z += 1;
        }
        assert!(num(r, "n_picks") >= 4.0);
        assert!(num(r, "rms_s") < 1.0, "rms {}", r["rms_s"]);
    }
    eprintln!("{located}/{n_events} located; truth inside h95 {inside_h}, inside z95 {inside_z}");
    assert!(located >= n_events * 9 / 10, "{located}/{n_events} located");
    // nominal 95 %: at least 80 % inside (binomial tail for 24 events well below 1 %)
    assert!(
        inside_h * 5 >= located * 4,
        "{inside_h}/{located} epicentres inside their 95 % ellipse"
    );
    assert!(
        inside_z * 5 >= located * 4,
        "{inside_z}/{located} depths inside their 95 % interval"
    );

    // QuakeML reads back with the same events, origins and arrivals
    let rep = read_quakeml_file(&qml, &PickOptions::default()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(rep.records.len(), n_events);
    let by_id: HashMap<&str, _> = rep.records.iter().map(|e| (e.id.as_str(), e)).collect();
    for r in &rows {
        let ev = by_id[r["event_id"].as_str()];
        assert!(!ev.picks.is_empty());
        match ev.preferred() {
            Some(o) => {
                assert_eq!(r["status"], "located");
                assert!((o.lat_deg - num(r, "lat")).abs() < 2e-6);
                assert!((o.lon_deg - num(r, "lon")).abs() < 2e-6);
                assert!((o.depth_km - num(r, "depth_km")).abs() < 2e-3);
                assert_eq!(o.arrivals.len() as f64, num(r, "n_picks"));
                let pick_ids: Vec<&str> = ev.picks.iter().map(|p| p.id.as_str()).collect();
                assert!(o
                    .arrivals
                    .iter()
                    .all(|a| pick_ids.contains(&a.pick_id.as_str())));
                let h = &o.uncertainty.horizontal_95;
                assert!((h.major_km - num(r, "h95_major_km")).abs() < 2e-3);
            }
            None => assert_ne!(r["status"], "located"),
        }
    }
    // one posterior line per located event
    let lines = std::fs::read_to_string(&post).unwrap();
    assert_eq!(lines.lines().count(), located);
}

fn demo_velocity() -> LayeredModel {
    LayeredModel::from_csv_path(&demo().join("velocity.csv")).unwrap()
}

/// A tiny two-net radial artifact (known random weights, tau near 0.8) for `velocity`
/// covering `bounds`, as `tests/pinn_eval.rs` writes it.
fn write_artifact(dir: &Path, velocity: VelocityInfo, bounds: ModelBounds) {
    let inputs = InputKind::Radial1d;
    let arch = Architecture {
        inputs,
        hidden: vec![8, 8],
        activation: "elu".into(),
        phase_mode: PhaseMode::Separate,
        heads: 1,
        depth_kinks_km: Vec::new(),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut flat: Vec<f32> = Vec::new();
    let mut nets = Vec::new();
    for phase in [Phase::P, Phase::S] {
        let mut layers = Vec::new();
        for w in arch.widths().windows(2) {
            let weight_offset = flat.len();
            flat.extend((0..w[0] * w[1]).map(|_| rng.gen_range(-0.2f32..0.2)));
            let bias_offset = flat.len();
            flat.extend((0..w[1]).map(|_| rng.gen_range(-0.1f32..0.1)));
            layers.push(LayerSpec {
                d_in: w[0],
                d_out: w[1],
                weight_offset,
                bias_offset,
            });
        }
        let last = layers.last().unwrap().bias_offset;
        flat[last] += 0.8;
        nets.push(NetSpec {
            phase: Some(phase),
            layers,
            burnpack: None,
        });
    }
    let manifest = PinnManifest {
        format_version: FORMAT_VERSION,
        name: "clitest".into(),
        scaling: InputScaling::for_bounds(inputs, &bounds),
        architecture: arch,
        reference_velocity_km_s: [6.0, 3.5],
        background: Default::default(),
        velocity,
        bounds,
        phases: Phase::ALL.to_vec(),
        training: TrainingSettings::default(),
        validation: None,
        burn_version: "0.22.1".into(),
        weights_file: "weights.f32".into(),
        nets,
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("weights.f32"),
        flat.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
}

/// Covers the demo box: corners of a 140 km square are < 200 km from any demo station.
fn demo_bounds() -> ModelBounds {
    ModelBounds {
        max_distance_km: 250.0,
        source_depth_min_km: -3.0,
        source_depth_max_km: 40.0,
        receiver_depth_min_km: -3.0,
        receiver_depth_max_km: 1.0,
    }
}

fn locate_with_model(dir: &Path, picks: &Path, model: &Path) -> Output {
    run(&[
        "locate",
        "--config",
        demo().to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--picks",
        picks.to_str().unwrap(),
        "--out",
        dir.join("net.csv").to_str().unwrap(),
        "--quiet",
    ])
}

#[test]
fn locate_model_refuses_missing_foreign_and_small_networks_and_runs_a_fitting_one() {
    let dir = tempfile::tempdir().unwrap();
    let (picks, _) = synth(dir.path(), 3);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    let o = locate_with_model(dir.path(), &picks, &dir.path().join("no-such-model"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-model"), "{}", stderr(&o));

    let foreign = dir.path().join("foreign");
    let g = GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap();
    write_artifact(&foreign, VelocityInfo::gradient(&g), demo_bounds());
    let o = locate_with_model(dir.path(), &picks, &foreign);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("velocity model") && e.contains("retrain"), "{e}");

    let small = dir.path().join("small");
    let mut b = demo_bounds();
    b.source_depth_max_km = 20.0;
    write_artifact(&small, VelocityInfo::layered(&demo_velocity()), b);
    let o = locate_with_model(dir.path(), &picks, &small);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("source depth -3-20") && e.contains("40"), "{e}");

    // a network for this velocity model and box is used (its times are arbitrary, so only
    // the plumbing is checked: it loads, the table is built from it, every event gets a row)
    let fits = dir.path().join("fits");
    write_artifact(
        &fits,
        VelocityInfo::layered(&demo_velocity()),
        demo_bounds(),
    );
    let o = locate_with_model(dir.path(), &picks, &fits);
    ok(&o);
    assert!(stderr(&o).contains("pinn:clitest"), "{}", stderr(&o));
    let (_, rows) = read_csv(&dir.path().join("net.csv"));
    assert_eq!(rows.len(), 3);
}
