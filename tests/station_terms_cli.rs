//! `eikoloc locate --station-terms static|ssst --write-terms FILE` and `--terms FILE` end to
//! end on the demo configuration: a known delay added to one station's P picks comes back as
//! that station's static term, written files read back, and bad combinations are refused.

use std::path::{Path, PathBuf};
use std::process::Output;

use eikoloc::domain::time::add_seconds;
use eikoloc::domain::{format_utc, parse_utc};

mod cli_support;
use cli_support::*;

const DELAY_S: f64 = 0.4;

/// Synthetic picks on the demo config with `DELAY_S` added to every P pick of one station;
/// returns the picks file and that station's code.
fn delayed_picks(dir: &Path) -> (PathBuf, String) {
    let clean = dir.join("clean.csv");
    ok(&run(&[
        "synth",
        "--config",
        demo().to_str().unwrap(),
        "--traveltime",
        "exact",
        "--events",
        "30",
        "--seed",
        "5",
        "--picks-out",
        clean.to_str().unwrap(),
        "--truth-out",
        dir.join("truth.csv").to_str().unwrap(),
    ]));
    let mut r = csv::Reader::from_path(&clean).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (ista, iph, it) = (col("station"), col("phase"), col("time_iso"));
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let target = rows[0][ista].to_string();
    let out = dir.join("picks.csv");
    let mut w = csv::Writer::from_path(&out).unwrap();
    w.write_record(&header).unwrap();
    for row in &rows {
        let mut v: Vec<String> = row.iter().map(String::from).collect();
        if v[ista] == target && v[iph] == "P" {
            let t = parse_utc(&v[it]).unwrap();
            v[it] = format_utc(&add_seconds(&t, DELAY_S));
        }
        w.write_record(&v).unwrap();
    }
    w.flush().unwrap();
    (out, target)
}

fn locate(picks: &Path, out: &Path, extra: &[&str]) -> Output {
    let config = demo();
    let mut args = vec![
        "locate",
        "--config",
        config.to_str().unwrap(),
        "--traveltime",
        "exact",
        "--picks",
        picks.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--particles",
        "32",
        "--mh-steps",
        "0",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn static_terms_find_a_delayed_station_and_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (picks, target) = delayed_picks(dir.path());
    let terms = dir.path().join("terms.csv");
    let o = locate(
        &picks,
        &dir.path().join("a.csv"),
        &[
            "--station-terms",
            "static",
            "--terms-iterations",
            "2",
            "--write-terms",
            terms.to_str().unwrap(),
        ],
    );
    ok(&o);
    let mut r = csv::Reader::from_path(&terms).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["network", "station", "phase", "correction_s", "n"]
    );
    let mut p_terms = Vec::new();
    let mut target_term = f64::NAN;
    for row in r.records() {
        let row = row.unwrap();
        if &row[2] == "P" {
            let c: f64 = row[3].parse().unwrap();
            if row[1] == target {
                target_term = c;
            } else {
                p_terms.push(c);
            }
        }
    }
    p_terms.sort_by(|a, b| a.total_cmp(b));
    let others = p_terms[p_terms.len() / 2];
    println!("delayed station {target}: term {target_term:.3} s, others' median {others:.3} s");
    assert!(
        (target_term - others - DELAY_S).abs() < 0.1,
        "term {target_term} vs others {others}"
    );

    // the written file is accepted back as the terms of a single pass
    ok(&locate(
        &picks,
        &dir.path().join("b.csv"),
        &["--terms", terms.to_str().unwrap()],
    ));

    // SSST writes its residual table, which --terms reads back
    let table = dir.path().join("ssst.csv");
    ok(&locate(
        &picks,
        &dir.path().join("c.csv"),
        &[
            "--station-terms",
            "ssst",
            "--terms-iterations",
            "1",
            "--write-terms",
            table.to_str().unwrap(),
        ],
    ));
    let head = std::fs::read_to_string(&table).unwrap();
    assert!(head.starts_with("event_id,lat,lon,depth_km,network,station,phase,residual_s\n"));
    ok(&locate(
        &picks,
        &dir.path().join("d.csv"),
        &["--terms", table.to_str().unwrap()],
    ));

    // writing terms that were never asked for, and a file of neither form, are refused
    let o = locate(
        &picks,
        &dir.path().join("e.csv"),
        &["--write-terms", dir.path().join("x.csv").to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--station-terms"));
    let o = locate(
        &picks,
        &dir.path().join("f.csv"),
        &["--terms", picks.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither"));
}
