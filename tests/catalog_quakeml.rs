//! QuakeML 1.2: round trip, byte-stable golden output, a hand-written picks-only archive,
//! unit conversions against tabulated geodesy.

use std::path::{Path, PathBuf};

use eikoloc::catalog::quakeml::{
    id_from_resource, read_quakeml, read_quakeml_file, resource_id, to_quakeml, wgs84_km_per_degree,
};
use eikoloc::catalog::{sniff, CatalogError, Format, PickOptions};
use eikoloc::domain::{
    parse_utc, Arrival, ConfidenceEllipsoid, Event, HorizontalEllipse, Origin, OriginUncertainty,
    Phase, Pick, StationCode,
};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/quakeml")
        .join(name)
}

fn sample_event() -> Event {
    let t = |s: &str| parse_utc(s).unwrap();
    let mut loc = StationCode::new("ZZ", "BETA");
    loc.location = "10".into();
    let picks = vec![
        Pick::new(
            StationCode::new("ZZ", "ALPH"),
            Phase::P,
            t("2020-05-06T07:08:11.250Z"),
            0.05,
        ),
        Pick::new(
            StationCode::new("ZZ", "ALPH"),
            Phase::S,
            t("2020-05-06T07:08:13.5Z"),
            0.1,
        ),
        Pick::new(
            loc.clone(),
            Phase::P,
            t("2020-05-06T07:08:12.123456789Z"),
            0.2,
        ),
    ];
    let arrival = |p: &Pick, d: f64, az: f64, r: f64, w: f64, outlier: bool| Arrival {
        pick_id: p.id.clone(),
        station: p.station.clone(),
        phase: p.phase,
        distance_km: d,
        azimuth_deg: az,
        residual_s: r,
        weight: w,
        outlier,
    };
    let uncertainty = OriginUncertainty {
        horizontal_68: HorizontalEllipse {
            major_km: 0.9,
            minor_km: 0.4,
            azimuth_deg: 30.0,
        },
        horizontal_95: HorizontalEllipse {
            major_km: 1.5,
            minor_km: 0.75,
            azimuth_deg: 31.25,
        },
        depth_68_km: 1.1,
        depth_95_km: 2.3,
        ellipsoid_95: ConfidenceEllipsoid {
            semi_major_km: 2.5,
            semi_minor_km: 0.8,
            semi_intermediate_km: 1.4,
            major_azimuth_deg: 12.0,
            major_plunge_deg: 70.5,
            major_rotation_deg: 3.0,
        },
        covariance_km2: [[0.25, 0.05, -0.01], [0.05, 0.16, 0.02], [-0.01, 0.02, 1.21]],
    };
    let origin = |v: u32, is_final: bool, arrivals: Vec<Arrival>| Origin {
        id: format!("ev 1:v{v}"),
        time: t("2020-05-06T07:08:09.876543Z"),
        time_sigma_s: 0.07,
        lat_deg: 35.7,
        lon_deg: -117.6123456,
        depth_km: 7.25,
        uncertainty: uncertainty.clone(),
        rms_s: 0.0812,
        gap_deg: 123.4,
        min_distance_km: 4.2,
        arrivals,
        version: v,
        is_final,
        method: Default::default(),
    };
    let a1 = vec![arrival(&picks[0], 10.0, 45.0, 0.012, 1.0, false)];
    let a2 = vec![
        arrival(&picks[0], 10.0, 45.0, 0.0123, 1.0, false),
        arrival(&picks[1], 10.0, 45.0, -0.05, 0.8, false),
        arrival(&picks[2], 22.5, 300.25, 0.9, 0.0, true),
    ];
    Event {
        id: "ev 1".into(),
        picks,
        origins: vec![origin(1, false, a1), origin(2, true, a2)],
        preferred_origin: Some(1),
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn written_quakeml_reads_back_to_the_same_events() {
    let ev = sample_event();
    let text = to_quakeml(std::slice::from_ref(&ev));
    assert_eq!(sniff(&text), Some(Format::QuakeMl));
    let back = read_quakeml(&text, &PickOptions::default()).unwrap();
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    assert_eq!(back.records.len(), 1);
    let got = &back.records[0];
    assert_eq!(got.id, ev.id);
    assert_eq!(got.picks, ev.picks, "picks are stored exactly");
    assert_eq!(got.preferred_origin, Some(1));
    for (g, e) in got.origins.iter().zip(&ev.origins) {
        assert_eq!(
            (&g.id, g.time, g.version, g.is_final),
            (&e.id, e.time, e.version, e.is_final)
        );
        assert_eq!((g.lat_deg, g.lon_deg), (e.lat_deg, e.lon_deg));
        assert!(close(g.depth_km, e.depth_km, 1e-4)); // written in m to 0.1 m
        assert!(close(g.time_sigma_s, e.time_sigma_s, 1e-6));
        assert!(close(g.rms_s, e.rms_s, 1e-4) && close(g.gap_deg, e.gap_deg, 1e-2));
        assert_eq!(
            g.uncertainty, e.uncertainty,
            "extension carries the posterior exactly"
        );
        assert_eq!(g.min_distance_km, e.min_distance_km);
        assert_eq!(g.arrivals.len(), e.arrivals.len());
        for (ga, ea) in g.arrivals.iter().zip(&e.arrivals) {
            assert_eq!(
                (&ga.pick_id, &ga.station, ga.phase, ga.outlier),
                (&ea.pick_id, &ea.station, ea.phase, ea.outlier)
            );
            assert!(
                close(ga.distance_km, ea.distance_km, 2e-4),
                "{} {}",
                ga.distance_km,
                ea.distance_km
            );
            assert!(close(ga.azimuth_deg, ea.azimuth_deg, 1e-2));
            assert!(close(ga.residual_s, ea.residual_s, 1e-4) && close(ga.weight, ea.weight, 1e-4));
        }
    }
    // Same input, same bytes; and reading then writing changes nothing.
    assert_eq!(to_quakeml(std::slice::from_ref(&ev)), text);
    assert_eq!(to_quakeml(&back.records), text);
}

#[test]
fn quakeml_units_are_metres_and_degrees() {
    let ev = sample_event();
    let text = to_quakeml(std::slice::from_ref(&ev));
    assert!(
        text.contains(
            "<depth>\n          <value>7250</value>\n          <uncertainty>1100</uncertainty>"
        ),
        "{text}"
    );
    // 10 km on a 6371 km sphere is 0.0899322 degrees
    assert!(text.contains("<distance>0.089932</distance>"));
    // sigma_north = 0.4 km -> degrees of latitude at 35.7 N (110.95 km per degree)
    let (km_lat, _) = wgs84_km_per_degree(35.7);
    let expected = format!(
        "<uncertainty>{}</uncertainty>",
        format!("{:.8}", 0.4 / km_lat).trim_end_matches('0')
    );
    assert!(text.contains(&expected), "{expected}");
    assert!(text.contains("<maxHorizontalUncertainty>1500</maxHorizontalUncertainty>"));
    assert!(text.contains("<confidenceLevel>95</confidenceLevel>"));
    assert!(text.contains("<preferredOriginID>smi:eikoloc/origin/ev~201~3Av2</preferredOriginID>"));
    assert!(text.contains("<usedPhaseCount>2</usedPhaseCount>"));
}

#[test]
fn unknown_uncertainty_is_not_written_as_zero() {
    let mut ev = sample_event();
    ev.origins.truncate(1);
    ev.preferred_origin = Some(0);
    ev.origins[0].uncertainty = OriginUncertainty::default();
    ev.origins[0].time_sigma_s = f64::NAN;
    ev.origins[0].rms_s = f64::NAN;
    let text = to_quakeml(std::slice::from_ref(&ev));
    assert!(
        !text.contains("<originUncertainty>") && !text.contains("<standardError>"),
        "{text}"
    );
    let back = read_quakeml(&text, &PickOptions::default()).unwrap();
    let o = &back.records[0].origins[0];
    assert_eq!(o.uncertainty, OriginUncertainty::default());
    assert!(o.time_sigma_s.is_nan() && o.rms_s.is_nan());
    assert_eq!(back.records[0].preferred_origin, Some(0));
}

#[test]
fn golden_quakeml_is_byte_stable() {
    let text = to_quakeml(&[sample_event()]);
    if std::env::var_os("EIKOLOC_BLESS").is_some() {
        std::fs::write(golden("event.xml"), &text).unwrap();
    }
    let expected = std::fs::read_to_string(golden("event.xml")).unwrap();
    assert_eq!(text, expected);
}

#[test]
fn wgs84_degree_lengths_match_tabulated_values() {
    // Tabulated WGS84 lengths of a degree (e.g. the NGA/NIMA tables): equator 110.574 km of
    // latitude and 111.320 km of longitude; 45 deg: 111.132 and 78.847 km.
    let (a, b) = wgs84_km_per_degree(0.0);
    assert!(
        close(a, 110.574, 1e-3) && close(b, 111.320, 1e-3),
        "{a} {b}"
    );
    let (a, b) = wgs84_km_per_degree(45.0);
    assert!(close(a, 111.132, 1e-3) && close(b, 78.847, 1e-3), "{a} {b}");
}

#[test]
fn resource_ids_escape_reversibly() {
    for id in ["plain.id-1", "ev 1:v2", "a~b", "ström/1", "/lead", "x+y=z"] {
        let rid = resource_id("origin", id);
        assert!(!rid.contains(' ') && !rid[4..].contains(':'), "{rid}");
        assert_eq!(id_from_resource("origin", &rid), id, "{rid}");
    }
    assert_eq!(
        id_from_resource("pick", "quakeml:other/pick/1"),
        "quakeml:other/pick/1"
    );
}

#[test]
fn hand_written_picks_only_archive() {
    let opts = PickOptions {
        default_uncertainty_s: 0.3,
    };
    let r = read_quakeml_file(&golden("picks_only.xml"), &opts).unwrap();
    let problems: Vec<(u64, &str)> = r
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(
        problems,
        [
            (26, "pick/phaseHint"),
            (42, "pick/waveformID"),
            (49, "pick/time/value")
        ],
        "{:?}",
        r.problems
    );
    assert_eq!(r.records.len(), 2);
    let a1 = &r.records[0];
    assert_eq!(a1.id, "smi:example.org/event/A1");
    assert!(a1.origins.is_empty() && a1.preferred_origin.is_none());
    assert_eq!(a1.picks.len(), 2);
    assert_eq!(a1.picks[0].id, "smi:example.org/pick/1");
    assert_eq!(a1.picks[0].station.location, "00");
    assert_eq!(
        (a1.picks[0].phase, a1.picks[0].uncertainty_s),
        (Phase::P, 0.04)
    );
    assert_eq!(
        a1.picks[0].time,
        parse_utc("2022-02-02T10:00:01.125Z").unwrap()
    );
    // mean of lower and upper uncertainty
    assert!(close(a1.picks[1].uncertainty_s, 0.2, 1e-12));
    assert_eq!(a1.picks[1].phase, Phase::S);
    let a2 = &r.records[1];
    assert_eq!(a2.picks.len(), 1);
    assert_eq!(
        a2.picks[0].uncertainty_s, 0.3,
        "default when the file gives none"
    );
    assert_eq!(a2.picks[0].station.location, "");
}

#[test]
fn bad_origins_and_arrivals_are_skipped_with_their_line() {
    let text = to_quakeml(&[sample_event()]);
    // Break origin 1's latitude and the arrival of the S pick in origin 2.
    let broken = text
        .replacen("<value>35.7</value>", "<value>north</value>", 1)
        .replacen(
            "<pickID>smi:eikoloc/pick/ZZ.ALPH.S",
            "<pickID>smi:eikoloc/pick/NOPE",
            1,
        );
    let r = read_quakeml(&broken, &PickOptions::default()).unwrap();
    let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["origin/latitude/value", "arrival/pickID"],
        "{:?}",
        r.problems
    );
    let line_of =
        |needle: &str| 1 + broken[..broken.find(needle).unwrap()].matches('\n').count() as u64;
    assert_eq!(r.problems[0].line, line_of("<origin publicID"));
    assert_eq!(
        r.problems[1].line,
        line_of("<arrival publicID=\"smi:eikoloc/arrival/ev~201~3Av2/ZZ.ALPH.S")
    );
    let ev = &r.records[0];
    assert_eq!(ev.origins.len(), 1);
    assert_eq!(ev.origins[0].version, 2);
    assert_eq!(ev.preferred_origin, Some(0));
    assert_eq!(ev.origins[0].arrivals.len(), 2);
}

#[test]
fn truncated_or_foreign_xml_is_a_structural_error() {
    let text = to_quakeml(&[sample_event()]);
    let cut = &text[..text.len() / 2];
    match read_quakeml(cut, &PickOptions::default()) {
        Err(CatalogError::Malformed { line, message }) => {
            assert!(
                message.contains("never closed") || message.contains("XML"),
                "{message}"
            );
            assert!(line > 10);
        }
        other => panic!("{other:?}"),
    }
    let mismatched = text.replacen("</pick>", "</pik>", 1);
    assert!(matches!(
        read_quakeml(&mismatched, &PickOptions::default()),
        Err(CatalogError::Malformed { .. })
    ));
    assert!(matches!(
        read_quakeml("<root><a/></root>", &PickOptions::default()),
        Err(CatalogError::MissingHeader(_))
    ));
    assert!(read_quakeml("", &PickOptions::default()).is_err());
}
