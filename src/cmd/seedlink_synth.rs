//! `eikoloc synth-waveforms`: synthetic miniSEED for a demo network and events, with the true
//! onsets in `onsets.csv`. `eikoloc synth --waveforms DIR` does the same for a station configuration's network.

use std::path::PathBuf;

use anyhow::Context;
use eikoloc::domain::parse_utc;
use eikoloc::traveltime::AnalyticModel;
use eikoloc::velocity::GradientModel;
use eikoloc::waveform::synth::{demo_scenario, synthesize, write_archive, WaveformSynthConfig};
use eikoloc::waveform::Encoding;

/// Arguments of `eikoloc synth-waveforms`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of stations (on a ring around the origin).
    #[arg(long, default_value_t = 8)]
    pub stations: usize,
    /// Number of events.
    #[arg(long, default_value_t = 5)]
    pub events: usize,
    /// Ring radius, km.
    #[arg(long, default_value_t = 60.0)]
    pub radius_km: f64,
    /// Peak signal over noise standard deviation.
    #[arg(long, default_value_t = 20.0)]
    pub snr: f64,
    /// Origin time of the first event (ISO-8601 UTC).
    #[arg(long, default_value = "2024-05-01T10:00:00Z")]
    pub start: String,
    /// Seconds between events.
    #[arg(long, default_value_t = 60.0)]
    pub spacing_s: f64,
    /// Sampling rate, Hz.
    #[arg(long, default_value_t = 100.0)]
    pub sample_rate_hz: f64,
    /// Record encoding: steim2, int32 or float32.
    #[arg(long, default_value = "steim2")]
    pub encoding: String,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The `--encoding` value as a miniSEED encoding.
pub fn parse_encoding(name: &str) -> anyhow::Result<Encoding> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "steim2" => Encoding::Steim2,
        "int32" => Encoding::Int32,
        "float32" => Encoding::Float32,
        other => anyhow::bail!("--encoding {other:?}: expected steim2, int32 or float32"),
    })
}

/// Writes the archive.
pub fn run(a: Args) -> anyhow::Result<()> {
    let encoding = parse_encoding(&a.encoding)?;
    anyhow::ensure!(
        a.stations > 0 && a.events > 0,
        "--stations and --events must be at least 1"
    );
    let t0 = parse_utc(&a.start).context("--start")?;
    // Velocity increasing with depth, a crustal average (Vp/Vs ~ 1.73).
    let model = AnalyticModel::new(GradientModel::new(0.0, 5.5, 3.18, 0.04, 0.023)?);
    let (stations, events) =
        demo_scenario(a.stations, a.events, a.radius_km, t0, a.spacing_s, a.seed);
    let cfg = WaveformSynthConfig {
        snr: a.snr,
        sample_rate_hz: a.sample_rate_hz,
        seed: a.seed,
        ..Default::default()
    };
    let w = synthesize(&model, &stations, &events, &cfg)?;
    let n = write_archive(&a.out, &w, encoding)?;
    eprintln!(
        "wrote {} traces, {n} records and {} true onsets to {}",
        w.traces.len(),
        w.onsets.len(),
        a.out.display()
    );
    Ok(())
}
