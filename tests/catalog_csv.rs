//! Picks and catalog CSV: golden files of our own and every data set of ../shared/data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eikoloc::catalog::csv::{
    read_catalog, read_catalog_file, read_picks, read_picks_file, read_reference_catalog_file,
    write_catalog, write_picks, CatalogRow, PicksCsvOptions,
};
use eikoloc::catalog::{sniff, Format};
use eikoloc::domain::{
    parse_utc, Arrival, Event, HorizontalEllipse, Origin, OriginUncertainty, Phase, StationCode,
};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/csv")
        .join(name)
}

fn data(set: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(set)
        .join(file)
}

#[test]
fn golden_picks_are_read_with_problems_and_written_in_normal_form() {
    let opts = PicksCsvOptions {
        default_uncertainty_s: 0.15,
    };
    let r = read_picks_file(&golden("picks_input.csv"), &opts).unwrap();
    let problems: Vec<(u64, &str)> = r
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(
        problems,
        [(5, "phase"), (6, "station"), (7, "time_iso")],
        "{:?}",
        r.problems
    );
    let mut out = Vec::new();
    write_picks(&mut out, &r.records).unwrap();
    let expected = std::fs::read_to_string(golden("picks_written.csv")).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

fn arrival(sta: &str, outlier: bool) -> Arrival {
    Arrival {
        pick_id: format!("XX.{sta}.P.0"),
        station: StationCode::new("XX", sta),
        phase: Phase::P,
        distance_km: 10.0,
        azimuth_deg: 0.0,
        residual_s: 0.0,
        weight: 1.0,
        outlier,
    }
}

#[test]
fn golden_catalog_is_written_byte_for_byte_and_read_back() {
    let mut o1 = Origin {
        id: "golden-1/1".into(),
        time: parse_utc("2019-07-06T03:19:53.04Z").unwrap(),
        time_sigma_s: 0.08,
        lat_deg: 35.77,
        lon_deg: -117.599,
        depth_km: 8.125,
        uncertainty: OriginUncertainty::default(),
        rms_s: 0.12,
        gap_deg: 45.0,
        min_distance_km: 3.0,
        arrivals: vec![arrival("A", false), arrival("B", true), arrival("C", false)],
        version: 1,
        is_final: true,
        method: Default::default(),
    };
    o1.uncertainty.horizontal_95 = HorizontalEllipse {
        major_km: 1.5,
        minor_km: 0.75,
        azimuth_deg: 123.5,
    };
    o1.uncertainty.depth_95_km = 2.25;
    let ev1 = Event {
        id: "golden-1".into(),
        picks: vec![],
        origins: vec![o1],
        preferred_origin: Some(0),
    };
    let row2 = CatalogRow {
        event_id: "golden-2".into(),
        origin_time: parse_utc("2019-07-06T04:00:00Z").unwrap(),
        lat_deg: -12.3456789,
        lon_deg: 179.9999991,
        depth_km: -0.0001,
        h95_major_km: f64::NAN,
        h95_minor_km: f64::NAN,
        h95_azimuth_deg: f64::NAN,
        z95_km: f64::NAN,
        t0_sigma_s: f64::NAN,
        rms_s: f64::NAN,
        gap_deg: 360.0,
        n_picks: 0,
        n_outliers: 0,
    };
    let rows = vec![CatalogRow::from_event(&ev1).unwrap(), row2];
    let mut out = Vec::new();
    write_catalog(&mut out, &rows).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(golden("catalog.csv")).unwrap()
    );
    assert_eq!(sniff(&text), Some(Format::CatalogCsv));

    let back = read_catalog_file(&golden("catalog.csv")).unwrap();
    assert!(back.problems.is_empty());
    assert_eq!(back.records[0], rows[0]);
    assert_eq!(back.records[1].n_picks, 0);
    assert!(back.records[1].rms_s.is_nan());
    assert!((back.records[1].lat_deg - rows[1].lat_deg).abs() < 1e-6);
}

#[test]
fn catalog_reader_skips_bad_rows() {
    let text = std::fs::read_to_string(golden("catalog.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.push(lines[1].replace("35.770000", "95.0"));
    lines.push(lines[1].replace(",3,1", ",three,1"));
    let r = read_catalog(lines.join("\n").as_bytes()).unwrap();
    assert_eq!(r.records.len(), 2);
    let got: Vec<(u64, &str)> = r
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(got, [(4, "lat"), (5, "n_picks")]);
}

/// Counts from each data set's README: (set, picks, P, S, events).
const SETS: [(&str, usize, usize, usize, usize); 4] = [
    ("hypodd_calaveras", 13_799, 13_546, 253, 308),
    ("hypodd_parkfield", 17_374, 16_247, 1_127, 517),
    ("nlloc_alaska_2018", 265, 206, 59, 7),
    ("ridgecrest_synthetic", 31_740, 18_148, 13_592, 1000),
];

#[test]
fn every_shared_picks_file_is_read_with_the_readme_counts() {
    let opts = PicksCsvOptions {
        default_uncertainty_s: 0.123,
    };
    for (set, n, n_p, n_s, n_ev) in SETS {
        let path = data(set, "picks.csv");
        let head = std::fs::read_to_string(&path).unwrap();
        assert_eq!(sniff(&head), Some(Format::PicksCsv), "{set}");
        let r = read_picks_file(&path, &opts).unwrap();
        let picks: Vec<_> = r.records.iter().flat_map(|e| e.picks.iter()).collect();
        let count = |ph| picks.iter().filter(|p| p.phase == ph).count();
        // The Parkfield README: "One station-phase pair occurs twice in the source (event
        // 51118010: two P picks 0.02 s apart)". We keep the first and report the second.
        let dup = usize::from(set == "hypodd_parkfield");
        assert_eq!(r.problems.len(), dup, "{set}: {:?}", r.problems);
        if dup == 1 {
            let p = &r.problems[0];
            assert_eq!(p.field, "station");
            assert!(
                p.message.contains("NC.PMM") && p.message.contains("51118010"),
                "{p}"
            );
        }
        assert_eq!(picks.len() + dup, n, "{set}");
        assert_eq!(
            (count(Phase::P) + dup, count(Phase::S)),
            (n_p, n_s),
            "{set}"
        );
        assert_eq!(r.records.len(), n_ev, "{set}");
        assert!(picks.iter().all(|p| p.uncertainty_s > 0.0));
        if set == "ridgecrest_synthetic" {
            // no uncertainty column: every pick takes the default
            assert!(picks.iter().all(|p| p.uncertainty_s == 0.123));
        } else {
            assert!(picks.iter().all(|p| p.uncertainty_s != 0.123));
        }
        if set == "nlloc_alaska_2018" {
            // "--" is the empty location code
            assert!(picks.iter().all(|p| p.station.location.is_empty()));
        }
    }
}

#[test]
fn shared_picks_survive_a_write_read_round_trip() {
    let opts = PicksCsvOptions::default();
    let r = read_picks_file(&data("nlloc_alaska_2018", "picks.csv"), &opts).unwrap();
    let mut out = Vec::new();
    write_picks(&mut out, &r.records).unwrap();
    let back = read_picks(out.as_slice(), &opts).unwrap();
    assert!(back.problems.is_empty());
    assert_eq!(back.records, r.records);
}

#[test]
fn every_reference_catalog_is_read_with_its_uncertainty_columns() {
    let cases = [
        ("hypodd_calaveras", "catalog.csv", 308),
        ("hypodd_calaveras", "catalog_hypodd.csv", 308),
        ("hypodd_parkfield", "catalog.csv", 517),
        ("hypodd_parkfield", "catalog_hypodd.csv", 517),
        ("nlloc_alaska_2018", "catalog.csv", 7),
        ("ridgecrest_synthetic", "catalog_velest_start.csv", 1000),
    ];
    for (set, file, n) in cases {
        let r = read_reference_catalog_file(&data(set, file)).unwrap();
        assert!(r.problems.is_empty(), "{set}/{file}: {:?}", r.problems);
        assert_eq!(r.records.len(), n, "{set}/{file}");
        let all = |f: &dyn Fn(&eikoloc::catalog::csv::ReferenceHypocentre) -> bool| {
            r.records.iter().all(f)
        };
        match (set, file) {
            ("hypodd_calaveras", "catalog.csv") => {
                assert!(all(&|h| h.horizontal_error_km.is_some()
                    && h.depth_error_km.is_some()
                    && h.gap_deg.is_some()));
                // README: cluster 37.284-37.296 N, depths 2.9-8.0 km
                assert!(all(
                    &|h| (37.28..37.30).contains(&h.lat_deg) && (2.8..8.1).contains(&h.depth_km)
                ));
            }
            ("hypodd_parkfield", "catalog.csv") => {
                assert!(all(&|h| h.horizontal_error_km.is_some()
                    && h.rms_s.is_some()
                    && h.gap_deg.is_none()));
                // README: 35.926-35.991 N, 120.553-120.482 W, depths 0.76-14.77 km
                assert!(all(&|h| (35.925..35.992).contains(&h.lat_deg)
                    && (-120.554..-120.481).contains(&h.lon_deg)));
                assert!(all(&|h| (0.75..14.78).contains(&h.depth_km)));
            }
            (_, "catalog_hypodd.csv") => {
                // hypoDD errors are metres: a few metres, never kilometres
                assert!(all(&|h| h
                    .sigma_xyz_km
                    .is_some_and(|s| s.iter().all(|&x| (0.0..1.0).contains(&x)))));
                assert!(all(&|h| h.extra.contains_key("cluster_id")));
            }
            ("ridgecrest_synthetic", _) => {
                assert!(all(&|h| h.rms_s.is_none()
                    && h.sigma_xyz_km.is_none()
                    && h.extra.is_empty()));
            }
            _ => {}
        }
    }
}

/// The NLLoc horizontal ellipse must be the 68 % 2-D ellipse of the covariance it ships with:
/// an independent check that the covariance and ellipse columns land in the right fields.
#[test]
fn nlloc_reference_ellipse_matches_its_covariance() {
    let r = read_reference_catalog_file(&data("nlloc_alaska_2018", "catalog.csv")).unwrap();
    let k68 = (-2.0 * (1.0f64 - 0.68).ln()).sqrt(); // chi-square, 2 dof, 68 %
    let by_id: HashMap<_, _> = r.records.iter().map(|h| (h.event_id.as_str(), h)).collect();
    for id in ["20181130.172935", "20181130.180013"] {
        let h = by_id[id];
        let c = h.covariance_km2.unwrap();
        assert_eq!(c[0][1], c[1][0]);
        let (a, b, d) = (c[0][0], c[0][1], c[1][1]);
        let mean = 0.5 * (a + d);
        let r2 = (0.25 * (a - d).powi(2) + b * b).sqrt();
        let (l1, l2) = (mean + r2, mean - r2);
        // major-axis direction (x east, y north) -> azimuth east of north, 0..180
        let az = (l1 - d).atan2(b).to_degrees().rem_euclid(180.0);
        let e = h.horizontal_ellipse.unwrap();
        assert!(
            (e.major_km / (k68 * l1.sqrt()) - 1.0).abs() < 0.02,
            "{id}: {e:?} vs {}",
            k68 * l1.sqrt()
        );
        assert!(
            (e.minor_km / (k68 * l2.sqrt()) - 1.0).abs() < 0.02,
            "{id}: {e:?}"
        );
        let daz = (e.azimuth_deg - az).rem_euclid(180.0);
        assert!(
            daz.min(180.0 - daz) < 2.0,
            "{id}: {} vs {az}",
            e.azimuth_deg
        );
    }
}

/// Every data set's picks survive QuakeML and NLLOC_OBS round trips (their times have at most
/// 0.1 ms digits, NonLinLoc's precision), and the one entry point recognises both.
#[test]
fn shared_picks_round_trip_through_quakeml_and_nlloc_obs() {
    use eikoloc::catalog::{nlloc, quakeml, read_event_picks, EventPicks, PickOptions};
    use eikoloc::domain::Event;
    let opts = PickOptions::default();
    for (set, ..) in SETS {
        let r = read_picks_file(&data(set, "picks.csv"), &opts).unwrap();
        let events: Vec<Event> = r
            .records
            .iter()
            .map(|e| Event {
                id: e.event_id.clone(),
                picks: e.picks.clone(),
                origins: vec![],
                preferred_origin: None,
            })
            .collect();
        let qml = quakeml::to_quakeml(&events);
        let (format, back) = read_event_picks(&qml, &opts, "").unwrap();
        assert_eq!(format, Format::QuakeMl);
        assert!(back.problems.is_empty(), "{set}: {:?}", &back.problems[..1]);
        assert_eq!(back.records, r.records, "{set} via QuakeML");

        let obs = nlloc::to_nlloc_obs(&r.records);
        let (format, back) = read_event_picks(&obs, &opts, "").unwrap();
        assert_eq!(format, Format::NllocObs);
        assert!(back.problems.is_empty(), "{set}: {:?}", &back.problems[..1]);
        let strip = |v: &[EventPicks]| -> Vec<EventPicks> { v.to_vec() };
        assert_eq!(
            strip(&back.records),
            strip(&r.records),
            "{set} via NLLOC_OBS"
        );
    }
}
