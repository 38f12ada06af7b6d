//! Picker accuracy against the true onsets of synthetic waveforms, and streaming behaviour
//! (record-by-record feeding, gaps, overlaps) on the same data.

use eikoloc::domain::time::seconds_between;
use eikoloc::domain::{parse_utc, Phase, Pick};
use eikoloc::picker::{Picker, PickerSettings};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;
use eikoloc::waveform::synth::{
    demo_scenario, synthesize, SynthWaveforms, TrueOnset, WaveformSynthConfig,
};
use eikoloc::waveform::{decode_record, encode_trace, Encoding, Record};

fn scenario(snr: f64, seed: u64) -> SynthWaveforms {
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.04, 0.025).unwrap());
    let t0 = parse_utc("2024-05-01T10:00:00Z").unwrap();
    let (stations, events) = demo_scenario(8, 4, 60.0, t0, 60.0, seed);
    let cfg = WaveformSynthConfig {
        snr,
        seed,
        lead_s: 20.0,
        tail_s: 40.0,
        ..Default::default()
    };
    synthesize(&model, &stations, &events, &cfg).unwrap()
}

/// For each true onset of `phase`, the error of the closest pick of that phase at that
/// station within 1 s (None when missed); and the number of picks matching no onset.
fn match_picks(onsets: &[TrueOnset], picks: &[Pick], phase: Phase) -> (Vec<Option<f64>>, usize) {
    let errs = onsets
        .iter()
        .filter(|o| o.phase == phase)
        .map(|o| {
            picks
                .iter()
                .filter(|p| p.phase == phase && p.station.station == o.station.station)
                .map(|p| seconds_between(&o.time, &p.time))
                .filter(|e| e.abs() <= 1.0)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        })
        .collect();
    let unmatched = picks
        .iter()
        .filter(|p| p.phase == phase)
        .filter(|p| {
            !onsets.iter().any(|o| {
                o.phase == phase
                    && o.station.station == p.station.station
                    && seconds_between(&o.time, &p.time).abs() <= 1.0
            })
        })
        .count();
    (errs, unmatched)
}

fn median_abs(errs: &[Option<f64>]) -> f64 {
    let mut v: Vec<f64> = errs.iter().flatten().map(|e| e.abs()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn p_picks_at_snr_10_are_within_50_ms_in_median() {
    let w = scenario(10.0, 7);
    let picks = Picker::new(PickerSettings::default())
        .unwrap()
        .pick_traces(&w.traces);
    let (p_errs, p_false) = match_picks(&w.onsets, &picks, Phase::P);
    let found = p_errs.iter().flatten().count();
    let med = median_abs(&p_errs);
    eprintln!(
        "P: {found}/{} found, median |error| {med:.4} s, {p_false} unmatched",
        p_errs.len()
    );
    assert!(
        found * 10 >= p_errs.len() * 9,
        "P recall {found}/{}",
        p_errs.len()
    );
    assert!(med <= 0.05, "median P error {med} s");
    assert!(p_false * 10 <= found, "{p_false} false P picks");
    let (s_errs, s_false) = match_picks(&w.onsets, &picks, Phase::S);
    let s_found = s_errs.iter().flatten().count();
    let s_med = median_abs(&s_errs);
    eprintln!(
        "S: {s_found}/{} found, median |error| {s_med:.4} s, {s_false} unmatched",
        s_errs.len()
    );
    assert!(
        s_found * 10 >= s_errs.len() * 7,
        "S recall {s_found}/{}",
        s_errs.len()
    );
    assert!(s_med <= 0.1, "median S error {s_med} s");
    assert!(s_false * 10 <= s_found, "{s_false} false S picks");
    // Uncertainty follows SNR: every pick claims something between one sample and 1 s.
    assert!(picks
        .iter()
        .all(|p| (0.01..=1.0).contains(&p.uncertainty_s)));
}

#[test]
fn uncertainty_shrinks_as_snr_grows() {
    let mean_unc = |snr: f64| {
        let w = scenario(snr, 11);
        let picks = Picker::new(PickerSettings::default())
            .unwrap()
            .pick_traces(&w.traces);
        let p: Vec<f64> = picks
            .iter()
            .filter(|p| p.phase == Phase::P)
            .map(|p| p.uncertainty_s)
            .collect();
        p.iter().sum::<f64>() / p.len() as f64
    };
    let (lo, hi) = (mean_unc(8.0), mean_unc(40.0));
    assert!(
        hi < lo,
        "uncertainty at SNR 40 ({hi}) should be below SNR 8 ({lo})"
    );
}

fn records_in_time_order(w: &SynthWaveforms) -> Vec<Record> {
    let mut recs: Vec<Record> = w
        .traces
        .iter()
        .flat_map(|t| encode_trace(t, Encoding::Steim2, 1).unwrap())
        .enumerate()
        .map(|(i, b)| decode_record(&b, "mem", i, 0).unwrap())
        .collect();
    recs.sort_by_key(|r| r.trace.start);
    recs
}

#[test]
fn record_by_record_feeding_gives_the_same_picks_as_whole_traces() {
    let w = scenario(15.0, 3);
    let mut whole = Picker::new(PickerSettings::default())
        .unwrap()
        .pick_traces(&w.traces);
    let mut picker = Picker::new(PickerSettings::default()).unwrap();
    let mut streamed: Vec<Pick> = records_in_time_order(&w)
        .iter()
        .flat_map(|r| picker.process(&r.trace))
        .collect();
    streamed.extend(picker.flush());
    whole.sort_by(|a, b| a.id.cmp(&b.id));
    streamed.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(!whole.is_empty());
    for p in whole.iter().filter(|p| !streamed.contains(p)) {
        eprintln!("only whole: {p:?}");
    }
    for p in streamed.iter().filter(|p| !whole.contains(p)) {
        eprintln!("only streamed: {p:?}");
    }
    assert_eq!(whole, streamed);
}

#[test]
fn gaps_and_overlaps_are_counted_and_later_events_still_picked() {
    let w = scenario(15.0, 5);
    let mut recs = records_in_time_order(&w);
    // Drop one record of every stream early on (a gap) and repeat another (an overlap).
    let first_id = recs[0].trace.id.clone();
    let gap_at = recs
        .iter()
        .position(|r| {
            r.trace.id == first_id && seconds_between(&recs[0].trace.start, &r.trace.start) > 5.0
        })
        .unwrap();
    recs.remove(gap_at);
    let dup = recs[gap_at + 40].clone();
    recs.insert(gap_at + 41, dup);
    let mut picker = Picker::new(PickerSettings::default()).unwrap();
    let mut picks: Vec<Pick> = recs.iter().flat_map(|r| picker.process(&r.trace)).collect();
    picks.extend(picker.flush());
    let stats = picker.stats().clone();
    assert_eq!(stats.gaps, 1, "{stats:?}");
    assert_eq!(stats.overlaps, 1, "{stats:?}");
    let (errs, _) = match_picks(&w.onsets, &picks, Phase::P);
    assert!(errs.iter().flatten().count() * 10 >= errs.len() * 9);
}
