//! Hypoinverse Y2000 archive: a golden archive of our own making, fields at the manual's columns.

use std::path::Path;

use eikoloc::catalog::hypoinverse::{read_hypoinverse_archive, uncertainty_for_weight_code};
use eikoloc::catalog::{sniff, CatalogError, Format};
use eikoloc::domain::{parse_utc, Phase};

fn archive() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hypoinverse/archive.arc"),
    )
    .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn golden_archive_summary_and_picks() {
    let text = archive();
    assert_eq!(sniff(&text), Some(Format::HypoinverseArchive));
    let r = read_hypoinverse_archive(&text).unwrap();
    let got: Vec<(u64, &str)> = r
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [(6, "p_weight"), (7, "date"), (12, "station")],
        "{:?}",
        r.problems
    );
    assert_eq!(r.records.len(), 2);

    let e1 = &r.records[0];
    assert_eq!((e1.event_id.as_str(), e1.line), ("12345678", 1));
    let h = e1.hypocentre.as_ref().unwrap();
    assert_eq!(h.origin_time, parse_utc("2021-03-04T05:06:07.25Z").unwrap());
    assert!(
        close(h.lat_deg, 37.0 + 17.12 / 60.0) && close(h.lon_deg, -(121.0 + 39.76 / 60.0)),
        "{h:?}"
    );
    assert!(close(h.depth_km, 6.30));
    assert_eq!(
        (h.n_weighted_phases, h.gap_deg, h.dmin_km),
        (Some(12), Some(45.0), Some(3.0))
    );
    assert_eq!(
        (h.rms_s, h.erh_km, h.erz_km),
        (Some(0.04), Some(0.12), Some(0.24))
    );

    let summary: Vec<(&str, Phase, f64, u8)> = e1
        .picks
        .iter()
        .map(|p| {
            (
                p.pick.station.station.as_str(),
                p.pick.phase,
                p.pick.uncertainty_s,
                p.weight_code,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ALPHA", Phase::P, 0.05, 0),
            ("BETA", Phase::P, 0.2, 2),
            ("BETA", Phase::S, 0.1, 1),
            ("GAMMA", Phase::S, 0.4, 3),
            ("ZETA", Phase::P, 0.1, 1)
        ]
    );
    let alpha = &e1.picks[0];
    assert_eq!(
        alpha.pick.time,
        parse_utc("2021-03-04T05:06:09.21Z").unwrap()
    );
    assert_eq!(alpha.pick.station.network, "NC");
    assert_eq!(
        (alpha.onset, alpha.first_motion, alpha.channel.as_str()),
        ('I', 'U', "VHZ")
    );
    assert_eq!(
        (alpha.residual_s, alpha.distance_km, alpha.azimuth_deg),
        (Some(-0.06), Some(3.2), Some(199.0))
    );
    let beta_s = &e1.picks[2];
    assert_eq!(
        beta_s.pick.time,
        parse_utc("2021-03-04T05:06:13.10Z").unwrap()
    );
    assert_eq!((beta_s.onset, beta_s.residual_s), ('E', Some(0.11)));
    assert_eq!(beta_s.pick.station.location, "01");
    assert_eq!(
        e1.picks[3].pick.time,
        parse_utc("2021-03-04T05:06:14Z").unwrap()
    );

    let e2 = &r.records[1];
    assert_eq!(e2.event_id, "2");
    let h = e2.hypocentre.as_ref().unwrap();
    assert_eq!(h.origin_time, parse_utc("2021-03-04T06:00:59.90Z").unwrap());
    assert!(close(h.lat_deg, -12.5) && close(h.lon_deg, 45.25) && close(h.depth_km, 10.0));
    assert_eq!(e2.picks.len(), 1);
    // seconds past 60 roll into the next minute
    assert_eq!(
        e2.picks[0].pick.time,
        parse_utc("2021-03-04T06:01:02.12Z").unwrap()
    );
}

#[test]
fn weight_codes_map_to_the_documented_uncertainties() {
    let mapped: Vec<Option<f64>> = (0..6).map(uncertainty_for_weight_code).collect();
    assert_eq!(
        mapped,
        [Some(0.05), Some(0.1), Some(0.2), Some(0.4), None, None]
    );
}

#[test]
fn bad_summary_keeps_the_picks_and_orphan_phases_are_structural() {
    let text = archive();
    let broken = text.replacen("202103040506 725", "2021030405XX 725", 1);
    let r = read_hypoinverse_archive(&broken).unwrap();
    assert_eq!(r.problems[0].line, 1);
    assert_eq!(r.problems[0].field, "origin_time");
    assert!(r.records[0].hypocentre.is_none());
    assert_eq!(r.records[0].picks.len(), 5);
    let orphan: String = text.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert!(matches!(
        read_hypoinverse_archive(&orphan),
        Err(CatalogError::Malformed { line: 1, .. })
    ));
}
