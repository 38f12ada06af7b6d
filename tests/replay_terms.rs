//! Station terms in `eikoloc replay` and the service, through the binary, on a synthetic
//! archive of the demo region (`eikoloc synth`, exact 1-D traveltimes) with a known delay
//! added to every pick of each station: `--station-terms static` must recover the delays in
//! `station_terms.csv` (up to the constant per phase that the origin times absorb) and the
//! relocated catalog must be closer to the synthetic truth than the replay's own; the output
//! is byte-identical across runs; a malformed term file stops `replay` and `serve` naming
//! file and line, and terms of unknown stations are ignored with a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use eikoloc::domain::parse_utc;
use eikoloc::domain::time::{add_seconds, format_utc};

mod cli_support;
use cli_support::*;

/// Events in the archive: enough for the 5 residuals a static term needs, and a margin.
const N_EVENTS: usize = 12;

/// Injected P delay of station EKnn, s (an irregular +-0.3 s pattern); S gets 1.7 times it.
fn delay_s(station: &str, phase: &str) -> f64 {
    let k: f64 = station[2..].parse().unwrap();
    let p = 0.3 * (2.399 * k).sin();
    if phase == "S" {
        1.7 * p
    } else {
        p
    }
}

/// Synthetic archive with the delays added, and its truth.
fn delayed_archive(dir: &Path) -> (PathBuf, PathBuf) {
    let clean = dir.join("clean.csv");
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
        "23",
        "--picks-out",
        s(&clean),
        "--truth-out",
        s(&truth),
    ]));
    let mut r = csv::Reader::from_path(&clean).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|c| c == name).unwrap();
    let (sta, ph, time) = (col("station"), col("phase"), col("time_iso"));
    let delayed = dir.join("picks.csv");
    let mut w = csv::Writer::from_path(&delayed).unwrap();
    w.write_record(&header).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        let t = parse_utc(&rec[time]).unwrap();
        let t = format_utc(&add_seconds(&t, delay_s(&rec[sta], &rec[ph])));
        let row: Vec<&str> = rec
            .iter()
            .enumerate()
            .map(|(i, v)| if i == time { t.as_str() } else { v })
            .collect();
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
    (delayed, truth)
}

fn replay(picks: &Path, out: &Path, extra: &[&str]) -> Output {
    let config = demo();
    let mut args = vec![
        "replay",
        "--config",
        s(&config),
        "--picks",
        s(picks),
        "--out",
        s(out),
        "--keep-association",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Median 3-D distance (km) of a catalog's events to their truth, matched by archive id.
fn median_error_km(catalog: &Path, truth: &Path) -> f64 {
    let truth: HashMap<String, HashMap<String, String>> = read_csv(truth)
        .1
        .into_iter()
        .map(|r| (r["event_id"].clone(), r))
        .collect();
    let (_, rows) = read_csv(catalog);
    assert_eq!(rows.len(), N_EVENTS, "{}: every event", catalog.display());
    let mut d: Vec<f64> = rows
        .iter()
        .map(|r| {
            let t = &truth[&r["event_id"]];
            let lat0 = num(t, "lat").to_radians();
            let dy = (num(r, "lat") - num(t, "lat")) * 111.195;
            let dx = (num(r, "lon") - num(t, "lon")) * 111.195 * lat0.cos();
            let dz = num(r, "depth_km") - num(t, "depth_km");
            (dx * dx + dy * dy + dz * dz).sqrt()
        })
        .collect();
    d.sort_by(f64::total_cmp);
    d[d.len() / 2]
}

#[test]
fn replay_static_terms_recover_station_delays_and_improve_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (picks, truth) = delayed_archive(dir.path());
    let a = dir.path().join("a");
    let err = ok(&replay(&picks, &a, &["--station-terms", "static"]));
    assert!(err.contains("terms pass 3"), "{err}");
    let terms = read_csv(&a.join("station_terms.csv")).1;
    for phase in ["P", "S"] {
        // terms are known up to a constant per phase (the origin times absorb it)
        let diff: Vec<(String, f64)> = terms
            .iter()
            .filter(|t| t["phase"] == phase)
            .map(|t| {
                (
                    t["station"].clone(),
                    num(t, "correction_s") - delay_s(&t["station"], phase),
                )
            })
            .collect();
        assert!(
            diff.len() >= 10,
            "{phase}: most stations get a term: {terms:?}"
        );
        let c = median(diff.iter().map(|d| d.1).collect());
        for (sta, d) in &diff {
            println!("{phase} {sta}: term - delay - {c:.3} = {:.3} s", d - c);
            // noise 0.05 s (P) / 0.1 s (S) per pick, medians over <= 12 events; delays
            // span 0.6 s (P) and 1 s (S)
            let tol = if phase == "P" { 0.07 } else { 0.15 };
            assert!((d - c).abs() < tol, "{phase} {sta}: {} s off", d - c);
        }
    }
    let before = median_error_km(&a.join("catalog_pipeline.csv"), &truth);
    let after = median_error_km(&a.join("catalog.csv"), &truth);
    println!("median 3-D error: replay {before:.3} km, with static terms {after:.3} km");
    assert!(after < before, "terms: {after} km, without: {before} km");
    // deterministic: a second run writes the same bytes
    let b = dir.path().join("b");
    ok(&replay(&picks, &b, &["--station-terms", "static"]));
    for f in [
        "catalog.csv",
        "catalog.xml",
        "catalog_pipeline.csv",
        "station_terms.csv",
    ] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs between runs"
        );
    }
    // the estimated terms applied by the service's locator (replay --terms): the replay's
    // own catalog is now the corrected one; an unknown station's term is ignored, loudly
    let terms_file = dir.path().join("terms.csv");
    let mut text = std::fs::read_to_string(a.join("station_terms.csv")).unwrap();
    text.push_str("XX,NOPE,P,0.5000,9\n");
    std::fs::write(&terms_file, text).unwrap();
    let c = dir.path().join("c");
    let err = ok(&replay(&picks, &c, &["--terms", s(&terms_file)]));
    assert!(err.contains("XX.NOPE"), "{err}");
    let with_file = median_error_km(&c.join("catalog.csv"), &truth);
    println!("median 3-D error with the terms file: {with_file:.3} km");
    assert!(with_file < before, "{with_file} km vs {before} km");
}

#[test]
fn replay_and_serve_refuse_a_malformed_terms_file_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad_terms.csv");
    std::fs::write(
        &bad,
        "network,station,phase,correction_s,n\nEK,EK01,P,0.1,5\nEK,EK02,P,fast,5\n",
    )
    .unwrap();
    let want = format!("{}:3: field correction_s", bad.display());
    let o = replay(
        Path::new("no-such-archive.csv"),
        &dir.path().join("out"),
        &["--terms", s(&bad)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(&want), "replay: {err}");
    // serve: the --terms flag and the TOML key, both at --check
    let toml = dir.path().join("serve.toml");
    std::fs::write(
        &toml,
        format!(
            "station_config = {:?}\nterms = \"bad_terms.csv\"\n",
            s(&demo())
        ),
    )
    .unwrap();
    let o = run(&["serve", s(&toml), "--check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(&want), "serve (TOML terms): {err}");
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, format!("station_config = {:?}\n", s(&demo()))).unwrap();
    let o = run(&["serve", s(&plain), "--check", "--terms", s(&bad)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(&want), "serve --terms: {err}");
    ok(&run(&["serve", s(&plain), "--check"]));
}
