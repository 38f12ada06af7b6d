//! The burn-free network evaluator on an artifact written here from known weights: the chain
//! rule through T = T0 * tau and the radial geometry against finite differences, batch versus
//! single-row answers, and the loader's refusals.

use std::path::Path;

use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::traveltime::pinn::{
    Architecture, Background, InputKind, InputScaling, LayerSpec, ModelBounds, NetSpec, PhaseMode,
    PinnManifest, TrainingSettings, VelocityInfo, FORMAT_VERSION,
};
use eikoloc::traveltime::{AnalyticModel, PinnModel, Receiver, TimeAndGradient, TraveltimeModel};
use eikoloc::velocity::{GradientModel, VelocityModel};
use rand::{Rng, SeedableRng};

fn bounds() -> ModelBounds {
    ModelBounds {
        max_distance_km: 150.0,
        source_depth_min_km: 0.0,
        source_depth_max_km: 30.0,
        receiver_depth_min_km: -3.0,
        receiver_depth_max_km: 0.2,
    }
}

/// A network of random weights (tau around 0.8), or with `unit_tau` one whose output is
/// exactly 1 (so T is the background T0 itself).
fn write_artifact(
    dir: &Path,
    inputs: InputKind,
    mode: PhaseMode,
    background: Background,
    unit_tau: bool,
) -> PinnManifest {
    let arch = Architecture {
        inputs,
        hidden: vec![12, 12],
        activation: "elu".into(),
        phase_mode: mode,
        heads: 1,
        depth_kinks_km: Vec::new(),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut flat: Vec<f32> = Vec::new();
    let phases: Vec<Option<Phase>> = match mode {
        PhaseMode::Separate => vec![Some(Phase::P), Some(Phase::S)],
        PhaseMode::Input => vec![None],
    };
    let mut nets = Vec::new();
    for phase in phases {
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
        // tau around 0.8 so times are realistic
        let last = layers.last().unwrap();
        if unit_tau {
            flat[last.weight_offset..last.bias_offset].fill(0.0);
            flat[last.bias_offset] = 1.0;
        } else {
            flat[last.bias_offset] += 0.8;
        }
        nets.push(NetSpec {
            phase,
            layers,
            burnpack: None,
        });
    }
    let g = GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap();
    let manifest = PinnManifest {
        format_version: FORMAT_VERSION,
        name: "test".into(),
        scaling: InputScaling::for_bounds(inputs, &bounds()),
        architecture: arch,
        reference_velocity_km_s: [5.0, 2.9],
        background,
        velocity: VelocityInfo::gradient(&g),
        bounds: bounds(),
        phases: Phase::ALL.to_vec(),
        training: TrainingSettings::default(),
        validation: None,
        burn_version: "0.22.1".into(),
        weights_file: "weights.f32".into(),
        nets,
    };
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
    manifest
}

fn gradient_background() -> Background {
    Background::Gradient {
        z0_km: -1.0,
        v0_km_s: [4.8, 2.8],
        gradient_per_s: [0.06, 0.035],
    }
}

/// With tau = 1 the network's T and source gradient are the background medium's, which the
/// closed-form oracle gives independently.
#[test]
fn unit_tau_reproduces_the_background_medium() {
    let g = GradientModel::new(-1.0, 4.8, 2.8, 0.06, 0.035).unwrap();
    let oracle = AnalyticModel::new(g);
    for inputs in [InputKind::Radial1d, InputKind::Cartesian3d] {
        let dir = tempfile::tempdir().unwrap();
        write_artifact(
            dir.path(),
            inputs,
            PhaseMode::Separate,
            gradient_background(),
            true,
        );
        let m = PinnModel::load(dir.path()).unwrap();
        for i in 0..40 {
            let s = LocalPoint::new(
                -30.0 + 1.7 * i as f64,
                12.0 - 0.9 * i as f64,
                0.7 * i as f64,
            );
            let r = LocalPoint::new(5.0, -4.0, -0.05 * (i % 7) as f64);
            for p in Phase::ALL {
                let a = m.traveltime_and_gradient(p, s, r).unwrap();
                let b = oracle.traveltime_and_gradient(p, s, r).unwrap();
                assert!((a.t_s - b.t_s).abs() < 1e-9 * b.t_s, "{inputs:?} {p} {i}");
                for k in 0..3 {
                    assert!(
                        (a.grad_s_per_km[k] - b.grad_s_per_km[k]).abs() < 1e-9,
                        "{inputs:?} {p} {i} component {k}"
                    );
                }
            }
        }
    }
}

#[test]
fn gradient_matches_finite_differences_and_batch_matches_rows() {
    for (inputs, mode, background) in [
        (
            InputKind::Radial1d,
            PhaseMode::Separate,
            Background::Straight,
        ),
        (InputKind::Radial1d, PhaseMode::Input, Background::Straight),
        (
            InputKind::Cartesian3d,
            PhaseMode::Separate,
            Background::Straight,
        ),
        (
            InputKind::Radial1d,
            PhaseMode::Separate,
            gradient_background(),
        ),
        (
            InputKind::Cartesian3d,
            PhaseMode::Input,
            gradient_background(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_artifact(dir.path(), inputs, mode, background, false);
        let m = PinnModel::load(dir.path()).unwrap();
        let sources: Vec<LocalPoint> = (0..7)
            .map(|i| {
                LocalPoint::new(
                    -20.0 + 6.0 * i as f64,
                    13.0 - 3.0 * i as f64,
                    1.0 + 3.5 * i as f64,
                )
            })
            .collect();
        let receivers: Vec<Receiver> = (0..5)
            .map(|j| Receiver {
                phase: if j % 2 == 0 { Phase::P } else { Phase::S },
                position: LocalPoint::new(4.0 * j as f64 - 9.0, 2.0 * j as f64, -0.5 * j as f64),
            })
            .collect();
        let mut out = vec![TimeAndGradient::default(); 35];
        m.batch_with_gradient(&sources, &receivers, &mut out)
            .unwrap();
        for (i, s) in sources.iter().enumerate() {
            for (j, r) in receivers.iter().enumerate() {
                let one = m.traveltime_and_gradient(r.phase, *s, r.position).unwrap();
                assert_eq!(one, out[i * 5 + j], "{inputs:?} {mode:?} row {i},{j}");
                let h = 0.05;
                for k in 0..3 {
                    let mut a = s.to_array();
                    let mut b = a;
                    a[k] += h;
                    b[k] -= h;
                    let fd = (m
                        .traveltime_s(r.phase, LocalPoint::from_array(a), r.position)
                        .unwrap()
                        - m.traveltime_s(r.phase, LocalPoint::from_array(b), r.position)
                            .unwrap())
                        / (2.0 * h);
                    let g = one.grad_s_per_km[k];
                    assert!(
                        (g - fd).abs() < 2e-3 + 2e-3 * fd.abs(),
                        "{inputs:?} {mode:?} ({i},{j}) component {k}: {g} vs {fd}"
                    );
                }
            }
        }
        // T only skips the reverse pass but gives the same times
        let mut t_only = vec![TimeAndGradient::default(); 35];
        m.batch(&sources, &receivers, false, &mut t_only).unwrap();
        for (a, b) in t_only.iter().zip(&out) {
            assert_eq!(a.t_s, b.t_s);
        }
    }
}

#[test]
fn loader_refuses_mismatches_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let man = write_artifact(
        dir.path(),
        InputKind::Radial1d,
        PhaseMode::Separate,
        Background::Straight,
        false,
    );
    let m = PinnModel::load(dir.path()).unwrap();
    let g = GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap();
    assert!(m.check_compatible(&g.content_hash(), &bounds()).is_ok());
    let other = GradientModel::new(0.0, 5.1, 2.9, 0.05, 0.03).unwrap();
    let e = m
        .check_compatible(&other.content_hash(), &bounds())
        .unwrap_err()
        .to_string();
    assert!(e.contains("velocity model") && e.contains("retrain"), "{e}");
    let mut big = bounds();
    big.source_depth_max_km = 40.0;
    let e = m
        .check_compatible(&g.content_hash(), &big)
        .unwrap_err()
        .to_string();
    assert!(e.contains("source depth 0-40"), "{e}");
    // outside the box: a typed error, not an extrapolation
    let err = m
        .traveltime_s(
            Phase::P,
            LocalPoint::new(200.0, 0.0, 5.0),
            LocalPoint::new(0.0, 0.0, 0.0),
        )
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    // truncated weights name the file
    let w = std::fs::read(dir.path().join("weights.f32")).unwrap();
    std::fs::write(dir.path().join("weights.f32"), &w[..w.len() - 8]).unwrap();
    let e = PinnModel::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("weights.f32"), "{e}");
    // a manifest naming another architecture than its layers
    std::fs::write(dir.path().join("weights.f32"), &w).unwrap();
    let mut bad = man.clone();
    bad.architecture.hidden = vec![12, 12, 12];
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_string(&bad).unwrap(),
    )
    .unwrap();
    let e = PinnModel::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("manifest.json") && e.contains("layers"), "{e}");
}
