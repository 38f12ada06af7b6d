//! Speed of the exact 1-D layered solver on the Ridgecrest model.
//!
//! `cargo bench --bench traveltime_exact` prints microseconds per traveltime and per
//! traveltime + gradient over random pairs: 0-150 km distance, 0-30 km source depth,
//! receiver elevation -0.2..3 km. On a shared machine wall time overstates the cost, so on
//! Linux the thread's on-CPU time (from /proc/thread-self/schedstat) is printed as well.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use eikoloc::domain::Phase;
use eikoloc::traveltime::LayeredExact;
use eikoloc::velocity::LayeredModel;
use rand::{Rng, SeedableRng};

/// Nanoseconds this thread has spent on a CPU (Linux), if readable.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `f` and returns (wall us, on-CPU us) per call for `n` calls.
fn timed(n: usize, f: impl FnOnce()) -> (f64, Option<f64>) {
    let c0 = cpu_ns();
    let start = Instant::now();
    f();
    let wall = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let cpu = c0
        .zip(cpu_ns())
        .map(|(a, b)| (b - a) as f64 / 1e3 / n as f64);
    (wall, cpu)
}

fn fmt(x: (f64, Option<f64>)) -> String {
    match x.1 {
        Some(c) => format!("{:.3} us/call wall, {c:.3} us/call on-CPU", x.0),
        None => format!("{:.3} us/call wall", x.0),
    }
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/ridgecrest_synthetic/velocity_model.csv");
    let model = LayeredModel::from_csv_path(&path).expect("Ridgecrest velocity model");
    let solver = LayeredExact::new(model);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let n = 200_000;
    let pairs: Vec<(Phase, f64, f64, f64)> = (0..n)
        .map(|i| {
            let phase = if i % 2 == 0 { Phase::P } else { Phase::S };
            (
                phase,
                rng.gen_range(0.0..150.0),
                rng.gen_range(0.0..30.0),
                -rng.gen_range(-0.2..3.0),
            )
        })
        .collect();
    println!(
        "exact-1d on {} ({} layers), {n} random pairs",
        path.display(),
        solver.model().layers().len()
    );
    for round in 0..3 {
        let mut acc = 0.0;
        let t_only = timed(n, || {
            for &(phase, r, zs, zr) in &pairs {
                acc += solver
                    .radial_time_s(black_box(phase), black_box(r), black_box(zs), black_box(zr))
                    .unwrap();
            }
        });
        let t_grad = timed(n, || {
            for &(phase, r, zs, zr) in &pairs {
                let (t, dr, dz) = solver
                    .radial(black_box(phase), black_box(r), black_box(zs), black_box(zr))
                    .unwrap();
                acc += t + dr + dz;
            }
        });
        black_box(acc);
        println!(
            "round {round}: traveltime {}; traveltime+gradient {}",
            fmt(t_only),
            fmt(t_grad)
        );
    }
}
