//! `eikoloc compare`: matching, statistics, coverage, figures and bad input, on synthetic
//! catalogs with known shifts and on the Parkfield NCSN / HypoDD catalogs.

use std::path::{Path, PathBuf};

use eikoloc::catalog::csv::{write_catalog, CatalogRow};
use eikoloc::compare::svg::{write_figures, FigureLabels};
use eikoloc::compare::{
    compare, read_hypocentres_file, CompareError, Hypocentre, MatchMode, MatchOptions,
};
use eikoloc::domain::time::add_seconds;
use eikoloc::domain::{parse_utc, GeoPoint, HorizontalEllipse, LocalFrame};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

/// 24 events scattered over ~20 km near Parkfield, one every 90 s, depths 3..15 km.
fn reference_events() -> Vec<Hypocentre> {
    let frame = LocalFrame::new(GeoPoint::new(35.95, -120.50).unwrap());
    let t0 = parse_utc("2020-01-01T00:00:00Z").unwrap();
    (0..24)
        .map(|i| {
            let f = i as f64;
            let g = frame.to_geo(10.0 * (0.7 * f).sin(), 10.0 * (1.3 * f).cos());
            Hypocentre::new(
                &format!("r{i}"),
                add_seconds(&t0, 90.0 * f),
                g.lat_deg,
                g.lon_deg,
                3.0 + 0.5 * f,
            )
        })
        .collect()
}

/// `h` moved `east_km`, `north_km` along the geodesic, `down_km` deeper and `dt_s` later.
fn moved(
    h: &Hypocentre,
    id: &str,
    east_km: f64,
    north_km: f64,
    down_km: f64,
    dt_s: f64,
) -> Hypocentre {
    let g = LocalFrame::new(h.epicentre()).to_geo(east_km, north_km);
    Hypocentre::new(
        id,
        add_seconds(&h.origin_time, dt_s),
        g.lat_deg,
        g.lon_deg,
        h.depth_km + down_km,
    )
}

#[test]
fn known_shift_is_reported() {
    let reference = reference_events();
    let catalog: Vec<Hypocentre> = reference
        .iter()
        .map(|h| moved(h, &h.event_id, 1.0, 0.0, 2.0, 0.25))
        .collect();
    let c = compare(&reference, &catalog, &MatchOptions::default()).unwrap();
    assert_eq!(c.mode_used, MatchMode::Id);
    assert_eq!((c.pairs.len(), c.missed.len(), c.extra.len()), (24, 0, 0));
    for s in [
        c.horizontal_km.median,
        c.horizontal_km.p90,
        c.horizontal_km.mean,
        c.horizontal_km.max,
    ] {
        assert!((s - 1.0).abs() < 1e-6, "horizontal {s}");
    }
    for s in [
        c.abs_depth_km.median,
        c.abs_depth_km.p90,
        c.abs_depth_km.max,
    ] {
        assert!((s - 2.0).abs() < 1e-9, "depth {s}");
    }
    assert!((c.median_depth_bias_km - 2.0).abs() < 1e-9);
    assert!((c.abs_time_s.median - 0.25).abs() < 1e-9);
    assert!((c.median_time_bias_s - 0.25).abs() < 1e-9);
    // The catalog moved east: azimuth from reference to catalog is 90 degrees.
    for p in &c.pairs {
        assert!((p.azimuth_deg - 90.0).abs() < 1e-6, "{}", p.azimuth_deg);
    }
    assert!(c.coverage_h95.is_none() && c.coverage_z95.is_none());
    // Moving up reverses the sign of the bias but not the absolute difference.
    let up: Vec<Hypocentre> = reference
        .iter()
        .map(|h| moved(h, &h.event_id, 0.0, 3.0, -1.5, -0.5))
        .collect();
    let c = compare(&reference, &up, &MatchOptions::default()).unwrap();
    assert!((c.median_depth_bias_km + 1.5).abs() < 1e-9);
    assert!((c.abs_depth_km.median - 1.5).abs() < 1e-9);
    assert!((c.horizontal_km.median - 3.0).abs() < 1e-6);
    assert!((c.median_time_bias_s + 0.5).abs() < 1e-9);
}

#[test]
fn matches_by_time_and_place_when_ids_differ() {
    let mut reference = reference_events();
    // A second event 1 s after r5 and 8 km away: each must pair with its own neighbour.
    let twin = moved(&reference[5], "r5b", 8.0, 0.0, 0.0, 1.0);
    reference.push(twin);
    let mut catalog: Vec<Hypocentre> = reference
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 10) // two missed
        .map(|(i, h)| moved(h, &format!("c{i}"), 0.6, -0.8, 0.3, 0.4))
        .collect();
    // Extras: one too late, one too far from any reference event.
    catalog.push(moved(&reference[0], "late", 0.0, 0.0, 0.0, 5.0));
    catalog.push(moved(&reference[1], "far", 30.0, 0.0, 0.0, 0.0));
    let c = compare(&reference, &catalog, &MatchOptions::default()).unwrap();
    assert_eq!(c.mode_used, MatchMode::TimePlace);
    assert_eq!(c.pairs.len(), reference.len() - 2);
    assert_eq!(c.missed, vec!["r3".to_string(), "r10".to_string()]);
    let mut extra = c.extra.clone();
    extra.sort();
    assert_eq!(extra, vec!["far".to_string(), "late".to_string()]);
    for p in &c.pairs {
        assert_eq!(p.catalog_id, format!("c{}", p.reference_index), "{p:?}");
        assert!((p.horizontal_km - 1.0).abs() < 1e-6);
    }
    assert!((c.abs_time_s.median - 0.4).abs() < 1e-9);
    // Tighter tolerances drop the pairs: 0.4 s is over 0.3 s, 1 km over 0.9 km.
    for (dt, dd) in [(0.3, 20.0), (2.0, 0.9)] {
        let o = MatchOptions {
            max_dt_s: dt,
            max_distance_km: dd,
            ..MatchOptions::default()
        };
        let c = compare(&reference, &catalog, &o).unwrap();
        assert_eq!(c.pairs.len(), 0, "dt {dt} dd {dd}");
        assert_eq!(c.missed.len(), reference.len());
    }
    // Id matching forced on disjoint ids matches nothing.
    let o = MatchOptions {
        mode: MatchMode::Id,
        ..MatchOptions::default()
    };
    assert_eq!(compare(&reference, &catalog, &o).unwrap().pairs.len(), 0);
    let bad = MatchOptions {
        max_dt_s: -1.0,
        ..MatchOptions::default()
    };
    assert!(matches!(
        compare(&reference, &catalog, &bad),
        Err(CompareError::InvalidOption(_))
    ));
}

fn row(h: &Hypocentre, e: HorizontalEllipse, z95_km: f64) -> CatalogRow {
    CatalogRow {
        event_id: h.event_id.clone(),
        origin_time: h.origin_time,
        lat_deg: h.lat_deg,
        lon_deg: h.lon_deg,
        depth_km: h.depth_km,
        h95_major_km: e.major_km,
        h95_minor_km: e.minor_km,
        h95_azimuth_deg: e.azimuth_deg,
        z95_km,
        t0_sigma_s: 0.05,
        rms_s: 0.1,
        gap_deg: 90.0,
        n_picks: 12,
        n_outliers: 0,
    }
}

/// Catalog events with a 2 km x 1 km ellipse whose major axis points N45E, and z95 = 1 km;
/// the reference sits at known multiples of the semi-axes from each catalog event.
fn coverage_case() -> (Vec<Hypocentre>, Vec<CatalogRow>, Vec<(bool, bool)>) {
    let e = HorizontalEllipse {
        major_km: 2.0,
        minor_km: 1.0,
        azimuth_deg: 45.0,
    };
    let s = std::f64::consts::FRAC_1_SQRT_2;
    // (offset along major in semi-majors, along minor in semi-minors, depth offset km)
    let cases = [
        (1.5, 0.0, 0.5),  // outside horizontally, inside in depth
        (0.5, 0.0, 1.5),  // inside, outside in depth
        (0.0, 0.5, -0.5), // inside (minor axis), inside
        (0.0, 1.5, -1.5), // outside (1.5 km < major: orientation matters), outside
        (-0.6, 0.6, 0.0), // r = 0.85: inside
        (0.8, -0.8, 0.0), // r = 1.13: outside
    ];
    let reference = reference_events();
    let mut rows = Vec::new();
    let mut truth_ref = Vec::new();
    let mut expected = Vec::new();
    for (k, &(a, b, dz)) in cases.iter().enumerate() {
        let cat = &reference[k];
        // major axis unit vector (east, north) = (s, s); minor = (s, -s)
        let east = a * 2.0 * s + b * 1.0 * s;
        let north = a * 2.0 * s - b * 1.0 * s;
        truth_ref.push(moved(cat, &cat.event_id, east, north, dz, 0.1));
        rows.push(row(cat, e, 1.0));
        expected.push(((a * a + b * b).sqrt() <= 1.0, dz.abs() <= 1.0));
    }
    (truth_ref, rows, expected)
}

#[test]
fn coverage_counts_references_inside_the_catalog_regions() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, rows, expected) = coverage_case();
    let path = dir.path().join("cat.csv");
    write_catalog(std::fs::File::create(&path).unwrap(), &rows).unwrap();
    let catalog = read_hypocentres_file(&path).unwrap();
    let c = compare(&reference, &catalog, &MatchOptions::default()).unwrap();
    assert_eq!(c.pairs.len(), expected.len());
    for (p, (h, z)) in c.pairs.iter().zip(&expected) {
        assert_eq!(p.inside_h95, Some(*h), "{p:?}");
        assert_eq!(p.inside_z95, Some(*z), "{p:?}");
        assert_eq!(p.inside_h68, None);
    }
    let h = c.coverage_h95.unwrap();
    let n_in = expected.iter().filter(|e| e.0).count();
    assert_eq!((h.n, h.inside), (expected.len(), n_in));
    assert!((h.fraction - n_in as f64 / expected.len() as f64).abs() < 1e-12);
    let z = c.coverage_z95.unwrap();
    assert_eq!(z.inside, expected.iter().filter(|e| e.1).count());
    assert!(c.coverage_h68.is_none());
}

#[test]
fn optional_68_percent_columns_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, rows, _) = coverage_case();
    let mut text = Vec::new();
    write_catalog(&mut text, &rows).unwrap();
    let text = String::from_utf8(text).unwrap();
    // Append 68 % columns equal to half the 95 % region: only offsets <= 0.5 are inside.
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push_str(if i == 0 {
            ",h68_major_km,h68_minor_km,h68_azimuth_deg,z68_km\n"
        } else {
            ",1.0,0.5,45.0,0.5\n"
        });
    }
    let path = dir.path().join("cat68.csv");
    std::fs::write(&path, out).unwrap();
    let catalog = read_hypocentres_file(&path).unwrap();
    let c = compare(&reference, &catalog, &MatchOptions::default()).unwrap();
    let flags: Vec<(Option<bool>, Option<bool>)> = c
        .pairs
        .iter()
        .map(|p| (p.inside_h68, p.inside_z68))
        .collect();
    // Offsets in 68 % semi-axes are twice the 95 % ones: (3,0), (1,0), (0,1), (0,3), r=1.7, r=2.26.
    // Edge cases (exactly 1.0) are inside up to rounding of the geodesic; accept only clear ones.
    assert_eq!(flags[0], (Some(false), Some(true)));
    assert_eq!(flags[3], (Some(false), Some(false)));
    assert_eq!(flags[4].0, Some(false));
    assert_eq!(flags[5], (Some(false), Some(true)));
    assert_eq!(c.coverage_h68.unwrap().n, 6);
}

#[test]
fn reference_format_covariance_gives_regions() {
    // NonLinLoc-style covariance: sigma east 2 km, north 1 km, depth 1 km, uncorrelated.
    let dir = tempfile::tempdir().unwrap();
    let reference = reference_events();
    let mut text = String::from(
        "event_id,origin_time_iso,lat,lon,depth_km,cov_xx_km2,cov_xy_km2,cov_xz_km2,cov_yy_km2,cov_yz_km2,cov_zz_km2\n",
    );
    for h in &reference[..2] {
        text.push_str(&format!(
            "{},{},{:.8},{:.8},{},4,0,0,1,0,1\n",
            h.event_id,
            eikoloc::domain::format_utc(&h.origin_time),
            h.lat_deg,
            h.lon_deg,
            h.depth_km
        ));
    }
    let path = dir.path().join("nll.csv");
    std::fs::write(&path, text).unwrap();
    let cat = read_hypocentres_file(&path).unwrap();
    let e = cat[0].h95.unwrap();
    // 95 % 2-D: sqrt(chi2_2(0.95) = 5.991) sigma; major axis east (azimuth 90).
    assert!((e.major_km - 2.0 * 5.991f64.sqrt()).abs() < 1e-3, "{e:?}");
    assert!((e.minor_km - 5.991f64.sqrt()).abs() < 1e-3, "{e:?}");
    assert!((e.azimuth_deg - 90.0).abs() < 1e-9, "{e:?}");
    assert!((cat[0].z95_km.unwrap() - 1.96).abs() < 1e-3);
    assert!((cat[0].z68_km.unwrap() - 1.0).abs() < 1e-12);
    // 4 km east is inside the 95 % ellipse (4.9 km semi-major), 4 km north is not (2.4 km).
    let truth = vec![
        moved(&reference[0], "r0", 4.0, 0.0, 0.0, 0.0),
        moved(&reference[1], "r1", 0.0, 4.0, 0.0, 0.0),
    ];
    let c = compare(&truth, &cat, &MatchOptions::default()).unwrap();
    assert_eq!(c.pairs[0].inside_h95, Some(true));
    assert_eq!(c.pairs[1].inside_h95, Some(false));
}

#[test]
fn figures_are_written_and_parse_as_xml() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, rows, _) = coverage_case();
    let path = dir.path().join("cat.csv");
    write_catalog(std::fs::File::create(&path).unwrap(), &rows).unwrap();
    let catalog = read_hypocentres_file(&path).unwrap();
    let c = compare(&reference, &catalog, &MatchOptions::default()).unwrap();
    let labels = FigureLabels {
        reference: "truth <&>".into(),
        catalog: "cat.csv".into(),
    };
    let out = dir.path().join("figs");
    let files = write_figures(&out, &reference, &catalog, &c, &labels).unwrap();
    assert_eq!(files.len(), 3);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut reader = quick_xml::Reader::from_str(&text);
        let (mut root, mut polygons, mut circles, mut lines) = (None, 0, 0, 0);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    root.get_or_insert(name.clone());
                    match name.as_str() {
                        "polygon" => polygons += 1,
                        "circle" => circles += 1,
                        "line" => lines += 1,
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("{}: {e}", f.display()),
            }
        }
        assert_eq!(root.as_deref(), Some("svg"), "{}", f.display());
        let name = f.file_name().unwrap().to_str().unwrap();
        match name {
            "map.svg" => {
                assert_eq!(polygons, rows.len(), "one ellipse per catalog event");
                assert!(circles >= reference.len() + catalog.len());
                assert!(lines >= c.pairs.len());
            }
            "depth_section.svg" => assert!(circles >= reference.len() + catalog.len()),
            "histograms.svg" => assert!(text.contains("<rect")),
            other => panic!("unexpected figure {other}"),
        }
    }
}

#[test]
fn parkfield_ncsn_versus_hypodd_by_id() {
    let ncsn_path = data("hypodd_parkfield/catalog.csv");
    let dd_path = data("hypodd_parkfield/catalog_hypodd.csv");
    let ncsn = read_hypocentres_file(&ncsn_path).unwrap();
    let dd = read_hypocentres_file(&dd_path).unwrap();
    let ids: std::collections::HashSet<&str> = ncsn.iter().map(|h| h.event_id.as_str()).collect();
    let common = dd
        .iter()
        .filter(|h| ids.contains(h.event_id.as_str()))
        .count();
    assert!(common > 100, "{common}");
    let c = compare(&ncsn, &dd, &MatchOptions::default()).unwrap();
    assert_eq!(c.mode_used, MatchMode::Id);
    assert_eq!(c.pairs.len(), common);
    assert_eq!(c.missed.len(), ncsn.len() - common);
    assert_eq!(c.extra.len(), dd.len() - common);
    println!("{}", eikoloc::compare::format_report(&c));
    for (name, m) in [("horizontal", c.horizontal_km), ("|depth|", c.abs_depth_km)] {
        assert!(
            m.median.is_finite() && m.median > 0.0 && m.median < 5.0,
            "{name} {m:?}"
        );
        assert!(m.p90 >= m.median && m.max >= m.p90, "{name} {m:?}");
    }
    assert!(c.abs_time_s.median < 1.0);
    // The same events found again by time and place (ids ignored) give the same pairs where
    // relocations moved less than the tolerances.
    let o = MatchOptions {
        mode: MatchMode::TimePlace,
        ..MatchOptions::default()
    };
    let t = compare(&ncsn, &dd, &o).unwrap();
    let same = t
        .pairs
        .iter()
        .filter(|p| p.reference_id == p.catalog_id)
        .count();
    println!(
        "time/place: {} pairs, {} with the same id",
        t.pairs.len(),
        same
    );
    assert!(same as f64 >= 0.95 * common as f64, "{same} of {common}");
}

#[test]
fn bad_input_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing_col.csv");
    std::fs::write(
        &missing,
        "event_id,origin_time_iso,lat,depth_km\n1,2020-01-01T00:00:00Z,35,5\n",
    )
    .unwrap();
    // Without `lon` the content is not a catalog at all; with it but without depth it is.
    let err = read_hypocentres_file(&missing).unwrap_err().to_string();
    assert!(err.contains("missing_col.csv"), "{err}");
    let no_depth = dir.path().join("no_depth.csv");
    std::fs::write(
        &no_depth,
        "event_id,origin_time_iso,lat,lon\n1,2020-01-01T00:00:00Z,35,-120\n",
    )
    .unwrap();
    let err = read_hypocentres_file(&no_depth).unwrap_err().to_string();
    assert!(
        err.contains("no_depth.csv") && err.contains("depth_km"),
        "{err}"
    );
    let bad_row = dir.path().join("bad_row.csv");
    std::fs::write(
        &bad_row,
        "event_id,origin_time_iso,lat,lon,depth_km\n1,2020-01-01T00:00:00Z,35,-120,5\n2,2020-01-01T00:01:00Z,north,-120,5\n",
    )
    .unwrap();
    let err = read_hypocentres_file(&bad_row).unwrap_err().to_string();
    assert!(
        err.contains("bad_row.csv") && err.contains("line 3") && err.contains("lat"),
        "{err}"
    );
    let bad_time = dir.path().join("bad_time.csv");
    std::fs::write(
        &bad_time,
        "event_id,origin_time_iso,lat,lon,depth_km\n1,yesterday,35,-120,5\n",
    )
    .unwrap();
    let err = read_hypocentres_file(&bad_time).unwrap_err().to_string();
    assert!(
        err.contains("line 2") && err.contains("origin_time_iso"),
        "{err}"
    );
    let err = read_hypocentres_file(&dir.path().join("absent.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.csv"), "{err}");
}

#[test]
fn cli_prints_json_and_writes_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, rows, expected) = coverage_case();
    let cat = dir.path().join("cat.csv");
    write_catalog(std::fs::File::create(&cat).unwrap(), &rows).unwrap();
    let ref_rows: Vec<CatalogRow> = reference
        .iter()
        .map(|h| row(h, HorizontalEllipse::default(), f64::NAN))
        .collect();
    let refp = dir.path().join("ref.csv");
    write_catalog(std::fs::File::create(&refp).unwrap(), &ref_rows).unwrap();
    let figs = dir.path().join("figs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eikoloc"))
        .args(["compare", "--json", "--reference"])
        .arg(&refp)
        .arg("--catalog")
        .arg(&cat)
        .arg("--svg")
        .arg(&figs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pairs"].as_array().unwrap().len(), expected.len());
    assert_eq!(v["mode_used"], "id");
    let inside = expected.iter().filter(|e| e.0).count();
    assert_eq!(
        v["coverage_h95"]["inside"].as_u64().unwrap() as usize,
        inside
    );
    for f in ["map.svg", "depth_section.svg", "histograms.svg"] {
        assert!(figs.join(f).is_file(), "{f}");
    }
    // Bad input: exit status 2 and a message naming the file.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "event_id,origin_time_iso,lat,lon,depth_km\n1,2020-01-01T00:00:00Z,35,-120,deep\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eikoloc"))
        .args(["compare", "--reference"])
        .arg(&refp)
        .arg("--catalog")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv") && err.contains("line 2") && err.contains("depth_km"),
        "{err}"
    );
}

#[test]
fn quakeml_catalogs_are_read_with_their_regions() {
    use eikoloc::domain::{Event, Origin, OriginUncertainty};
    let reference = reference_events();
    let e95 = HorizontalEllipse {
        major_km: 2.0,
        minor_km: 1.0,
        azimuth_deg: 0.0,
    };
    let events: Vec<Event> = reference[..3]
        .iter()
        .map(|h| {
            let shifted = moved(h, &h.event_id, 0.0, 1.5, 0.0, 0.0);
            let origin = Origin {
                id: format!("{}/1", h.event_id),
                time: shifted.origin_time,
                time_sigma_s: 0.05,
                lat_deg: shifted.lat_deg,
                lon_deg: shifted.lon_deg,
                depth_km: shifted.depth_km,
                uncertainty: OriginUncertainty {
                    horizontal_95: e95,
                    depth_95_km: 0.8,
                    ..OriginUncertainty::default()
                },
                rms_s: 0.1,
                gap_deg: 80.0,
                min_distance_km: 5.0,
                arrivals: vec![],
                version: 1,
                is_final: true,
                method: Default::default(),
            };
            Event {
                id: h.event_id.clone(),
                picks: vec![],
                origins: vec![origin],
                preferred_origin: Some(0),
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cat.xml");
    std::fs::write(&path, eikoloc::catalog::quakeml::to_quakeml(&events)).unwrap();
    let cat = read_hypocentres_file(&path).unwrap();
    assert_eq!(cat.len(), 3);
    let e = cat[0].h95.expect("95 % ellipse from QuakeML");
    assert!(
        (e.major_km - 2.0).abs() < 1e-6 && (e.minor_km - 1.0).abs() < 1e-6,
        "{e:?}"
    );
    let c = compare(&reference, &cat, &MatchOptions::default()).unwrap();
    assert_eq!(c.pairs.len(), 3);
    assert!((c.horizontal_km.median - 1.5).abs() < 1e-4);
    // 1.5 km north, along the 2 km major axis: inside; depth unchanged: inside.
    let cov = c.coverage_h95.unwrap();
    assert_eq!((cov.n, cov.inside), (3, 3));
    assert_eq!(c.coverage_z95.unwrap().inside, 3);
}
