//! Network evaluator throughput: rows per second and GFLOP/s for 25,600 rows (512 sources x 50
//! receivers, 25 P + 25 S), T only and T + dT/dsource, for every artifact under
//! `trained-models/` (and `trained-models/cache/`) plus random-weight nets of the frontier
//! sizes (speed does not depend on the weights).
//!
//! `cargo bench --bench pinn` (set RAYON_NUM_THREADS to pin the thread count). Prints the
//! fastest of 40 repetitions (wall), the median, and CPU time per row divided by the thread
//! count (what the cores cost when the machine is shared).

use std::path::{Path, PathBuf};
use std::time::Instant;

use eikoloc::domain::{LocalPoint, Phase};
use eikoloc::traveltime::pinn::{
    Architecture, InputKind, InputScaling, LayerSpec, ModelBounds, NetSpec, PhaseMode,
    PinnManifest, TrainingSettings, VelocityInfo, FORMAT_VERSION,
};
use eikoloc::traveltime::{PinnModel, Receiver, TimeAndGradient};
use rand::{Rng, SeedableRng};

fn random_model(hidden: Vec<usize>, inputs: InputKind) -> PinnModel {
    let bounds = ModelBounds {
        max_distance_km: 150.0,
        source_depth_min_km: 0.0,
        source_depth_max_km: 30.0,
        receiver_depth_min_km: -3.0,
        receiver_depth_max_km: 0.2,
    };
    let arch = Architecture {
        inputs,
        hidden,
        activation: "elu".into(),
        phase_mode: PhaseMode::Separate,
        heads: 1,
        depth_kinks_km: Vec::new(),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut flat = Vec::new();
    let mut nets = Vec::new();
    for p in Phase::ALL {
        let mut layers = Vec::new();
        for w in arch.widths().windows(2) {
            let weight_offset = flat.len();
            let s = (1.0 / w[0] as f32).sqrt();
            flat.extend((0..w[0] * w[1]).map(|_| rng.gen_range(-s..s)));
            let bias_offset = flat.len();
            flat.extend((0..w[1]).map(|_| rng.gen_range(-0.1..0.1f32)));
            layers.push(LayerSpec {
                d_in: w[0],
                d_out: w[1],
                weight_offset,
                bias_offset,
            });
        }
        nets.push(NetSpec {
            phase: Some(p),
            layers,
            burnpack: None,
        });
    }
    let manifest = PinnManifest {
        format_version: FORMAT_VERSION,
        name: format!("random-{}", arch.label()),
        scaling: InputScaling::for_bounds(inputs, &bounds),
        architecture: arch,
        reference_velocity_km_s: [5.0, 2.9],
        background: Default::default(),
        velocity: VelocityInfo {
            kind: "none".into(),
            hash: String::new(),
            layered: None,
            gradient: None,
        },
        bounds,
        phases: Phase::ALL.to_vec(),
        training: TrainingSettings::default(),
        validation: None,
        burn_version: String::new(),
        weights_file: String::new(),
        nets,
    };
    PinnModel::from_parts(Path::new("random"), manifest, &flat).expect("valid random model")
}

fn artifacts() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("trained-models");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("cache")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().join("manifest.json").is_file() {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

fn flops_per_row(a: &Architecture) -> f64 {
    a.widths()
        .windows(2)
        .map(|w| 2.0 * (w[0] * w[1]) as f64)
        .sum()
}

fn bench(model: &PinnModel, label: &str) {
    let b = *model.bounds();
    let h = match model.manifest().architecture.inputs {
        InputKind::Radial1d => b.max_distance_km / 2.0 - 1.0,
        InputKind::Cartesian3d => b.cartesian_half_width_km() - 1.0,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let sources: Vec<LocalPoint> = (0..512)
        .map(|_| {
            LocalPoint::new(
                rng.gen_range(-h..h) * 0.7,
                rng.gen_range(-h..h) * 0.7,
                rng.gen_range(b.source_depth_min_km..b.source_depth_max_km),
            )
        })
        .collect();
    let receivers: Vec<Receiver> = (0..50)
        .map(|j| Receiver {
            phase: if j < 25 { Phase::P } else { Phase::S },
            position: LocalPoint::new(
                rng.gen_range(-h..h) * 0.7,
                rng.gen_range(-h..h) * 0.7,
                rng.gen_range(b.receiver_depth_min_km..b.receiver_depth_max_km),
            ),
        })
        .collect();
    let rows = sources.len() * receivers.len();
    let mut out = vec![TimeAndGradient::default(); rows];
    let f = flops_per_row(&model.manifest().architecture);
    for (grad, what, mult) in [(false, "T", 1.0), (true, "T+grad", 2.0)] {
        model
            .batch(&sources, &receivers, grad, &mut out)
            .expect("in the box");
        let reps = 40;
        let mut wall = Vec::with_capacity(reps);
        let cpu0 = cpu_time_s();
        for _ in 0..reps {
            let t = Instant::now();
            model
                .batch(&sources, &receivers, grad, &mut out)
                .expect("in the box");
            wall.push(t.elapsed().as_secs_f64());
        }
        let cpu = (cpu_time_s() - cpu0) / reps as f64;
        wall.sort_by(|a, b| a.total_cmp(b));
        // the fastest repetition: on a shared machine the others wait for cores
        let s = wall[0];
        let threads = rayon::current_num_threads() as f64;
        println!(
            "{label:<50} {what:<7} {rows} rows  best {:>7.3} ms  {:>6.3} us/row  {:>6.2} Mrows/s  {:>5.1} GFLOP/s | median {:>6.3} us/row | CPU {:>6.3} us/row / {threads} threads = {:>6.3}",
            s * 1e3,
            s * 1e6 / rows as f64,
            rows as f64 / s / 1e6,
            mult * f * rows as f64 / s / 1e9,
            wall[reps / 2] * 1e6 / rows as f64,
            cpu * 1e6 / rows as f64,
            cpu * 1e6 / rows as f64 / threads,
        );
    }
}

/// CPU time of this process (user + system, all threads), s, from /proc (NaN elsewhere):
/// the time the evaluator needs when it gets the cores, whatever else runs on the machine.
fn cpu_time_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // clock ticks are 100 per second on Linux
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    println!("threads: {}", rayon::current_num_threads());
    for p in artifacts() {
        match PinnModel::load(&p) {
            Ok(m) => {
                let label = format!(
                    "{} ({}, {} p/net)",
                    p.file_name().unwrap().to_string_lossy(),
                    m.manifest().architecture.label(),
                    m.manifest().architecture.n_params()
                );
                bench(&m, &label);
            }
            Err(e) => eprintln!("skipping {}: {e}", p.display()),
        }
    }
    for (hidden, inputs) in [
        (vec![16; 4], InputKind::Radial1d),
        (vec![32; 4], InputKind::Radial1d),
        (vec![48; 4], InputKind::Radial1d),
        (vec![64; 4], InputKind::Radial1d),
        (vec![128; 5], InputKind::Cartesian3d),
    ] {
        let m = random_model(hidden, inputs);
        let label = format!(
            "random {} ({} p/net)",
            m.manifest().architecture.label(),
            m.manifest().architecture.n_params()
        );
        bench(&m, &label);
    }
}
