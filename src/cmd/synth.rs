//! `eikoloc synth`: synthetic events and picks with known truth, in the picks CSV form the
//! locator reads plus a truth CSV.

use std::path::PathBuf;

use anyhow::{bail, Context};

use eikoloc::domain::time::add_seconds;
use eikoloc::domain::{format_utc, parse_utc};
use eikoloc::synth::{generate, generate_with_delays, ModelErrorScenario, NoiseKind, SynthConfig};

use eikoloc::waveform::synth::{
    synthesize, write_archive, SynthEvent, SynthStation, WaveformSynthConfig,
};

use super::locate::RegionArgs;
use super::seedlink_synth::parse_encoding;

/// Arguments of `eikoloc synth`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Region and traveltime engine.
    #[command(flatten)]
    pub engine: RegionArgs,
    /// Number of events.
    #[arg(long, default_value_t = 100)]
    pub events: usize,
    /// Noise shape: laplace or gaussian.
    #[arg(long, default_value = "laplace")]
    pub noise: NoiseKind,
    /// P noise, one standard deviation, s.
    #[arg(long, default_value_t = 0.05)]
    pub p_sigma: f64,
    /// S noise, one standard deviation, s.
    #[arg(long, default_value_t = 0.1)]
    pub s_sigma: f64,
    /// Probability a P pick is missing.
    #[arg(long, default_value_t = 0.0)]
    pub p_missing: f64,
    /// Probability an S pick is missing.
    #[arg(long, default_value_t = 0.0)]
    pub s_missing: f64,
    /// Fraction of P picks shifted as outliers.
    #[arg(long, default_value_t = 0.0)]
    pub p_outliers: f64,
    /// Fraction of S picks shifted as outliers.
    #[arg(long, default_value_t = 0.0)]
    pub s_outliers: f64,
    /// Smallest outlier shift, s.
    #[arg(long, default_value_t = 0.4)]
    pub outlier_min: f64,
    /// Largest outlier shift, s.
    #[arg(long, default_value_t = 1.4)]
    pub outlier_max: f64,
    /// Only these stations (comma-separated NET.STA); default all.
    #[arg(long)]
    pub only_stations: Option<String>,
    /// Source region `XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX` in local km; default the search box
    /// shrunk to the stations' extent and 0..20 km depth.
    #[arg(long)]
    pub region: Option<String>,
    /// Origin time of the first event; events follow every `--spacing-s`.
    #[arg(long, default_value = "2020-01-01T00:00:00Z")]
    pub start: String,
    /// Seconds between origin times (waveforms span all events: keep it short with
    /// `--waveforms` and many events).
    #[arg(long, default_value_t = 600.0)]
    pub spacing_s: f64,
    /// Also write miniSEED waveforms (Z, N, E per station, same events and traveltime model)
    /// and their true onsets (`onsets.csv`) to this folder.
    #[arg(long)]
    pub waveforms: Option<PathBuf>,
    /// Waveforms: peak signal over noise standard deviation.
    #[arg(long, default_value_t = 20.0, requires = "waveforms")]
    pub snr: f64,
    /// Waveforms: sampling rate, Hz.
    #[arg(long, default_value_t = 100.0, requires = "waveforms")]
    pub sample_rate_hz: f64,
    /// Waveforms: record encoding, steim2, int32 or float32.
    #[arg(long, default_value = "steim2", requires = "waveforms")]
    pub encoding: String,
    /// Deepest hypocentre searched when no config box gives one, km.
    #[arg(long, default_value_t = 40.0)]
    pub max_depth: f64,
    /// Output picks CSV.
    #[arg(long)]
    pub picks_out: PathBuf,
    /// Output truth CSV (`event_id,origin_time_iso,lat,lon,depth_km,x_km,y_km`).
    #[arg(long)]
    pub truth_out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Arrival times from a 3-D truth instead of the locating model: the 1-D velocity model
    /// with dipping, fault-offset interfaces and lateral velocity changes, solved by the 3-D
    /// eikonal grid solver, plus per-station delays (the model-error benchmark; locate the
    /// picks with the 1-D model to see how honest the locator is under model error).
    #[arg(long, conflicts_with = "waveforms")]
    pub truth_perturbation: bool,
    /// Truth: largest lateral velocity change, fraction.
    #[arg(long, default_value_t = ModelErrorScenario::default().perturbation.lateral_fraction, requires = "truth_perturbation")]
    pub lateral: f64,
    /// Truth: wavelength of the lateral changes, km.
    #[arg(long, default_value_t = ModelErrorScenario::default().perturbation.wavelength_km, requires = "truth_perturbation")]
    pub wavelength: f64,
    /// Truth: dip of every interface (down to the north-east), degrees.
    #[arg(long, default_value_t = ModelErrorScenario::default().perturbation.dip_deg, requires = "truth_perturbation")]
    pub dip: f64,
    /// Truth: interface offset across a NW-striking fault through the origin, km.
    #[arg(long, default_value_t = ModelErrorScenario::default().perturbation.fault_offset_km, requires = "truth_perturbation")]
    pub fault_offset: f64,
    /// Truth: standard deviation of the per-station P delays, s (S delays 1.7 times).
    #[arg(long, default_value_t = ModelErrorScenario::default().delay_p_sigma_s, requires = "truth_perturbation")]
    pub station_delay: f64,
    /// Truth: node spacing of the 3-D traveltime grids, km.
    #[arg(long, default_value_t = ModelErrorScenario::default().grid_spacing_km, requires = "truth_perturbation")]
    pub truth_grid: f64,
}

/// Runs the subcommand.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (s, model) = a.engine.open(a.max_depth)?;
    let mut idx: Vec<usize> = (0..s.inventory.len()).collect();
    if let Some(list) = &a.only_stations {
        idx.clear();
        for code in list.split(',') {
            let (net, sta) = code
                .trim()
                .split_once('.')
                .with_context(|| format!("station {code:?} is not NET.STA"))?;
            idx.push(
                s.inventory
                    .position(net, sta)
                    .with_context(|| format!("station {code} is not in the inventory"))?,
            );
        }
    }
    let stations: Vec<_> = idx.iter().map(|&i| s.positions[i]).collect();
    let region = match &a.region {
        Some(r) => {
            let v: Vec<f64> = r
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .context("--region needs six numbers")?;
            if v.len() != 6 {
                bail!("--region needs six numbers, got {}", v.len());
            }
            [v[0], v[1], v[2], v[3], v[4], v[5]]
        }
        None => {
            let fx = |f: fn(f64, f64) -> f64, g: fn(&eikoloc::domain::LocalPoint) -> f64, init| {
                stations.iter().map(g).fold(init, f)
            };
            [
                fx(f64::min, |p| p.x_km, f64::INFINITY).max(s.bbox.x_min_km),
                fx(f64::max, |p| p.x_km, f64::NEG_INFINITY).min(s.bbox.x_max_km),
                fx(f64::min, |p| p.y_km, f64::INFINITY).max(s.bbox.y_min_km),
                fx(f64::max, |p| p.y_km, f64::NEG_INFINITY).min(s.bbox.y_max_km),
                s.bbox.z_min_km.max(0.0),
                20.0f64.min(s.bbox.z_max_km),
            ]
        }
    };
    let cfg = SynthConfig {
        n_events: a.events,
        noise: a.noise,
        p_sigma_s: a.p_sigma,
        s_sigma_s: a.s_sigma,
        p_missing: a.p_missing,
        s_missing: a.s_missing,
        p_outlier_fraction: a.p_outliers,
        s_outlier_fraction: a.s_outliers,
        outlier_range_s: (a.outlier_min, a.outlier_max),
        x_range_km: (region[0], region[1]),
        y_range_km: (region[2], region[3]),
        z_range_km: (region[4], region[5]),
        seed: a.seed,
    };
    anyhow::ensure!(
        a.spacing_s.is_finite() && a.spacing_s > 0.0,
        "--spacing-s must be positive"
    );
    // Checked before generating so a bad flag does not leave half-written outputs.
    let encoding = parse_encoding(&a.encoding)?;
    let events = if a.truth_perturbation {
        let mut sc = ModelErrorScenario {
            delay_p_sigma_s: a.station_delay,
            grid_spacing_km: a.truth_grid,
            z_max_km: s.bbox.z_max_km.max(cfg.z_range_km.1 + 1.0),
            seed: a.seed,
            ..Default::default()
        };
        sc.perturbation.lateral_fraction = a.lateral;
        sc.perturbation.wavelength_km = a.wavelength;
        sc.perturbation.dip_deg = a.dip;
        sc.perturbation.fault_offset_km = a.fault_offset;
        sc.perturbation.seed = a.seed;
        let truth = sc.truth_model(&s.velocity, &stations)?;
        generate_with_delays(&truth, &stations, &sc.station_delays(stations.len()), &cfg)?
    } else {
        generate(model.as_ref(), &stations, &cfg)?
    };
    let start = parse_utc(&a.start)?;
    let mut pw = csv::Writer::from_path(&a.picks_out)
        .with_context(|| format!("creating {}", a.picks_out.display()))?;
    pw.write_record([
        "event_id",
        "network",
        "station",
        "phase",
        "time_iso",
        "uncertainty_s",
        "is_outlier",
        "true_tt_s",
    ])?;
    let mut tw = csv::Writer::from_path(&a.truth_out)
        .with_context(|| format!("creating {}", a.truth_out.display()))?;
    tw.write_record([
        "event_id",
        "origin_time_iso",
        "lat",
        "lon",
        "depth_km",
        "x_km",
        "y_km",
    ])?;
    for (k, ev) in events.iter().enumerate() {
        let id = format!("syn{:06}", k + 1);
        let t0 = add_seconds(&start, a.spacing_s * k as f64);
        let g = s.frame.to_geo(ev.truth_km[0], ev.truth_km[1]);
        tw.write_record([
            id.clone(),
            format_utc(&t0),
            format!("{:.6}", g.lat_deg),
            format!("{:.6}", g.lon_deg),
            format!("{:.4}", ev.truth_km[2]),
            format!("{:.4}", ev.truth_km[0]),
            format!("{:.4}", ev.truth_km[1]),
        ])?;
        for p in &ev.picks {
            let st = &s.inventory.stations()[idx[p.station]];
            pw.write_record([
                id.clone(),
                st.code.network.clone(),
                st.code.station.clone(),
                p.phase.to_string(),
                format_utc(&add_seconds(&t0, p.t_s)),
                format!("{}", p.sigma_s),
                u8::from(p.outlier).to_string(),
                format!("{:.6}", p.true_tt_s),
            ])?;
        }
    }
    pw.flush()?;
    tw.flush()?;
    if let Some(dir) = &a.waveforms {
        // Same stations, hypocentres, origin times and traveltime model as the picks, so the
        // onsets are the picks' true times (`true_tt_s` after the origin).
        let wstations: Vec<SynthStation> = idx
            .iter()
            .map(|&i| SynthStation {
                code: s.inventory.stations()[i].code.clone(),
                position: s.positions[i],
            })
            .collect();
        let wevents: Vec<SynthEvent> = events
            .iter()
            .enumerate()
            .map(|(k, ev)| SynthEvent {
                origin_time: add_seconds(&start, a.spacing_s * k as f64),
                hypocenter: eikoloc::domain::LocalPoint::new(
                    ev.truth_km[0],
                    ev.truth_km[1],
                    ev.truth_km[2],
                ),
            })
            .collect();
        let wcfg = WaveformSynthConfig {
            snr: a.snr,
            sample_rate_hz: a.sample_rate_hz,
            seed: a.seed,
            ..Default::default()
        };
        let w = synthesize(model.as_ref(), &wstations, &wevents, &wcfg)?;
        let n = write_archive(dir, &w, encoding)?;
        eprintln!(
            "wrote {} traces, {n} records and {} true onsets to {}",
            w.traces.len(),
            w.onsets.len(),
            dir.display()
        );
    }
    eprintln!(
        "{} events, {} picks written to {}; truth in {}",
        events.len(),
        events.iter().map(|e| e.picks.len()).sum::<usize>(),
        a.picks_out.display(),
        a.truth_out.display()
    );
    Ok(())
}
