//! Eikonal grid tables on the Ridgecrest network: build time, memory, lookup cost, and error
//! against a reference, by distance bin, for several table spacings.
//!
//! `cargo bench --bench grid` (release). Options after `--`:
//! `--spacings 0.4,0.2,0.1` (km); `--reference-spacing H` (km) to compare against the grid
//! solver at spacing H instead of the exact solver; `--no-accuracy` for timings only.
//!
//! Reference: [`LayeredExact`], exact flat-Earth first arrivals (direct and head waves) in the
//! same layered model, on 3000 off-node (distance 0-200 km, source depth 0-30 km) pairs at the
//! shallowest, median and deepest station depths, P and S.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use eikoloc::domain::{LocalFrame, LocalPoint, Phase};
use eikoloc::traveltime::{
    GridTraveltime, GridTraveltimeConfig, LayeredExact, Receiver, TimeAndGradient, TraveltimeModel,
};
use eikoloc::velocity::LayeredModel;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// CPU seconds used by this process so far (user + system, all threads), from /proc; the
/// build machine is shared, so wall time alone overstates the cost.
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // fields 14 and 15 (utime, stime) are at 11 and 12 after the ')' of the comm field
            Some((rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ridgecrest_synthetic");
    let model =
        LayeredModel::from_csv_path(&root.join("velocity_model.csv")).expect("ridgecrest model");
    let inv =
        eikoloc::inventory::read_path(&root.join("stations.csv")).expect("ridgecrest stations");
    let n = inv.len() as f64;
    let lat0 = inv.stations().iter().map(|s| s.lat_deg).sum::<f64>() / n;
    let lon0 = inv.stations().iter().map(|s| s.lon_deg).sum::<f64>() / n;
    let frame = LocalFrame::new(eikoloc::domain::GeoPoint::new(lat0, lon0).expect("centroid"));
    let stations: Vec<LocalPoint> = inv
        .stations()
        .iter()
        .map(|s| {
            let (x, y) = frame.to_local(s.geo());
            LocalPoint::new(x, y, s.depth_km())
        })
        .collect();
    let mut depths: Vec<i64> = stations
        .iter()
        .map(|s| (s.z_km * 1e6).round() as i64)
        .collect();
    depths.sort();
    depths.dedup();
    println!(
        "Ridgecrest: {} stations, {} distinct depths, model {} layers; rayon threads {}",
        stations.len(),
        depths.len(),
        model.layers().len(),
        rayon::current_num_threads()
    );

    let spacings: Vec<f64> = arg("--spacings")
        .unwrap_or_else(|| "0.4,0.2,0.1".into())
        .split(',')
        .map(|s| s.trim().parse().expect("spacing km"))
        .collect();
    let ref_h: f64 = arg("--reference-spacing")
        .map(|s| s.parse().expect("km"))
        .unwrap_or(0.0);
    let accuracy = !std::env::args().any(|a| a == "--no-accuracy");
    let base = GridTraveltimeConfig {
        r_max_km: 200.0,
        z_min_km: -3.0,
        z_max_km: 40.0,
        ..Default::default()
    };
    let layered = model.clone();
    let model: Arc<dyn eikoloc::velocity::VelocityModel> = Arc::new(model);

    // evaluation set: off-node distances 0..200 km, source depths 0..30 km, at three stations'
    // depths (shallowest, median, deepest)
    let mut zr: Vec<f64> = stations.iter().map(|s| s.z_km).collect();
    zr.sort_by(f64::total_cmp);
    let zr_eval = [zr[0], zr[zr.len() / 2], zr[zr.len() - 1]];
    let mut queries = Vec::new();
    let mut u = 0.377f64;
    for _ in 0..3000 {
        u = (u * 997.0 + 0.618_033_988_7).fract();
        let r = u * 200.0;
        u = (u * 997.0 + 0.618_033_988_7).fract();
        let zs = u * 30.0;
        for &z in &zr_eval {
            queries.push((r, zs, z));
        }
    }
    // reference: the exact layered solver (flat Earth, direct + head waves); with
    // `--reference-spacing H` the grid solver at spacing H instead (a convergence check)
    let t = Instant::now();
    let ref_label;
    let ref_times: Vec<[f64; 2]> = if accuracy && ref_h > 0.0 {
        let reference = GridTraveltime::radial_lazy(
            model.clone(),
            GridTraveltimeConfig {
                spacing_km: ref_h,
                ..base
            },
        )
        .expect("reference");
        ref_label = format!("eikonal grid at h = {ref_h} km");
        queries
            .iter()
            .map(|&(r, zs, z)| {
                Phase::ALL.map(|p| {
                    reference
                        .radial_traveltime(p, r, zs, z)
                        .expect("reference query")
                        .t_s
                })
            })
            .collect()
    } else if accuracy {
        let exact = LayeredExact::new(layered.clone());
        ref_label = "exact layered solver (LayeredExact)".to_string();
        queries
            .iter()
            .map(|&(r, zs, z)| {
                Phase::ALL.map(|p| exact.radial_time_s(p, r, zs, z).expect("exact query"))
            })
            .collect()
    } else {
        ref_label = "none (--no-accuracy)".to_string();
        Vec::new()
    };
    println!(
        "reference: {ref_label} ({:.1} s)\n",
        t.elapsed().as_secs_f64()
    );

    let bins = [
        (0.0, 10.0),
        (10.0, 25.0),
        (25.0, 50.0),
        (50.0, 100.0),
        (100.0, 200.0),
    ];
    println!("| h km | build wall s | build CPU s | tables | memory MB | us/lookup (T+grad) | bin km | median abs dT s | p99 s | max s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &h in &spacings {
        let cfg = GridTraveltimeConfig {
            spacing_km: h,
            ..base
        };
        let t = Instant::now();
        let c = cpu_s();
        let g = GridTraveltime::for_stations(model.clone(), &stations, cfg).expect("tables");
        let build_s = t.elapsed().as_secs_f64();
        let build_cpu_s = cpu_s() - c;

        // lookups through the trait (the locator's path): 200 sources x all stations x P, S
        let receivers: Vec<Receiver> = Phase::ALL
            .iter()
            .flat_map(|&phase| {
                stations
                    .iter()
                    .map(move |&position| Receiver { phase, position })
            })
            .collect();
        let sources: Vec<LocalPoint> = (0..200)
            .map(|i| {
                let f = i as f64 / 200.0;
                LocalPoint::new(
                    -30.0 + 60.0 * f,
                    25.0 - 50.0 * (f * 7.0).fract(),
                    1.0 + 20.0 * (f * 3.0).fract(),
                )
            })
            .collect();
        let mut out = vec![TimeAndGradient::default(); sources.len() * receivers.len()];
        let t = Instant::now();
        let reps = 5;
        for _ in 0..reps {
            g.batch_with_gradient(&sources, &receivers, &mut out)
                .expect("lookups");
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / (reps * out.len()) as f64;

        let mut errs = vec![Vec::new(); bins.len()];
        for (q, rt) in queries.iter().zip(&ref_times) {
            let b = bins
                .iter()
                .position(|&(lo, hi)| q.0 >= lo && q.0 < hi)
                .unwrap_or(bins.len() - 1);
            for p in Phase::ALL {
                // the evaluation depths are station depths, so the station tables answer
                let tt = g.radial_traveltime(p, q.0, q.1, q.2).expect("query").t_s;
                errs[b].push((tt - rt[p.index()]).abs());
            }
        }
        for (b, e) in errs.iter_mut().enumerate() {
            e.sort_by(f64::total_cmp);
            let head = if b == 0 {
                format!(
                    "| {h} | {build_s:.2} | {build_cpu_s:.2} | {} | {:.1} | {us:.3} ",
                    g.table_count(),
                    g.table_bytes() as f64 / 1e6
                )
            } else {
                "| | | | | | ".to_string()
            };
            if e.is_empty() {
                println!("{head}| - | - | - | - |");
                continue;
            }
            println!(
                "{head}| {}-{} | {:.4} | {:.4} | {:.4} |",
                bins[b].0,
                bins[b].1,
                percentile(e, 0.5),
                percentile(e, 0.99),
                e[e.len() - 1]
            );
        }
    }
}
