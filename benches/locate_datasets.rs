//! Locates every event of every shared data set (../shared/data) with the default locator on
//! the exact 1-D solver behind the radial table, without and with station terms, and prints
//! per set and mode: events located, median RMS, median 95 % sizes, and the median horizontal
//! / depth distance to each of the set's reference catalogs (HypoDD relocations, the network
//! catalog, NonLinLoc's own locations).
//!
//! Modes (EIKOLOC_TERMS, comma-separated; default `none,static,ssst,calibrated`):
//! - `none`: no station terms (the first pass of the static run);
//! - `static`: static terms from our own locations, iterated (EIKOLOC_TERMS_ITERATIONS, 3);
//! - `ssst`: source-specific terms, iterated (k 30, radius 20 -> 5 km);
//! - `calibrated`: static terms from the raw residuals at the *network catalog's* hypocentres
//!   of the other half of the events (two-fold cross-validation: even-numbered events
//!   calibrate the odd ones and back), one pass. The way an observatory calibrates delays on
//!   well-located events; no event is located with terms it helped estimate.
//!   `calib_only` uses only the arrivals that have a calibrated term.
//!
//! Every mode is reported for the catalogue's point (the locator's reported hypocentre) and,
//! as `MODE_map` / `MODE_med`, for the same posteriors' highest-posterior particle and
//! component-wise particle median.
//!
//! Run: `cargo bench --bench locate_datasets` (EIKOLOC_DATASETS=ridgecrest,hypodd_parkfield,
//! hypodd_calaveras,nlloc_alaska to choose; EIKOLOC_DATASET_EVENTS=N caps the events per set;
//! EIKOLOC_PARTICLES / EIKOLOC_MH_STEPS override the locator's particle and Metropolis counts;
//! EIKOLOC_MODEL_ERROR=FLOOR_S,FRACTION[,CORRELATION_KM[,PS_CORRELATION[,CORRELATION_DEG]]]
//! sets the model-error term, default `LocateConfig::default()`'s; the fields left out are 0
//! (correlation) and the default's P-S correlation; EIKOLOC_DISTANCE_WEIGHTING=MIN_STATIONS,
//! FULL_KM,ZERO_FACTOR or `off` overrides the station config's distance weighting).
//!
//! Reference coverage: per reference catalogue, the fraction of events whose reference
//! hypocentre lies inside the event's reported 68 % / 95 % horizontal ellipse (`cH`) and
//! depth interval (`cZ`), centred on the posterior mean as reported. A reference catalogue is
//! not the truth (HypoDD's relative locations carry their own error, and its depths a
//! different model), so these are agreement rates, not calibration.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use eikoloc::catalog::csv::{read_picks_file, read_reference_catalog_file, PicksCsvOptions};
use eikoloc::config::ResolvedStationConfig;
use eikoloc::domain::{GeoPoint, Phase, Pick};
use eikoloc::locate::event::locate_picks_corrected;
use eikoloc::locate::station_terms::{
    relocate_with_terms, EventCorrections, LocatedEvent, StaticTerms, StationTerms, TermsConfig,
    TermsKind,
};
use eikoloc::locate::{DistanceWeighting, LocateConfig, RadialTableModel, SearchBox, TableGrid};
use eikoloc::traveltime::{LayeredExact, Receiver, TraveltimeModel};

fn med(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (station config, data folder, [(reference name, catalog file)]).
type DataSet = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);
/// Event id to (lat deg, lon deg, depth km).
/// Which point of a posterior a report row measures.
#[derive(Clone, Copy)]
enum Point {
    /// The catalogue's origin (the locator's reported hypocentre).
    Catalog,
    /// The highest-posterior particle.
    Map,
    /// The component-wise particle median.
    Median,
}

type Hypocentres = HashMap<String, (f64, f64, f64)>;

/// Per call of one event: h95 major km, z95 km, MAP and particle median [lat deg, lon deg,
/// depth km], and per
/// reference catalogue whether its hypocentre lies inside the 68 % / 95 % horizontal and
/// depth regions (None without a reference hypocentre).
#[derive(Clone)]
struct Call {
    h95_km: f64,
    z95_km: f64,
    map: [f64; 3],
    median: [f64; 3],
    inside: Vec<Option<[bool; 4]>>,
}
type CallExtras = Mutex<Vec<Call>>;

/// Whether `r` (local km) lies inside the 68 % / 95 % horizontal ellipse and depth interval of
/// `post` (h68, h95, z68, z95).
fn inside_regions(post: &eikoloc::locate::Posterior, r: [f64; 3]) -> [bool; 4] {
    let (m, c) = (post.mean_km, post.cov_km2);
    let (dx, dy, dz) = (r[0] - m[0], r[1] - m[1], r[2] - m[2]);
    let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
    let d2 = if det > 0.0 {
        (c[1][1] * dx * dx - 2.0 * c[0][1] * dx * dy + c[0][0] * dy * dy) / det
    } else {
        f64::INFINITY
    };
    let sz = c[2][2].max(0.0).sqrt();
    [
        d2 <= post.h2_quantiles[0],
        d2 <= post.h2_quantiles[1],
        dz.abs() <= post.z_quantiles[0] * sz,
        dz.abs() <= post.z_quantiles[1] * sz,
    ]
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Per located event: hypocentre, RMS of the corrected residuals, h95 major and z95.
#[derive(Clone)]
struct Located {
    lat: f64,
    lon: f64,
    depth_km: f64,
    rms_s: f64,
    h95_km: f64,
    z95_km: f64,
    inside: Vec<Option<[bool; 4]>>,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data");
    let sets: [DataSet; 4] = [
        (
            "ridgecrest",
            "ridgecrest_synthetic",
            &[("velest_start", "catalog_velest_start.csv")],
        ),
        (
            "hypodd_parkfield",
            "hypodd_parkfield",
            &[("hypodd", "catalog_hypodd.csv"), ("network", "catalog.csv")],
        ),
        (
            "hypodd_calaveras",
            "hypodd_calaveras",
            &[("hypodd", "catalog_hypodd.csv"), ("network", "catalog.csv")],
        ),
        (
            "nlloc_alaska",
            "nlloc_alaska_2018",
            &[("nlloc", "catalog.csv")],
        ),
    ];
    let only = std::env::var("EIKOLOC_DATASETS").ok();
    let cap = env_usize("EIKOLOC_DATASET_EVENTS").unwrap_or(usize::MAX);
    let modes: Vec<String> = std::env::var("EIKOLOC_TERMS")
        .unwrap_or_else(|_| "none,static,ssst,calibrated".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let iterations = env_usize("EIKOLOC_TERMS_ITERATIONS").unwrap_or(3);
    let defaults = LocateConfig::default();
    let me: Option<Vec<f64>> = std::env::var("EIKOLOC_MODEL_ERROR").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().parse().expect("EIKOLOC_MODEL_ERROR: numbers"))
            .collect()
    });
    let config = LocateConfig {
        model_error_floor_s: me.as_ref().map_or(defaults.model_error_floor_s, |m| m[0]),
        model_error_fraction: me.as_ref().map_or(defaults.model_error_fraction, |m| m[1]),
        model_error_correlation_km: me
            .as_ref()
            .map_or(defaults.model_error_correlation_km, |m| {
                m.get(2).copied().unwrap_or(0.0)
            }),
        model_error_ps_correlation: me
            .as_ref()
            .and_then(|m| m.get(3).copied())
            .unwrap_or(defaults.model_error_ps_correlation),
        model_error_correlation_deg: me
            .as_ref()
            .map_or(defaults.model_error_correlation_deg, |m| {
                m.get(4).copied().unwrap_or(0.0)
            }),
        n_particles: env_usize("EIKOLOC_PARTICLES").unwrap_or(defaults.n_particles),
        mh_steps: env_usize("EIKOLOC_MH_STEPS").unwrap_or(defaults.mh_steps),
        ..defaults
    };
    println!(
        "locator: {:?}/{:?}, {} particles, {} Metropolis steps, model error max({} s, {} T) \
         correlated over {} km / {} deg (P-S {}); terms: {iterations} rounds",
        config.likelihood,
        config.origin_time,
        config.n_particles,
        config.mh_steps,
        config.model_error_floor_s,
        config.model_error_fraction,
        config.model_error_correlation_km,
        config.model_error_correlation_deg,
        config.model_error_ps_correlation
    );
    println!(
        "{:<18} {:<10} {:>6} {:>7} {:>7} {:>7} {:>7}  reference: n, median dH km / median dZ km / signed median dZ km, reference inside 68/95 % regions H cH68/cH95 Z cZ68/cZ95",
        "set", "terms", "events", "located", "rms_s", "h95_km", "z95_km"
    );
    for (cfg, dir, references) in sets {
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
        // the network's own distance weighting (station config `[locator]`), unless
        // EIKOLOC_DISTANCE_WEIGHTING (MIN_STATIONS,FULL_KM,ZERO_FACTOR or `off`) overrides it
        let config = LocateConfig {
            distance_weighting: match std::env::var("EIKOLOC_DISTANCE_WEIGHTING").ok() {
                Some(s) if s.trim() == "off" => None,
                Some(s) => Some(DistanceWeighting::parse(&s).expect("EIKOLOC_DISTANCE_WEIGHTING")),
                None => rc.locator.distance_weighting,
            },
            ..config.clone()
        };
        println!("{cfg}: distance weighting {:?}", config.distance_weighting);
        let bbox = SearchBox::for_station_config(&rc);
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
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let refs: Vec<(&str, Hypocentres)> = references
            .iter()
            .map(|(name, file)| {
                let m = read_reference_catalog_file(&data.join(dir).join(file))
                    .map(|r| {
                        r.records
                            .into_iter()
                            .map(|h| (h.event_id.clone(), (h.lat_deg, h.lon_deg, h.depth_km)))
                            .collect()
                    })
                    .unwrap_or_default();
                (*name, m)
            })
            .collect();
        // each event's reference hypocentres in local km, one per reference catalogue
        let refs_local: Vec<Vec<Option<[f64; 3]>>> = ids
            .iter()
            .map(|id| {
                refs.iter()
                    .map(|(_, r)| {
                        r.get(id).and_then(|&(lat, lon, z)| {
                            let g = GeoPoint::new(lat, lon).ok()?;
                            let (x, y) = rc.frame.to_local(g);
                            Some([x, y, z])
                        })
                    })
                    .collect()
            })
            .collect();
        // (h95, z95, MAP lat, lon, depth, reference coverage) of every call per event, so
        // that each pass of a run can be reported
        let extras: Vec<CallExtras> = (0..events.len()).map(|_| Mutex::new(Vec::new())).collect();
        let locate_these = |i: usize, picks: &[Pick], corr: &EventCorrections| {
            let ev = &events[i];
            let c = |n: &str, s: &str, p: Phase| corr.correction_s(n, s, p);
            let o = locate_picks_corrected(
                &model,
                &pos,
                &rc.frame,
                picks,
                &bbox,
                &config,
                300.0,
                i as u64,
                format!("{}/1", ev.event_id),
                &c,
            );
            let (hz, located) = match &o.result {
                Ok((s, post)) => {
                    let g = rc.frame.to_geo(post.map_km[0], post.map_km[1]);
                    // component-wise particle median
                    let mut md = [0.0; 3];
                    for (k, v) in md.iter_mut().enumerate() {
                        let mut c: Vec<f64> = post.particles.iter().map(|p| p[k]).collect();
                        *v = med(&mut c);
                    }
                    let gm = rc.frame.to_geo(md[0], md[1]);
                    (
                        Call {
                            h95_km: s.origin.uncertainty.horizontal_95.major_km,
                            z95_km: s.origin.uncertainty.depth_95_km,
                            map: [g.lat_deg, g.lon_deg, post.map_km[2]],
                            median: [gm.lat_deg, gm.lon_deg, md[2]],
                            inside: refs_local[i]
                                .iter()
                                .map(|r| r.map(|r| inside_regions(post, r)))
                                .collect(),
                        },
                        Some(LocatedEvent::from_origin(&ev.event_id, &s.origin, &c)),
                    )
                }
                Err(_) => (
                    Call {
                        h95_km: f64::NAN,
                        z95_km: f64::NAN,
                        map: [f64::NAN; 3],
                        median: [f64::NAN; 3],
                        inside: Vec::new(),
                    },
                    None,
                ),
            };
            if let Ok(mut v) = extras[i].lock() {
                v.push(hz);
            }
            ((), located)
        };
        let locate = |i: usize, corr: &EventCorrections| locate_these(i, &events[i].picks, corr);
        let to_located =
            |cat: &[Option<LocatedEvent>], pass: usize, point: Point| -> Vec<Option<Located>> {
                cat.iter()
                    .enumerate()
                    .map(|(i, e)| {
                        e.as_ref().map(|e| {
                            let call = extras[i].lock().ok().and_then(|v| v.get(pass).cloned());
                            let (h95, z95, m, md, inside) = call.map_or(
                                (f64::NAN, f64::NAN, [f64::NAN; 3], [f64::NAN; 3], Vec::new()),
                                |c| (c.h95_km, c.z95_km, c.map, c.median, c.inside),
                            );
                            let n = e.arrivals.len().max(1) as f64;
                            let rms = (e
                                .arrivals
                                .iter()
                                .map(|a| (a.residual_s - a.correction_s).powi(2))
                                .sum::<f64>()
                                / n)
                                .sqrt();
                            let p = match point {
                                Point::Map => m,
                                Point::Median => md,
                                Point::Catalog => [e.lat_deg, e.lon_deg, e.depth_km],
                            };
                            Located {
                                lat: p[0],
                                lon: p[1],
                                depth_km: p[2],
                                rms_s: rms,
                                h95_km: h95,
                                z95_km: z95,
                                inside,
                            }
                        })
                    })
                    .collect()
            };
        let report = |mode: &str, located: &[Option<Located>], secs: f64| {
            let (mut rms, mut h95, mut z95) = (Vec::new(), Vec::new(), Vec::new());
            for l in located.iter().flatten() {
                rms.push(l.rms_s);
                h95.push(l.h95_km);
                z95.push(l.z95_km);
            }
            let mut line = format!(
                "{:<18} {:<10} {:>6} {:>7} {:>7.3} {:>7.2} {:>7.2} ",
                cfg,
                mode,
                events.len(),
                rms.len(),
                med(&mut rms),
                med(&mut h95),
                med(&mut z95)
            );
            for (k, (name, r)) in refs.iter().enumerate() {
                let (mut dh, mut dz, mut sz) = (Vec::new(), Vec::new(), Vec::new());
                let (mut cov, mut nc) = ([0usize; 4], 0usize);
                for l in located.iter().flatten() {
                    if let Some(Some(b)) = l.inside.get(k) {
                        nc += 1;
                        for j in 0..4 {
                            cov[j] += usize::from(b[j]);
                        }
                    }
                }
                let f = |j: usize| cov[j] as f64 / nc.max(1) as f64;
                for (id, l) in ids.iter().zip(located) {
                    let (Some(l), Some(&(lat, lon, z))) = (l, r.get(id)) else {
                        continue;
                    };
                    let (d, _) = rc.frame.distance_azimuth(
                        GeoPoint {
                            lat_deg: lat,
                            lon_deg: lon,
                        },
                        GeoPoint {
                            lat_deg: l.lat,
                            lon_deg: l.lon,
                        },
                    );
                    dh.push(d);
                    dz.push((l.depth_km - z).abs());
                    sz.push(l.depth_km - z);
                }
                line += &format!(
                    " {name}: {}, {:.3} / {:.3} / {:+.3}, cH {:.2}/{:.2} cZ {:.2}/{:.2}",
                    dh.len(),
                    med(&mut dh),
                    med(&mut dz),
                    med(&mut sz),
                    f(0),
                    f(1),
                    f(2),
                    f(3)
                );
            }
            println!("{line}  ({secs:.0} s)");
        };
        // the catalogue's point (the posterior mean) and, as MODE_map / MODE_med, the same
        // posteriors' highest-posterior particle and component-wise particle median
        let report_all = |mode: &str, cat: &[Option<LocatedEvent>], pass: usize, secs: f64| {
            report(mode, &to_located(cat, pass, Point::Catalog), secs);
            report(
                &format!("{mode}_map"),
                &to_located(cat, pass, Point::Map),
                secs,
            );
            report(
                &format!("{mode}_med"),
                &to_located(cat, pass, Point::Median),
                secs,
            );
        };
        let want = |m: &str| modes.iter().any(|x| x == m);
        if want("none") || want("static") {
            for e in &extras {
                e.lock().map(|mut v| v.clear()).ok();
            }
            let t0 = Instant::now();
            let tc = TermsConfig {
                kind: TermsKind::Static,
                iterations: if want("static") { iterations } else { 0 },
                ..Default::default()
            };
            let run = relocate_with_terms(&ids, &rc.frame, &tc, None, locate).expect("terms");
            let secs = t0.elapsed().as_secs_f64() / run.passes.len() as f64;
            if want("none") {
                report_all("none", &run.pass_catalogs[0], 0, secs);
            }
            if want("static") {
                let last = run.pass_catalogs.len() - 1;
                report_all(
                    "static",
                    &run.pass_catalogs[last],
                    last,
                    secs * run.passes.len() as f64,
                );
            }
        }
        if want("ssst") {
            for e in &extras {
                e.lock().map(|mut v| v.clear()).ok();
            }
            let t0 = Instant::now();
            let tc = TermsConfig {
                kind: TermsKind::Ssst,
                iterations: iterations.max(1),
                ..Default::default()
            };
            let run = relocate_with_terms(&ids, &rc.frame, &tc, None, locate).expect("terms");
            let last = run.pass_catalogs.len() - 1;
            let secs = t0.elapsed().as_secs_f64();
            report_all("ssst", &run.pass_catalogs[last], last, secs);
        }
        if want("calibrated") {
            let Some((_, network)) = refs.iter().find(|(n, _)| *n == "network") else {
                continue;
            };
            for e in &extras {
                e.lock().map(|mut v| v.clear()).ok();
            }
            let t0 = Instant::now();
            // raw residuals at the network catalog's hypocentres, two folds by event order
            let calib: Vec<Option<LocatedEvent>> = events
                .par_iter()
                .map(|ev| {
                    let &(lat, lon, z) = network.get(&ev.event_id)?;
                    LocatedEvent::at_hypocentre(
                        &ev.event_id,
                        &model,
                        &pos,
                        &rc.frame,
                        &ev.picks,
                        lat,
                        lon,
                        z,
                    )
                    .ok()
                })
                .collect();
            let fold_terms: Vec<StationTerms> = (0..2)
                .map(|f| {
                    let evs: Vec<LocatedEvent> = calib
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % 2 == f)
                        .filter_map(|(_, e)| e.clone())
                        .collect();
                    StationTerms::Static(Arc::new(StaticTerms::estimate(&evs, 3)))
                })
                .collect();
            let cat: Vec<Option<LocatedEvent>> = (0..events.len())
                .into_par_iter()
                .map(|i| {
                    // located with the terms of the other fold only
                    let corr = fold_terms[1 - i % 2].corrections_for(None, &ids[i]);
                    locate(i, &corr).1
                })
                .collect();
            let secs = t0.elapsed().as_secs_f64();
            report_all("calibrated", &cat, 0, secs);
            // relocated with only the arrivals within EIKOLOC_NEAR_KM of the calibrated
            // epicentre (Hypoinverse's distance cutoff)
            if let Some(near_km) = std::env::var("EIKOLOC_NEAR_KM")
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
            {
                for e in &extras {
                    e.lock().map(|mut v| v.clear()).ok();
                }
                let t0 = Instant::now();
                let near: Vec<Option<LocatedEvent>> = (0..events.len())
                    .into_par_iter()
                    .map(|i| {
                        let first = cat[i].as_ref()?;
                        let epi = GeoPoint {
                            lat_deg: first.lat_deg,
                            lon_deg: first.lon_deg,
                        };
                        let picks: Vec<Pick> = events[i]
                            .picks
                            .iter()
                            .filter(|p| {
                                rc.inventory
                                    .get(&p.station.network, &p.station.station)
                                    .is_some_and(|st| {
                                        rc.frame.distance_azimuth(epi, st.geo()).0 <= near_km
                                    })
                            })
                            .cloned()
                            .collect();
                        let corr = fold_terms[1 - i % 2].corrections_for(None, &ids[i]);
                        locate_these(i, &picks, &corr).1
                    })
                    .collect();
                report_all("calib_near", &near, 0, t0.elapsed().as_secs_f64());
            }
            // only the arrivals that have a calibrated term: an uncalibrated station keeps
            // the model's full error (Calaveras: up to -1.5 s at 100 km)
            for e in &extras {
                e.lock().map(|mut v| v.clear()).ok();
            }
            let t0 = Instant::now();
            let cat: Vec<Option<LocatedEvent>> = (0..events.len())
                .into_par_iter()
                .map(|i| {
                    let StationTerms::Static(t) = &fold_terms[1 - i % 2] else {
                        return None;
                    };
                    let picks: Vec<Pick> = events[i]
                        .picks
                        .iter()
                        .filter(|p| {
                            t.terms.contains_key(&(
                                p.station.network.clone(),
                                p.station.station.clone(),
                                p.phase,
                            ))
                        })
                        .cloned()
                        .collect();
                    let corr = fold_terms[1 - i % 2].corrections_for(None, &ids[i]);
                    locate_these(i, &picks, &corr).1
                })
                .collect();
            report(
                "calib_only",
                &to_located(&cat, 0, Point::Catalog),
                t0.elapsed().as_secs_f64(),
            );
        }
    }
}
