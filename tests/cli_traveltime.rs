//! `eikoloc traveltime` end to end: the binary on temporary pairs files, checked against the
//! library's exact solver, and its errors for bad rows and unwired engines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eikoloc::domain::Phase;
use eikoloc::traveltime::LayeredExact;
use eikoloc::velocity::LayeredModel;

fn ridgecrest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/ridgecrest_synthetic/velocity_model.csv")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eikoloc"))
        .args(args)
        .output()
        .expect("run eikoloc")
}

/// Writes `text` as a pairs file in `dir` and runs the exact solver on it.
fn run_exact(dir: &Path, text: &str) -> Output {
    let pairs = dir.join("pairs.csv");
    std::fs::write(&pairs, text).unwrap();
    run(&[
        "traveltime",
        "--velocity",
        ridgecrest().to_str().unwrap(),
        "--solver",
        "exact",
        "--pairs",
        pairs.to_str().unwrap(),
    ])
}

const HEADER: &str = "phase,epicentral_distance_km,source_depth_km,receiver_elevation_m";

#[test]
fn exact_times_match_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ("P", 0.0, 8.0, 0.0),
        ("S", 0.0, 8.0, 0.0),
        ("Pg", 12.5, 3.3, 620.0),
        ("P", 47.0, 11.0, 2260.0),
        ("S", 47.0, 11.0, 2260.0),
        ("P", 149.9, 29.5, -200.0),
        ("Sn", 120.0, 0.0, 1320.0),
    ];
    let mut text = format!("{HEADER}\n# a comment line\n\n");
    for (ph, r, z, e) in rows {
        text.push_str(&format!("{ph},{r},{z},{e}\n"));
    }
    let out = run_exact(dir.path(), &text);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{HEADER},traveltime_s").as_str())
    );
    let solver = LayeredExact::new(LayeredModel::from_csv_path(&ridgecrest()).unwrap());
    let mut n = 0;
    for ((ph, r, z, e), line) in rows.iter().zip(lines.by_ref()) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert_eq!(f[0], *ph);
        assert_eq!(
            f[1..4]
                .iter()
                .map(|s| s.parse::<f64>().unwrap())
                .collect::<Vec<_>>(),
            vec![*r, *z, *e]
        );
        let phase: Phase = ph.parse().unwrap();
        let expected = solver.radial_time_s(phase, *r, *z, -e / 1000.0).unwrap();
        let got: f64 = f[4].parse().unwrap();
        assert!(
            (got - expected).abs() <= 5e-7,
            "{line}: expected {expected}"
        );
        n += 1;
    }
    assert_eq!(n, rows.len());
    assert_eq!(lines.next(), None);
}

#[test]
fn bad_rows_name_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for (body, needle) in [
        ("P,10,5,0\nX,10,5,0\n", ":3: field \"phase\""),
        (
            "P,10,5,0\n\nP,NaN,5,0\n",
            ":4: field \"epicentral_distance_km\"",
        ),
        ("P,-1,5,0\n", ":2: field \"epicentral_distance_km\""),
        ("P,10,abc,0\n", ":2: field \"source_depth_km\""),
        ("P,10,5\n", ":2: field \"receiver_elevation_m\""),
        ("P,10,5,inf\n", ":2: field \"receiver_elevation_m\""),
    ] {
        let out = run_exact(dir.path(), &format!("{HEADER}\n{body}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body:?} accepted");
        assert!(
            err.contains("pairs.csv") && err.contains(needle),
            "{body:?}: stderr {err}"
        );
        assert!(out.stdout.is_empty(), "partial output for {body:?}");
    }
    let out = run_exact(
        dir.path(),
        "phase,distance_km,source_depth_km,receiver_elevation_m\nP,1,1,0\n",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(":1: field \"distance_km\""));
    let out = run_exact(dir.path(), "");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("empty file"));
}

/// The grid solver through the CLI agrees with the exact solver within its documented
/// accuracy at the default 0.2 km spacing (max 33 ms over 0-200 km on this model).
#[test]
fn grid_solver_agrees_with_exact() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.csv");
    let mut text = format!("{HEADER}\n");
    let rows = [
        ("P", 5.0, 8.0, 670.0),
        ("S", 30.0, 4.0, 670.0),
        ("P", 80.0, 12.0, 1480.0),
        ("S", 140.0, 25.0, 1480.0),
    ];
    for (ph, r, z, e) in rows {
        text.push_str(&format!("{ph},{r},{z},{e}\n"));
    }
    std::fs::write(&pairs, text).unwrap();
    let out = run(&[
        "traveltime",
        "--velocity",
        ridgecrest().to_str().unwrap(),
        "--solver",
        "grid",
        "--pairs",
        pairs.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exact = LayeredExact::new(LayeredModel::from_csv_path(&ridgecrest()).unwrap());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), rows.len());
    for (line, (ph, r, z, e)) in lines.iter().zip(rows) {
        let t: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
        let phase: Phase = ph.parse().unwrap();
        let te = exact.radial_time_s(phase, r, z, -e / 1000.0).unwrap();
        assert!((t - te).abs() < 0.035, "{line}: grid {t} exact {te}");
    }
}

#[test]
fn engines_and_velocity_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, format!("{HEADER}\nP,10,5,0\n")).unwrap();
    let (v, p) = (ridgecrest(), pairs.to_str().unwrap().to_string());
    let v = v.to_str().unwrap();
    let model = run(&[
        "traveltime",
        "--velocity",
        v,
        "--model",
        "trained-models/none",
        "--pairs",
        &p,
    ]);
    // a missing network folder is named in the error
    assert!(
        !model.status.success()
            && String::from_utf8_lossy(&model.stderr).contains("trained-models/none")
    );
    // neither or both engines: a usage error from clap
    assert!(!run(&["traveltime", "--velocity", v, "--pairs", &p])
        .status
        .success());
    assert!(!run(&[
        "traveltime",
        "--velocity",
        v,
        "--solver",
        "exact",
        "--model",
        "x",
        "--pairs",
        &p
    ])
    .status
    .success());
    // a bad velocity file names its line and field
    let bad = dir.path().join("v.csv");
    std::fs::write(&bad, "depth_top_km,vp_km_s,vs_km_s\n0,5,3\n4,5,6\n").unwrap();
    let out = run(&[
        "traveltime",
        "--velocity",
        bad.to_str().unwrap(),
        "--solver",
        "exact",
        "--pairs",
        &p,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("v.csv:3") && err.contains("vs_km_s"),
        "{err}"
    );
}
