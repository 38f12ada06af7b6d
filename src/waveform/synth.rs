//! Synthetic three-component seismograms: causal, band-limited P and S pulses at model
//! traveltimes plus Gaussian noise at a chosen signal-to-noise ratio. The true onsets come
//! back with the traces, so a picker's error can be measured against them.
//!
//! Pulse: w(t) = sin(2 pi f t) exp(-t f / 1.5) for t >= 0 (zero before the onset), scaled to
//! a peak of 1; P at `p_frequency_hz`, S at `s_frequency_hz`. P is strong on the vertical and
//! weak (`cross_amplitude`) on the horizontals; S the other way round, as for near-vertical
//! incidence. SNR is peak pulse amplitude over noise standard deviation.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use thiserror::Error;

use super::{encode_trace, write_file, Encoding, StreamId, Trace, WaveformError};
use crate::domain::time::{add_seconds, format_utc, seconds_between};
use crate::domain::{LocalPoint, Phase, StationCode, UtcTime};
use crate::traveltime::{TraveltimeError, TraveltimeModel};

/// Why synthetic waveforms could not be made.
#[derive(Debug, Error)]
pub enum SynthError {
    /// The traveltime model failed for a source-receiver pair.
    #[error("traveltime {phase} from event {event} to {station}: {source}")]
    Traveltime {
        phase: Phase,
        event: usize,
        station: String,
        source: TraveltimeError,
    },
    /// A parameter is out of range.
    #[error("invalid synthetic waveform setting: {0}")]
    Invalid(String),
    /// Writing files failed.
    #[error(transparent)]
    Waveform(#[from] WaveformError),
    /// Writing the truth file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A station of the synthetic network.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthStation {
    /// Network, station and location codes.
    pub code: StationCode,
    /// Position in the local frame, km (z = minus elevation).
    pub position: LocalPoint,
}

/// An earthquake to synthesise.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthEvent {
    /// Origin time, UTC.
    pub origin_time: UtcTime,
    /// Hypocentre in the local frame, km.
    pub hypocenter: LocalPoint,
}

/// Settings of the waveform generator.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveformSynthConfig {
    /// Sampling rate, Hz.
    pub sample_rate_hz: f64,
    /// Data before the first origin time, s.
    pub lead_s: f64,
    /// Data after the last origin time, s.
    pub tail_s: f64,
    /// Peak pulse amplitude over noise standard deviation (on the pulse's main component).
    pub snr: f64,
    /// Noise standard deviation, counts.
    pub noise_counts: f64,
    /// Dominant frequency of the P pulse, Hz.
    pub p_frequency_hz: f64,
    /// Dominant frequency of the S pulse, Hz.
    pub s_frequency_hz: f64,
    /// Amplitude of P on horizontals and of S on the vertical, relative to the main component.
    pub cross_amplitude: f64,
    /// Band and instrument code prefix of channel names (e.g. `HH` gives HHZ, HHN, HHE).
    pub channel_prefix: String,
    /// Random seed (noise and polarities).
    pub seed: u64,
}

impl Default for WaveformSynthConfig {
    fn default() -> Self {
        Self {
            sample_rate_hz: 100.0,
            lead_s: 30.0,
            tail_s: 60.0,
            snr: 20.0,
            noise_counts: 200.0,
            p_frequency_hz: 6.0,
            s_frequency_hz: 3.0,
            cross_amplitude: 0.3,
            channel_prefix: "HH".into(),
            seed: 1,
        }
    }
}

/// A true onset time of one phase at one station.
#[derive(Debug, Clone, PartialEq)]
pub struct TrueOnset {
    /// Index of the event in the input list.
    pub event: usize,
    /// Station.
    pub station: StationCode,
    /// Phase.
    pub phase: Phase,
    /// Onset time, UTC.
    pub time: UtcTime,
}

/// Synthetic traces (Z, N, E per station) and the true onsets.
#[derive(Debug, Clone)]
pub struct SynthWaveforms {
    /// One trace per station and component.
    pub traces: Vec<Trace>,
    /// True P and S onsets.
    pub onsets: Vec<TrueOnset>,
}

/// Peak-normalised causal pulse of dominant frequency `f_hz` at time `t_s` after its onset.
fn pulse(t_s: f64, f_hz: f64) -> f64 {
    if t_s < 0.0 {
        return 0.0;
    }
    // The peak of sin(2 pi f t) exp(-f t / 1.5) lies near t = 0.23 / f; normalise by its value.
    let w = |t: f64| (2.0 * std::f64::consts::PI * f_hz * t).sin() * (-f_hz * t / 1.5).exp();
    let peak = (0..200)
        .map(|i| w(i as f64 * 0.0025 / f_hz))
        .fold(0.0_f64, |a, b| a.max(b.abs()));
    w(t_s) / peak
}

/// Generates waveforms for `events` at `stations` with traveltimes from `model`.
pub fn synthesize(
    model: &dyn TraveltimeModel,
    stations: &[SynthStation],
    events: &[SynthEvent],
    cfg: &WaveformSynthConfig,
) -> Result<SynthWaveforms, SynthError> {
    if !(cfg.sample_rate_hz > 0.0
        && cfg.snr > 0.0
        && cfg.noise_counts > 0.0
        && cfg.lead_s >= 0.0
        && cfg.tail_s >= 0.0)
    {
        return Err(SynthError::Invalid(
            "sample rate, snr and noise must be positive, lead and tail >= 0".into(),
        ));
    }
    if events.is_empty() || stations.is_empty() {
        return Err(SynthError::Invalid(
            "need at least one event and one station".into(),
        ));
    }
    let first = events
        .iter()
        .map(|e| e.origin_time)
        .min()
        .expect("non-empty");
    let last = events
        .iter()
        .map(|e| e.origin_time)
        .max()
        .expect("non-empty");
    // Start on a whole sample of the second so miniSEED's 100 us time grid holds it exactly.
    let start = add_seconds(&first, -cfg.lead_s);
    let start = add_seconds(
        &start,
        -(f64::from(chrono::Timelike::nanosecond(&start)) * 1e-9),
    );
    let n = ((seconds_between(&start, &last) + cfg.tail_s) * cfg.sample_rate_hz).ceil() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let noise =
        Normal::new(0.0, cfg.noise_counts).map_err(|e| SynthError::Invalid(e.to_string()))?;
    let amp = cfg.snr * cfg.noise_counts;
    let mut traces = Vec::with_capacity(stations.len() * 3);
    let mut onsets = Vec::new();
    for st in stations {
        let mut comps: [Vec<f64>; 3] =
            std::array::from_fn(|_| (0..n).map(|_| noise.sample(&mut rng)).collect::<Vec<f64>>());
        for (ie, ev) in events.iter().enumerate() {
            for phase in Phase::ALL {
                let tt = model
                    .traveltime_s(phase, ev.hypocenter, st.position)
                    .map_err(|source| SynthError::Traveltime {
                        phase,
                        event: ie,
                        station: st.code.to_string(),
                        source,
                    })?;
                let onset = add_seconds(&ev.origin_time, tt);
                onsets.push(TrueOnset {
                    event: ie,
                    station: st.code.clone(),
                    phase,
                    time: onset,
                });
                let t0 = seconds_between(&start, &onset);
                let (f, gains) = match phase {
                    Phase::P => (
                        cfg.p_frequency_hz,
                        [1.0, cfg.cross_amplitude, cfg.cross_amplitude],
                    ),
                    Phase::S => (cfg.s_frequency_hz, [cfg.cross_amplitude, 1.0, 1.0]),
                };
                let first_i = (t0 * cfg.sample_rate_hz).ceil().max(0.0) as usize;
                // 12 e-folding times of the envelope: the pulse is below 1e-5 of its peak after.
                let last_i = (((t0 + 18.0 / f) * cfg.sample_rate_hz).ceil() as usize).min(n);
                for (c, g) in comps.iter_mut().zip(gains) {
                    let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                    for (i, v) in c.iter_mut().enumerate().take(last_i).skip(first_i) {
                        *v += sign * g * amp * pulse(i as f64 / cfg.sample_rate_hz - t0, f);
                    }
                }
            }
        }
        for (c, samples) in ["Z", "N", "E"].iter().zip(comps) {
            let channel = format!("{}{}", cfg.channel_prefix, c);
            traces.push(Trace {
                id: StreamId::new(
                    &st.code.network,
                    &st.code.station,
                    &st.code.location,
                    &channel,
                ),
                start,
                sample_rate_hz: cfg.sample_rate_hz,
                samples: samples.into_iter().map(f64::round).collect(),
            });
        }
    }
    Ok(SynthWaveforms { traces, onsets })
}

/// Writes one miniSEED file per trace (`NET.STA.LOC.CHA.mseed`) and the true onsets as
/// `onsets.csv` (`event,network,station,phase,time`) into `dir`; returns the record count.
pub fn write_archive(
    dir: &Path,
    w: &SynthWaveforms,
    encoding: Encoding,
) -> Result<usize, SynthError> {
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut count = 0;
    for t in &w.traces {
        let recs = encode_trace(t, encoding, 1)?;
        count += recs.len();
        write_file(&dir.join(format!("{}.mseed", t.id)), &recs)?;
    }
    let mut csv = String::from("event,network,station,phase,time\n");
    for o in &w.onsets {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            o.event,
            o.station.network,
            o.station.station,
            o.phase,
            format_utc(&o.time)
        ));
    }
    let path = dir.join("onsets.csv");
    std::fs::write(&path, csv).map_err(|source| SynthError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(count)
}

/// A reproducible test network and event set: `n_stations` on a jittered ring of radius
/// `radius_km` around the origin, `n_events` at 3..15 km depth within `radius_km / 2`,
/// origin times `spacing_s` apart from `t0`.
pub fn demo_scenario(
    n_stations: usize,
    n_events: usize,
    radius_km: f64,
    t0: UtcTime,
    spacing_s: f64,
    seed: u64,
) -> (Vec<SynthStation>, Vec<SynthEvent>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let stations = (0..n_stations)
        .map(|i| {
            let az =
                i as f64 / n_stations as f64 * std::f64::consts::TAU + rng.gen_range(-0.2..0.2);
            let r = radius_km * rng.gen_range(0.3..1.0);
            SynthStation {
                code: StationCode::new("XS", &format!("S{i:03}")),
                position: LocalPoint::new(r * az.cos(), r * az.sin(), -rng.gen_range(0.0..0.5)),
            }
        })
        .collect();
    let events = (0..n_events)
        .map(|i| SynthEvent {
            origin_time: add_seconds(&t0, i as f64 * spacing_s),
            hypocenter: LocalPoint::new(
                rng.gen_range(-0.5..0.5) * radius_km,
                rng.gen_range(-0.5..0.5) * radius_km,
                rng.gen_range(3.0..15.0),
            ),
        })
        .collect();
    (stations, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_utc;
    use crate::traveltime::AnalyticModel;
    use crate::velocity::GradientModel;

    #[test]
    fn pulse_is_causal_and_peaks_at_one() {
        assert_eq!(pulse(-0.01, 5.0), 0.0);
        assert_eq!(pulse(0.0, 5.0), 0.0);
        let peak = (0..1000)
            .map(|i| pulse(i as f64 * 0.001, 5.0).abs())
            .fold(0.0, f64::max);
        assert!((peak - 1.0).abs() < 0.01, "{peak}");
    }

    #[test]
    fn onsets_follow_the_model_and_the_signal_starts_there() {
        let model = AnalyticModel::new(GradientModel::homogeneous(6.0, 3.5).unwrap());
        let t0 = parse_utc("2024-01-01T00:00:00Z").unwrap();
        let st = SynthStation {
            code: StationCode::new("XS", "A"),
            position: LocalPoint::new(30.0, 40.0, 0.0),
        };
        let ev = SynthEvent {
            origin_time: t0,
            hypocenter: LocalPoint::new(0.0, 0.0, 0.0),
        };
        let cfg = WaveformSynthConfig {
            snr: 1e6,
            noise_counts: 1.0,
            lead_s: 5.0,
            tail_s: 30.0,
            ..Default::default()
        };
        let w = synthesize(&model, &[st], &[ev], &cfg).unwrap();
        let p = &w.onsets[0];
        assert_eq!(p.phase, Phase::P);
        assert!((seconds_between(&t0, &p.time) - 50.0 / 6.0).abs() < 1e-6);
        // Almost noise-free vertical: first sample far above the noise is right after the onset.
        let z = &w.traces[0];
        let first_loud = z.samples.iter().position(|x| x.abs() > 100.0).unwrap();
        let lag = seconds_between(&p.time, &z.time_of(first_loud));
        assert!((0.0..0.02).contains(&lag), "{lag}");
    }
}
