//! Every configuration under `station-configs/` loads, and the bundled demo region has the
//! geometry it promises. The shared-data configs read `../shared/data` by relative path.

use std::path::{Path, PathBuf};

use eikoloc::config::ResolvedStationConfig;
use eikoloc::velocity::{LayeredModel, VelocityModel};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("station-configs")
}

fn load(name: &str) -> ResolvedStationConfig {
    ResolvedStationConfig::load(&configs_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_station_config_loads() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // the bundled ones must be there; configs added later are loaded by the same loop
    for bundled in [
        "demo",
        "hypodd_calaveras",
        "hypodd_parkfield",
        "nlloc_alaska",
        "ridgecrest",
    ] {
        assert!(
            names.iter().any(|n| n == bundled),
            "station-configs/{bundled} missing"
        );
    }
    for name in &names {
        let c = load(name);
        assert_eq!(&c.name, name);
        assert_eq!(c.station_positions.len(), c.inventory.len());
        // the origin is where the catalogue is: the box centre is inside the box, and every
        // station sits below the box top (validated on load, checked here independently)
        for (s, p) in c.stations_local() {
            assert!(
                p.z_km >= c.model_box.z_min_km,
                "{name}: {} above box top",
                s.code
            );
            assert!((p.z_km + s.elevation_m / 1000.0).abs() < 1e-12);
        }
    }
}

#[test]
fn shared_configs_have_the_data_set_station_counts() {
    // counts from each data set's README
    for (name, n) in [
        ("ridgecrest", 27),
        ("hypodd_parkfield", 396),
        ("hypodd_calaveras", 388),
        ("nlloc_alaska", 64),
    ] {
        assert_eq!(load(name).inventory.len(), n, "{name}");
    }
}

#[test]
fn shared_catalogues_fall_inside_their_boxes() {
    // the boxes were chosen from the catalogues; read them independently and check
    let cases = [
        (
            "ridgecrest",
            "ridgecrest_synthetic/catalog_velest_start.csv",
        ),
        ("hypodd_parkfield", "hypodd_parkfield/catalog.csv"),
        ("hypodd_calaveras", "hypodd_calaveras/catalog.csv"),
    ];
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    for (name, cat) in cases {
        let c = load(name);
        let mut rdr = csv::Reader::from_path(data.join(cat)).unwrap();
        let h = rdr.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        let (ilat, ilon, idep) = (col("lat"), col("lon"), col("depth_km"));
        let mut n = 0;
        for r in rdr.records() {
            let r = r.unwrap();
            let g =
                eikoloc::domain::GeoPoint::new(r[ilat].parse().unwrap(), r[ilon].parse().unwrap())
                    .unwrap();
            let (x, y) = c.frame.to_local(g);
            let p = eikoloc::domain::LocalPoint::new(x, y, r[idep].parse().unwrap());
            assert!(
                c.model_box.contains(&p),
                "{name}: event at {p:?} outside {:?}",
                c.model_box
            );
            n += 1;
        }
        assert!(n > 100, "{name}: {n} events");
    }
}

#[test]
fn demo_velocity_is_hadley_kanamori() {
    let c = load("demo");
    let hk = LayeredModel::hadley_kanamori();
    assert_eq!(c.velocity, hk);
    assert_eq!(c.velocity.content_hash(), hk.content_hash());
}

#[test]
fn demo_network_geometry() {
    let c = load("demo");
    assert_eq!(c.name, "demo");
    let n = c.inventory.len();
    assert!((18..=24).contains(&n), "{n} stations");
    assert!(c
        .inventory
        .stations()
        .iter()
        .all(|s| s.code.network == "EK"));
    let mut close = 0;
    let mut azimuths = Vec::new();
    let mut far = 0.0f64;
    for (s, p) in c.stations_local() {
        assert!(
            (100.0..=2500.0).contains(&s.elevation_m),
            "{}: {} m",
            s.code,
            s.elevation_m
        );
        assert!(
            c.model_box.contains(&p),
            "{} at {p:?} outside the box",
            s.code
        );
        let d = p.x_km.hypot(p.y_km);
        if d < 10.0 {
            close += 1;
        }
        far = far.max(d);
        azimuths.push(p.x_km.atan2(p.y_km).to_degrees().rem_euclid(360.0));
    }
    assert!(close >= 3, "{close} stations within 10 km of the origin");
    assert!(
        (50.0..=70.0).contains(&far),
        "network radius {far} km (about 120 x 120 km)"
    );
    // azimuthal gap seen from the origin: good coverage means no gap above 45 degrees
    azimuths.sort_by(f64::total_cmp);
    let mut gap: f64 = 360.0 - azimuths[azimuths.len() - 1] + azimuths[0];
    for w in azimuths.windows(2) {
        gap = gap.max(w[1] - w[0]);
    }
    assert!(gap < 45.0, "azimuthal gap {gap} deg");
    // the trained-network folder is optional and resolved against the config folder
    let model = c.model_dir.as_ref().unwrap();
    assert!(model.ends_with("trained-models/demo"), "{model:?}");
    // the example traveltime rows of the README parse with the documented header
    let mut rdr = csv::Reader::from_path(configs_dir().join("demo/example_pairs.csv")).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "phase",
            "epicentral_distance_km",
            "source_depth_km",
            "receiver_elevation_m"
        ]
    );
    assert!(rdr.records().count() >= 5);
}
