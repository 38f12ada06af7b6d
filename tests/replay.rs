//! `eikoloc replay` through the binary on a small synthetic archive of the demo region
//! (`eikoloc synth`, exact 1-D traveltimes, independent truth): every event located near its
//! truth with and without `--keep-association`, byte-identical output across runs, bad
//! archive lines named by line and skipped without stopping the replay, and the CLI contract
//! (`--stations/--velocity` instead of `--config`, `--speed`, refusing a used folder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod cli_support;
use cli_support::*;

/// Events in the synthetic archive; one per minute, far enough apart to associate cleanly.
const N_EVENTS: usize = 6;

/// Synthetic archive and truth on the demo region (exact traveltimes, 0.05 / 0.1 s noise).
fn synth(dir: &Path) -> (PathBuf, PathBuf) {
    let picks = dir.join("picks.csv");
    let truth = dir.join("truth.csv");
    ok(&run(&[
        "synth",
        "--config",
        s(&demo()),
        "--traveltime",
        "exact",
        "--events",
        &N_EVENTS.to_string(),
        "--spacing-s",
        "60",
        "--seed",
        "11",
        "--picks-out",
        s(&picks),
        "--truth-out",
        s(&truth),
    ]));
    (picks, truth)
}

fn replay(picks: &Path, out: &Path, extra: &[&str]) -> String {
    let config = demo();
    let mut args = vec![
        "replay",
        "--config",
        s(&config),
        "--picks",
        s(picks),
        "--out",
        s(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&run(&args))
}

/// Kilometres between two WGS84 points (spherical; fine at these distances).
fn km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dl = (lon2 - lon1).to_radians();
    let a = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

/// Every truth event has exactly one catalog event within 2 s of its origin time, and it
/// lies within `tol_km` horizontally and `2 tol_km` in depth of the truth.
fn assert_near_truth(catalog: &Path, truth: &Path, tol_km: f64) {
    let (header, rows) = read_csv(catalog);
    assert_eq!(header, CONTRACT, "catalog.csv columns");
    let (_, truth) = read_csv(truth);
    assert_eq!(truth.len(), N_EVENTS);
    assert_eq!(rows.len(), N_EVENTS, "one row per event, nothing extra");
    let t = |r: &HashMap<String, String>, k: &str| {
        eikoloc::domain::parse_utc(&r[k]).unwrap_or_else(|e| panic!("{k}: {e}"))
    };
    for tr in &truth {
        let t0 = t(tr, "origin_time_iso");
        let near: Vec<&HashMap<String, String>> = rows
            .iter()
            .filter(|r| {
                eikoloc::domain::time::seconds_between(&t0, &t(r, "origin_time_iso")).abs() < 2.0
            })
            .collect();
        assert_eq!(near.len(), 1, "event {} found once", tr["event_id"]);
        let r = near[0];
        let dh = km(num(tr, "lat"), num(tr, "lon"), num(r, "lat"), num(r, "lon"));
        let dz = (num(tr, "depth_km") - num(r, "depth_km")).abs();
        println!(
            "truth {}: catalog {} at {dh:.3} km horizontally, {dz:.3} km in depth, {} picks",
            tr["event_id"], r["event_id"], r["n_picks"]
        );
        assert!(
            dh < tol_km && dz < 2.0 * tol_km,
            "event {}: {dh} km / {dz} km",
            tr["event_id"]
        );
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn replay_locates_every_event_near_its_truth_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let (picks, truth) = synth(dir.path());
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let err = replay(&picks, &a, &[]);
    assert!(err.contains("0 records rejected"), "{err}");
    assert_near_truth(&a.join("catalog.csv"), &truth, 1.0);
    // the same archive at a paced speed into another folder: the same bytes
    replay(&picks, &b, &["--speed", "100000"]);
    let (fa, fb) = (files_under(&a), files_under(&b));
    let outputs: Vec<&PathBuf> = fa
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv" || e == "xml"))
        .collect();
    assert!(
        outputs.len() >= 3 + N_EVENTS,
        "catalog.csv, catalog.xml, rejected.csv and one file per event: {outputs:?}"
    );
    for p in outputs {
        let q = b.join(p.strip_prefix(&a).unwrap());
        assert!(fb.contains(&q), "{} only in the first run", q.display());
        assert!(
            std::fs::read(p).unwrap() == std::fs::read(&q).unwrap(),
            "{} differs between runs",
            p.display()
        );
    }
    // the QuakeML catalog reads back with every event located
    let qml = eikoloc::catalog::quakeml::read_quakeml_file(
        &a.join("catalog.xml"),
        &eikoloc::catalog::PickOptions::default(),
    )
    .unwrap();
    assert_eq!(qml.records.len(), N_EVENTS);
    assert!(qml.records.iter().all(|e| e.preferred().is_some()));
    // the store holds every version; the catalog only the final one
    let store = eikoloc::store::Store::open(&a.join("eikoloc.sqlite")).unwrap();
    let (events, origins, stored_picks) = store.counts().unwrap();
    assert_eq!(events as usize, N_EVENTS);
    assert!(origins as usize >= N_EVENTS);
    let (_, rows) = read_csv(&picks);
    assert_eq!(stored_picks as usize, rows.len());
    for id in store.event_ids().unwrap() {
        let e = store.event(&id).unwrap().unwrap();
        assert!(e.preferred().unwrap().is_final, "{id}: latest origin final");
    }
    // a used folder is refused rather than mixed
    let o = run(&[
        "replay",
        "--config",
        s(&demo()),
        "--picks",
        s(&picks),
        "--out",
        s(&a),
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
}

#[test]
fn keep_association_groups_by_archive_id_through_the_same_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (picks, truth) = synth(dir.path());
    let out = dir.path().join("keep");
    // --stations/--velocity instead of --config (frame about the median station)
    let err = ok(&run(&[
        "replay",
        "--stations",
        s(&demo().join("stations.csv")),
        "--velocity",
        s(&demo().join("velocity.csv")),
        "--traveltime",
        "exact",
        "--picks",
        s(&picks),
        "--out",
        s(&out),
        "--keep-association",
        "--quiet",
    ]));
    assert!(err.contains(&format!("{N_EVENTS} located")), "{err}");
    assert_near_truth(&out.join("catalog.csv"), &truth, 1.0);
    // event ids are the archive's, so the catalog lines up with the truth by id
    let (_, rows) = read_csv(&out.join("catalog.csv"));
    let (_, truth_rows) = read_csv(&truth);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["event_id"].as_str()).collect();
    let mut want: Vec<&str> = truth_rows.iter().map(|r| r["event_id"].as_str()).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    // every pick of an event is used by its final origin (perfect grouping, no association)
    let (_, pick_rows) = read_csv(&picks);
    for r in &rows {
        let n = pick_rows
            .iter()
            .filter(|p| p["event_id"] == r["event_id"])
            .count();
        assert_eq!(r["n_picks"], n.to_string(), "event {}", r["event_id"]);
    }
}

#[test]
fn bad_archive_lines_are_reported_by_line_and_do_not_stop_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (picks, truth) = synth(dir.path());
    let text = std::fs::read_to_string(&picks).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let header = lines[0].clone();
    assert!(header.starts_with("event_id,network,station"), "{header}");
    // line numbers are 1-based with the header on line 1
    lines[4] = lines[4].replacen(",EK,", ",XX,", 1); // line 5: unknown station
    let cols: Vec<&str> = lines[9].split(',').collect();
    let time_col = header.split(',').position(|c| c == "time_iso").unwrap();
    let bad_time: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == time_col {
                "2020-13-45T99:00:00Z".to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    lines[9] = bad_time.join(","); // line 10: malformed time
    let n = lines.len();
    let last = lines[n - 1].clone();
    lines[n - 1] = last[..last.len() / 2].to_string(); // last line cut off mid-record
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let err = replay(&bad, &out, &[]);
    assert!(err.contains("3 records rejected"), "{err}");
    let name = s(&bad);
    for (line, field) in [(5, "station"), (10, "time_iso"), (n, "")] {
        assert!(
            err.contains(&format!("{name}:{line}: {field}")),
            "line {line} named: {err}"
        );
    }
    let (_, rejected) = read_csv(&out.join("rejected.csv"));
    let at: Vec<&str> = rejected.iter().map(|r| r["line"].as_str()).collect();
    assert_eq!(at, vec!["5", "10", &n.to_string()], "{rejected:?}");
    assert!(rejected[0]["message"].contains("XX."), "{rejected:?}");
    // the good picks still locate every event
    assert_near_truth(&out.join("catalog.csv"), &truth, 1.0);
}

#[test]
fn the_cli_refuses_a_bad_speed_and_a_missing_region() {
    let o = run(&[
        "replay",
        "--config",
        s(&demo()),
        "--picks",
        "x.csv",
        "--out",
        "y",
        "--speed",
        "fast",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("max"));
    let o = run(&["replay", "--picks", "x.csv", "--out", "y"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--config"));
}
