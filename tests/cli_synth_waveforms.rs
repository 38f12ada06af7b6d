//! `eikoloc synth --waveforms DIR` end to end: the waveform onsets must be the same events'
//! true arrival times as the picks CSV (origin time + `true_tt_s`), one miniSEED file per
//! station and component must be readable, and a bad encoding is refused before writing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eikoloc::domain::parse_utc;
use eikoloc::domain::time::{add_seconds, seconds_between};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("station-configs/demo")
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "synth".to_string(),
        "--config".into(),
        demo().to_str().unwrap().into(),
        "--events".into(),
        "3".into(),
        "--spacing-s".into(),
        "60".into(),
        "--start".into(),
        "2024-05-01T10:00:00Z".into(),
        "--picks-out".into(),
        dir.join("picks.csv").to_str().unwrap().into(),
        "--truth-out".into(),
        dir.join("truth.csv").to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_eikoloc"))
        .args(&args)
        .output()
        .expect("run eikoloc")
}

#[test]
fn waveform_onsets_are_the_picks_true_times() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf");
    let out = run(
        dir.path(),
        &["--waveforms", wf.to_str().unwrap(), "--snr", "15"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20 demo stations x 3 components
    let mseed: Vec<_> = std::fs::read_dir(&wf)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "mseed"))
        .collect();
    assert_eq!(mseed.len(), 60);
    let (recs, _) = eikoloc::waveform::read_file(&mseed[0].path()).unwrap();
    assert!(!recs.is_empty());

    // truth: event id -> origin time; picks: (event, net, sta, phase) -> true arrival
    let mut origin = HashMap::new();
    let mut rd = csv::Reader::from_path(dir.path().join("truth.csv")).unwrap();
    for r in rd.records() {
        let r = r.unwrap();
        origin.insert(r[0].to_string(), parse_utc(&r[1]).unwrap());
    }
    let mut truth = HashMap::new();
    let mut rd = csv::Reader::from_path(dir.path().join("picks.csv")).unwrap();
    for r in rd.records() {
        let r = r.unwrap();
        let t = add_seconds(&origin[&r[0]], r[7].parse::<f64>().unwrap());
        truth.insert(
            (
                r[0].to_string(),
                r[1].to_string(),
                r[2].to_string(),
                r[3].to_string(),
            ),
            t,
        );
    }
    assert_eq!(truth.len(), 3 * 20 * 2);
    let mut rd = csv::Reader::from_path(wf.join("onsets.csv")).unwrap();
    let mut n = 0;
    for r in rd.records() {
        let r = r.unwrap();
        let k: usize = r[0].parse().unwrap();
        let key = (
            format!("syn{:06}", k + 1),
            r[1].to_string(),
            r[2].to_string(),
            r[3].to_string(),
        );
        let t = truth
            .get(&key)
            .unwrap_or_else(|| panic!("no pick for {key:?}"));
        let d = seconds_between(t, &parse_utc(&r[4]).unwrap());
        assert!(
            d.abs() < 1e-3,
            "{key:?}: onset {} s from the pick's truth",
            d
        );
        n += 1;
    }
    assert_eq!(n, truth.len());
}

#[test]
fn bad_encoding_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf");
    let out = run(
        dir.path(),
        &["--waveforms", wf.to_str().unwrap(), "--encoding", "mp3"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mp3"));
    assert!(!dir.path().join("picks.csv").exists());
    assert!(!wf.exists());
}
