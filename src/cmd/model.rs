//! `eikoloc model check DIR [--json]`: accuracy of a trained network against the exact
//! reference solver on a fresh validation set over its whole box.

use std::path::PathBuf;

use anyhow::Context;
use eikoloc::traveltime::pinn::ValidationReport;
use eikoloc::traveltime::pinn_check::{reference_for, validate};
use eikoloc::traveltime::PinnModel;

/// Arguments of `eikoloc model`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// `eikoloc model` subcommands.
#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Compare a trained model with the exact reference: RMAE, median / p99 / max error per
    /// phase, error by distance bin.
    Check(CheckArgs),
}

/// Arguments of `eikoloc model check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// Artifact folder (e.g. trained-models/demo).
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Validation points per phase.
    #[arg(long, default_value_t = 20_000)]
    pub points: usize,
    /// Seed of the validation set (a fresh set, not the one used during training).
    #[arg(long, default_value_t = 20_260_101)]
    pub seed: u64,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Check(a) => check(a),
    }
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let model = PinnModel::load(&a.dir).with_context(|| format!("loading {}", a.dir.display()))?;
    let reference = reference_for(&model.manifest().velocity)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}: building the reference solver", a.dir.display()))?;
    let report = validate(&model, reference.as_ref(), a.points, a.seed)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&model, &report));
    }
    Ok(())
}

/// Human-readable report.
pub fn render(model: &PinnModel, r: &ValidationReport) -> String {
    use std::fmt::Write;
    let m = model.manifest();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model {} ({}, {} params per net), reference {}, seed {}",
        m.name,
        m.architecture.label(),
        m.architecture.n_params(),
        r.reference,
        r.seed
    );
    let _ = writeln!(s, "box: {}", m.bounds);
    let _ = writeln!(
        s,
        "{:<6}{:>8}{:>10}{:>12}{:>12}{:>12}{:>12}{:>14}",
        "phase", "n", "RMAE %", "MAE ms", "median ms", "p99 ms", "max ms", "grad med %"
    );
    for p in &r.phases {
        let _ = writeln!(
            s,
            "{:<6}{:>8}{:>10.3}{:>12.2}{:>12.2}{:>12.2}{:>12.2}{:>14.3}",
            p.phase.as_str(),
            p.n,
            100.0 * p.rmae,
            1e3 * p.mae_s,
            1e3 * p.median_abs_s,
            1e3 * p.p99_abs_s,
            1e3 * p.max_abs_s,
            100.0 * p.grad_median_rel
        );
    }
    let _ = writeln!(s, "by epicentral distance (MAE / p99, ms):");
    for p in &r.phases {
        let cells: Vec<String> = p
            .by_distance
            .iter()
            .map(|b| {
                format!(
                    "{:.0}-{:.0} km: {:.1}/{:.1}",
                    b.from_km,
                    b.to_km,
                    1e3 * b.mae_s,
                    1e3 * b.p99_abs_s
                )
            })
            .collect();
        let _ = writeln!(s, "  {}: {}", p.phase, cells.join("  "));
    }
    s
}
