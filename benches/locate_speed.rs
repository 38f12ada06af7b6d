//! Per-event locating time with 30 picks (15 stations, P and S), full posterior (SVGD +
//! Metropolis refinement, default configuration). Prints the distribution of per-event wall
//! time and on-CPU time (from /proc/thread-self/schedstat, immune to other load on the
//! machine), one event at a time, and the 2-thread throughput (rayon over events).
//! Run: `cargo bench --bench locate_speed` (EIKOLOC_SPEED_EVENTS sets the event count;
//! EIKOLOC_SPEED_MODELS, a comma list such as `table(analytic),table(exact-1d)`, picks models;
//! EIKOLOC_SPEED_OLD_MODEL_ERROR=1 times the old default term, independent max(0.05 s, 0.02 T)
//! without the correlated widening, for comparison).

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use eikoloc::domain::LocalPoint;
use eikoloc::locate::{locate, LocateConfig, Observation, RadialTableModel, SearchBox, TableGrid};
use eikoloc::synth::{generate, SynthConfig};
use eikoloc::traveltime::{AnalyticModel, LayeredExact, Receiver, TraveltimeModel};
use eikoloc::velocity::{GradientModel, LayeredModel};

fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let n: usize = std::env::var("EIKOLOC_SPEED_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let stations: Vec<LocalPoint> = (0..15)
        .map(|k| {
            let a = k as f64 * 24f64.to_radians();
            let r = [40.0, 15.0, 28.0][k % 3];
            LocalPoint::new(r * a.sin(), r * a.cos(), -0.5)
        })
        .collect();
    let analytic: Arc<dyn TraveltimeModel> = Arc::new(AnalyticModel::new(
        GradientModel::new(0.0, 5.0, 2.9, 0.05, 0.03).unwrap(),
    ));
    let bbox = SearchBox {
        x_min_km: -80.0,
        x_max_km: 80.0,
        y_min_km: -80.0,
        y_max_km: 80.0,
        z_min_km: -0.5,
        z_max_km: 40.0,
    };
    let synth = SynthConfig {
        n_events: n,
        x_range_km: (-25.0, 25.0),
        y_range_km: (-25.0, 25.0),
        z_range_km: (0.0, 25.0),
        ..Default::default()
    };
    let events = generate(analytic.as_ref(), &stations, &synth).unwrap();
    let receivers: Vec<Receiver> = stations
        .iter()
        .flat_map(|p| {
            eikoloc::domain::Phase::ALL.map(|ph| Receiver {
                phase: ph,
                position: *p,
            })
        })
        .collect();
    let grid = TableGrid {
        r_max_km: 140.0,
        dr_km: 1.0,
        z_min_km: -0.5,
        z_max_km: 40.0,
        dz_km: 0.5,
    };
    let mut models: Vec<(String, Arc<dyn TraveltimeModel>)> =
        vec![("analytic".into(), analytic.clone())];
    let t = Instant::now();
    models.push((
        "table(analytic)".into(),
        Arc::new(RadialTableModel::build(analytic.clone(), grid, &receivers).unwrap()),
    ));
    println!(
        "table build: {:.2} s for {} receivers",
        t.elapsed().as_secs_f64(),
        receivers.len()
    );
    // the exact 1-D layered solver (Hadley-Kanamori), direct and tabulated
    let exact: Arc<dyn TraveltimeModel> =
        Arc::new(LayeredExact::new(LayeredModel::hadley_kanamori()));
    models.push(("exact-1d".into(), exact.clone()));
    let t = Instant::now();
    models.push((
        "table(exact-1d)".into(),
        Arc::new(RadialTableModel::build(exact.clone(), grid, &receivers).unwrap()),
    ));
    println!("exact table build: {:.2} s", t.elapsed().as_secs_f64());
    if let Ok(keep) = std::env::var("EIKOLOC_SPEED_MODELS") {
        let keep: Vec<&str> = keep.split(',').map(str::trim).collect();
        models.retain(|(name, _)| keep.contains(&name.as_str()));
    }
    let config = if std::env::var("EIKOLOC_SPEED_OLD_MODEL_ERROR").as_deref() == Ok("1") {
        println!("old default model-error term: independent max(0.05 s, 0.02 T)");
        LocateConfig {
            model_error_floor_s: 0.05,
            model_error_fraction: 0.02,
            ..LocateConfig::known_noise()
        }
    } else {
        LocateConfig::default()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{n} events, 30 picks each, {} particles, {} Metropolis steps; load average {}",
        config.n_particles,
        config.mh_steps,
        load.trim()
    );
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "model", "cpu_p10", "cpu_p50", "cpu_p90", "wall_p50", "wall_p90", "2thr_ms/ev"
    );
    for (name, m) in &models {
        let obs_of = |k: usize| -> Vec<Observation> {
            events[k]
                .picks
                .iter()
                .map(|p| Observation {
                    receiver: Receiver {
                        phase: p.phase,
                        position: stations[p.station],
                    },
                    t_obs_s: p.t_s,
                    pick_sigma_s: p.sigma_s,
                })
                .collect()
        };
        let (mut cpu, mut wall) = (Vec::new(), Vec::new());
        for k in 0..n {
            let obs = obs_of(k);
            let c0 = cpu_ns();
            let t0 = Instant::now();
            locate(m.as_ref(), &obs, &bbox, &config, k as u64).unwrap();
            wall.push(t0.elapsed().as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (c0, cpu_ns()) {
                cpu.push((b - a) as f64 * 1e-6);
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let t0 = Instant::now();
        pool.install(|| {
            (0..n).into_par_iter().for_each(|k| {
                locate(m.as_ref(), &obs_of(k), &bbox, &config, k as u64).unwrap();
            })
        });
        let thr = t0.elapsed().as_secs_f64() * 1e3 / n as f64;
        let c = if cpu.is_empty() {
            [f64::NAN; 3]
        } else {
            [pct(&mut cpu, 0.1), pct(&mut cpu, 0.5), pct(&mut cpu, 0.9)]
        };
        println!(
            "{:<18} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>12.2}",
            name,
            c[0],
            c[1],
            c[2],
            pct(&mut wall, 0.5),
            pct(&mut wall, 0.9),
            thr
        );
    }
}
