//! NonLinLoc: NLLOC_OBS reading/writing, `.hyp` writing, and the covariance -> ellipsoid maths
//! checked against NonLinLoc's own output in ../shared/data/nlloc_alaska_2018.

use std::path::{Path, PathBuf};

use eikoloc::catalog::csv::{read_reference_catalog_file, EventPicks};
use eikoloc::catalog::nlloc::{
    ellipsoid_from_covariance, horizontal_ellipse_from_covariance, read_nlloc_obs, to_nlloc_hyp,
    to_nlloc_obs, HypContext, DELTA_CHI_SQR_68_2, DELTA_CHI_SQR_68_3,
};
use eikoloc::catalog::{sniff, Format, PickOptions};
use eikoloc::domain::{
    parse_utc, Arrival, GeoPoint, LocalFrame, Origin, OriginUncertainty, Phase, Pick, Station,
    StationCode, StationInventory,
};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/nlloc")
        .join(name)
}

#[test]
fn golden_obs_file_is_read_with_problems_per_line() {
    let text = std::fs::read_to_string(golden("picks.obs")).unwrap();
    assert_eq!(sniff(&text), Some(Format::NllocObs));
    let r = read_nlloc_obs(
        &text,
        &PickOptions {
            default_uncertainty_s: 0.3,
        },
        "ZZ",
    )
    .unwrap();
    let got: Vec<(u64, &str)> = r
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (5, "phase"),
            (6, "error_type"),
            (8, "prior_weight"),
            (10, "station"),
            (11, "date")
        ],
        "{:?}",
        r.problems
    );
    assert_eq!(r.records.len(), 2);
    let e1 = &r.records[0];
    assert_eq!(e1.event_id, "1");
    assert_eq!(e1.picks.len(), 3);
    assert_eq!(e1.picks[0].station, StationCode::new("ZZ", "ALPH"));
    assert_eq!(
        e1.picks[0].time,
        parse_utc("2021-03-04T05:06:07.25Z").unwrap()
    );
    assert_eq!(
        (e1.picks[1].phase, e1.picks[1].uncertainty_s),
        (Phase::S, 0.15)
    );
    // seconds past 60 roll into the next minute; Pn is a first P
    assert_eq!(
        e1.picks[2].time,
        parse_utc("2021-03-04T05:06:08.5Z").unwrap()
    );
    assert_eq!(
        (e1.picks[2].phase, e1.picks[2].station.location.as_str()),
        (Phase::P, "00")
    );
    let e2 = &r.records[1];
    assert_eq!(e2.event_id, "2");
    assert_eq!(e2.picks.len(), 1);
    assert_eq!(
        e2.picks[0].uncertainty_s, 0.3,
        "no error field: the default"
    );
}

#[test]
fn obs_round_trips_at_nonlinloc_precision() {
    let t = |s: &str| parse_utc(s).unwrap();
    let mut loc = StationCode::new("AK", "RC01");
    loc.location = "00".into();
    let events = vec![
        EventPicks {
            event_id: "a".into(),
            picks: vec![
                Pick::new(loc, Phase::P, t("2018-11-30T17:29:37.0400Z"), 0.02),
                Pick::new(
                    StationCode::new("AT", "PMR"),
                    Phase::S,
                    t("2018-11-30T17:30:01.1234Z"),
                    0.125,
                ),
            ],
        },
        EventPicks {
            event_id: "b".into(),
            picks: vec![Pick::new(
                StationCode::new("AK", "SSN"),
                Phase::P,
                t("2018-11-30T23:59:59.9999Z"),
                0.5,
            )],
        },
    ];
    let text = to_nlloc_obs(&events);
    let back = read_nlloc_obs(&text, &PickOptions::default(), "XX").unwrap();
    assert!(back.problems.is_empty(), "{:?}\n{text}", back.problems);
    assert_eq!(back.records, events, "{text}");
}

/// NonLinLoc's own posterior summary of the Alaska sample: the ellipsoid and horizontal
/// ellipse we compute from its covariance must match the ones it wrote.
#[test]
fn ellipsoid_maths_matches_nonlinloc() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nlloc_alaska_2018/catalog.csv");
    let r = read_reference_catalog_file(&path).unwrap();
    assert_eq!(r.records.len(), 7);
    for h in &r.records {
        let c = h.covariance_km2.unwrap();
        let x = |k: &str| h.extra[k].parse::<f64>().unwrap();
        let e = ellipsoid_from_covariance(&c, DELTA_CHI_SQR_68_3);
        let rel = |a: f64, b: f64| ((a - b) / b).abs();
        // NonLinLoc prints 4-5 significant digits of the covariance; allow 1 %.
        assert!(
            rel(e.len3_km, x("ell_semi_major_km")) < 0.01,
            "{}: {e:?}",
            h.event_id
        );
        assert!(
            rel(e.len2_km, x("ell_semi_inter_km")) < 0.01,
            "{}: {e:?}",
            h.event_id
        );
        assert!(
            rel(e.len1_km, x("ell_semi_minor_km")) < 0.01,
            "{}: {e:?}",
            h.event_id
        );
        // The catalogue's plunge is signed (NonLinLoc's axis sign); ours points down.
        assert!(
            (e.dip3_deg - x("ell_major_plunge_deg").abs()).abs() < 1.0,
            "{}: {e:?}",
            h.event_id
        );
        if e.dip3_deg < 80.0 {
            let d = (e.az3_deg - x("ell_major_az_deg")).rem_euclid(180.0);
            assert!(d.min(180.0 - d) < 1.5, "{}: {e:?}", h.event_id);
        }
        let (hmin, hmax, haz) = horizontal_ellipse_from_covariance(&c, DELTA_CHI_SQR_68_2);
        let he = h.horizontal_ellipse.unwrap();
        assert!(
            rel(hmin, he.minor_km) < 0.01,
            "{}: {hmin} vs {}",
            h.event_id,
            he.minor_km
        );
        assert!(
            rel(hmax, he.major_km) < 0.01,
            "{}: {hmax} vs {}",
            h.event_id,
            he.major_km
        );
        let d = (haz - he.azimuth_deg).rem_euclid(180.0);
        assert!(
            d.min(180.0 - d) < 1.5,
            "{}: {haz} vs {}",
            h.event_id,
            he.azimuth_deg
        );
    }
}

fn hyp_sample() -> (Origin, Vec<Pick>, StationInventory, LocalFrame) {
    let t = |s: &str| parse_utc(s).unwrap();
    let frame = LocalFrame::new(GeoPoint::new(35.7, -117.6).unwrap());
    let st = |sta: &str, x: f64, y: f64, elev_m: f64| {
        let g = frame.to_geo(x, y);
        Station {
            code: StationCode::new("ZZ", sta),
            lat_deg: g.lat_deg,
            lon_deg: g.lon_deg,
            elevation_m: elev_m,
        }
    };
    let inv = StationInventory::new(vec![
        st("ALPH", 10.0, 0.0, 500.0),
        st("BETA", 0.0, -20.0, 0.0),
    ])
    .unwrap();
    let picks = vec![
        Pick::new(
            StationCode::new("ZZ", "ALPH"),
            Phase::P,
            t("2020-05-06T07:08:12.0Z"),
            0.05,
        ),
        Pick::new(
            StationCode::new("ZZ", "BETA"),
            Phase::S,
            t("2020-05-06T07:08:16.25Z"),
            0.1,
        ),
    ];
    let arrival = |p: &Pick, d: f64, az: f64, r: f64, outlier: bool| Arrival {
        pick_id: p.id.clone(),
        station: p.station.clone(),
        phase: p.phase,
        distance_km: d,
        azimuth_deg: az,
        residual_s: r,
        weight: 1.0,
        outlier,
    };
    let epi = frame.to_geo(1.0, 2.0);
    let u = OriginUncertainty {
        covariance_km2: [[0.5, 0.1, 0.0], [0.1, 0.3, 0.05], [0.0, 0.05, 2.0]],
        ..OriginUncertainty::default()
    };
    let origin = Origin {
        id: "e1/2".into(),
        time: t("2020-05-06T07:08:10.5Z"),
        time_sigma_s: 0.1,
        lat_deg: epi.lat_deg,
        lon_deg: epi.lon_deg,
        depth_km: 8.0,
        uncertainty: u,
        rms_s: 0.05,
        gap_deg: 150.0,
        min_distance_km: 9.06,
        arrivals: vec![
            arrival(&picks[0], 9.06, 96.3, 0.02, false),
            arrival(&picks[1], 22.02, 182.6, -0.4, true),
        ],
        version: 2,
        is_final: true,
        method: Default::default(),
    };
    (origin, picks, inv, frame)
}

#[test]
fn hyp_file_has_nonlinloc_lines_and_is_byte_stable() {
    let (origin, picks, inv, frame) = hyp_sample();
    let ctx = HypContext {
        frame: &frame,
        stations: Some(&inv),
        fileroot: "loc/eikoloc.e1",
        created: parse_utc("2020-05-06T07:09:00Z").unwrap(),
    };
    let text = to_nlloc_hyp("e1", &origin, &picks, &ctx);
    assert_eq!(sniff(&text), Some(Format::NllocHyp));
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key}"))
    };
    let f = |key: &str| {
        line(key)
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let hyp = f("HYPOCENTER ");
    assert!(
        (hyp[2].parse::<f64>().unwrap() - 1.0).abs() < 1e-4
            && (hyp[4].parse::<f64>().unwrap() - 2.0).abs() < 1e-4
    );
    assert_eq!(hyp[8], "10.5");
    let geo = f("GEOGRAPHIC");
    assert_eq!(&geo[2..8], ["2020", "05", "06", "07", "08", "10.500000"]);
    assert_eq!((geo[12].as_str(), geo[13].as_str()), ("Depth", "8"));
    let stats = f("STATISTICS");
    assert_eq!(
        (stats[8].as_str(), stats[10].as_str(), stats[18].as_str()),
        ("0.5", "0.1", "2")
    );
    assert!(line("QML_OriginQuality").contains("usedPhCt 1"));
    // phase lines: travel time = pick - origin - residual; station z = -elevation
    let phases: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("PHASE"))
        .skip(1)
        .take(2)
        .collect();
    let p0: Vec<&str> = phases[0].split_whitespace().collect();
    let gt = p0.iter().position(|s| *s == ">").unwrap();
    assert_eq!(p0[0], "ZZ_ALPH");
    assert_eq!(p0[gt + 1], "1.4800");
    assert_eq!(
        (p0[gt + 4], p0[gt + 5], p0[gt + 6]),
        ("10.0000", "0.0000", "-0.5000")
    );
    let p1: Vec<&str> = phases[1].split_whitespace().collect();
    assert_eq!(p1[gt + 3], "0.0000", "outliers get weight 0");
    assert!(text.ends_with("END_PHASE\nEND_NLLOC\n\n"));
    if std::env::var_os("EIKOLOC_BLESS").is_some() {
        std::fs::write(golden("origin.hyp"), &text).unwrap();
    }
    assert_eq!(text, std::fs::read_to_string(golden("origin.hyp")).unwrap());
}
