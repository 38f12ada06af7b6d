//! Locates every event of every shared data set (../shared/data) with the default locator on
//! the exact 1-D solver behind the radial table, and prints per set: events located, median
//! RMS, median 95 % sizes, the median horizontal / depth distance to the set's reference
//! catalog, and how often the reported 95 % ellipse (`ref_inH`) and depth interval (`ref_inZ`)
//! hold the reference hypocentre (a catalog with its own errors, not the truth: the
//! ridgecrest truth is withheld from ../shared/data). Run: `cargo bench --bench locate_datasets` (EIKOLOC_DATASETS=ridgecrest,... to
//! choose; EIKOLOC_DATASET_EVENTS=N caps the events per set).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use eikoloc::catalog::csv::{read_picks_file, read_reference_catalog_file, PicksCsvOptions};
use eikoloc::config::ResolvedStationConfig;
use eikoloc::locate::event::locate_picks;
use eikoloc::locate::{LocateConfig, RadialTableModel, SearchBox, TableGrid};
use eikoloc::traveltime::{LayeredExact, Receiver, TraveltimeModel};

fn med(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data");
    let sets = [
        (
            "ridgecrest",
            "ridgecrest_synthetic",
            "catalog_velest_start.csv",
        ),
        ("hypodd_parkfield", "hypodd_parkfield", "catalog.csv"),
        ("hypodd_calaveras", "hypodd_calaveras", "catalog.csv"),
        ("nlloc_alaska", "nlloc_alaska_2018", "catalog.csv"),
    ];
    let only = std::env::var("EIKOLOC_DATASETS").ok();
    let cap: usize = std::env::var("EIKOLOC_DATASET_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let config = LocateConfig {
        model_error_floor_s: 0.05,
        model_error_fraction: 0.02,
        ..Default::default()
    };
    println!(
        "locator: {:?}/{:?}, {} particles, {} Metropolis steps, model error max({} s, {} T)",
        config.likelihood,
        config.origin_time,
        config.n_particles,
        config.mh_steps,
        config.model_error_floor_s,
        config.model_error_fraction
    );
    println!(
        "{:<18} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>8}",
        "set",
        "events",
        "located",
        "rms_s",
        "h95_km",
        "z95_km",
        "ref_n",
        "dH_ref_km",
        "dZ_ref_km",
        "ref_inH",
        "ref_inZ",
        "s/event"
    );
    for (cfg, dir, reference) in sets {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|x| x == cfg))
        {
            continue;
        }
        let rc = match ResolvedStationConfig::load(&root.join("station-configs").join(cfg)) {
            Ok(r) => r,
            Err(e) => {
                println!("{cfg}: {e}");
                continue;
            }
        };
        let picks = read_picks_file(
            &data.join(dir).join("picks.csv"),
            &PicksCsvOptions {
                default_uncertainty_s: 0.05,
            },
        )
        .expect("picks");
        let events: Vec<_> = picks.records.into_iter().take(cap).collect();
        let b = rc.model_box;
        let bbox = SearchBox {
            x_min_km: b.x_min_km,
            x_max_km: b.x_max_km,
            y_min_km: b.y_min_km,
            y_max_km: b.y_max_km,
            z_min_km: (-rc.inventory.max_elevation_m() / 1000.0).max(b.z_min_km),
            z_max_km: b.z_max_km,
        };
        let mut receivers = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ev in &events {
            for p in &ev.picks {
                if let Some(i) = rc
                    .inventory
                    .position(&p.station.network, &p.station.station)
                {
                    if seen.insert((i, p.phase)) {
                        receivers.push(Receiver {
                            phase: p.phase,
                            position: rc.station_positions[i],
                        });
                    }
                }
            }
        }
        let exact: Arc<dyn TraveltimeModel> = Arc::new(LayeredExact::new(rc.velocity.clone()));
        let grid = TableGrid {
            r_max_km: rc.max_source_receiver_distance_km().min(400.0),
            dr_km: 0.5,
            z_min_km: bbox.z_min_km,
            z_max_km: bbox.z_max_km,
            dz_km: 0.25,
        };
        let model = RadialTableModel::build(exact, grid, &receivers).expect("table");
        let pos = |n: &str, s: &str| rc.station_position(n, s);
        let t0 = Instant::now();
        let out: Vec<_> = events
            .par_iter()
            .enumerate()
            .map(|(k, ev)| {
                (
                    ev.event_id.clone(),
                    locate_picks(
                        &model,
                        &pos,
                        &rc.frame,
                        &ev.picks,
                        &bbox,
                        &config,
                        300.0,
                        k as u64,
                        format!("{}/1", ev.event_id),
                    ),
                )
            })
            .collect();
        let per = t0.elapsed().as_secs_f64() / events.len().max(1) as f64;
        let refs: HashMap<String, (f64, f64, f64)> =
            read_reference_catalog_file(&data.join(dir).join(reference))
                .map(|r| {
                    r.records
                        .into_iter()
                        .map(|h| (h.event_id.clone(), (h.lat_deg, h.lon_deg, h.depth_km)))
                        .collect()
                })
                .unwrap_or_default();
        let (mut rms, mut h95, mut z95, mut dh, mut dz) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // how often the reported 95 % ellipse / depth interval hold the reference hypocentre
        let (mut in_h95, mut in_z95) = (0usize, 0usize);
        let mut located = 0;
        for (id, o) in &out {
            let Ok((s, _)) = &o.result else { continue };
            located += 1;
            rms.push(s.origin.rms_s);
            h95.push(s.origin.uncertainty.horizontal_95.major_km);
            z95.push(s.origin.uncertainty.depth_95_km);
            if let Some(&(lat, lon, z)) = refs.get(id) {
                let (d, _) = rc.frame.distance_azimuth(
                    eikoloc::domain::GeoPoint {
                        lat_deg: lat,
                        lon_deg: lon,
                    },
                    eikoloc::domain::GeoPoint {
                        lat_deg: s.origin.lat_deg,
                        lon_deg: s.origin.lon_deg,
                    },
                );
                dh.push(d);
                dz.push((z - s.origin.depth_km).abs());
                // the reference's offset along the major and minor axes of the 95 % ellipse
                let (_, az) = rc.frame.distance_azimuth(
                    eikoloc::domain::GeoPoint {
                        lat_deg: s.origin.lat_deg,
                        lon_deg: s.origin.lon_deg,
                    },
                    eikoloc::domain::GeoPoint {
                        lat_deg: lat,
                        lon_deg: lon,
                    },
                );
                let e = s.origin.uncertainty.horizontal_95;
                let rel = (az - e.azimuth_deg).to_radians();
                let (a, b) = (d * rel.cos(), d * rel.sin());
                let q = (a / e.major_km.max(1e-9)).powi(2) + (b / e.minor_km.max(1e-9)).powi(2);
                in_h95 += usize::from(q <= 1.0);
                in_z95 +=
                    usize::from((z - s.origin.depth_km).abs() <= s.origin.uncertainty.depth_95_km);
            }
        }
        let nref = dh.len();
        let frac = |k: usize| k as f64 / nref.max(1) as f64;
        println!(
            "{:<18} {:>6} {:>7} {:>7.3} {:>8.2} {:>8.2} {:>8} {:>9.2} {:>9.2} {:>7.3} {:>7.3} {:>8.3}",
            cfg,
            events.len(),
            located,
            med(&mut rms),
            med(&mut h95),
            med(&mut z95),
            nref,
            med(&mut dh),
            med(&mut dz),
            frac(in_h95),
            frac(in_z95),
            per
        );
    }
}
