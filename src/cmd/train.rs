//! `eikoloc train`: fits the eikonal traveltime network for a region and writes
//! `trained-models/NAME/` (see `eikoloc::traveltime::pinn` for the layout).

use std::path::PathBuf;

use anyhow::{bail, Context};
use eikoloc::config::ResolvedStationConfig;
use eikoloc::domain::Phase;
use eikoloc::pinn::artifact::write_artifact;
use eikoloc::pinn::training::{default_settings, Progress, TrainConfig, TrainInputs};
use eikoloc::traveltime::pinn::{Architecture, InputKind, ModelBounds, PhaseMode, VelocityInfo};
use eikoloc::traveltime::LayeredExact;
use eikoloc::velocity::LayeredModel;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `eikoloc train`.
#[derive(clap::Args)]
pub struct Args {
    /// Station config folder (e.g. station-configs/demo): velocity model and box come from it.
    #[arg(long, conflicts_with = "velocity")]
    pub config: Option<PathBuf>,
    /// Or: a velocity model CSV (`depth_top_km,vp_km_s,vs_km_s`), with the box given below.
    #[arg(long)]
    pub velocity: Option<PathBuf>,
    /// Model name (default: the config folder's name, or the velocity file's parent folder).
    #[arg(long)]
    pub name: Option<String>,
    /// Largest epicentral distance, km (with --velocity).
    #[arg(long, default_value_t = 150.0)]
    pub max_distance_km: f64,
    /// Source depth range below sea level, km (with --velocity).
    #[arg(long, num_args = 2, default_values_t = [0.0, 30.0])]
    pub source_depth_km: Vec<f64>,
    /// Station elevation range, m (with --velocity).
    #[arg(long, num_args = 2, default_values_t = [-200.0, 3000.0], allow_hyphen_values = true)]
    pub elevation_m: Vec<f64>,
    /// Output folder (default trained-models/NAME for a config, trained-models/cache/NAME otherwise).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Adam steps (the warm start before the L-BFGS stage).
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Collocation points per step.
    #[arg(long, default_value_t = 2048)]
    pub batch: usize,
    /// Collocation points at the last Adam step: the batch grows geometrically from --batch
    /// to this over the run (default: constant --batch).
    #[arg(long)]
    pub batch_end: Option<usize>,
    /// L-BFGS iterations per net after Adam, on large fixed batches (0: Adam only).
    #[arg(long, default_value_t = 2000)]
    pub lbfgs_iters: usize,
    /// Collocation points of each fixed L-BFGS batch.
    #[arg(long, default_value_t = 8192)]
    pub lbfgs_batch: usize,
    /// L-BFGS iterations per batch, then a fresh batch and a memory reset.
    #[arg(long, default_value_t = 500)]
    pub lbfgs_redraw: usize,
    /// L-BFGS history length.
    #[arg(long, default_value_t = 50)]
    pub lbfgs_memory: usize,
    /// Fraction of each L-BFGS batch chosen where the current net is worst (residual-based
    /// adaptive sampling from a pool of candidates), 0..1; 0: all from the sampler.
    #[arg(long, default_value_t = 0.0)]
    pub lbfgs_adaptive: f64,
    /// Candidates drawn per adaptively chosen point (2 to 64).
    #[arg(long, default_value_t = 4)]
    pub lbfgs_adaptive_pool: usize,
    /// Candidates are chosen with probability proportional to |T - T_ref|^POWER (0 to 8).
    #[arg(long, default_value_t = 1.0)]
    pub lbfgs_adaptive_power: f64,
    /// Architecture `INPUTS:WIDTHxDEPTH[:phase-input]`, INPUTS radial1d or cartesian3d,
    /// e.g. `radial1d:32x4` (two nets, P and S) or `radial1d:48x4:phase-input` (one net).
    #[arg(long, default_value = "radial1d:32x4")]
    pub arch: String,
    /// Output heads K: tau = min over K heads, so each can learn one traveltime branch (direct
    /// wave, head waves) and the crossover kinks stay sharp; 1 is a plain single-output net.
    /// Default: one per layer with branch heads (the default), else 1.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Branch heads (default on; `--branch-heads false` for one plain output): one head per
    /// layer of the layered model, fitted to the paths whose deepest layer it is (the head wave
    /// along its top, the direct ray from inside it) where they arrive near the first arrival,
    /// and kept above the first arrival elsewhere; tau = min(heads) keeps the crossovers' kinks.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub branch_heads: bool,
    /// Weight of the hinge keeping a branch head above the first arrival where its path does
    /// not exist.
    #[arg(long, default_value_t = 1.0)]
    pub w_hinge: f64,
    /// Source-depth kink inputs (default on; `--depth-kinks false` to leave them out): one
    /// network input max(z_source - z_j, 0) per velocity interface z_j inside the source-depth
    /// box, so dT/dz_source can jump there.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub depth_kinks: bool,
    /// Relative margin a head keeps above the first arrival where its path does not exist.
    #[arg(long, default_value_t = 0.001)]
    pub branch_margin: f64,
    /// A branch head is fitted to its path only where that path is within this fraction of
    /// the first arrival (elsewhere only kept above it), 0 to 10.
    #[arg(long, default_value_t = 0.005)]
    pub branch_window: f64,
    /// Random seed (initialisation, collocation and validation points).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Initial learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight of the supervised source-gradient term.
    #[arg(long)]
    pub w_grad: Option<f64>,
    /// Weight of the eikonal residual at the receiver.
    #[arg(long)]
    pub w_eikonal: Option<f64>,
    /// Power p of the supervised time term, (mean |relative error|^p)^(2/p), 2 to 16: 2 is
    /// the mean square; a larger p weighs the largest errors more.
    #[arg(long, default_value_t = 2.0)]
    pub time_loss_power: f64,
    /// Fraction of collocation points drawn close to the source (distance ~ u^3), 0..1.
    #[arg(long)]
    pub frac_near_source: Option<f64>,
    /// Fraction of source depths drawn within about 0.5 km of a velocity interface, 0..1.
    #[arg(long)]
    pub frac_near_interface: Option<f64>,
    /// T0 the network multiplies: `gradient` (least-squares constant-gradient medium) or
    /// `straight` (D / v_ref).
    #[arg(long, default_value = "gradient", value_parser = ["gradient", "straight"])]
    pub background: String,
    /// Final learning rate.
    #[arg(long)]
    pub lr_end: Option<f64>,
    /// Validation points per phase.
    #[arg(long, default_value_t = 4000)]
    pub validation_points: usize,
    /// Validate every this many steps.
    #[arg(long, default_value_t = 250)]
    pub validate_every: usize,
    /// Checkpoint every this many steps (burnpacks in OUT/checkpoints/).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
}

/// Parses `INPUTS:WIDTHxDEPTH[:phase-input]`.
pub fn parse_arch(s: &str) -> anyhow::Result<Architecture> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        bail!("--arch {s:?}: expected INPUTS:WIDTHxDEPTH[:phase-input], e.g. radial1d:32x4");
    }
    let inputs = match parts[0] {
        "radial1d" | "1d" => InputKind::Radial1d,
        "cartesian3d" | "3d" => InputKind::Cartesian3d,
        other => bail!("--arch: unknown inputs {other:?} (radial1d or cartesian3d)"),
    };
    let (w, d) = parts[1]
        .split_once('x')
        .with_context(|| format!("--arch: {:?} is not WIDTHxDEPTH", parts[1]))?;
    let (w, d): (usize, usize) = (
        w.parse().context("--arch width")?,
        d.parse().context("--arch depth")?,
    );
    if w == 0 || d == 0 || w > 4096 || d > 32 {
        bail!("--arch: width {w} x depth {d} out of range");
    }
    let phase_mode = match parts.get(2) {
        None | Some(&"separate") => PhaseMode::Separate,
        Some(&"phase-input") => PhaseMode::Input,
        Some(other) => bail!("--arch: unknown phase mode {other:?} (separate or phase-input)"),
    };
    Ok(Architecture {
        inputs,
        hidden: vec![w; d],
        activation: "elu".into(),
        phase_mode,
        heads: 1,
        depth_kinks_km: Vec::new(),
    })
}

struct Region {
    name: String,
    velocity: LayeredModel,
    bounds: ModelBounds,
    default_out: PathBuf,
}

fn region(a: &Args) -> anyhow::Result<Region> {
    if let Some(dir) = &a.config {
        return region_from_config(dir, a.name.clone());
    }
    let Some(vpath) = &a.velocity else {
        bail!("give --config station-configs/NAME or --velocity FILE")
    };
    let velocity = LayeredModel::from_csv_path(vpath)?;
    let name = a.name.clone().unwrap_or_else(|| {
        vpath
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let (e0, e1) = (
        a.elevation_m[0].min(a.elevation_m[1]),
        a.elevation_m[0].max(a.elevation_m[1]),
    );
    let bounds = ModelBounds {
        max_distance_km: a.max_distance_km,
        source_depth_min_km: a.source_depth_km[0].min(a.source_depth_km[1]),
        source_depth_max_km: a.source_depth_km[0].max(a.source_depth_km[1]),
        receiver_depth_min_km: -e1 / 1000.0,
        receiver_depth_max_km: -e0 / 1000.0,
    };
    bounds.validate().map_err(anyhow::Error::msg)?;
    Ok(Region {
        default_out: PathBuf::from("trained-models/cache").join(&name),
        name,
        velocity,
        bounds,
    })
}

fn region_from_config(dir: &std::path::Path, name: Option<String>) -> anyhow::Result<Region> {
    let cfg = ResolvedStationConfig::load(dir)
        .with_context(|| format!("loading station config {}", dir.display()))?;
    let bounds = ModelBounds::for_config(&cfg);
    let name = name.unwrap_or_else(|| cfg.name.clone());
    Ok(Region {
        default_out: PathBuf::from("trained-models").join(&name),
        name,
        velocity: cfg.velocity,
        bounds,
    })
}

/// Runs the subcommand.
pub fn run(a: Args) -> anyhow::Result<()> {
    let reg = region(&a)?;
    let mut arch = parse_arch(&a.arch)?;
    // every float option's range, checked before anything is trained or written
    for (name, v, lo, hi) in [
        ("--w-hinge", a.w_hinge, 0.0, 100.0),
        ("--branch-margin", a.branch_margin, 0.0, 0.1),
        ("--branch-window", a.branch_window, 0.0, 10.0),
        ("--lbfgs-adaptive", a.lbfgs_adaptive, 0.0, 1.0),
        ("--lbfgs-adaptive-power", a.lbfgs_adaptive_power, 0.0, 8.0),
        ("--time-loss-power", a.time_loss_power, 2.0, 16.0),
        (
            "--frac-near-source",
            a.frac_near_source.unwrap_or(0.0),
            0.0,
            1.0,
        ),
        (
            "--frac-near-interface",
            a.frac_near_interface.unwrap_or(0.0),
            0.0,
            1.0,
        ),
    ] {
        if !(lo..=hi).contains(&v) {
            bail!("{name} {v}: expected {lo} to {hi}");
        }
    }
    if a.branch_heads && arch.inputs != InputKind::Radial1d {
        bail!("branch heads are implemented for radial1d inputs only: give --branch-heads false with --arch {}", a.arch);
    }
    let paths = reg.velocity.layers().len();
    let heads = match a.heads {
        Some(h) => h,
        None if a.branch_heads => paths,
        None => 1,
    };
    if heads == 0 || heads > 64 {
        bail!("--heads {heads}: expected 1 to 64");
    }
    if a.branch_heads && heads != paths {
        bail!(
            "--heads {heads} with --branch-heads: one head per layer is needed, {paths} for \
             this {paths}-layer model (leave --heads out, or give --branch-heads false)"
        );
    }
    arch.heads = heads;
    if a.depth_kinks {
        arch.depth_kinks_km = reg
            .velocity
            .layers()
            .iter()
            .skip(1)
            .map(|l| l.depth_top_km)
            .filter(|z| *z > reg.bounds.source_depth_min_km && *z < reg.bounds.source_depth_max_km)
            .collect();
    }
    let out = a.out.clone().unwrap_or(reg.default_out.clone());
    let mut settings = default_settings(a.steps, a.seed);
    settings.batch_size = a.batch;
    settings.batch_size_end = a.batch_end.unwrap_or(0);
    settings.lbfgs_iters = a.lbfgs_iters;
    settings.lbfgs_batch = a.lbfgs_batch;
    settings.lbfgs_redraw = a.lbfgs_redraw;
    settings.lbfgs_memory = a.lbfgs_memory;
    if !(2..=64).contains(&a.lbfgs_adaptive_pool) {
        bail!(
            "--lbfgs-adaptive-pool {}: expected 2 to 64",
            a.lbfgs_adaptive_pool
        );
    }
    settings.time_loss_power = a.time_loss_power;
    settings.branch_heads = a.branch_heads;
    settings.w_hinge = a.w_hinge;
    settings.branch_margin = a.branch_margin;
    settings.branch_window = a.branch_window;
    settings.lbfgs_adaptive_frac = a.lbfgs_adaptive;
    settings.lbfgs_adaptive_pool = a.lbfgs_adaptive_pool;
    settings.lbfgs_adaptive_power = a.lbfgs_adaptive_power;
    if let Some(lr) = a.lr {
        settings.lr_start = lr;
    }
    if let Some(v) = a.lr_end {
        settings.lr_end = v;
    }
    if let Some(v) = a.w_grad {
        settings.w_grad = v;
    }
    if let Some(v) = a.w_eikonal {
        settings.w_eikonal = v;
    }
    if let Some(v) = a.frac_near_source {
        settings.frac_near_source = v;
    }
    if let Some(v) = a.frac_near_interface {
        settings.frac_near_interface = v;
    }
    settings.gradient_background = a.background == "gradient";
    let cfg = TrainConfig {
        name: reg.name.clone(),
        architecture: arch,
        bounds: reg.bounds,
        phases: Phase::ALL.to_vec(),
        settings,
        validation_points: a.validation_points,
        validate_every: a.validate_every,
        checkpoint_dir: Some(out.join("checkpoints")),
        checkpoint_every: a.checkpoint_every,
    };
    let exact = LayeredExact::new(reg.velocity.clone());
    let interfaces_km = reg
        .velocity
        .layers()
        .iter()
        .skip(1)
        .map(|l| l.depth_top_km)
        .collect();
    let inputs = TrainInputs {
        velocity: &reg.velocity,
        velocity_info: VelocityInfo::layered(&reg.velocity),
        reference: &exact,
        interfaces_km,
        branches: Some(&exact),
    };
    eprintln!(
        "training {} ({}, {} params per net) for {} -> {}",
        cfg.name,
        cfg.architecture.label(),
        cfg.architecture.n_params(),
        cfg.bounds,
        out.display()
    );
    let bar = ProgressBar::new((a.steps + a.lbfgs_iters) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")?
            .progress_chars("=> "),
    );
    let mut on_progress = |p: &Progress| {
        // L-BFGS rounds report once each (lr 0)
        if p.step % 10 == 0 || p.step == p.steps || p.record.lr == 0.0 {
            let val = p
                .validation
                .map(|v| {
                    v.phases
                        .iter()
                        .map(|e| {
                            format!(
                                "{} RMAE {:.3}% p99 {:.1} ms",
                                e.phase,
                                100.0 * e.rmae,
                                1e3 * e.p99_abs_s
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            bar.set_message(format!("loss {:.3e}  {val}", p.record.loss));
            // without a terminal (CI, logs) the bar is hidden: print each validation instead
            if bar.is_hidden() && !p.record.val_rmae[0].is_nan() {
                eprintln!(
                    "step {}/{} {:.0} s loss {:.3e} {val}",
                    p.step, p.steps, p.record.elapsed_s, p.record.loss
                );
            }
        }
        bar.set_position(p.step as u64);
    };
    let trained = eikoloc::pinn::train(&cfg, &inputs, &mut on_progress)?;
    bar.finish();
    write_artifact(&out, &cfg, &trained)?;
    if let Some(v) = &trained.manifest.validation {
        for e in &v.phases {
            eprintln!(
                "{}: RMAE {:.3} %, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                e.phase,
                100.0 * e.rmae,
                1e3 * e.median_abs_s,
                1e3 * e.p99_abs_s,
                1e3 * e.max_abs_s
            );
        }
    }
    eprintln!(
        "wrote {} in {:.0} s",
        out.display(),
        trained.manifest.training.wall_time_s
    );
    Ok(())
}
