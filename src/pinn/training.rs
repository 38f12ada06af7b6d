//! The loss and the optimiser loop.
//!
//! Loss per collocation point (all relative, so P and S, near and far weigh alike):
//! - supervised time: ((tau - tau_ref) / tau_ref)^2, i.e. the squared relative traveltime error;
//! - supervised source gradient: (v_source (dT/dc - dT_ref/dc))^2 over the source coordinates;
//! - eikonal residual at the receiver (EikoNet): (v_receiver |grad_receiver T| - 1)^2.
//!
//! With branch heads ([`branch_loss`]) the three terms apply to every head on its own, where
//! its family of layered paths arrives near the first arrival, plus a hinge elsewhere.
//!
//! Learning rate decays exponentially from `lr_start` to `lr_end`; points are redrawn every
//! `steps_per_epoch` steps.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::data::{branch_count, rec_dirs, sup_dirs, Batch, Sampler};
use super::model::{min_head, tensor2, TauNet};
use super::{TrainError, BURN_VERSION};
use crate::domain::Phase;
use crate::traveltime::layered_exact::LayeredExact;
use crate::traveltime::pinn::{
    Architecture, Background, InputKind, InputScaling, LayerSpec, ModelBounds, NetSpec, PhaseMode,
    PinnManifest, PinnModel, TrainingSettings, ValidationReport, VelocityInfo, FORMAT_VERSION,
};
use crate::traveltime::pinn_check::{reference_values, sample_rows, summarize, Row};
use crate::traveltime::{TimeAndGradient, TraveltimeModel};
use crate::velocity::VelocityModel;

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Model name (artifact folder name).
    pub name: String,
    /// Network shape.
    pub architecture: Architecture,
    /// Box to cover.
    pub bounds: ModelBounds,
    /// Phases to serve.
    pub phases: Vec<Phase>,
    /// Optimiser and sampling settings.
    pub settings: TrainingSettings,
    /// Validation points per phase.
    pub validation_points: usize,
    /// Validate every this many steps (0: only at the end).
    pub validate_every: usize,
    /// Where to write burnpack checkpoints (None: no checkpoints).
    pub checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
}

/// Default settings, tuned on the Ridgecrest 1-D model (README, "Eikonal PINN"): the Adam
/// warm start and the L-BFGS stage's batch, redraw and memory of `eikoloc train`'s recipe, with
/// the L-BFGS stage itself off (`lbfgs_iters` 0) until the caller sets its iterations, and
/// branch heads off (they need a layered model: `eikoloc train` turns them on, with the
/// architecture's one head per layer and depth kinks).
pub fn default_settings(steps: usize, seed: u64) -> TrainingSettings {
    TrainingSettings {
        steps,
        batch_size: 2048,
        seed,
        lr_start: 3e-3,
        lr_end: 2e-5,
        w_time: 1.0,
        w_grad: 0.1,
        w_eikonal: 0.02,
        frac_near_source: 0.2,
        frac_near_interface: 0.3,
        steps_per_epoch: 1,
        gradient_background: true,
        batch_size_end: 0,
        lbfgs_iters: 0,
        lbfgs_batch: 8192,
        lbfgs_redraw: 500,
        lbfgs_memory: 50,
        lbfgs_adaptive_frac: 0.0,
        lbfgs_adaptive_pool: 4,
        lbfgs_adaptive_power: 1.0,
        time_loss_power: 2.0,
        branch_heads: false,
        w_hinge: 1.0,
        branch_margin: 0.001,
        branch_window: 0.005,
        wall_time_s: 0.0,
    }
}

/// The physics the network must learn.
pub struct TrainInputs<'a> {
    /// Velocity model (for the eikonal residual).
    pub velocity: &'a dyn VelocityModel,
    /// Its identity, written into the manifest.
    pub velocity_info: VelocityInfo,
    /// Exact traveltimes for supervision and validation.
    pub reference: &'a dyn TraveltimeModel,
    /// Depths of velocity discontinuities, km.
    pub interfaces_km: Vec<f64>,
    /// The layered solver's separate paths, for branch heads (needed when
    /// [`TrainingSettings::branch_heads`] is set; the net then needs one head per layer).
    pub branches: Option<&'a LayeredExact>,
}

/// One row of the loss curve.
#[derive(Debug, Clone, Copy)]
pub struct LossRecord {
    /// Optimiser step (1-based): Adam steps, then Adam steps + L-BFGS iterations done.
    pub step: usize,
    /// Learning rate used (0 in the L-BFGS stage, one row per L-BFGS round).
    pub lr: f64,
    /// Total loss summed over nets.
    pub loss: f64,
    /// Supervised time term (relative error squared), summed over nets.
    pub loss_time: f64,
    /// Supervised gradient term.
    pub loss_grad: f64,
    /// Eikonal residual term.
    pub loss_eikonal: f64,
    /// Branch heads' hinge term (0 without branch heads).
    pub loss_branch: f64,
    /// Validation RMAE per phase (P, S); NaN when not validated at this step.
    pub val_rmae: [f64; 2],
    /// Validation p99 absolute error per phase, s; NaN when not validated.
    pub val_p99_s: [f64; 2],
    /// Seconds since the start of training.
    pub elapsed_s: f64,
}

impl LossRecord {
    /// A row for `step` at learning rate `lr` with zero losses, not validated.
    fn empty(step: usize, lr: f64) -> Self {
        Self {
            step,
            lr,
            loss: 0.0,
            loss_time: 0.0,
            loss_grad: 0.0,
            loss_eikonal: 0.0,
            loss_branch: 0.0,
            val_rmae: [f64::NAN; 2],
            val_p99_s: [f64::NAN; 2],
            elapsed_s: 0.0,
        }
    }
}

impl LossRecord {
    /// Adds one net's loss terms (detached) to the row.
    fn add(&mut self, l: LossTerms) {
        self.loss += scalar(l.total.detach());
        self.loss_time += scalar(l.time.detach());
        self.loss_grad += scalar(l.grad.detach());
        self.loss_eikonal += scalar(l.eikonal.detach());
        self.loss_branch += scalar(l.branch.detach());
    }
}

/// One batch's loss: the weighted total (on the autodiff graph) and its unweighted terms.
pub struct LossTerms {
    /// w_time time + w_grad grad + w_eikonal eikonal (+ w_hinge branch).
    pub total: Tensor<1>,
    /// Supervised time term.
    pub time: Tensor<1>,
    /// Supervised gradient term (source coordinates; with branch heads also the receiver
    /// depth).
    pub grad: Tensor<1>,
    /// Eikonal residual term.
    pub eikonal: Tensor<1>,
    /// Branch heads' hinge term (zero without branch heads).
    pub branch: Tensor<1>,
}

/// Progress of a running training, for a progress bar.
pub struct Progress<'a> {
    /// Steps done (Adam steps, then L-BFGS iterations).
    pub step: usize,
    /// Steps planned (Adam steps plus L-BFGS iterations).
    pub steps: usize,
    /// Latest loss record.
    pub record: &'a LossRecord,
    /// Latest validation, if any.
    pub validation: Option<&'a ValidationReport>,
}

/// A trained model: burn nets plus the burn-free form the service reads.
pub struct Trained {
    /// One net per phase, or one shared net (phase-input mode).
    pub nets: Vec<TauNet>,
    /// Manifest (with final validation).
    pub manifest: PinnManifest,
    /// Flat weights in the manifest's layout.
    pub weights: Vec<f32>,
    /// Loss curve.
    pub curve: Vec<LossRecord>,
}

impl Trained {
    /// The burn-free evaluator of these weights.
    pub fn evaluator(&self) -> Result<PinnModel, TrainError> {
        Ok(PinnModel::from_parts(
            std::path::Path::new(&self.manifest.name),
            self.manifest.clone(),
            &self.weights,
        )?)
    }
}

/// v_ref of T0 = D / v_ref: the velocity at the top of the source range (x = y = 0).
pub fn reference_velocities(velocity: &dyn VelocityModel, bounds: &ModelBounds) -> [f64; 2] {
    Phase::ALL.map(|p| velocity.velocity_km_s(p, 0.0, 0.0, bounds.source_depth_min_km))
}

/// T0's medium: straight rays (at the manifest's v_ref), or v(z) = v0 + k (z - z0) fitted by least squares to
/// the velocity at x = y = 0 over every depth the box holds (z0 at its top).
pub fn fit_background(
    velocity: &dyn VelocityModel,
    bounds: &ModelBounds,
    gradient: bool,
) -> Background {
    if !gradient {
        return Background::Straight;
    }
    let z0 = bounds.receiver_depth_min_km.min(bounds.source_depth_min_km);
    let z1 = bounds.receiver_depth_max_km.max(bounds.source_depth_max_km);
    let n = 400;
    let zs: Vec<f64> = (0..n)
        .map(|i| z0 + (z1 - z0) * (i as f64 + 0.5) / n as f64)
        .collect();
    let mut v0 = [0.0; 2];
    let mut k = [0.0; 2];
    for p in Phase::ALL {
        let vs: Vec<f64> = zs
            .iter()
            .map(|z| velocity.velocity_km_s(p, 0.0, 0.0, *z))
            .collect();
        let zm = zs.iter().sum::<f64>() / n as f64;
        let vm = vs.iter().sum::<f64>() / n as f64;
        let sxy: f64 = zs.iter().zip(&vs).map(|(z, v)| (z - zm) * (v - vm)).sum();
        let sxx: f64 = zs.iter().map(|z| (z - zm) * (z - zm)).sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let top = vm + slope * (z0 - zm);
        let bottom = vm + slope * (z1 - zm);
        // a fit that turns non-positive (never for real Earth models) falls back to straight rays
        if !(top > 0.0 && bottom > 0.0 && top.is_finite() && slope.is_finite()) {
            return Background::Straight;
        }
        v0[p.index()] = top;
        k[p.index()] = slope;
    }
    if v0[1] >= v0[0] {
        return Background::Straight;
    }
    Background::Gradient {
        z0_km: z0,
        v0_km_s: v0,
        gradient_per_s: k,
    }
}

fn net_groups(cfg: &TrainConfig) -> Vec<Vec<Phase>> {
    match cfg.architecture.phase_mode {
        PhaseMode::Separate => cfg.phases.iter().map(|p| vec![*p]).collect(),
        PhaseMode::Input => vec![cfg.phases.clone()],
    }
}

/// Manifest and flat weights for `nets` (layer by layer: weight then bias).
pub fn export(
    cfg: &TrainConfig,
    inputs: &TrainInputs,
    vref: [f64; 2],
    nets: &[TauNet],
    validation: Option<ValidationReport>,
) -> (PinnManifest, Vec<f32>) {
    let groups = net_groups(cfg);
    let mut flat = Vec::new();
    let mut specs = Vec::new();
    for (net, group) in nets.iter().zip(&groups) {
        let dense = net.to_dense();
        let mut layers = Vec::new();
        for l in dense.layers {
            let weight_offset = flat.len();
            flat.extend_from_slice(&l.weight);
            let bias_offset = flat.len();
            flat.extend_from_slice(&l.bias);
            layers.push(LayerSpec {
                d_in: l.d_in,
                d_out: l.d_out,
                weight_offset,
                bias_offset,
            });
        }
        let phase = match cfg.architecture.phase_mode {
            PhaseMode::Separate => Some(group[0]),
            PhaseMode::Input => None,
        };
        let burnpack = Some(match phase {
            Some(p) => format!("net-{p}.bpk"),
            None => "net.bpk".to_string(),
        });
        specs.push(NetSpec {
            phase,
            layers,
            burnpack,
        });
    }
    let manifest = PinnManifest {
        format_version: FORMAT_VERSION,
        name: cfg.name.clone(),
        architecture: cfg.architecture.clone(),
        scaling: InputScaling::for_bounds(cfg.architecture.inputs, &cfg.bounds),
        reference_velocity_km_s: vref,
        background: fit_background(
            inputs.velocity,
            &cfg.bounds,
            cfg.settings.gradient_background,
        ),
        velocity: inputs.velocity_info.clone(),
        bounds: cfg.bounds,
        phases: cfg.phases.clone(),
        training: cfg.settings.clone(),
        validation,
        burn_version: BURN_VERSION.to_string(),
        weights_file: "weights.f32".to_string(),
        nets: specs,
    };
    (manifest, flat)
}

/// Adam batch at `step` of `steps` (1-based): geometric growth from `batch_size` to
/// `batch_size_end` when the latter is larger, so late steps see less gradient noise.
pub fn batch_at(s: &TrainingSettings, step: usize) -> usize {
    if s.batch_size_end <= s.batch_size || s.steps < 2 {
        return s.batch_size;
    }
    let frac = (step.saturating_sub(1)) as f64 / (s.steps - 1) as f64;
    let b = s.batch_size as f64 * (s.batch_size_end as f64 / s.batch_size as f64).powf(frac);
    (b.round() as usize).clamp(s.batch_size, s.batch_size_end)
}

/// Loss terms for one batch (see the module docs; with branch heads, [`branch_loss`]).
pub fn loss(
    net: &TauNet,
    b: &Batch,
    arch: &Architecture,
    s: &TrainingSettings,
    device: &Device,
) -> LossTerms {
    let (n, k, d) = (b.n, b.k, b.d_in);
    let x = tensor2(b.x.clone(), n, d, device);
    let seeds = tensor2(b.seeds.clone(), k * n, d, device);
    // every head [n, K] and its tangents [k n, K]
    let (heads, dheads) = net.forward_heads_with_tangents(x, seeds, k);
    if s.branch_heads && b.n_branches > 0 && b.n_branches == heads.dims()[1] {
        return branch_loss(heads, dheads, b, arch, s, device);
    }
    // [n, 1] and [k n, 1]
    let (tau, dtau) = min_head(heads, dheads, k);
    let tau = tau.reshape([1, n]);
    let dtau = dtau.reshape([k, n]);
    let t0 = tensor2(b.t0.clone(), 1, n, device);
    let dt0 = tensor2(b.dt0.clone(), k, n, device);
    // dT/dc_j = dT0/dc_j tau + T0 dtau/dc_j : [k, n]
    let dt = dt0 * tau.clone().repeat_dim(0, k) + t0.repeat_dim(0, k) * dtau;

    let tau_ref = tensor2(b.tau_ref.clone(), 1, n, device);
    let rel = (tau - tau_ref.clone()) / tau_ref;
    let l_time = if s.time_loss_power > 2.0 {
        // (mean |r|^p)^(2/p): the units of the mean square, the weight of a higher norm
        rel.abs()
            .powf_scalar(s.time_loss_power)
            .mean()
            .powf_scalar(2.0 / s.time_loss_power)
    } else {
        rel.powi_scalar(2).mean()
    };

    let sup = sup_dirs(arch.inputs);
    let g_pred = Tensor::cat(sup.iter().map(|&j| dt.clone().narrow(0, j, 1)).collect(), 0);
    let g_ref = tensor2(b.grad_ref.clone(), sup.len(), n, device);
    let v_src = tensor2(b.v_src.clone(), 1, n, device).repeat_dim(0, sup.len());
    let l_grad = ((g_pred - g_ref) * v_src).powi_scalar(2).mean();

    let rec = rec_dirs(arch.inputs);
    let g_rec = Tensor::cat(rec.iter().map(|&j| dt.clone().narrow(0, j, 1)).collect(), 0);
    let norm = (g_rec.powi_scalar(2).sum_dim(0) + 1e-12).sqrt();
    let v_rec = tensor2(b.v_rec.clone(), 1, n, device);
    let l_eik = (norm * v_rec - 1.0).powi_scalar(2).mean();

    let total = l_time.clone().mul_scalar(s.w_time)
        + l_grad.clone().mul_scalar(s.w_grad)
        + l_eik.clone().mul_scalar(s.w_eikonal);
    LossTerms {
        total,
        time: l_time,
        grad: l_grad,
        eikonal: l_eik,
        branch: Tensor::<1>::zeros([1], device),
    }
}

/// The loss of a branch-headed net, smooth in the weights (no min): each head's time,
/// gradient (source and receiver coordinates: the eikonal residual alone admits a receiver
/// slope of either sign, and a head can settle on the wrong one) and eikonal terms (as in
/// [`loss`]) where its path exists, summed over heads
/// and averaged over points, plus the hinge (w_hinge) that keeps every other head at least
/// `branch_margin` (relative) above the first arrival. Heads `[n, K]`, tangents `[k n, K]`.
pub fn branch_loss(
    heads: Tensor<2>,
    dheads: Tensor<2>,
    b: &Batch,
    arch: &Architecture,
    s: &TrainingSettings,
    device: &Device,
) -> LossTerms {
    let (n, k, kb) = (b.n, b.k, b.n_branches);
    let mask = tensor2(b.branch_mask.clone(), n, kb, device);
    let absent = mask.clone().neg() + 1.0;
    let per_point = |t: Tensor<2>| t.sum_dim(1).mean();
    let tau_ref = tensor2(b.tau_ref.clone(), n, 1, device).repeat_dim(1, kb);
    let bt = tensor2(b.branch_tau.clone(), n, kb, device);
    let rel = (heads.clone() - bt) / tau_ref.clone();
    let l_time = per_point(rel.powi_scalar(2) * mask.clone());
    let hinge = ((heads.clone() - tau_ref.clone()) / tau_ref)
        .neg()
        .add_scalar(s.branch_margin)
        .clamp_min(0.0);
    let l_hinge = per_point(hinge.powi_scalar(2) * absent);

    // dT_k/dc_j = dT0/dc_j head_k + T0 dhead_k/dc_j : [k n, K]
    let t0 = tensor2(b.t0.clone(), n, 1, device)
        .repeat_dim(0, k)
        .repeat_dim(1, kb);
    let dt0 = tensor2(b.dt0.clone(), k * n, 1, device).repeat_dim(1, kb);
    let dt = dt0 * heads.repeat_dim(0, k) + t0 * dheads;
    let dir = |j: usize| dt.clone().narrow(0, j * n, n);

    // every radial coordinate (r, z_source, z_receiver), each weighted by the velocity at
    // its end, so the error is relative to the local slowness
    let v_src = tensor2(b.v_src.clone(), n, 1, device).repeat_dim(1, kb);
    let v_rec = tensor2(b.v_rec.clone(), n, 1, device).repeat_dim(1, kb);
    let mut g_err = Tensor::<2>::zeros([n, kb], device);
    for j in 0..3 {
        let g_ref = tensor2(
            b.branch_grad[j * n * kb..(j + 1) * n * kb].to_vec(),
            n,
            kb,
            device,
        );
        let v = if j == 2 { v_rec.clone() } else { v_src.clone() };
        g_err = g_err + ((dir(j) - g_ref) * v).powi_scalar(2);
    }
    let l_grad = per_point(g_err * mask.clone()).div_scalar(3.0);

    let rec = rec_dirs(arch.inputs);
    let mut sq = Tensor::<2>::zeros([n, kb], device);
    for &j in rec {
        sq = sq + dir(j).powi_scalar(2);
    }
    let l_eik = per_point(((sq + 1e-12).sqrt() * v_rec - 1.0).powi_scalar(2) * mask);

    let total = l_time.clone().mul_scalar(s.w_time)
        + l_grad.clone().mul_scalar(s.w_grad)
        + l_eik.clone().mul_scalar(s.w_eikonal)
        + l_hinge.clone().mul_scalar(s.w_hinge);
    LossTerms {
        total,
        time: l_time,
        grad: l_grad,
        eikonal: l_eik,
        branch: l_hinge,
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Validates the current weights with the burn-free evaluator on fixed rows.
fn validate_now(
    cfg: &TrainConfig,
    inputs: &TrainInputs,
    vref: [f64; 2],
    nets: &[TauNet],
    rows: &[Row],
    truth: &[TimeAndGradient],
    seed: u64,
) -> Result<ValidationReport, TrainError> {
    let (manifest, flat) = export(cfg, inputs, vref, nets, None);
    let model = PinnModel::from_parts(std::path::Path::new(&cfg.name), manifest, &flat)?;
    let pred = model.eval_pairs(rows, true)?;
    Ok(summarize(
        &inputs.reference.name(),
        seed,
        rows,
        &pred,
        truth,
        cfg.bounds.max_distance_km,
    ))
}

/// Trains the nets of `cfg`; `on_progress` is called after every step.
pub fn train(
    cfg: &TrainConfig,
    inputs: &TrainInputs,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Trained, TrainError> {
    cfg.bounds.validate().map_err(TrainError::Config)?;
    let st = &cfg.settings;
    if cfg.phases.is_empty()
        || cfg.architecture.hidden.is_empty()
        || st.steps == 0
        || st.batch_size == 0
    {
        return Err(TrainError::Config(
            "need phases, hidden layers, steps > 0 and batch_size > 0".into(),
        ));
    }
    if cfg.architecture.activation != "elu" {
        return Err(TrainError::Config(format!(
            "activation {:?}: only elu is implemented",
            cfg.architecture.activation
        )));
    }
    let branches = if st.branch_heads {
        let Some(ex) = inputs.branches else {
            return Err(TrainError::Config(
                "branch heads need a layered velocity model".into(),
            ));
        };
        if cfg.architecture.inputs != InputKind::Radial1d {
            return Err(TrainError::Config(
                "branch heads are implemented for radial1d inputs only".into(),
            ));
        }
        let k = branch_count(ex);
        if cfg.architecture.heads != k {
            return Err(TrainError::Config(format!(
                "branch heads: {k} needed (one per layer of the {k}-layer model), the \
                 architecture has {}",
                cfg.architecture.heads
            )));
        }
        Some(ex)
    } else {
        None
    };
    let started = Instant::now();
    let device = Device::flex().autodiff();
    device.seed(st.seed);
    let widths = cfg.architecture.widths();
    let groups = net_groups(cfg);
    let mut nets: Vec<TauNet> = groups
        .iter()
        .map(|_| TauNet::new(&widths, &device))
        .collect();
    let mut optims: Vec<_> = groups
        .iter()
        .map(|_| AdamConfig::new().with_epsilon(1e-8).init())
        .collect();
    let vref = reference_velocities(inputs.velocity, &cfg.bounds);
    let sampler = Sampler {
        inputs: cfg.architecture.inputs,
        phase_mode: cfg.architecture.phase_mode,
        depth_kinks_km: cfg.architecture.depth_kinks_km.clone(),
        bounds: cfg.bounds,
        scaling: InputScaling::for_bounds(cfg.architecture.inputs, &cfg.bounds),
        background: crate::traveltime::AnalyticModel::new(
            fit_background(inputs.velocity, &cfg.bounds, st.gradient_background)
                .medium(vref)
                .map_err(TrainError::Config)?,
        ),
        interfaces_km: inputs.interfaces_km.clone(),
        frac_near_source: st.frac_near_source,
        frac_near_interface: st.frac_near_interface,
        reference: inputs.reference,
        velocity: inputs.velocity,
        branches,
        branch_window: st.branch_window,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(st.seed);
    let val_seed = st.seed.wrapping_add(0x5eed);
    let val_rows = sample_rows(
        cfg.architecture.inputs,
        &cfg.bounds,
        &cfg.phases,
        cfg.validation_points.max(1),
        val_seed,
    );
    let val_truth = reference_values(inputs.reference, &val_rows)?;

    let spe = st.steps_per_epoch.max(1);
    let total_steps = st.steps + st.lbfgs_iters;
    let mut pools: Vec<Vec<Batch>> = vec![Vec::new(); groups.len()];
    let mut curve = Vec::with_capacity(st.steps);
    let mut last_val: Option<ValidationReport> = None;
    for step in 1..=st.steps {
        let frac = (step - 1) as f64 / st.steps.max(2).saturating_sub(1) as f64;
        let lr = st.lr_start * (st.lr_end / st.lr_start).powf(frac);
        let mut rec = LossRecord::empty(step, lr);
        for (g, group) in groups.iter().enumerate() {
            if pools[g].is_empty() {
                // a new epoch: fresh collocation points for the next `spe` steps
                for i in 0..spe {
                    pools[g].push(sampler.sample(group, batch_at(st, step + i), &mut rng)?);
                }
                pools[g].reverse();
            }
            let batch = pools[g].pop().expect("pool refilled above");
            let terms = loss(&nets[g], &batch, &cfg.architecture, st, &device);
            let grads = terms.total.backward();
            rec.add(terms);
            let gp = GradientsParams::from_grads(grads, &nets[g]);
            nets[g] = optims[g].step(lr, nets[g].clone(), gp);
        }
        if !rec.loss.is_finite() {
            return Err(TrainError::Config(format!(
                "loss became {} at step {step}: lower lr_start",
                rec.loss
            )));
        }
        if (step == st.steps && st.lbfgs_iters == 0)
            || (cfg.validate_every > 0 && step % cfg.validate_every == 0)
        {
            let v = validate_now(cfg, inputs, vref, &nets, &val_rows, &val_truth, val_seed)?;
            for pe in &v.phases {
                rec.val_rmae[pe.phase.index()] = pe.rmae;
                rec.val_p99_s[pe.phase.index()] = pe.p99_abs_s;
            }
            last_val = Some(v);
        }
        if let Some(dir) = &cfg.checkpoint_dir {
            if cfg.checkpoint_every > 0 && (step % cfg.checkpoint_every == 0 || step == st.steps) {
                save_burnpacks(cfg, &nets, dir)?;
            }
        }
        rec.elapsed_s = started.elapsed().as_secs_f64();
        curve.push(rec);
        on_progress(&Progress {
            step,
            steps: total_steps,
            record: curve.last().expect("pushed"),
            validation: last_val.as_ref(),
        });
    }
    if st.lbfgs_iters > 0 {
        fine_tune(
            cfg,
            inputs,
            vref,
            &sampler,
            &mut nets,
            &mut rng,
            &device,
            (&val_rows, &val_truth, val_seed),
            started,
            &mut curve,
            &mut last_val,
            on_progress,
        )?;
    }
    let mut settings = st.clone();
    settings.wall_time_s = started.elapsed().as_secs_f64();
    let cfg_done = TrainConfig {
        settings,
        ..cfg.clone()
    };
    let (manifest, weights) = export(&cfg_done, inputs, vref, &nets, last_val);
    Ok(Trained {
        nets,
        manifest,
        weights,
        curve,
    })
}

/// The L-BFGS stage: rounds of at most `lbfgs_redraw` iterations per net, each on a fresh
/// fixed batch of `lbfgs_batch` points (memory reset between rounds), until `lbfgs_iters`
/// iterations are spent. One curve row per round; validation after every round.
#[allow(clippy::too_many_arguments)]
fn fine_tune(
    cfg: &TrainConfig,
    inputs: &TrainInputs,
    vref: [f64; 2],
    sampler: &Sampler,
    nets: &mut [TauNet],
    rng: &mut ChaCha8Rng,
    device: &Device,
    val: (&[Row], &[TimeAndGradient], u64),
    started: Instant,
    curve: &mut Vec<LossRecord>,
    last_val: &mut Option<ValidationReport>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<(), TrainError> {
    let st = &cfg.settings;
    let widths = cfg.architecture.widths();
    let groups = net_groups(cfg);
    let per_round = if st.lbfgs_redraw == 0 {
        st.lbfgs_iters
    } else {
        st.lbfgs_redraw.min(st.lbfgs_iters)
    };
    let batch_n = if st.lbfgs_batch == 0 {
        st.batch_size
    } else {
        st.lbfgs_batch
    };
    let total_steps = st.steps + st.lbfgs_iters;
    let mut done = 0;
    while done < st.lbfgs_iters {
        let iters = per_round.min(st.lbfgs_iters - done);
        let mut rec = LossRecord::empty(0, 0.0);
        let mut stalled = true;
        for (g, group) in groups.iter().enumerate() {
            let batch = adaptive_batch(sampler, &nets[g], group, batch_n, st, device, rng)?;
            let flat = super::lbfgs::flatten(&nets[g]);
            let (best, report) = super::lbfgs::lbfgs_round(
                &widths,
                flat,
                &batch,
                &cfg.architecture,
                st,
                device,
                iters,
                st.lbfgs_memory,
            )?;
            stalled &= report.iterations == 0;
            nets[g] = super::lbfgs::unflatten(&widths, &best, device)?;
            rec.add(loss(&nets[g], &batch, &cfg.architecture, st, device));
        }
        done += iters;
        rec.step = st.steps + done;
        if cfg.validate_every > 0 || done >= st.lbfgs_iters || stalled {
            let v = validate_now(cfg, inputs, vref, nets, val.0, val.1, val.2)?;
            for pe in &v.phases {
                rec.val_rmae[pe.phase.index()] = pe.rmae;
                rec.val_p99_s[pe.phase.index()] = pe.p99_abs_s;
            }
            *last_val = Some(v);
        }
        if let Some(dir) = &cfg.checkpoint_dir {
            if cfg.checkpoint_every > 0 {
                save_burnpacks(cfg, nets, dir)?;
            }
        }
        rec.elapsed_s = started.elapsed().as_secs_f64();
        curve.push(rec);
        on_progress(&Progress {
            step: rec.step,
            steps: total_steps,
            record: curve.last().expect("pushed"),
            validation: last_val.as_ref(),
        });
        if stalled {
            // every net's loss is flat to f32 precision on a fresh batch: more rounds cannot help
            break;
        }
    }
    Ok(())
}

/// A fixed L-BFGS batch of `n` points: `(1 - f) n` straight from the sampler and `f n`
/// chosen among `pool f n` more candidates by the current net's absolute traveltime error
/// (residual-based adaptive sampling, Wu et al. 2023: probability proportional to
/// |T - T_ref|^power, without replacement), so the next round works where the net is worst,
/// e.g. at the head-wave crossovers, while the sampler's share keeps the whole box covered.
pub fn adaptive_batch(
    sampler: &Sampler,
    net: &TauNet,
    phases: &[Phase],
    n: usize,
    st: &TrainingSettings,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> Result<Batch, TrainError> {
    use rand::Rng;
    let frac = st.lbfgs_adaptive_frac.clamp(0.0, 1.0);
    let n_sel = (frac * n as f64).round() as usize;
    if n_sel == 0 || st.lbfgs_adaptive_pool <= 1 {
        return sampler.sample(phases, n, rng);
    }
    let mut drawn = sampler.draw(phases, n - n_sel, rng)?;
    let cand = sampler.draw(phases, n_sel * st.lbfgs_adaptive_pool, rng)?;
    let cb = sampler.assemble(&cand)?;
    let tau = net
        .forward(tensor2(cb.x.clone(), cb.n, cb.d_in, device))
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Config(format!("net output: {e:?}")))?;
    // Efraimidis-Spirakis: the n_sel largest u^(1/w) are a weighted draw without replacement;
    // compared as ln(u) / w to stay finite for tiny weights
    let mut keys: Vec<(f64, usize)> = tau
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let err = (cb.t0[i] as f64 * (t as f64 - cb.tau_ref[i] as f64)).abs();
            let w = err.powf(st.lbfgs_adaptive_power).max(1e-300);
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (u.ln() / w, i)
        })
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0));
    let idx: Vec<usize> = keys.iter().take(n_sel).map(|k| k.1).collect();
    drawn.extend(cand.select(&idx));
    sampler.assemble(&drawn)
}

/// Writes each net's burnpack (`net-P.bpk`, `net-S.bpk` or `net.bpk`) into `dir`.
pub fn save_burnpacks(
    cfg: &TrainConfig,
    nets: &[TauNet],
    dir: &std::path::Path,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Io {
        file: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for (net, group) in nets.iter().zip(net_groups(cfg)) {
        let name = match cfg.architecture.phase_mode {
            PhaseMode::Separate => format!("net-{}.bpk", group[0]),
            PhaseMode::Input => "net.bpk".to_string(),
        };
        let file = dir.join(name);
        net.valid().save_file(&file).map_err(|e| TrainError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}
