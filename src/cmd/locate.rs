//! `eikoloc locate`: locate every event of a picks CSV with the SVGD locator; one catalog
//! row per event (located or not, with its input problems), optional QuakeML 1.2 catalog
//! (picks, origins, uncertainty, arrivals) and JSON posterior particles.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use eikoloc::catalog::csv::{read_picks_file, PicksCsvOptions};
use eikoloc::catalog::quakeml::write_quakeml;
use eikoloc::config::{LocatorSection, ResolvedStationConfig};
use eikoloc::domain::Phase;
use eikoloc::domain::{format_utc, Event, GeoPoint, LocalFrame, LocalPoint, StationInventory};
use eikoloc::locate::event::{locate_picks_corrected, EventOutcome};
use eikoloc::locate::station_terms::{
    relocate_with_terms, LocatedEvent, SsstConfig, StationTerms, TermsConfig, TermsKind,
};
use eikoloc::locate::{
    DistanceWeighting, LikelihoodKind, LocateConfig, NoiseScale, OriginTimeMode, RadialTableModel,
    SearchBox, SigmaCombine, TableGrid,
};
use eikoloc::traveltime::pinn::ModelBounds;
use eikoloc::traveltime::{PinnModel, Receiver, TraveltimeModel};
use eikoloc::velocity::{GradientModel, LayeredModel, VelocityModel};

/// The region (stations, velocity, frame, box) and the traveltime engine, shared by
/// `eikoloc locate` and `eikoloc synth` so the two read a region the same way.
#[derive(clap::Args, Debug)]
pub struct RegionArgs {
    /// Station configuration folder (`station-configs/NAME`): stations, velocity, frame, box.
    #[arg(long, conflicts_with_all = ["stations", "velocity"])]
    pub config: Option<PathBuf>,
    /// Station file (CSV `network,station,lat,lon,elev_m` or StationXML), with `--velocity`.
    #[arg(long, requires = "velocity")]
    pub stations: Option<PathBuf>,
    /// 1-D velocity model CSV (`depth_top_km,vp_km_s,vs_km_s`), with `--stations`.
    #[arg(long, requires = "stations")]
    pub velocity: Option<PathBuf>,
    /// Trained network folder (`trained-models/NAME`).
    #[arg(long, conflicts_with = "traveltime")]
    pub model: Option<PathBuf>,
    /// Traveltime engine instead of a network: `exact` (1-D layered, from the velocity
    /// model) or `gradient:VP0,VS0,KP,KS` (analytic constant-gradient medium, z0 = 0).
    #[arg(long)]
    pub traveltime: Option<String>,
    /// Distance weighting of the picks, Hypoinverse `DIS` style: `MIN_STATIONS,FULL_KM,ZERO_FACTOR`
    /// (full weight out to FULL_KM or the MIN_STATIONS-th nearest station, cosine taper to zero
    /// at ZERO_FACTOR times that), or `off`. Default: the station config's
    /// `[locator] distance_weighting`, else off.
    #[arg(long, value_parser = parse_distance_weighting)]
    pub distance_weighting: Option<DistanceWeightingArg>,
}

/// `--distance-weighting`: a setting, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct DistanceWeightingArg(pub Option<DistanceWeighting>);

fn parse_distance_weighting(s: &str) -> Result<DistanceWeightingArg, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(DistanceWeightingArg(None));
    }
    DistanceWeighting::parse(s).map(|d| DistanceWeightingArg(Some(d)))
}

impl RegionArgs {
    /// Loads the region and opens the traveltime model it asks for.
    pub fn open(&self, max_depth_km: f64) -> anyhow::Result<(Setup, Arc<dyn TraveltimeModel>)> {
        let mut s = setup(
            self.config.as_deref(),
            self.stations.as_deref(),
            self.velocity.as_deref(),
            max_depth_km,
        )?;
        if let Some(DistanceWeightingArg(dw)) = self.distance_weighting {
            s.locator.distance_weighting = dw;
        }
        let model = traveltime_model(self.model.as_deref(), self.traveltime.as_deref(), &s)?;
        Ok((s, model))
    }
}

/// Arguments of `eikoloc locate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Region and traveltime engine.
    #[command(flatten)]
    pub engine: RegionArgs,
    /// Picks CSV (`event_id,network,station,phase,time_iso[,uncertainty_s]`).
    #[arg(long)]
    pub picks: PathBuf,
    /// Output catalog CSV.
    #[arg(long)]
    pub out: PathBuf,
    /// Output QuakeML file.
    #[arg(long)]
    pub quakeml: Option<PathBuf>,
    /// Output posterior particles, one JSON object per event per line.
    #[arg(long)]
    pub posterior: Option<PathBuf>,
    /// Likelihood: laplace, huber or edt.
    #[arg(long, default_value = "laplace")]
    pub likelihood: LikelihoodKind,
    /// Origin-time elimination: profiled or differential.
    #[arg(long, default_value = "profiled")]
    pub origin_time: OriginTimeMode,
    /// Number of SVGD particles.
    #[arg(long, default_value_t = LocateConfig::default().n_particles)]
    pub particles: usize,
    /// Metropolis refinement steps after SVGD.
    #[arg(long, default_value_t = LocateConfig::default().mh_steps)]
    pub mh_steps: usize,
    /// Model-error floor, s (one sigma).
    #[arg(long, default_value_t = LocateConfig::default().model_error_floor_s)]
    pub model_error_floor: f64,
    /// Model error as a fraction of the traveltime (one sigma).
    #[arg(long, default_value_t = LocateConfig::default().model_error_fraction)]
    pub model_error_fraction: f64,
    /// Model-error ceiling, s (one sigma).
    #[arg(long, default_value_t = LocateConfig::default().model_error_max_s)]
    pub model_error_max: f64,
    /// How the model error combines with the pick uncertainty: quadrature or sum.
    #[arg(long, default_value = "quadrature")]
    pub model_error_combine: SigmaCombine,
    /// Correlation length of the model error between stations, km (like NonLinLoc LOCGAU's
    /// CorrLen); 0 turns this kernel off (with no correlation angle either, the model error
    /// is independent per pick). Correlated error moves events coherently; the posterior is
    /// widened by that shift (README, "Honesty under model error").
    #[arg(long, default_value_t = LocateConfig::default().model_error_correlation_km)]
    pub model_error_correlation: f64,
    /// Correlation angle of the model error between rays, degrees: picks whose rays leave
    /// the source theta degrees apart correlate by exp(-theta^2 / (2 A^2)); 0 turns it off
    /// (with both this and a correlation length, the two kernels are averaged).
    #[arg(long, default_value_t = LocateConfig::default().model_error_correlation_deg)]
    pub model_error_correlation_angle: f64,
    /// Correlation of the P and S model errors at one station, 0..1.
    #[arg(long, default_value_t = LocateConfig::default().model_error_ps_correlation)]
    pub model_error_ps_correlation: f64,
    /// Noise scale: fixed (sigmas as given) or event (one unknown factor >= 1 per event
    /// integrated out, so larger residuals widen the posterior).
    #[arg(long, default_value = "fixed")]
    pub noise_scale: NoiseScale,
    /// Pick uncertainty where the picks file gives none, s (one sigma).
    #[arg(long, default_value_t = 0.05)]
    pub default_uncertainty: f64,
    /// Picks further than this from the event's median pick time are set aside, s.
    #[arg(long, default_value_t = 300.0)]
    pub max_span: f64,
    /// Deepest hypocentre searched when no config box gives one, km.
    #[arg(long, default_value_t = 40.0)]
    pub max_depth: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the radial traveltime table (evaluate the model directly; slower).
    #[arg(long)]
    pub no_table: bool,
    /// Table distance spacing, km.
    #[arg(long, default_value_t = 0.5)]
    pub table_dr: f64,
    /// Table depth spacing, km.
    #[arg(long, default_value_t = 0.25)]
    pub table_dz: f64,
    /// Station terms to estimate from the located events and iterate with relocation:
    /// `static` (one correction per station and phase) or `ssst` (source-specific: median
    /// residual of each event's nearest located neighbours).
    #[arg(long)]
    pub station_terms: Option<TermsKind>,
    /// Estimate-and-relocate rounds after the first location (with --station-terms).
    #[arg(long, default_value_t = 3)]
    pub terms_iterations: usize,
    /// Write the final terms: the static CSV (`network,station,phase,correction_s,n`) or,
    /// for SSST, the residual table they are computed from
    /// (`event_id,lat,lon,depth_km,network,station,phase,residual_s`).
    #[arg(long)]
    pub write_terms: Option<PathBuf>,
    /// Apply terms from a file written by --write-terms (the first pass uses them; with
    /// --station-terms they are re-estimated afterwards).
    #[arg(long)]
    pub terms: Option<PathBuf>,
    /// SSST: most neighbours per term.
    #[arg(long, default_value_t = TermsConfig::default().k_neighbours)]
    pub ssst_k: usize,
    /// SSST: neighbour radius of the first round, km.
    #[arg(long, default_value_t = TermsConfig::default().radius_start_km)]
    pub ssst_radius_start: f64,
    /// SSST: neighbour radius of the last round (and of terms read with --terms), km.
    #[arg(long, default_value_t = TermsConfig::default().radius_end_km)]
    pub ssst_radius_end: f64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Stations, velocity, frame and search box, from a config or from the two files.
pub struct Setup {
    /// Stations.
    pub inventory: StationInventory,
    /// Local positions, inventory order.
    pub positions: Vec<LocalPoint>,
    /// 1-D velocity model.
    pub velocity: LayeredModel,
    /// Local frame.
    pub frame: LocalFrame,
    /// Search box (prior support).
    pub bbox: SearchBox,
    /// The network's locator settings (config `[locator]`, command-line overrides applied).
    pub locator: LocatorSection,
}

/// Loads stations and velocity, either from `--config` or `--stations` + `--velocity`.
pub fn setup(
    config: Option<&Path>,
    stations: Option<&Path>,
    velocity: Option<&Path>,
    max_depth_km: f64,
) -> anyhow::Result<Setup> {
    if let Some(c) = config {
        let r = ResolvedStationConfig::load(c)
            .with_context(|| format!("loading station config {}", c.display()))?;
        let top = -r.inventory.max_elevation_m() / 1000.0;
        let b = r.model_box;
        // prior: no airquakes above the highest station, whatever the box says
        let bbox = SearchBox {
            x_min_km: b.x_min_km,
            x_max_km: b.x_max_km,
            y_min_km: b.y_min_km,
            y_max_km: b.y_max_km,
            z_min_km: top.max(b.z_min_km),
            z_max_km: b.z_max_km,
        };
        return Ok(Setup {
            positions: r.station_positions.clone(),
            inventory: r.inventory,
            velocity: r.velocity,
            frame: r.frame,
            bbox,
            locator: r.locator,
        });
    }
    let (Some(s), Some(v)) = (stations, velocity) else {
        bail!("give --config, or --stations and --velocity")
    };
    let inventory = eikoloc::inventory::read_path(s)
        .with_context(|| format!("reading stations {}", s.display()))?;
    if inventory.is_empty() {
        bail!("{}: no stations", s.display());
    }
    let velocity = LayeredModel::from_csv_path(v)
        .with_context(|| format!("reading velocity model {}", v.display()))?;
    // frame origin: the median station position; box: the stations' extent plus 50 km
    let mut lats: Vec<f64> = inventory.stations().iter().map(|s| s.lat_deg).collect();
    let mut lons: Vec<f64> = inventory.stations().iter().map(|s| s.lon_deg).collect();
    lats.sort_by(|a, b| a.total_cmp(b));
    lons.sort_by(|a, b| a.total_cmp(b));
    let frame = LocalFrame::new(GeoPoint::new(lats[lats.len() / 2], lons[lons.len() / 2])?);
    let positions: Vec<LocalPoint> = inventory
        .stations()
        .iter()
        .map(|s| {
            let (x, y) = frame.to_local(s.geo());
            LocalPoint::new(x, y, s.depth_km())
        })
        .collect();
    let f = |g: fn(&LocalPoint) -> f64, m: fn(f64, f64) -> f64, init: f64| {
        positions.iter().map(g).fold(init, m)
    };
    let bbox = SearchBox {
        x_min_km: f(|p| p.x_km, f64::min, f64::INFINITY) - 50.0,
        x_max_km: f(|p| p.x_km, f64::max, f64::NEG_INFINITY) + 50.0,
        y_min_km: f(|p| p.y_km, f64::min, f64::INFINITY) - 50.0,
        y_max_km: f(|p| p.y_km, f64::max, f64::NEG_INFINITY) + 50.0,
        z_min_km: -inventory.max_elevation_m() / 1000.0,
        z_max_km: max_depth_km,
    };
    Ok(Setup {
        inventory,
        positions,
        velocity,
        frame,
        bbox,
        locator: LocatorSection::default(),
    })
}

impl Setup {
    /// The region a traveltime network must cover to locate in this setup: horizontal
    /// distances up to the farthest box corner from any station, source depths over the
    /// box, receiver depths over the stations (km, local frame, depth below sea level).
    pub fn needed_bounds(&self) -> ModelBounds {
        let b = &self.bbox;
        let max_distance_km = self
            .positions
            .iter()
            .flat_map(|p| {
                [
                    (b.x_min_km, b.y_min_km),
                    (b.x_min_km, b.y_max_km),
                    (b.x_max_km, b.y_min_km),
                    (b.x_max_km, b.y_max_km),
                ]
                .map(|(x, y)| (x - p.x_km).hypot(y - p.y_km))
            })
            .fold(0.0, f64::max);
        let zr =
            |m: fn(f64, f64) -> f64, init: f64| self.positions.iter().map(|p| p.z_km).fold(init, m);
        ModelBounds {
            max_distance_km,
            source_depth_min_km: b.z_min_km,
            source_depth_max_km: b.z_max_km,
            receiver_depth_min_km: zr(f64::min, f64::INFINITY),
            receiver_depth_max_km: zr(f64::max, f64::NEG_INFINITY),
        }
    }
}

/// Loads a trained network and refuses it unless it was trained for this velocity model
/// and covers this setup's search box and stations.
pub fn load_network(dir: &Path, s: &Setup) -> anyhow::Result<PinnModel> {
    let m = PinnModel::load(dir).with_context(|| format!("--model {}", dir.display()))?;
    m.check_compatible(&s.velocity.content_hash(), &s.needed_bounds())
        .with_context(|| {
            format!(
                "--model {}: not usable with this velocity model and search box",
                dir.display()
            )
        })?;
    Ok(m)
}

/// The traveltime engine named on the command line.
pub fn traveltime_model(
    model: Option<&Path>,
    traveltime: Option<&str>,
    s: &Setup,
) -> anyhow::Result<Arc<dyn TraveltimeModel>> {
    let velocity = &s.velocity;
    if let Some(m) = model {
        return Ok(Arc::new(load_network(m, s)?));
    }
    match traveltime.unwrap_or("exact") {
        "exact" => Ok(Arc::new(eikoloc::traveltime::LayeredExact::new(
            velocity.clone(),
        ))),
        s if s.starts_with("gradient:") => {
            let v: Vec<f64> = s["gradient:".len()..]
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .context("gradient:VP0,VS0,KP,KS needs four numbers")?;
            if v.len() != 4 {
                bail!("gradient:VP0,VS0,KP,KS needs four numbers, got {}", v.len());
            }
            Ok(Arc::new(eikoloc::traveltime::AnalyticModel::new(
                GradientModel::new(0.0, v[0], v[1], v[2], v[3])?,
            )))
        }
        o => bail!("unknown --traveltime {o:?} (exact, gradient:VP0,VS0,KP,KS)"),
    }
}

fn cell(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        String::new()
    }
}

/// Runs the subcommand.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (s, model) = a.engine.open(a.max_depth)?;
    // created before the (long) location run so that an unwritable path fails at once
    let quakeml_out = match &a.quakeml {
        Some(p) => Some((
            p,
            std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
        )),
        None => None,
    };
    let report = read_picks_file(
        &a.picks,
        &PicksCsvOptions {
            default_uncertainty_s: a.default_uncertainty,
        },
    )
    .with_context(|| format!("reading picks {}", a.picks.display()))?;
    for p in report.problems.iter().take(20) {
        eprintln!(
            "{}:{}: {}: {} (record skipped)",
            a.picks.display(),
            p.line,
            p.field,
            p.message
        );
    }
    if report.problems.len() > 20 {
        eprintln!(
            "... and {} more skipped records",
            report.problems.len() - 20
        );
    }
    // duplicates the reader skipped still count against their event
    let mut reader_dups: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for p in &report.problems {
        if let Some(rest) = p.message.split(" in event ").nth(1) {
            if p.message.starts_with("duplicate") {
                let id = rest.split(" (").next().unwrap_or("").to_string();
                *reader_dups.entry(id).or_default() += 1;
            }
        }
    }
    let model: Arc<dyn TraveltimeModel> = if a.no_table {
        model
    } else {
        // 1-D models (all engines here) are cylindrically symmetric: tabulate once per
        // (phase, station depth) for the stations that have picks
        let mut receivers = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ev in &report.records {
            for p in &ev.picks {
                if let Some(i) = s.inventory.position(&p.station.network, &p.station.station) {
                    if seen.insert((i, p.phase)) {
                        receivers.push(Receiver {
                            phase: p.phase,
                            position: s.positions[i],
                        });
                    }
                }
            }
        }
        let b = &s.bbox;
        let r_max = s
            .positions
            .iter()
            .flat_map(|p| {
                [
                    (b.x_min_km, b.y_min_km),
                    (b.x_min_km, b.y_max_km),
                    (b.x_max_km, b.y_min_km),
                    (b.x_max_km, b.y_max_km),
                ]
                .map(|(x, y)| (x - p.x_km).hypot(y - p.y_km))
            })
            .fold(0.0, f64::max);
        // spacings shrunk to whole steps so the last node lands on the box edge: a node past
        // it would query a network outside the region it was trained (and checked) for
        let fit = |span: f64, d: f64| {
            if span > 0.0 && d > 0.0 {
                // a hair over whole steps so the grid's own ceil() cannot round up to one more
                span / ((span / d).ceil().max(1.0) - 1e-9)
            } else {
                d
            }
        };
        let r_max = r_max.min(400.0);
        let grid = TableGrid {
            r_max_km: r_max,
            dr_km: fit(r_max, a.table_dr),
            z_min_km: b.z_min_km,
            z_max_km: b.z_max_km,
            dz_km: fit(b.z_max_km - b.z_min_km, a.table_dz),
        };
        let t = std::time::Instant::now();
        let tab = RadialTableModel::build(model, grid, &receivers)?;
        if !a.quiet {
            eprintln!(
                "traveltime table: {} receivers, {:.1} s to build",
                receivers.len(),
                t.elapsed().as_secs_f64()
            );
        }
        Arc::new(tab)
    };
    let config = LocateConfig {
        likelihood: a.likelihood,
        origin_time: a.origin_time,
        n_particles: a.particles,
        mh_steps: a.mh_steps,
        model_error_floor_s: a.model_error_floor,
        model_error_fraction: a.model_error_fraction,
        model_error_max_s: a.model_error_max,
        model_error_combine: a.model_error_combine,
        model_error_correlation_km: a.model_error_correlation,
        model_error_correlation_deg: a.model_error_correlation_angle,
        model_error_ps_correlation: a.model_error_ps_correlation,
        noise_scale: a.noise_scale,
        distance_weighting: s.locator.distance_weighting,
        seed: a.seed,
        ..Default::default()
    };
    let events = report.records;
    let terms_config = TermsConfig {
        kind: a.station_terms.unwrap_or_default(),
        iterations: if a.station_terms.is_some() {
            a.terms_iterations
        } else {
            0
        },
        k_neighbours: a.ssst_k,
        radius_start_km: a.ssst_radius_start,
        radius_end_km: a.ssst_radius_end,
        ..Default::default()
    };
    terms_config.validate()?;
    let start_terms = match &a.terms {
        Some(p) => Some(
            StationTerms::read_path(
                p,
                &s.frame,
                SsstConfig {
                    k_neighbours: terms_config.k_neighbours,
                    radius_km: terms_config.radius_end_km,
                    min_neighbours: terms_config.min_neighbours,
                },
                terms_config.min_count,
            )
            .with_context(|| format!("--terms {}", p.display()))?,
        ),
        None => None,
    };
    if a.write_terms.is_some() && a.station_terms.is_none() && start_terms.is_none() {
        bail!("--write-terms needs --station-terms (or --terms)");
    }
    let n_passes = 1
        + terms_config.iterations
        + usize::from(
            terms_config.iterations == 0 && matches!(start_terms, Some(StationTerms::Ssst(_))),
        );
    let pb = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((events.len() * n_passes) as u64)
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} event locations {elapsed} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let pos_of = |net: &str, sta: &str| s.inventory.position(net, sta).map(|i| s.positions[i]);
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let run = relocate_with_terms(
        &ids,
        &s.frame,
        &terms_config,
        start_terms.as_ref(),
        |k, corr| {
            let ev = &events[k];
            let c = |n: &str, st: &str, p: Phase| corr.correction_s(n, st, p);
            let mut o = locate_picks_corrected(
                model.as_ref(),
                &pos_of,
                &s.frame,
                &ev.picks,
                &s.bbox,
                &config,
                a.max_span,
                a.seed.wrapping_add(k as u64),
                format!("{}/origin/1", ev.event_id),
                &c,
            );
            o.problems.duplicate += reader_dups.get(&ev.event_id).copied().unwrap_or(0);
            pb.inc(1);
            let located = o
                .result
                .as_ref()
                .ok()
                .map(|(sum, _)| LocatedEvent::from_origin(&ev.event_id, &sum.origin, &c));
            (o, located)
        },
    )?;
    pb.finish_and_clear();
    if n_passes > 1 && !a.quiet {
        for p in &run.passes {
            eprintln!(
                "terms pass {}: {} located, median RMS {:.3} s, median |correction| {:.3} s{}",
                p.pass,
                p.located,
                p.median_rms_s,
                p.median_abs_correction_s,
                if p.radius_km.is_finite() {
                    format!(", SSST radius {:.1} km", p.radius_km)
                } else {
                    String::new()
                }
            );
        }
    }
    if let (Some(path), Some(t)) = (&a.write_terms, &run.terms) {
        t.write_path(path)?;
    }
    let outcomes: Vec<EventOutcome> = run.outcomes;

    let mut w =
        csv::Writer::from_path(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // the contract columns come from the catalog module, so `compare` and `locate` cannot drift
    let extra = [
        "status",
        "n_rejected",
        "problems",
        "x_km",
        "y_km",
        "h68_major_km",
        "h68_minor_km",
        "z68_km",
        "min_distance_km",
        "map_lat",
        "map_lon",
        "map_depth_km",
    ];
    w.write_record(
        eikoloc::catalog::csv::CATALOG_HEADER
            .iter()
            .chain(extra.iter()),
    )?;
    let mut post_out = match &a.posterior {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let (mut ok, mut failed) = (0usize, 0usize);
    for (ev, o) in events.iter().zip(&outcomes) {
        let rej = o.problems.total().to_string();
        let probs = o.problems.describe();
        match &o.result {
            Ok((sum, post)) => {
                ok += 1;
                let g = &sum.origin;
                let u = &g.uncertainty;
                let map = s.frame.to_geo(post.map_km[0], post.map_km[1]);
                w.write_record([
                    ev.event_id.clone(),
                    format_utc(&g.time),
                    format!("{:.6}", g.lat_deg),
                    format!("{:.6}", g.lon_deg),
                    cell(g.depth_km, 3),
                    cell(u.horizontal_95.major_km, 3),
                    cell(u.horizontal_95.minor_km, 3),
                    cell(u.horizontal_95.azimuth_deg, 1),
                    cell(u.depth_95_km, 3),
                    cell(g.time_sigma_s, 3),
                    cell(g.rms_s, 3),
                    cell(g.gap_deg, 1),
                    g.arrivals.len().to_string(),
                    sum.n_outliers.to_string(),
                    "located".into(),
                    rej,
                    probs,
                    cell(post.mean_km[0], 3),
                    cell(post.mean_km[1], 3),
                    cell(u.horizontal_68.major_km, 3),
                    cell(u.horizontal_68.minor_km, 3),
                    cell(u.depth_68_km, 3),
                    cell(g.min_distance_km, 3),
                    format!("{:.6}", map.lat_deg),
                    format!("{:.6}", map.lon_deg),
                    cell(post.map_km[2], 3),
                ])?;
                if let Some(pw) = post_out.as_mut() {
                    let rec = serde_json::json!({ "event_id": ev.event_id, "reference_time": o.reference_time.map(|t| format_utc(&t)), "origin": g, "posterior": post });
                    writeln!(pw, "{rec}")?;
                }
            }
            Err(e) => {
                failed += 1;
                let mut row = vec![ev.event_id.clone()];
                row.extend(std::iter::repeat_n(String::new(), 11));
                row.push(ev.picks.len().to_string());
                row.push(String::new());
                row.push("not_located".into());
                row.push(rej);
                row.push(if probs.is_empty() {
                    e.to_string()
                } else {
                    format!("{probs};{e}")
                });
                row.extend(std::iter::repeat_n(String::new(), 9));
                w.write_record(row)?;
            }
        }
    }
    w.flush()?;
    if let Some(pw) = post_out.as_mut() {
        pw.flush()?;
    }
    if let Some((path, out)) = quakeml_out {
        // every event keeps all its picks (set-aside ones too, so the file says what was
        // given); a located one carries its origin with uncertainty and arrivals
        let qevents: Vec<Event> = events
            .iter()
            .zip(&outcomes)
            .map(|(ev, o)| {
                let origins: Vec<_> = match &o.result {
                    Ok((sum, _)) => vec![sum.origin.clone()],
                    Err(_) => Vec::new(),
                };
                Event {
                    id: ev.event_id.clone(),
                    picks: ev.picks.clone(),
                    preferred_origin: (!origins.is_empty()).then_some(0),
                    origins,
                }
            })
            .collect();
        write_quakeml(out, &qevents).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("{ok} events located, {failed} not located, {} picks records skipped by the reader; model {}", report.problems.len(), model.name());
    Ok(())
}
