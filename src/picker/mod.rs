//! Streaming P and S picker: recursive STA/LTA triggering on a high-passed trace, onset
//! refinement by the Akaike information criterion (Maeda 1985) around the trigger, uncertainty
//! from the signal-to-noise ratio, and a station-level decision that names the onset P when the
//! vertical is the stronger component and S when a horizontal is.
//!
//! Feed it decoded records in any channel order ([`Picker::process`]); it keeps its state per
//! stream and per station and returns [`Pick`]s as soon as they are decided (a few seconds of
//! data time after the onset). Gaps, overlaps and clock jumps are counted in [`PickerStats`]:
//! an overlap drops the samples already seen, a gap or jump restarts that channel's detector.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::time::{add_seconds, seconds_between};
use crate::domain::{Phase, Pick, StationCode, UtcTime};
use crate::waveform::Trace;

/// A picker setting out of range.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("picker setting {field} = {value} is invalid: {why}")]
pub struct PickerError {
    /// Field name.
    pub field: &'static str,
    /// The value given.
    pub value: f64,
    /// What is expected.
    pub why: &'static str,
}

/// Settings of the picker for one station (all times in s, frequencies in Hz).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PickerConfig {
    /// Corner of the one-pole high-pass applied before everything else, Hz (removes offsets).
    pub highpass_hz: f64,
    /// Short-term average window, s.
    pub sta_s: f64,
    /// Long-term average window, s (also the warm-up time after a start or a gap).
    pub lta_s: f64,
    /// STA/LTA ratio that declares a trigger.
    pub trigger_on: f64,
    /// STA/LTA ratio below which the detector re-arms.
    pub trigger_off: f64,
    /// AIC window before the trigger, s.
    pub aic_before_s: f64,
    /// AIC window after the trigger, s.
    pub aic_after_s: f64,
    /// Window before and after the onset for the signal-to-noise ratio, s.
    pub snr_window_s: f64,
    /// Picks with an amplitude SNR below this are dropped.
    pub min_snr: f64,
    /// Uncertainty = this / SNR, s (bounded below by one sample and above by `max_uncertainty_s`).
    pub uncertainty_scale_s: f64,
    /// Largest uncertainty reported, s.
    pub max_uncertainty_s: f64,
    /// Onsets on different channels of a station within this are one arrival, s.
    pub coincidence_s: f64,
    /// How long a channel may lag the station's most advanced channel before decisions stop
    /// waiting for it, s.
    pub max_channel_lag_s: f64,
}

impl Default for PickerConfig {
    fn default() -> Self {
        Self {
            highpass_hz: 1.0,
            sta_s: 0.3,
            lta_s: 10.0,
            trigger_on: 4.0,
            trigger_off: 1.5,
            aic_before_s: 3.0,
            aic_after_s: 0.5,
            snr_window_s: 0.5,
            min_snr: 2.5,
            uncertainty_scale_s: 0.4,
            max_uncertainty_s: 1.0,
            coincidence_s: 0.35,
            max_channel_lag_s: 10.0,
        }
    }
}

impl PickerConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), PickerError> {
        let pos = |field, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(PickerError {
                    field,
                    value,
                    why: "must be a positive number",
                })
            }
        };
        pos("highpass_hz", self.highpass_hz)?;
        pos("sta_s", self.sta_s)?;
        pos("lta_s", self.lta_s)?;
        pos("aic_before_s", self.aic_before_s)?;
        pos("aic_after_s", self.aic_after_s)?;
        pos("snr_window_s", self.snr_window_s)?;
        pos("uncertainty_scale_s", self.uncertainty_scale_s)?;
        pos("max_uncertainty_s", self.max_uncertainty_s)?;
        pos("coincidence_s", self.coincidence_s)?;
        pos("max_channel_lag_s", self.max_channel_lag_s)?;
        if self.lta_s <= self.sta_s {
            return Err(PickerError {
                field: "lta_s",
                value: self.lta_s,
                why: "must exceed sta_s",
            });
        }
        if !(self.trigger_on > self.trigger_off && self.trigger_off > 0.0) {
            return Err(PickerError {
                field: "trigger_on",
                value: self.trigger_on,
                why: "must exceed trigger_off > 0",
            });
        }
        if self.min_snr.is_nan() || self.min_snr < 0.0 {
            return Err(PickerError {
                field: "min_snr",
                value: self.min_snr,
                why: "must be >= 0",
            });
        }
        Ok(())
    }
}

/// Picker settings: a default and per-station overrides keyed `NET.STA`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PickerSettings {
    /// Settings for stations without an override.
    pub default: PickerConfig,
    /// Overrides, keyed `NET.STA` (e.g. `CI.PASC`).
    pub stations: HashMap<String, PickerConfig>,
}

impl PickerSettings {
    /// Validates the default and every override.
    pub fn validate(&self) -> Result<(), PickerError> {
        self.default.validate()?;
        self.stations.values().try_for_each(PickerConfig::validate)
    }
    /// The settings that apply to a station.
    pub fn for_station(&self, network: &str, station: &str) -> &PickerConfig {
        self.stations
            .get(&format!("{network}.{station}"))
            .unwrap_or(&self.default)
    }
}

/// Counters of what the picker saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PickerStats {
    /// Samples processed.
    pub samples: u64,
    /// STA/LTA triggers.
    pub triggers: u64,
    /// Onsets dropped for low SNR.
    pub low_snr: u64,
    /// Picks emitted.
    pub picks: u64,
    /// Gaps in a stream (detector restarted).
    pub gaps: u64,
    /// Overlapping records (repeated samples dropped).
    pub overlaps: u64,
    /// Backward clock jumps larger than the retained history (detector restarted).
    pub clock_jumps: u64,
    /// Records from channels whose component is neither vertical nor horizontal.
    pub ignored_records: u64,
}

/// One refined onset on one channel, before the station decides P or S.
#[derive(Debug, Clone, PartialEq)]
struct Onset {
    time: UtcTime,
    snr: f64,
    peak: f64,
    vertical: bool,
    uncertainty_s: f64,
}

/// Detector state of one channel.
#[derive(Debug, Clone)]
struct ChannelPicker {
    rate_hz: f64,
    /// Time of the next expected sample.
    next_time: Option<UtcTime>,
    /// Absolute index of the next sample since the last restart.
    index: u64,
    hp_prev_x: f64,
    hp_prev_y: f64,
    hp_a: f64,
    sta: f64,
    lta: f64,
    c_sta: f64,
    c_lta: f64,
    warmup: u64,
    /// Filtered samples, the most recent `history.len()` of them (ring buffer).
    history: Vec<f64>,
    state: TriggerState,
    vertical: bool,
    /// Time of the sample at absolute index 0.
    t0: Option<UtcTime>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TriggerState {
    Armed,
    /// Triggered at this absolute index; waiting for the AIC window to fill.
    Waiting(u64),
    /// Picked; waiting for STA/LTA to fall below `trigger_off`.
    Active,
}

impl ChannelPicker {
    fn new(cfg: &PickerConfig, rate_hz: f64, vertical: bool) -> Self {
        let dt = 1.0 / rate_hz;
        let rc = 1.0 / (2.0 * std::f64::consts::PI * cfg.highpass_hz);
        let hist = ((cfg.aic_before_s + cfg.aic_after_s + cfg.snr_window_s + 1.0) * rate_hz).ceil()
            as usize;
        Self {
            rate_hz,
            next_time: None,
            index: 0,
            hp_prev_x: 0.0,
            hp_prev_y: 0.0,
            hp_a: rc / (rc + dt),
            sta: 0.0,
            lta: 0.0,
            c_sta: 1.0 / (cfg.sta_s * rate_hz).max(1.0),
            c_lta: 1.0 / (cfg.lta_s * rate_hz).max(1.0),
            warmup: (cfg.lta_s * rate_hz).ceil() as u64,
            history: vec![0.0; hist.max(8)],
            state: TriggerState::Armed,
            vertical,
            t0: None,
        }
    }

    fn restart(&mut self, cfg: &PickerConfig) {
        *self = ChannelPicker::new(cfg, self.rate_hz, self.vertical);
    }

    fn at(&self, abs: u64) -> f64 {
        self.history[(abs % self.history.len() as u64) as usize]
    }

    /// Feeds a record; returns refined onsets decided during it.
    fn feed(
        &mut self,
        cfg: &PickerConfig,
        tr: &Trace,
        stats: &mut PickerStats,
        out: &mut Vec<Onset>,
    ) {
        let mut skip = 0usize;
        if (tr.sample_rate_hz - self.rate_hz).abs() > 1e-9 * self.rate_hz {
            self.rate_hz = tr.sample_rate_hz;
            self.restart(cfg);
        }
        if let Some(expected) = self.next_time {
            let d_s = seconds_between(&expected, &tr.start);
            let half = 0.5 / self.rate_hz;
            if d_s > half {
                stats.gaps += 1;
                tracing::info!(stream = %tr.id, gap_s = d_s, "gap: picker restarts on this channel");
                self.restart(cfg);
            } else if d_s < -half {
                let repeated = ((-d_s) * self.rate_hz).round() as usize;
                if repeated >= tr.samples.len() + self.history.len() {
                    stats.clock_jumps += 1;
                    tracing::warn!(stream = %tr.id, jump_s = d_s, "clock jumped back: picker restarts");
                    self.restart(cfg);
                } else {
                    stats.overlaps += 1;
                    skip = repeated.min(tr.samples.len());
                }
            }
        }
        if self.t0.is_none() {
            self.t0 = Some(tr.start);
        }
        for &x in &tr.samples[skip..] {
            self.step(cfg, x, out);
        }
        stats.samples += (tr.samples.len() - skip) as u64;
        if skip < tr.samples.len() || self.next_time.is_none() {
            self.next_time = Some(tr.time_of(tr.samples.len()));
        }
    }

    fn step(&mut self, cfg: &PickerConfig, x: f64, out: &mut Vec<Onset>) {
        // First sample sets the filter's memory so a DC offset does not ring as a step.
        let y = if self.index == 0 {
            self.hp_prev_x = x;
            0.0
        } else {
            self.hp_a * (self.hp_prev_y + x - self.hp_prev_x)
        };
        self.hp_prev_x = x;
        self.hp_prev_y = y;
        let n = self.history.len() as u64;
        self.history[(self.index % n) as usize] = y;
        let e = y * y;
        self.sta += self.c_sta * (e - self.sta);
        self.lta += self.c_lta * (e - self.lta);
        let i = self.index;
        self.index += 1;
        if i < self.warmup {
            return;
        }
        let ratio = if self.lta > 0.0 {
            self.sta / self.lta
        } else {
            0.0
        };
        match self.state {
            TriggerState::Armed => {
                if ratio > cfg.trigger_on {
                    self.state = TriggerState::Waiting(i);
                }
            }
            TriggerState::Waiting(trig) => {
                let after = (cfg.aic_after_s.max(cfg.snr_window_s) * self.rate_hz).ceil() as u64;
                if i >= trig + after {
                    if let Some(o) = self.refine(cfg, trig, i) {
                        out.push(o);
                    }
                    self.state = TriggerState::Active;
                }
            }
            TriggerState::Active => {
                if ratio < cfg.trigger_off {
                    self.state = TriggerState::Armed;
                }
            }
        }
    }

    /// AIC onset in [trig - before, trig + after] and its SNR; `now` is the newest index.
    fn refine(&self, cfg: &PickerConfig, trig: u64, now: u64) -> Option<Onset> {
        let n_hist = self.history.len() as u64;
        let oldest = (now + 1).saturating_sub(n_hist).max(1);
        let lo = trig
            .saturating_sub((cfg.aic_before_s * self.rate_hz) as u64)
            .max(oldest);
        let hi = (trig + (cfg.aic_after_s * self.rate_hz) as u64).min(now);
        let x: Vec<f64> = (lo..=hi).map(|k| self.at(k)).collect();
        let k = aic_onset(&x)?;
        let onset_abs = lo + k as u64;
        let w = (cfg.snr_window_s * self.rate_hz).ceil() as u64;
        let noise_lo = onset_abs.saturating_sub(w).max(oldest);
        let sig_hi = (onset_abs + w).min(now + 1);
        let noise = rms((noise_lo..onset_abs).map(|k| self.at(k)));
        let peak = (onset_abs..sig_hi)
            .map(|k| self.at(k).abs())
            .fold(0.0, f64::max);
        let snr = if noise > 0.0 {
            peak / noise
        } else {
            f64::INFINITY
        };
        let t = add_seconds(&self.t0?, onset_abs as f64 / self.rate_hz);
        let unc = (cfg.uncertainty_scale_s / snr).clamp(1.0 / self.rate_hz, cfg.max_uncertainty_s);
        Some(Onset {
            time: t,
            snr,
            peak,
            vertical: self.vertical,
            uncertainty_s: unc,
        })
    }
}

fn rms(it: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = it.fold((0.0, 0usize), |(s, n), v| (s + v * v, n + 1));
    if n == 0 {
        0.0
    } else {
        (s / n as f64).sqrt()
    }
}

/// Index of the first sample of the later segment that minimises Maeda's AIC,
/// AIC(k) = k ln var(x[..k]) + (n - k) ln var(x[k..]); `None` for fewer than 8 samples.
pub fn aic_onset(x: &[f64]) -> Option<usize> {
    let n = x.len();
    if n < 8 {
        return None;
    }
    let mut s1 = vec![0.0; n + 1];
    let mut s2 = vec![0.0; n + 1];
    for (i, &v) in x.iter().enumerate() {
        s1[i + 1] = s1[i] + v;
        s2[i + 1] = s2[i] + v * v;
    }
    let var = |a: usize, b: usize| {
        let m = (b - a) as f64;
        let mean = (s1[b] - s1[a]) / m;
        ((s2[b] - s2[a]) / m - mean * mean).max(1e-300)
    };
    (2..n - 2)
        .map(|k| {
            (
                k,
                k as f64 * var(0, k).ln() + (n - k) as f64 * var(k, n).ln(),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

/// Per-station state: its channels and onsets waiting for the P/S decision.
#[derive(Debug, Default)]
struct StationPicker {
    channels: BTreeMap<String, ChannelPicker>,
    pending: Vec<Onset>,
}

/// The streaming picker for many stations.
#[derive(Debug)]
pub struct Picker {
    settings: PickerSettings,
    stations: HashMap<StationCode, StationPicker>,
    stats: PickerStats,
}

impl Picker {
    /// A picker with validated settings.
    pub fn new(settings: PickerSettings) -> Result<Self, PickerError> {
        settings.validate()?;
        Ok(Self {
            settings,
            stations: HashMap::new(),
            stats: PickerStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> &PickerStats {
        &self.stats
    }

    /// Feeds one record (or any contiguous piece of one stream); returns the picks decided.
    pub fn process(&mut self, tr: &Trace) -> Vec<Pick> {
        let vertical = match tr.id.component() {
            'Z' => true,
            'N' | 'E' | '1' | '2' => false,
            _ => {
                self.stats.ignored_records += 1;
                return Vec::new();
            }
        };
        if !(tr.sample_rate_hz.is_finite() && tr.sample_rate_hz > 0.0) || tr.samples.is_empty() {
            self.stats.ignored_records += 1;
            return Vec::new();
        }
        let cfg = self
            .settings
            .for_station(&tr.id.network, &tr.id.station)
            .clone();
        let code = tr.id.station_code();
        let st = self.stations.entry(code.clone()).or_default();
        let ch = st
            .channels
            .entry(tr.id.channel.clone())
            .or_insert_with(|| ChannelPicker::new(&cfg, tr.sample_rate_hz, vertical));
        let mut onsets = Vec::new();
        ch.feed(&cfg, tr, &mut self.stats, &mut onsets);
        self.stats.triggers += onsets.len() as u64;
        for o in onsets {
            if o.snr < cfg.min_snr {
                self.stats.low_snr += 1;
            } else {
                st.pending.push(o);
            }
        }
        let picks = decide(&code, st, &cfg, false);
        self.stats.picks += picks.len() as u64;
        picks
    }

    /// Decides every pending onset now (end of data).
    pub fn flush(&mut self) -> Vec<Pick> {
        let mut all = Vec::new();
        for (code, st) in self.stations.iter_mut() {
            let cfg = self
                .settings
                .for_station(&code.network, &code.station)
                .clone();
            all.extend(decide(code, st, &cfg, true));
        }
        self.stats.picks += all.len() as u64;
        all.sort_by_key(|p| p.time);
        all
    }

    /// Convenience for archives: cuts whole traces into 2 s pieces, feeds them in time order
    /// (as a live stream would arrive, so the station-level P/S decision sees every channel)
    /// and flushes.
    pub fn pick_traces(&mut self, traces: &[Trace]) -> Vec<Pick> {
        let mut pieces: Vec<Trace> = Vec::new();
        for t in traces {
            let n = ((2.0 * t.sample_rate_hz).ceil() as usize).max(1);
            for (k, chunk) in t.samples.chunks(n).enumerate() {
                pieces.push(Trace {
                    id: t.id.clone(),
                    start: t.time_of(k * n),
                    sample_rate_hz: t.sample_rate_hz,
                    samples: chunk.to_vec(),
                });
            }
        }
        pieces.sort_by_key(|t| t.start);
        let mut picks: Vec<Pick> = pieces.iter().flat_map(|t| self.process(t)).collect();
        picks.extend(self.flush());
        picks
    }
}

/// Groups onsets closer than `coincidence_s` and names each group: P (time of the strongest
/// vertical onset) when the vertical peak beats every horizontal one, else S (time of the
/// strongest horizontal). A group is decided once every channel of the station has data past
/// it (or the laggards are more than `max_channel_lag_s` behind), or at once when `all`.
fn decide(code: &StationCode, st: &mut StationPicker, cfg: &PickerConfig, all: bool) -> Vec<Pick> {
    if st.pending.is_empty() {
        return Vec::new();
    }
    st.pending.sort_by_key(|o| o.time);
    let times: Vec<UtcTime> = st.channels.values().filter_map(|c| c.next_time).collect();
    let newest = times.iter().max().copied();
    let oldest = times.iter().min().copied();
    let ready = |t: &UtcTime| -> bool {
        if all {
            return true;
        }
        let horizon = add_seconds(t, cfg.coincidence_s + cfg.aic_after_s);
        oldest.is_some_and(|o| o > horizon)
            || newest.is_some_and(|n| n > add_seconds(&horizon, cfg.max_channel_lag_s))
    };
    let mut picks = Vec::new();
    let mut keep = Vec::new();
    let mut i = 0;
    while i < st.pending.len() {
        let mut j = i + 1;
        while j < st.pending.len()
            && seconds_between(&st.pending[j - 1].time, &st.pending[j].time) <= cfg.coincidence_s
        {
            j += 1;
        }
        let group = &st.pending[i..j];
        if !ready(&group[j - i - 1].time) {
            keep.extend_from_slice(group);
        } else {
            let best = |vertical: bool| {
                group
                    .iter()
                    .filter(|o| o.vertical == vertical)
                    .max_by(|a, b| a.peak.total_cmp(&b.peak))
            };
            let (phase, o) = match (best(true), best(false)) {
                (Some(v), Some(h)) if v.peak >= h.peak => (Phase::P, v),
                (Some(_), Some(h)) => (Phase::S, h),
                (Some(v), None) => (Phase::P, v),
                (None, Some(h)) => (Phase::S, h),
                (None, None) => unreachable!("groups are non-empty"),
            };
            picks.push(Pick::new(code.clone(), phase, o.time, o.uncertainty_s));
        }
        i = j;
    }
    st.pending = keep;
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aic_finds_a_variance_step() {
        let mut x: Vec<f64> = (0..300).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
        for (i, v) in x.iter_mut().enumerate().skip(200) {
            *v = 40.0 * ((i as f64) * 1.3).sin();
        }
        let k = aic_onset(&x).unwrap();
        assert!((199..=202).contains(&k), "{k}");
    }

    #[test]
    fn settings_are_validated_and_overridden_per_station() {
        let mut s = PickerSettings::default();
        assert!(s.validate().is_ok());
        let quiet = PickerConfig {
            trigger_on: 6.0,
            ..Default::default()
        };
        s.stations.insert("XS.A".into(), quiet.clone());
        assert_eq!(s.for_station("XS", "A"), &quiet);
        assert_eq!(s.for_station("XS", "B"), &PickerConfig::default());
        s.default.lta_s = 0.1;
        assert_eq!(s.validate().unwrap_err().field, "lta_s");
        let toml_text = "[default]\nsta_s = 0.5\n[stations.\"CI.PASC\"]\ntrigger_on = 5.0\n";
        let parsed: PickerSettings = toml::from_str(toml_text).unwrap();
        assert_eq!(parsed.default.sta_s, 0.5);
        assert_eq!(parsed.for_station("CI", "PASC").trigger_on, 5.0);
    }
}
