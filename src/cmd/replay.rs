//! `eikoloc replay`: a pick archive through the service's own pipeline under a virtual
//! clock (see `eikoloc::replay`), into a store, per-event QuakeML and a catalog.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use eikoloc::catalog::PickOptions;
use eikoloc::config::{ModelBox, ResolvedStationConfig};
use eikoloc::daemon::{engine, PipelineConfig};
use eikoloc::ingest::PickLimits;
use eikoloc::locate::station_terms::{StationTerms, TermsConfig, TermsKind};
use eikoloc::replay::{read_archive, replay, Progress, ReplayConfig, Speed};

use super::locate::{RegionArgs, Setup};

/// Arguments of `eikoloc replay`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Region and traveltime engine.
    #[command(flatten)]
    pub engine: RegionArgs,
    /// Pick archive: picks CSV (`event_id,network,station,phase,time_iso[,uncertainty_s]`),
    /// QuakeML, NLLOC_OBS or Hypoinverse archive (recognised from the content).
    #[arg(long)]
    pub picks: PathBuf,
    /// Archive seconds per wall second (`60`), or `max` for as fast as the machine allows.
    /// Only the pace changes: the output is the same at every speed.
    #[arg(long, default_value = "max")]
    pub speed: Speed,
    /// Group picks by the archive's event ids instead of running the associator.
    #[arg(long)]
    pub keep_association: bool,
    /// Output folder (new or empty): catalog.csv, catalog.xml, events/, eikoloc.sqlite,
    /// rejected.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Locate threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pick uncertainty where the archive gives none, s (one sigma).
    #[arg(long, default_value_t = 0.05)]
    pub default_uncertainty: f64,
    /// Network code for NLLOC_OBS station labels without one.
    #[arg(long, default_value = "XX")]
    pub default_network: String,
    /// Deepest hypocentre searched when no config box gives one, km.
    #[arg(long, default_value_t = 40.0)]
    pub max_depth: f64,
    /// Association residual tolerances `P_S,S_S,RELATIVE` (s, s, s per s of traveltime);
    /// default the associator's. Widen them for picks made in a 3-D medium and located with a
    /// 1-D model (Ridgecrest: 0.7,1.1,0.03).
    #[arg(long, value_parser = parse_tolerance)]
    pub tolerance: Option<[f64; 3]>,
    /// After the replay, estimate station terms from its final origins and relocate the
    /// final events with them: `static` (one correction per station and phase) or `ssst`
    /// (source-specific). catalog.csv/catalog.xml then hold the relocated pass,
    /// catalog_pipeline.csv/.xml the replay's own origins, station_terms.csv the terms.
    #[arg(long)]
    pub station_terms: Option<TermsKind>,
    /// Estimate-and-relocate rounds (with --station-terms).
    #[arg(long, default_value_t = 3)]
    pub terms_iterations: usize,
    /// Static station-terms file (`network,station,phase,correction_s,n`) the service's
    /// locator applies during the replay (as `eikoloc serve --terms`); terms of unknown
    /// stations are ignored with a warning. With --station-terms the passes start from it.
    #[arg(long)]
    pub terms: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_tolerance(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    match v[..] {
        [p, s_, r] if [p, s_, r].iter().all(|x| x.is_finite() && *x >= 0.0) => Ok([p, s_, r]),
        _ => Err(format!(
            "{s:?}: give three non-negative numbers P_S,S_S,RELATIVE"
        )),
    }
}

/// The station configuration the service core takes, from `--config` or from the
/// `--stations`/`--velocity` setup (frame about the median station, box around the stations).
fn station_config(a: &RegionArgs, s: &Setup) -> anyhow::Result<ResolvedStationConfig> {
    if let Some(c) = &a.config {
        let mut r = ResolvedStationConfig::load(c)
            .with_context(|| format!("loading station config {}", c.display()))?;
        // the command line's overrides (`--distance-weighting`)
        r.locator = s.locator;
        return Ok(r);
    }
    let b = &s.bbox;
    Ok(ResolvedStationConfig {
        name: "command-line".into(),
        config_file: PathBuf::new(),
        stations_file: a.stations.clone().unwrap_or_default(),
        inventory: s.inventory.clone(),
        velocity_file: a.velocity.clone().unwrap_or_default(),
        velocity: s.velocity.clone(),
        frame: s.frame.clone(),
        model_box: ModelBox {
            x_min_km: b.x_min_km,
            x_max_km: b.x_max_km,
            y_min_km: b.y_min_km,
            y_max_km: b.y_max_km,
            z_min_km: b.z_min_km,
            z_max_km: b.z_max_km,
        },
        model_dir: a.model.clone(),
        station_positions: s.positions.clone(),
        locator: s.locator,
    })
}

/// Runs the subcommand.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (setup, model) = a.engine.open(a.max_depth)?;
    let station = station_config(&a.engine, &setup)?;
    let service_terms = match &a.terms {
        Some(p) => {
            let (t, unknown) = engine::load_static_terms(p, &station)
                .with_context(|| format!("--terms {}", p.display()))?;
            if !unknown.is_empty() {
                eprintln!(
                    "warning: {}: terms of stations not in the inventory ignored: {}",
                    p.display(),
                    unknown.join(", ")
                );
            }
            Some(Arc::new(t))
        }
        None => None,
    };
    let options = PickOptions {
        default_uncertainty_s: a.default_uncertainty,
    };
    let archive = read_archive(&a.picks, &options, &a.default_network)
        .with_context(|| format!("reading picks {}", a.picks.display()))?;
    let t = std::time::Instant::now();
    let mut acfg = engine::associator_config(&station);
    if let Some([p, s, r]) = a.tolerance {
        acfg.tolerance_p_s = p;
        acfg.tolerance_s_s = s;
        acfg.tolerance_relative = r;
    }
    let terms = match a.station_terms {
        Some(kind) => {
            let c = TermsConfig {
                kind,
                iterations: a.terms_iterations,
                ..TermsConfig::default()
            };
            c.validate()?;
            Some(c)
        }
        None => None,
    };
    let start_terms = service_terms.clone().map(StationTerms::Static);
    let engine = engine::build_with_terms(&station, model, acfg, service_terms)
        .map_err(|e| anyhow::anyhow!("building the associator and locator: {e}"))?;
    if !a.quiet {
        eprintln!(
            "{} picks of {} events ({:?}); associator and traveltime tables built in {:.1} s",
            archive.picks.len(),
            archive.n_events,
            archive.format,
            t.elapsed().as_secs_f64()
        );
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2)
    });
    if threads == 0 || threads > 256 {
        anyhow::bail!("--threads {threads}: give 1..=256");
    }
    let config = ReplayConfig {
        speed: a.speed,
        keep_association: a.keep_association,
        pipeline: PipelineConfig {
            locate_threads: threads,
            ..PipelineConfig::default()
        },
        limits: PickLimits::default(),
        out_dir: a.out.clone(),
        terms,
        start_terms,
    };
    let progress = Arc::new(Progress::default());
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} picks {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = {
        let (bar, progress) = (bar.clone(), progress.clone());
        let start = std::time::Instant::now();
        std::thread::spawn(move || {
            while !bar.is_finished() {
                bar.set_length(progress.picks_total.load(Ordering::Relaxed));
                bar.set_position(progress.picks_fed.load(Ordering::Relaxed));
                let done = progress.events_final.load(Ordering::Relaxed);
                let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{done} events final ({rate:.1} events/s), {} origins",
                    progress.origins.load(Ordering::Relaxed)
                ));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let result = replay(&station, engine, &archive, &config, progress);
    bar.finish_and_clear();
    let _ = ticker.join();
    let s = result.with_context(|| format!("replaying into {}", a.out.display()))?;
    for r in s.rejected.iter().take(20) {
        let at = r.line.map_or_else(String::new, |l| format!("{l}:"));
        let ev = r
            .event_id
            .as_deref()
            .map_or_else(String::new, |e| format!(" (event {e})"));
        eprintln!(
            "{}:{at} {}: {}{ev} (not replayed)",
            a.picks.display(),
            r.field,
            r.message
        );
    }
    if s.rejected.len() > 20 {
        eprintln!(
            "... and {} more; all in {}",
            s.rejected.len() - 20,
            a.out.join(eikoloc::replay::REJECTED_CSV).display()
        );
    }
    eprintln!(
        "replayed {} of {} picks ({} records rejected) in {:.1} s: {} events ({} in the archive), {} located ({} final), {} origin versions; {} events/s; catalog {}",
        s.picks_replayed,
        s.picks_read,
        s.rejected.len(),
        s.wall_s,
        s.events,
        s.archive_events,
        s.events_located,
        s.events_final,
        s.origins,
        format_args!("{:.1}", s.events_located as f64 / s.wall_s.max(1e-9)),
        a.out.join(eikoloc::replay::CATALOG_CSV).display()
    );
    if let Some((passes, relocated)) = &s.terms {
        for p in passes {
            eprintln!(
                "terms pass {}: {} located, median RMS {:.3} s, median |correction| {:.3} s",
                p.pass, p.located, p.median_rms_s, p.median_abs_correction_s
            );
        }
        eprintln!(
            "relocated {relocated} final events with station terms; terms {}",
            a.out.join(eikoloc::replay::STATION_TERMS_CSV).display()
        );
    }
    Ok(())
}
