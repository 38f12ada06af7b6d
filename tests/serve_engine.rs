//! The service with its real engine (streaming associator + SVGD locator on exact 1-D
//! traveltimes, or on the region's trained network) on the demo region: synthetic earthquakes drawn from the region's own
//! velocity model go in as picks (with noise, missed and false picks, hostile records), and
//! every earthquake must come out as one event whose final origin lies near the true
//! hypocentre, with the true origin time inside a few sigma.

mod serve_support;

use std::time::Duration;

use eikoloc::daemon::demo::{self, DemoConfig};
use eikoloc::daemon::{engine, ResolvedServeConfig};
use eikoloc::domain::{Event, OriginMethod};
use serve_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_earthquakes_come_out_as_located_events() {
    let station = demo_station();
    let engine = engine::build(&station).unwrap();
    three_earthquakes_come_out_located(&station, engine).await;
}

/// The same with the locator on the demo region's trained network (what `serve --demo`
/// runs): the network's traveltimes, tabulated, must locate as well as the exact solver's,
/// while the picks come from the exact solver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_earthquakes_are_located_on_the_trained_demo_network() {
    let station = demo_station();
    let net = engine::configured_network(&station)
        .unwrap()
        .expect("station-configs/demo names trained-models/demo");
    assert!(net.dir().ends_with("trained-models/demo"));
    let engine = engine::build_with_terms(
        &station,
        std::sync::Arc::new(net),
        engine::associator_config(&station),
        None,
    )
    .unwrap();
    three_earthquakes_come_out_located(&station, engine).await;
}

/// The service refuses a network trained for another velocity model or a smaller box, with
/// a message naming the folder, and has none when the config names none or the folder holds
/// no model yet.
#[test]
fn a_network_that_does_not_fit_the_region_is_refused() {
    let mut station = demo_station();
    let demo_vel = station.velocity.clone();
    let mut layers = demo_vel.layers().to_vec();
    layers[0].vp_km_s += 0.1;
    station.velocity = eikoloc::velocity::LayeredModel::new(layers).unwrap();
    let err = engine::configured_network(&station).unwrap_err();
    assert!(
        err.contains("trained-models/demo") && err.contains("velocity model"),
        "{err}"
    );

    let mut station = demo_station();
    station.model_box.x_max_km += 40.0;
    let err = engine::configured_network(&station).unwrap_err();
    assert!(err.contains("covers") && err.contains("needs"), "{err}");

    let mut station = demo_station();
    station.model_dir = None;
    assert!(engine::configured_network(&station).unwrap().is_none());
    let empty = tempfile::tempdir().unwrap();
    station.model_dir = Some(empty.path().to_path_buf());
    assert!(engine::configured_network(&station).unwrap().is_none());
}

async fn three_earthquakes_come_out_located(
    station: &eikoloc::config::ResolvedStationConfig,
    engine: eikoloc::daemon::Engine,
) {
    let dir = tempfile::tempdir().unwrap();
    let station = station.clone();
    let mut cfg = ResolvedServeConfig::ephemeral(station.clone(), dir.path());
    cfg.pipeline.relocate_slope_s = 0.0;
    cfg.pipeline.idle_advance_s = 0.5;
    let svc = start(cfg, engine).await;

    // Three earthquakes 40 s apart, 10 minutes ago, sent as fast as possible.
    let start_unix = chrono::Utc::now().timestamp() as f64 - 600.0;
    let dcfg = DemoConfig {
        event_interval_s: 40.0,
        seed: 11,
        ..DemoConfig::default()
    };
    let (events, mut records) = demo::generate(&station, &dcfg, 3, start_unix);
    // One more pick two minutes after the last earthquake moves the stream clock past every
    // association window, so all three close.
    let mut clock = records.iter().find(|r| !r.hostile).unwrap().pick.clone();
    let last = records.last().unwrap().at_s;
    clock.time_s = Some(start_unix + last + 120.0);
    records.push(demo::DemoRecord {
        at_s: last + 120.0,
        pick: clock,
        hostile: false,
    });
    let picks: Vec<_> = records.iter().map(|r| r.pick.clone()).collect();
    send_msgpack(svc.addrs.ingest, &picks).await;

    let listed = eventually(Duration::from_secs(120), || async {
        let (_, body) = http_get(svc.addrs.http, "/events").await;
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        (v.iter()
            .filter(|e| e["preferred"]["is_final"] == true)
            .count()
            >= 3)
            .then_some(v)
    })
    .await
    .expect("three final events within 120 s");
    assert_eq!(listed.len(), 3, "one event per earthquake, no false events");

    for truth in &events {
        let g = station
            .frame
            .to_geo(truth.hypocentre.x_km, truth.hypocentre.y_km);
        let t_true = start_unix + truth.origin_time_s;
        let mut best: Option<(f64, Event)> = None;
        for e in &listed {
            let (_, body) = http_get(
                svc.addrs.http,
                &format!("/events/{}", e["id"].as_str().unwrap()),
            )
            .await;
            let ev: Event = serde_json::from_str(&body).unwrap();
            let o = ev.preferred().unwrap();
            let dt = (o.time.timestamp_micros() as f64 * 1e-6 - t_true).abs();
            if best.as_ref().is_none_or(|b| dt < b.0) {
                best = Some((dt, ev));
            }
        }
        let (dt, ev) = best.unwrap();
        let o = ev.preferred().unwrap();
        let (d_km, _) = station.frame.distance_azimuth(
            g,
            eikoloc::domain::GeoPoint {
                lat_deg: o.lat_deg,
                lon_deg: o.lon_deg,
            },
        );
        // 0.05 s pick noise on ~30 picks: the epicentre within 2 km, depth within 4 km,
        // origin time within 0.5 s.
        assert!(d_km < 2.0, "epicentre {d_km:.2} km from the truth ({o:?})");
        assert!(
            (o.depth_km - truth.hypocentre.z_km).abs() < 4.0,
            "depth {} vs {}",
            o.depth_km,
            truth.hypocentre.z_km
        );
        assert!(dt < 0.5, "origin time off by {dt} s");
        assert!(o.is_final && o.arrivals.len() >= 6);
        let versions: Vec<u32> = ev.origins.iter().map(|o| o.version).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
        // Version 1 is the preliminary linearized origin, published as the event opened; every
        // later version is a full posterior, the final one included.
        let methods: Vec<OriginMethod> = ev.origins.iter().map(|o| o.method).collect();
        assert_eq!(methods[0], OriginMethod::Linearized, "{methods:?}");
        assert!(!ev.origins[0].is_final);
        assert!(
            methods.len() >= 2 && methods[1..].iter().all(|m| *m == OriginMethod::Svgd),
            "{methods:?}"
        );
        // The preliminary origin is near the truth as well, with a finite, non-zero ellipse.
        let pre = &ev.origins[0];
        let (d_pre, _) = station.frame.distance_azimuth(
            g,
            eikoloc::domain::GeoPoint {
                lat_deg: pre.lat_deg,
                lon_deg: pre.lon_deg,
            },
        );
        let h95 = pre.uncertainty.horizontal_95;
        assert!(d_pre < 5.0, "preliminary epicentre {d_pre:.2} km off");
        assert!(h95.major_km > 0.0 && h95.major_km.is_finite(), "{h95:?}");
        let (_, xml) = http_get(svc.addrs.http, &format!("/events/{}/quakeml", ev.id)).await;
        assert!(
            xml.contains("smi:eikoloc/method/linearized")
                && xml.contains("smi:eikoloc/method/svgd"),
            "QuakeML names both methods"
        );
        let (status, post) =
            http_get(svc.addrs.http, &format!("/events/{}/posterior", ev.id)).await;
        assert_eq!(status, 200);
        let post: serde_json::Value = serde_json::from_str(&post).unwrap();
        assert!(post["particles"].as_array().unwrap().len() >= 32);
    }
    assert_eq!(
        svc.metrics
            .rejected_count(eikoloc::metrics::RejectReason::UnknownStation),
        1
    );
    svc.stop().await;
}

/// `serve --check` says where the locator's traveltimes come from: the demo region's trained
/// network by default, the exact solver on request; `--traveltimes network` for a region
/// whose model folder is still empty is refused with a message naming the folder.
#[test]
fn serve_check_names_the_traveltime_source() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eikoloc"))
            .args(args)
            .current_dir(root)
            .output()
            .unwrap()
    };
    // stdout of a run that must succeed
    let ok = |args: &[&str]| {
        let o = run(args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let out = ok(&["serve", "deploy/serve.toml", "--check"]);
    assert!(
        out.contains("traveltimes network") && out.contains("trained-models/demo"),
        "{out}"
    );
    let out = ok(&[
        "serve",
        "deploy/serve.toml",
        "--check",
        "--traveltimes",
        "exact",
    ]);
    assert!(out.contains("traveltimes exact 1-D solver"), "{out}");

    // a copy of the demo region whose model folder holds nothing yet
    let tmp = tempfile::tempdir().unwrap();
    let region = tmp.path().join("region");
    std::fs::create_dir_all(region.join("untrained")).unwrap();
    for f in ["stations.csv", "velocity.csv"] {
        std::fs::copy(root.join("station-configs/demo").join(f), region.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(root.join("station-configs/demo/config.toml")).unwrap();
    let cfg = cfg.replace("../../trained-models/demo", "untrained");
    assert!(cfg.contains("model = \"untrained\""));
    std::fs::write(region.join("config.toml"), cfg).unwrap();
    let serve = tmp.path().join("serve.toml");
    std::fs::write(&serve, "station_config = \"region\"\n").unwrap();
    let serve = serve.to_str().unwrap();
    let out = ok(&["serve", serve, "--check"]);
    assert!(
        out.contains("exact 1-D solver (no trained network in"),
        "{out}"
    );
    let o = run(&["serve", serve, "--check", "--traveltimes", "network"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("has no trained network") && err.contains("untrained"),
        "{err}"
    );
}
