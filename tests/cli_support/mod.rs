//! Shared helpers of the tests that drive the `eikoloc` binary end to end: the bundled demo
//! configuration, running the binary, reading its CSV outputs, and the catalog's column
//! contract (the columns `eikoloc locate` and `eikoloc replay` promise).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The 14 catalog columns of the locate/replay contract, in order.
pub const CONTRACT: &[&str] = &[
    "event_id",
    "origin_time_iso",
    "lat",
    "lon",
    "depth_km",
    "h95_major_km",
    "h95_minor_km",
    "h95_azimuth_deg",
    "z95_km",
    "t0_sigma_s",
    "rms_s",
    "gap_deg",
    "n_picks",
    "n_outliers",
];

/// The bundled demo station configuration folder.
pub fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("station-configs/demo")
}

/// Runs the `eikoloc` binary built for these tests.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eikoloc"))
        .args(args)
        .output()
        .expect("run eikoloc")
}

/// Asserts the run succeeded (showing its stderr otherwise) and returns its stderr.
pub fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "eikoloc failed: {err}");
    err
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The header of a CSV file and its rows as header -> value maps.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

/// A numeric field of a CSV row (panics naming the field when it does not parse).
pub fn num(row: &HashMap<String, String>, k: &str) -> f64 {
    row[k]
        .parse()
        .unwrap_or_else(|_| panic!("{k} = {:?}", row[k]))
}

/// The upper median of a non-empty sample.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
