//! Real-time factor of the picker per channel: seconds of 100 Hz three-component data picked
//! per second of CPU, divided by the number of channels. Run: `cargo bench --bench picker`.

use std::time::Instant;

use eikoloc::domain::parse_utc;
use eikoloc::picker::{Picker, PickerSettings};
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;
use eikoloc::waveform::synth::{demo_scenario, synthesize, WaveformSynthConfig};

fn main() {
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.2, 0.04, 0.025).expect("model"));
    let t0 = parse_utc("2024-05-01T10:00:00Z").expect("time");
    let (stations, events) = demo_scenario(10, 20, 60.0, t0, 60.0, 1);
    let cfg = WaveformSynthConfig {
        snr: 10.0,
        ..Default::default()
    };
    let w = synthesize(&model, &stations, &events, &cfg).expect("synthesize");
    let channels = w.traces.len();
    let data_s: f64 = w
        .traces
        .iter()
        .map(|t| t.samples.len() as f64 / t.sample_rate_hz)
        .sum::<f64>()
        / channels as f64;
    let mut best = f64::INFINITY;
    let mut n_picks = 0;
    for _ in 0..3 {
        let mut picker = Picker::new(PickerSettings::default()).expect("settings");
        let start = Instant::now();
        n_picks = picker.pick_traces(&w.traces).len();
        best = best.min(start.elapsed().as_secs_f64());
    }
    let per_channel_s = best / channels as f64;
    println!("picker: {channels} channels x {data_s:.0} s of 100 Hz data, {n_picks} picks");
    println!(
        "picker: {best:.3} s CPU (best of 3), {:.2} ms per channel-hour",
        per_channel_s / data_s * 3600.0 * 1e3
    );
    println!(
        "picker: real-time factor per channel {:.0}x (data seconds per CPU second)",
        data_s / per_channel_s
    );
}
