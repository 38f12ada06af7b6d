//! `eikoloc traveltime`: traveltimes for rows `phase,epicentral_distance_km,source_depth_km,receiver_elevation_m`.
//!
//! Contract (kept stable for scripts and the other engineers' solvers):
//! `eikoloc traveltime --velocity FILE (--solver exact|grid | --model DIR) --pairs PAIRS.csv`
//! reads the pairs (header required, `#` comment lines and blank lines allowed) and writes
//! the same rows with `traveltime_s` appended, CSV on stdout. Nothing is written unless every
//! row is good: a bad row is an error naming its line and field.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use eikoloc::domain::Phase;
use eikoloc::traveltime::grid::{GridTraveltime, GridTraveltimeConfig};
use eikoloc::traveltime::LayeredExact;
use eikoloc::velocity::load_layered;

/// Input columns, in order.
const COLUMNS: [&str; 4] = [
    "phase",
    "epicentral_distance_km",
    "source_depth_km",
    "receiver_elevation_m",
];

/// Arguments of `eikoloc traveltime`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("engine").required(true).args(["solver", "model"])))]
pub struct Args {
    /// Velocity model file: CSV `depth_top_km,vp_km_s,vs_km_s` or NonLinLoc `LAYER` lines.
    #[arg(long)]
    pub velocity: PathBuf,
    /// Reference solver: `exact` (1-D layered, flat Earth) or `grid` (eikonal grid solver).
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Trained network directory (`trained-models/<name>/`) instead of a solver.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Rows to evaluate: CSV with header `phase,epicentral_distance_km,source_depth_km,receiver_elevation_m`.
    #[arg(long)]
    pub pairs: PathBuf,
}

/// Which reference solver computes the times.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Solver {
    /// Exact first arrivals in flat 1-D constant-velocity layers (direct and head waves).
    Exact,
    /// Eikonal grid solver.
    Grid,
}

/// One row of the pairs file: the original text of its fields and the parsed values.
struct Pair {
    fields: Vec<String>,
    phase: Phase,
    distance_km: f64,
    source_depth_km: f64,
    receiver_depth_km: f64,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let velocity = load_layered(&args.velocity).context("reading the velocity model")?;
    let pairs = read_pairs(&args.pairs)?;
    let times: Vec<f64> = match (args.solver, &args.model) {
        (Some(Solver::Exact), None) => {
            let solver = LayeredExact::new(velocity);
            pairs
                .iter()
                .map(|p| {
                    solver
                        .radial_time_s(
                            p.phase,
                            p.distance_km,
                            p.source_depth_km,
                            p.receiver_depth_km,
                        )
                        .with_context(|| {
                            format!("{}: row {:?}", args.pairs.display(), p.fields.join(","))
                        })
                })
                .collect::<anyhow::Result<_>>()?
        }
        (Some(Solver::Grid), None) => {
            // One (r, z) table per distinct receiver depth, built lazily; the table must reach
            // below the deepest source and the deepest head-wave interface that can matter.
            let max_r = pairs.iter().map(|p| p.distance_km).fold(0.0, f64::max);
            let max_zs = pairs.iter().map(|p| p.source_depth_km).fold(0.0, f64::max);
            let deepest_top = velocity.layers().last().map_or(0.0, |l| l.depth_top_km);
            let min_z = pairs
                .iter()
                .map(|p| p.source_depth_km.min(p.receiver_depth_km))
                .fold(-3.0, f64::min);
            let config = GridTraveltimeConfig {
                r_max_km: max_r + 1.0,
                z_min_km: min_z - 0.5,
                z_max_km: (max_zs + 10.0).max(deepest_top + 5.0).max(40.0),
                ..Default::default()
            };
            let grid = GridTraveltime::radial_lazy(Arc::new(velocity), config)
                .context("setting up the eikonal grid solver")?;
            pairs
                .iter()
                .map(|p| {
                    grid.radial_traveltime(
                        p.phase,
                        p.distance_km,
                        p.source_depth_km,
                        p.receiver_depth_km,
                    )
                    .map(|rt| rt.t_s)
                    .with_context(|| {
                        format!("{}: row {:?}", args.pairs.display(), p.fields.join(","))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        }
        (None, Some(dir)) => network_times(dir, &velocity, &pairs)?,
        // clap's "engine" group makes exactly one of them present
        _ => bail!("give exactly one of --solver or --model"),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(out, "{},traveltime_s", COLUMNS.join(","))?;
    for (p, t) in pairs.iter().zip(&times) {
        writeln!(out, "{},{t:.6}", p.fields.join(","))?;
    }
    out.flush()?;
    Ok(())
}

/// Traveltimes from a trained network (burn-free evaluator), after checking that it was trained
/// for this velocity model and covers every row.
fn network_times(
    dir: &Path,
    velocity: &eikoloc::velocity::LayeredModel,
    pairs: &[Pair],
) -> anyhow::Result<Vec<f64>> {
    use eikoloc::domain::LocalPoint;
    use eikoloc::traveltime::pinn::ModelBounds;
    use eikoloc::velocity::VelocityModel;
    let model = eikoloc::traveltime::PinnModel::load(dir)?;
    let fold = |f: fn(&Pair) -> f64| {
        pairs
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (_, r_max) = fold(|p| p.distance_km);
    let (zs0, zs1) = fold(|p| p.source_depth_km);
    let (zr0, zr1) = fold(|p| p.receiver_depth_km);
    if !pairs.is_empty() {
        let needed = ModelBounds {
            max_distance_km: r_max,
            source_depth_min_km: zs0,
            source_depth_max_km: zs1,
            receiver_depth_min_km: zr0,
            receiver_depth_max_km: zr1,
        };
        model.check_compatible(&velocity.content_hash(), &needed)?;
    }
    let rows: Vec<_> = pairs
        .iter()
        .map(|p| {
            (
                p.phase,
                LocalPoint::new(p.distance_km, 0.0, p.source_depth_km),
                LocalPoint::new(0.0, 0.0, p.receiver_depth_km),
            )
        })
        .collect();
    Ok(model
        .eval_pairs(&rows, false)?
        .into_iter()
        .map(|t| t.t_s)
        .collect())
}

/// Reads the pairs file; every error names file, line and field.
fn read_pairs(path: &Path) -> anyhow::Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let at = |line: usize, field: &str| format!("{}:{line}: field {field:?}", path.display());
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((hline, header)) = lines.next() else {
        bail!(
            "{}: empty file, expected header {}",
            at(1, "header"),
            COLUMNS.join(",")
        );
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    for (i, name) in names.iter().enumerate() {
        if COLUMNS.get(i) != Some(name) {
            bail!(
                "{}: unknown or misplaced column, expected header {}",
                at(hline, name),
                COLUMNS.join(",")
            );
        }
    }
    if names.len() < COLUMNS.len() {
        bail!(
            "{}: missing column, expected header {}",
            at(hline, COLUMNS[names.len()]),
            COLUMNS.join(",")
        );
    }
    let mut pairs = Vec::new();
    for (line, content) in lines {
        let fields: Vec<String> = content.split(',').map(|f| f.trim().to_string()).collect();
        if fields.len() > COLUMNS.len() {
            bail!(
                "{}:{line}: {} fields, expected {}",
                path.display(),
                fields.len(),
                COLUMNS.len()
            );
        }
        let get = |k: usize| -> anyhow::Result<&str> {
            match fields.get(k).map(String::as_str) {
                Some(s) if !s.is_empty() => Ok(s),
                _ => bail!("{}: missing (truncated line?)", at(line, COLUMNS[k])),
            }
        };
        let phase: Phase = get(0)?
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", at(line, COLUMNS[0])))?;
        let number = |k: usize| -> anyhow::Result<f64> {
            let s = get(k)?;
            let v: f64 = s
                .parse()
                .map_err(|_| anyhow::anyhow!("{}: {s:?} is not a number", at(line, COLUMNS[k])))?;
            if !v.is_finite() {
                bail!("{}: {s:?} is not finite", at(line, COLUMNS[k]));
            }
            Ok(v)
        };
        let distance_km = number(1)?;
        if distance_km < 0.0 {
            bail!("{}: {distance_km} is negative", at(line, COLUMNS[1]));
        }
        let source_depth_km = number(2)?;
        let receiver_elevation_m = number(3)?;
        pairs.push(Pair {
            fields,
            phase,
            distance_km,
            source_depth_km,
            receiver_depth_km: -receiver_elevation_m / 1000.0,
        });
    }
    Ok(pairs)
}
