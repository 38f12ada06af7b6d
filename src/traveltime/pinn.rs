//! Fast, burn-free evaluation of a trained eikonal network: T and dT/d(source) for N sources x
//! M receivers, the locator's hot path.
//!
//! The network learns tau in the factored traveltime T = T0 * tau with T0 = D / v_ref(phase),
//! D the straight source-receiver distance (km) and v_ref a per-phase reference velocity (km/s),
//! so the point-source singularity lives in T0 and tau is smooth and O(1).
//!
//! Artifact layout (`trained-models/NAME/`), written by `eikoloc train`:
//! - `manifest.json`: [`PinnManifest`] (architecture, input scaling, velocity model hash, box
//!   bounds, phases, training settings, validation errors, burn version, weight layout).
//! - `weights.f32`: every weight and bias as raw little-endian f32, concatenated; where each
//!   tensor starts (in f32 elements) and its shape are in the manifest's `nets[].layers[]`.
//!   Weight matrices are row-major `[d_in, d_out]` (burn's `Linear` layout), so a layer is
//!   `z = a W + b`.
//! - `net-P.bpk`, `net-S.bpk` or `net.bpk`: burn's own burnpack of the same weights, for
//!   reloading into the trainer (checkpoints, fine-tuning); the evaluator never reads them.
//!
//! Forward pass for a block of B rows: inputs `[B, d_in]` -> hidden ELU layers `[B, h]` ->
//! linear output `[B, 1]` (tau). dT/d(source) comes from one reverse-mode pass through the
//! same layers (about 2x a forward, against 4x for three forward tangents).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{check_finite, Receiver, TimeAndGradient, TraveltimeError, TraveltimeModel};
use crate::domain::{LocalPoint, Phase};

/// Version of the artifact layout this evaluator reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a trained model cannot be loaded or used.
#[derive(Debug, Error)]
pub enum PinnError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: invalid manifest: {message}")]
    Manifest { file: PathBuf, message: String },
    #[error("{file}: {message}")]
    Weights { file: PathBuf, message: String },
    #[error(
        "model {dir} was trained for velocity model {trained} but the config's velocity model hashes to {configured}: retrain it with `eikoloc train`"
    )]
    VelocityMismatch {
        dir: PathBuf,
        trained: String,
        configured: String,
    },
    #[error("model {dir} covers {trained} but the config needs {configured}: retrain it with `eikoloc train`")]
    BoundsMismatch {
        dir: PathBuf,
        trained: String,
        configured: String,
    },
}

/// What the network takes as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Cylindrical symmetry (1-D velocity): (horizontal distance km, source depth km, receiver depth km).
    Radial1d,
    /// Full 3-D: (source x, y, z, receiver x, y, z), km.
    Cartesian3d,
}

impl InputKind {
    /// Number of geometric coordinates fed to the network.
    pub fn n_coords(self) -> usize {
        match self {
            InputKind::Radial1d => 3,
            InputKind::Cartesian3d => 6,
        }
    }
    /// Index of the source depth among the coordinates.
    pub fn source_depth_index(self) -> usize {
        match self {
            InputKind::Radial1d => 1,
            InputKind::Cartesian3d => 2,
        }
    }
}

/// How P and S are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseMode {
    /// One network per phase.
    Separate,
    /// One network with an extra input: -1 for P, +1 for S.
    Input,
}

/// Network shape: inputs, hidden ELU layers, a linear output layer of `heads` heads
/// (tau = the smallest head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Input coordinates.
    pub inputs: InputKind,
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
    /// Activation of the hidden layers (only `elu` is implemented).
    pub activation: String,
    /// P and S as two nets or as an input.
    pub phase_mode: PhaseMode,
    /// Output heads K: tau = min_k(head_k), so each head can learn one smooth traveltime
    /// branch (direct, each head wave) and the min keeps the crossover kinks sharp. Absent in
    /// older manifests: 1.
    #[serde(default = "one_head")]
    pub heads: usize,
    /// Source-depth kink inputs: one input max(z_source - z_j, 0) / (source depth half
    /// width) per depth z_j (km, the velocity interfaces inside the source box), so that the
    /// net can represent the jump of dT/dz_source where a source crosses an interface, which
    /// smooth inputs only round. Empty (older manifests): none.
    #[serde(default)]
    pub depth_kinks_km: Vec<f64>,
}

fn one_head() -> usize {
    1
}

impl Architecture {
    /// Number of network inputs (coordinates, the phase input if any, the depth kinks).
    pub fn d_in(&self) -> usize {
        self.kink_offset() + self.depth_kinks_km.len()
    }
    /// Index of the first depth-kink input (after the coordinates and the phase input).
    pub fn kink_offset(&self) -> usize {
        self.inputs.n_coords() + usize::from(self.phase_mode == PhaseMode::Input)
    }
    /// Layer widths from input to output, e.g. `[3, 32, 32, 1]` (the last is `heads`).
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.d_in()];
        w.extend(&self.hidden);
        w.push(self.heads);
        w
    }
    /// Parameters of one network.
    pub fn n_params(&self) -> usize {
        self.widths().windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }
    /// Short label, e.g. `radial1d-32x4-separate`.
    pub fn label(&self) -> String {
        let kind = match self.inputs {
            InputKind::Radial1d => "radial1d",
            InputKind::Cartesian3d => "cartesian3d",
        };
        let mode = match self.phase_mode {
            PhaseMode::Separate => "separate",
            PhaseMode::Input => "phase-input",
        };
        let h = if self.hidden.iter().all(|&w| w == self.hidden[0]) {
            format!("{}x{}", self.hidden[0], self.hidden.len())
        } else {
            self.hidden
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("-")
        };
        let kinks = if self.depth_kinks_km.is_empty() {
            String::new()
        } else {
            format!("-kinks{}", self.depth_kinks_km.len())
        };
        if self.heads > 1 {
            format!("{kind}-{h}-min{}{kinks}-{mode}", self.heads)
        } else {
            format!("{kind}-{h}{kinks}-{mode}")
        }
    }
}

/// The region a model was trained for; queries outside it are refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelBounds {
    /// Largest horizontal source-receiver distance, km.
    pub max_distance_km: f64,
    /// Shallowest source depth below sea level, km.
    pub source_depth_min_km: f64,
    /// Deepest source depth, km.
    pub source_depth_max_km: f64,
    /// Highest receiver (minus its elevation), km below sea level.
    pub receiver_depth_min_km: f64,
    /// Lowest receiver, km below sea level.
    pub receiver_depth_max_km: f64,
}

impl ModelBounds {
    /// True when `self` contains `other` (with a 1 m tolerance).
    pub fn contains(&self, other: &ModelBounds) -> bool {
        let tol = 1e-3;
        other.max_distance_km <= self.max_distance_km + tol
            && other.source_depth_min_km >= self.source_depth_min_km - tol
            && other.source_depth_max_km <= self.source_depth_max_km + tol
            && other.receiver_depth_min_km >= self.receiver_depth_min_km - tol
            && other.receiver_depth_max_km <= self.receiver_depth_max_km + tol
    }
    /// Checks finite values and non-empty ranges.
    pub fn validate(&self) -> Result<(), String> {
        let v = [
            self.max_distance_km,
            self.source_depth_min_km,
            self.source_depth_max_km,
            self.receiver_depth_min_km,
            self.receiver_depth_max_km,
        ];
        if !v.iter().all(|x| x.is_finite()) {
            return Err("non-finite bound".into());
        }
        if self.max_distance_km <= 0.0
            || self.source_depth_max_km <= self.source_depth_min_km
            || self.receiver_depth_max_km < self.receiver_depth_min_km
        {
            return Err(format!("empty box: {self}"));
        }
        Ok(())
    }
    /// Source and receiver boxes of the 3-D architecture: x, y in [-h, h] with
    /// h = max_distance / (2 sqrt 2), so every pair is within `max_distance_km`.
    pub fn cartesian_half_width_km(&self) -> f64 {
        self.max_distance_km / (2.0 * std::f64::consts::SQRT_2)
    }
}

impl ModelBounds {
    /// The box a network must cover for a station configuration: distances up to the farthest
    /// station from any box corner (rounded up to 1 km), source depths over the box's z range,
    /// receiver depths over the stations' (rounded outward to 0.1 km).
    pub fn for_config(cfg: &crate::config::ResolvedStationConfig) -> Self {
        let zs: Vec<f64> = cfg.station_positions.iter().map(|p| p.z_km).collect();
        let zmin = zs.iter().copied().fold(f64::INFINITY, f64::min);
        let zmax = zs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (zmin, zmax) = if zmin.is_finite() {
            ((zmin * 10.0).floor() / 10.0, (zmax * 10.0).ceil() / 10.0)
        } else {
            (0.0, 0.0)
        };
        let zmax = if zmax <= zmin { zmin + 0.1 } else { zmax };
        Self {
            max_distance_km: cfg.max_source_receiver_distance_km().ceil().max(1.0),
            source_depth_min_km: cfg.model_box.z_min_km,
            source_depth_max_km: cfg.model_box.z_max_km,
            receiver_depth_min_km: zmin,
            receiver_depth_max_km: zmax,
        }
    }
}

impl std::fmt::Display for ModelBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "distance 0-{} km, source depth {}-{} km, receiver depth {}-{} km",
            self.max_distance_km,
            self.source_depth_min_km,
            self.source_depth_max_km,
            self.receiver_depth_min_km,
            self.receiver_depth_max_km
        )
    }
}

/// Affine map from coordinates (km) to network inputs: u = (c - center) / half_width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputScaling {
    /// Centre of each coordinate's range, km.
    pub center_km: Vec<f64>,
    /// Half width of each coordinate's range, km.
    pub half_width_km: Vec<f64>,
}

impl InputScaling {
    /// The scaling that maps `bounds` onto [-1, 1] for `inputs`.
    pub fn for_bounds(inputs: InputKind, b: &ModelBounds) -> Self {
        let mid = |a: f64, c: f64| (0.5 * (a + c), (0.5 * (c - a)).max(0.05));
        let zs = mid(b.source_depth_min_km, b.source_depth_max_km);
        let zr = mid(b.receiver_depth_min_km, b.receiver_depth_max_km);
        let (c, h): (Vec<f64>, Vec<f64>) = match inputs {
            InputKind::Radial1d => [mid(0.0, b.max_distance_km), zs, zr].into_iter().unzip(),
            InputKind::Cartesian3d => {
                let hw = b.cartesian_half_width_km();
                [(0.0, hw), (0.0, hw), zs, (0.0, hw), (0.0, hw), zr]
                    .into_iter()
                    .unzip()
            }
        };
        Self {
            center_km: c,
            half_width_km: h,
        }
    }
}

/// Where one dense layer's tensors lie in `weights.f32`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// Offset of the `[d_in, d_out]` row-major weight, in f32 elements.
    pub weight_offset: usize,
    /// Offset of the `[d_out]` bias, in f32 elements.
    pub bias_offset: usize,
}

/// One network of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// The phase this net serves; `None` for a shared net with a phase input.
    pub phase: Option<Phase>,
    /// Dense layers, input first; all but the last use the activation.
    pub layers: Vec<LayerSpec>,
    /// burn's burnpack file of the same weights (for reloading into the trainer).
    pub burnpack: Option<String>,
}

/// Velocity model identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VelocityInfo {
    /// Kind (`layered`, `gradient`).
    pub kind: String,
    /// [`crate::velocity::VelocityModel::content_hash`].
    pub hash: String,
    /// The layers, when the model is 1-D layered (so `model check` can rebuild the exact reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layered: Option<crate::velocity::LayeredModel>,
    /// The parameters, when the model is a constant gradient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient: Option<crate::velocity::GradientModel>,
}

impl VelocityInfo {
    /// Identity of a layered model.
    pub fn layered(m: &crate::velocity::LayeredModel) -> Self {
        use crate::velocity::VelocityModel;
        Self {
            kind: "layered".into(),
            hash: m.content_hash(),
            layered: Some(m.clone()),
            gradient: None,
        }
    }
    /// Identity of a constant-gradient model.
    pub fn gradient(m: &crate::velocity::GradientModel) -> Self {
        use crate::velocity::VelocityModel;
        Self {
            kind: "gradient".into(),
            hash: m.content_hash(),
            layered: None,
            gradient: Some(*m),
        }
    }
}

/// Settings a model was trained with (kept with the weights so a model travels with what built it).
/// `Default` is all zeros: for artifacts written by hand (tests, benchmarks), not for training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingSettings {
    /// Optimiser steps (per net).
    pub steps: usize,
    /// Collocation points per step.
    pub batch_size: usize,
    /// Random seed.
    pub seed: u64,
    /// Initial Adam learning rate.
    pub lr_start: f64,
    /// Final learning rate (exponential decay in between).
    pub lr_end: f64,
    /// Weight of the supervised traveltime term (relative error squared).
    pub w_time: f64,
    /// Weight of the supervised source-gradient term (relative slowness error squared).
    pub w_grad: f64,
    /// Weight of the eikonal residual at the receiver (relative slowness error squared).
    pub w_eikonal: f64,
    /// Fraction of collocation points drawn near the source.
    pub frac_near_source: f64,
    /// Fraction of source depths drawn near velocity discontinuities.
    pub frac_near_interface: f64,
    /// Collocation points are redrawn every this many steps (an epoch).
    pub steps_per_epoch: usize,
    /// T0 from the least-squares constant-gradient fit of the velocity model instead of
    /// straight rays at v_ref.
    #[serde(default)]
    pub gradient_background: bool,
    /// Adam batch at the last step: the batch grows geometrically from `batch_size` to this
    /// over the run (0 or <= `batch_size`: constant batch). Older manifests read as 0.
    #[serde(default)]
    pub batch_size_end: usize,
    /// L-BFGS iterations after Adam, per net (0: no L-BFGS stage; older manifests read as 0).
    #[serde(default)]
    pub lbfgs_iters: usize,
    /// Collocation points of each fixed L-BFGS batch.
    #[serde(default)]
    pub lbfgs_batch: usize,
    /// L-BFGS iterations per batch: then a fresh batch is drawn and the memory reset.
    #[serde(default)]
    pub lbfgs_redraw: usize,
    /// L-BFGS history length (pairs of parameter and gradient differences).
    #[serde(default)]
    pub lbfgs_memory: usize,
    /// Fraction of each L-BFGS batch chosen by the current net's error (residual-based
    /// adaptive sampling; 0: every point from the sampler; older manifests read as 0).
    #[serde(default)]
    pub lbfgs_adaptive_frac: f64,
    /// Candidates drawn per adaptively chosen point.
    #[serde(default)]
    pub lbfgs_adaptive_pool: usize,
    /// Candidates are chosen with probability proportional to |T - T_ref|^power.
    #[serde(default)]
    pub lbfgs_adaptive_power: f64,
    /// Power p of the supervised time term: (mean |relative error|^p)^(2/p); 2 (or 0, older
    /// manifests) is the mean square, a larger p weighs the tail (the p99) more. Branch heads
    /// use the mean square.
    #[serde(default)]
    pub time_loss_power: f64,
    /// Branch heads (older manifests read as off): head j is fitted to the paths whose deepest
    /// layer is j (the head wave along its top, the direct ray from inside it; time, source
    /// gradient and eikonal residual of each head) wherever such a path exists near the first
    /// arrival, and kept above the first arrival elsewhere, so tau = min(heads) has the
    /// crossovers' kinks of the layered solution instead of rounding them.
    #[serde(default)]
    pub branch_heads: bool,
    /// Weight of the hinge that keeps a head above the first arrival where its path does not
    /// exist (branch heads only).
    #[serde(default)]
    pub w_hinge: f64,
    /// Relative margin of that hinge.
    #[serde(default)]
    pub branch_margin: f64,
    /// A head is fitted to its path only where that path is within this fraction of the
    /// first arrival; where it is later, only the hinge applies (capacity goes where the
    /// min can pick the head).
    #[serde(default)]
    pub branch_window: f64,
    /// Wall-clock training time, s (filled in after training).
    #[serde(default)]
    pub wall_time_s: f64,
}

/// Errors on one phase against the reference solver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseErrors {
    /// Phase.
    pub phase: Phase,
    /// Points compared.
    pub n: usize,
    /// Relative mean absolute error: mean(|T - T_ref| / T_ref), dimensionless.
    pub rmae: f64,
    /// Mean absolute error, s.
    pub mae_s: f64,
    /// Median absolute error, s.
    pub median_abs_s: f64,
    /// 99th percentile absolute error, s.
    pub p99_abs_s: f64,
    /// Largest absolute error, s.
    pub max_abs_s: f64,
    /// Median relative error of |dT/d source| against the reference, dimensionless.
    pub grad_median_rel: f64,
    /// (upper edge km, mean abs error s, p99 abs error s) per epicentral distance bin.
    pub by_distance: Vec<DistanceBin>,
}

/// Errors in one epicentral distance bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistanceBin {
    /// Lower edge, km.
    pub from_km: f64,
    /// Upper edge, km.
    pub to_km: f64,
    /// Points in the bin.
    pub n: usize,
    /// Mean absolute error, s.
    pub mae_s: f64,
    /// 99th percentile absolute error, s.
    pub p99_abs_s: f64,
}

/// Validation of a model against a reference solver over its whole box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Name of the reference (e.g. `exact-1d`).
    pub reference: String,
    /// Seed of the validation set.
    pub seed: u64,
    /// Per-phase errors.
    pub phases: Vec<PhaseErrors>,
}

/// The closed-form traveltime T0 that the network's tau multiplies (T = T0 tau).
///
/// A background closer to the true traveltimes leaves tau with less to describe (refraction
/// towards faster depths is in T0 already). `eikoloc train --background straight|gradient`
/// trains either way, so the two can be compared with `eikoloc model check`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Background {
    /// T0 = D / v_ref (straight rays, `reference_velocity_km_s`).
    #[default]
    Straight,
    /// T0 of the medium v(z) = v0 + k (z - z0) per phase (P, S): circular rays, closed form.
    Gradient {
        /// Reference depth z0, km.
        z0_km: f64,
        /// Velocity at z0 per phase (P, S), km/s.
        v0_km_s: [f64; 2],
        /// Vertical gradient k per phase (P, S), 1/s.
        gradient_per_s: [f64; 2],
    },
}

impl Background {
    /// The background medium as a gradient model (straight rays: no gradient, v_ref).
    pub fn medium(&self, vref_km_s: [f64; 2]) -> Result<crate::velocity::GradientModel, String> {
        let r = match *self {
            Background::Straight => {
                crate::velocity::GradientModel::new(0.0, vref_km_s[0], vref_km_s[1], 0.0, 0.0)
            }
            Background::Gradient {
                z0_km,
                v0_km_s,
                gradient_per_s,
            } => crate::velocity::GradientModel::new(
                z0_km,
                v0_km_s[0],
                v0_km_s[1],
                gradient_per_s[0],
                gradient_per_s[1],
            ),
        };
        r.map_err(|e| format!("background T0 medium: {e}"))
    }

    /// Checks that the background velocity stays positive over a depth range, km.
    pub fn check_positive(&self, z_min_km: f64, z_max_km: f64) -> Result<(), String> {
        if let Background::Gradient {
            z0_km,
            v0_km_s,
            gradient_per_s,
        } = *self
        {
            for i in 0..2 {
                for z in [z_min_km, z_max_km] {
                    let v = v0_km_s[i] + gradient_per_s[i] * (z - z0_km);
                    if !(v.is_finite() && v > 0.0) {
                        return Err(format!(
                            "background velocity {v} km/s at depth {z} km is not positive"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Everything about a trained model but its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnManifest {
    /// Artifact layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Model name (the artifact folder name).
    pub name: String,
    /// Network shape.
    pub architecture: Architecture,
    /// Map from coordinates to network inputs.
    pub scaling: InputScaling,
    /// v_ref in T0 = D / v_ref, per phase (P, S), km/s (used by [`Background::Straight`]).
    pub reference_velocity_km_s: [f64; 2],
    /// The closed-form T0 (absent in older manifests: straight rays).
    #[serde(default)]
    pub background: Background,
    /// Velocity model the net was trained for.
    pub velocity: VelocityInfo,
    /// Box the net was trained on.
    pub bounds: ModelBounds,
    /// Phases served.
    pub phases: Vec<Phase>,
    /// Training settings.
    pub training: TrainingSettings,
    /// Validation against the reference at the end of training.
    pub validation: Option<ValidationReport>,
    /// burn version used for training.
    pub burn_version: String,
    /// Weight file name (raw little-endian f32).
    pub weights_file: String,
    /// The networks and where their weights lie.
    pub nets: Vec<NetSpec>,
}

/// One dense layer in memory: `z = a W + b`, W row-major `[d_in, d_out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// Row-major `[d_in, d_out]`.
    pub weight: Vec<f32>,
    /// `[d_out]`.
    pub bias: Vec<f32>,
}

/// An MLP: ELU on every layer but the last; the output is the smallest of the last layer's
/// outputs (one or more heads).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNet {
    /// Layers, input first.
    pub layers: Vec<DenseLayer>,
}

/// Scratch buffers for one block of rows, reused across blocks (one per thread).
#[derive(Default)]
struct Workspace {
    /// Per hidden layer: activations `[B, h]`.
    act: Vec<Vec<f32>>,
    /// Per hidden layer: activation derivative `[B, h]` (exp(min(z, 0)) for ELU).
    dact: Vec<Vec<f32>>,
    /// One layer's weight transposed, `[d_out, d_in]`, for the reverse pass.
    wt: Vec<f32>,
    g: Vec<f32>,
    g2: Vec<f32>,
    x: Vec<f32>,
    /// Output heads `[B, K]`; after the forward pass its first B entries are tau.
    out: Vec<f32>,
    /// Winning head per row (K > 1).
    arg: Vec<u32>,
}

thread_local! {
    /// Each thread keeps its scratch, so a batch allocates nothing once warm.
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

/// e^x for x <= 0, branch-free so the loop vectorises; relative error < 2e-7.
#[inline(always)]
fn exp_nonpos(x: f32) -> f32 {
    let x = x.max(-87.0);
    // round-to-nearest by the 1.5 * 2^23 trick (no SSE4.1 round instruction needed)
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // t's low mantissa bits hold n (-126 <= n <= 0) as an offset from 0x4B40_0000; taking it
    // from the bits instead of `n as i32` (a saturating scalar conversion per lane) keeps the
    // loop in vector registers
    let biased = t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// ELU in place: `z` becomes elu(z); `d` receives elu'(z) = exp(min(z, 0)).
#[inline(always)]
fn elu_inplace(z: &mut [f32], d: &mut [f32]) {
    for (zi, di) in z.iter_mut().zip(d.iter_mut()) {
        let e = exp_nonpos(zi.min(0.0));
        *di = e;
        *zi = if *zi > 0.0 { *zi } else { e - 1.0 };
    }
}

/// a b + c, fused where the CPU has FMA.
#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Output columns per register tile of [`matmul_acc`] (two 8-lane vectors).
const TILE_N: usize = 16;

/// `out[r, j] += sum_k a[r, k] w[k, j]` for a `[rows, k]`, w `[k, n]`, out `[rows, n]`, all
/// row-major; `w_t` is w transposed (`[n, k]`), used for the columns past the last multiple
/// of [`TILE_N`] (the one-column output layer, the three-column input gradient) as 8-lane dot
/// products, where a scalar sum would be one long chain of dependent multiply-adds. Layers are
/// narrow (n = 16-128, k = 3-128) and w stays in L1, so a register tile of R rows x 16
/// columns with no packing beats a general sgemm (which packs both operands on every call).
#[inline(always)]
fn matmul_acc<const FMA: bool>(
    rows: usize,
    k: usize,
    n: usize,
    a: &[f32],
    w: &[f32],
    w_t: &[f32],
    out: &mut [f32],
) {
    assert!(a.len() >= rows * k && w.len() >= k * n && w_t.len() >= k * n);
    assert!(out.len() >= rows * n);
    let nt = n - n % TILE_N;
    let mut r0 = 0;
    while r0 + 4 <= rows {
        tile_rows::<4, FMA>(r0, k, n, nt, a, w, out);
        r0 += 4;
    }
    while r0 < rows {
        tile_rows::<1, FMA>(r0, k, n, nt, a, w, out);
        r0 += 1;
    }
    if nt < n {
        let k8 = k - k % 8;
        for r in 0..rows {
            let ar = &a[r * k..(r + 1) * k];
            for j in nt..n {
                let wj = &w_t[j * k..(j + 1) * k];
                let mut acc = [0.0f32; 8];
                for (ac, wc) in ar[..k8].chunks_exact(8).zip(wj[..k8].chunks_exact(8)) {
                    for l in 0..8 {
                        acc[l] = fmadd::<FMA>(ac[l], wc[l], acc[l]);
                    }
                }
                let mut s = out[r * n + j] + acc.iter().sum::<f32>();
                for kk in k8..k {
                    s = fmadd::<FMA>(ar[kk], wj[kk], s);
                }
                out[r * n + j] = s;
            }
        }
    }
}

/// `t` `[n, k]` = `w` `[k, n]` transposed.
fn transpose_into(w: &[f32], k: usize, n: usize, t: &mut Vec<f32>) {
    t.resize(k * n, 0.0);
    for i in 0..k {
        for j in 0..n {
            t[j * k + i] = w[i * n + j];
        }
    }
}

/// Rows `r0 .. r0 + R`, columns `0 .. nt` (a multiple of [`TILE_N`]) of [`matmul_acc`].
#[inline(always)]
fn tile_rows<const R: usize, const FMA: bool>(
    r0: usize,
    k: usize,
    n: usize,
    nt: usize,
    a: &[f32],
    w: &[f32],
    out: &mut [f32],
) {
    let arows: [&[f32]; R] = std::array::from_fn(|rr| &a[(r0 + rr) * k..(r0 + rr + 1) * k]);
    for j0 in (0..nt).step_by(TILE_N) {
        let mut acc = [[0.0f32; TILE_N]; R];
        for (rr, accr) in acc.iter_mut().enumerate() {
            let o = (r0 + rr) * n + j0;
            accr.copy_from_slice(&out[o..o + TILE_N]);
        }
        for kk in 0..k {
            let wr: &[f32; TILE_N] = w[kk * n + j0..kk * n + j0 + TILE_N]
                .try_into()
                .expect("tile width");
            for (accr, ar) in acc.iter_mut().zip(&arows) {
                let av = ar[kk];
                for (c, wj) in accr.iter_mut().zip(wr) {
                    *c = fmadd::<FMA>(av, *wj, *c);
                }
            }
        }
        for (rr, accr) in acc.iter().enumerate() {
            let o = (r0 + rr) * n + j0;
            out[o..o + TILE_N].copy_from_slice(accr);
        }
    }
}

impl DenseNet {
    /// Input width.
    pub fn d_in(&self) -> usize {
        self.layers[0].d_in
    }

    /// Raw outputs (tau) for `n` rows of inputs `x` `[n, d_in]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut ws = Workspace {
            x: x.to_vec(),
            ..Default::default()
        };
        self.forward_block(&mut ws, n, false);
        ws.out[..n].to_vec()
    }

    /// Outputs and d(out)/d(input) `[n, d_in]` for `n` rows of `x`.
    pub fn forward_with_input_grad(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut ws = Workspace {
            x: x.to_vec(),
            ..Default::default()
        };
        self.forward_block(&mut ws, n, true);
        (ws.out[..n].to_vec(), ws.g[..n * self.d_in()].to_vec())
    }

    /// Runs `b` rows in `ws.x`; leaves tau in `ws.out` and, if `grad`, dtau/du `[b, d_in]` in
    /// `ws.g`. Runs the AVX2 + FMA build of the kernels where the CPU has them.
    fn forward_block(&self, ws: &mut Workspace, b: usize, grad: bool) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { self.forward_block_avx2(ws, b, grad) };
            return;
        }
        self.forward_block_impl::<false>(ws, b, grad);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_block_avx2(&self, ws: &mut Workspace, b: usize, grad: bool) {
        self.forward_block_impl::<true>(ws, b, grad);
    }

    #[inline(always)]
    fn forward_block_impl<const FMA: bool>(&self, ws: &mut Workspace, b: usize, grad: bool) {
        let nl = self.layers.len();
        ws.act.resize_with(nl - 1, Vec::new);
        ws.dact.resize_with(nl - 1, Vec::new);
        // forward: [b, d_in] -> [b, h1] -> ... -> [b, K]
        for (l, layer) in self.layers.iter().enumerate() {
            let (input, dst): (&[f32], &mut Vec<f32>) = if l == 0 {
                (&ws.x, if nl == 1 { &mut ws.out } else { &mut ws.act[0] })
            } else if l + 1 == nl {
                (&ws.act[l - 1], &mut ws.out)
            } else {
                let (lo, hi) = ws.act.split_at_mut(l);
                (&lo[l - 1], &mut hi[0])
            };
            let len = b * layer.d_out;
            dst.resize(len, 0.0);
            for row in dst[..len].chunks_exact_mut(layer.d_out) {
                row.copy_from_slice(&layer.bias);
            }
            // only the columns past the last full tile read the transpose
            if layer.d_out % TILE_N != 0 {
                transpose_into(&layer.weight, layer.d_in, layer.d_out, &mut ws.wt);
            }
            matmul_acc::<FMA>(
                b,
                layer.d_in,
                layer.d_out,
                &input[..b * layer.d_in],
                &layer.weight,
                if layer.d_out % TILE_N != 0 {
                    &ws.wt
                } else {
                    &layer.weight
                },
                &mut dst[..len],
            );
            if l + 1 < nl {
                let d = &mut ws.dact[l];
                d.resize(len, 0.0);
                elu_inplace(&mut ws.act[l][..len], &mut d[..len]);
            }
        }
        let last = &self.layers[nl - 1];
        let heads = last.d_out;
        if heads > 1 {
            // tau = the smallest head; row i's heads start at i * heads >= i, so the min can be
            // written in place once the row is read
            ws.arg.resize(b, 0);
            for i in 0..b {
                let row = &ws.out[i * heads..(i + 1) * heads];
                let (mut best, mut v) = (0, row[0]);
                for (j, &h) in row.iter().enumerate().skip(1) {
                    if h < v {
                        best = j;
                        v = h;
                    }
                }
                ws.arg[i] = best as u32;
                ws.out[i] = v;
            }
        }
        if !grad {
            return;
        }
        // reverse: g = d tau / d a_l, starting from the winning head's output weight column
        ws.g.resize(b * last.d_in, 0.0);
        if heads == 1 {
            for row in ws.g.chunks_exact_mut(last.d_in) {
                row.copy_from_slice(&last.weight);
            }
        } else {
            for (i, row) in ws.g.chunks_exact_mut(last.d_in).enumerate() {
                let j = ws.arg[i] as usize;
                for (r, gr) in row.iter_mut().enumerate() {
                    *gr = last.weight[r * heads + j];
                }
            }
        }
        for l in (0..nl - 1).rev() {
            let layer = &self.layers[l];
            let (di, dout) = (layer.d_in, layer.d_out);
            for (gi, dv) in ws.g[..b * dout].iter_mut().zip(&ws.dact[l][..b * dout]) {
                *gi *= dv;
            }
            // d tau / d a_{l-1} = g W_l^T : [b, d_out] x [d_out, d_in]; the transpose is
            // d_in x d_out copies per block against b x d_in x d_out multiply-adds
            transpose_into(&layer.weight, di, dout, &mut ws.wt);
            ws.g2.clear();
            ws.g2.resize(b * di, 0.0);
            matmul_acc::<FMA>(
                b,
                dout,
                di,
                &ws.g[..b * dout],
                &ws.wt,
                &layer.weight,
                &mut ws.g2,
            );
            std::mem::swap(&mut ws.g, &mut ws.g2);
        }
    }
}

/// A trained traveltime network, loaded from its artifact folder; burn-free.
#[derive(Debug, Clone)]
pub struct PinnModel {
    dir: PathBuf,
    manifest: PinnManifest,
    /// Indexed by phase (P, S); both point at the same net in phase-input mode.
    net_of_phase: [Option<usize>; 2],
    nets: Vec<DenseNet>,
    /// T0 and its source gradient (closed form, f64).
    background: super::AnalyticModel,
}

/// Rows per block: big enough for sgemm to run near peak, small enough to stay in L2.
const BLOCK_ROWS: usize = 256;

impl PinnModel {
    /// Loads `dir/manifest.json` and its weight file.
    pub fn load(dir: &Path) -> Result<Self, PinnError> {
        let mpath = dir.join("manifest.json");
        let text = std::fs::read_to_string(&mpath).map_err(|source| PinnError::Io {
            file: mpath.clone(),
            source,
        })?;
        let manifest: PinnManifest =
            serde_json::from_str(&text).map_err(|e| PinnError::Manifest {
                file: mpath.clone(),
                message: e.to_string(),
            })?;
        let wpath = dir.join(&manifest.weights_file);
        let bytes = std::fs::read(&wpath).map_err(|source| PinnError::Io {
            file: wpath.clone(),
            source,
        })?;
        if bytes.len() % 4 != 0 {
            return Err(PinnError::Weights {
                file: wpath,
                message: format!("length {} is not a multiple of 4", bytes.len()),
            });
        }
        let flat: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Self::from_parts(dir, manifest, &flat).map_err(|e| match e {
            PinnError::Manifest { message, .. } => PinnError::Manifest {
                file: mpath,
                message,
            },
            PinnError::Weights { message, .. } => PinnError::Weights {
                file: wpath,
                message,
            },
            other => other,
        })
    }

    /// Builds a model from a manifest and the flat weight vector it describes (the trainer's
    /// in-memory path; `dir` is only used in messages).
    pub fn from_parts(dir: &Path, manifest: PinnManifest, flat: &[f32]) -> Result<Self, PinnError> {
        let merr = |message: String| PinnError::Manifest {
            file: dir.join("manifest.json"),
            message,
        };
        if manifest.format_version != FORMAT_VERSION {
            return Err(merr(format!(
                "format_version {} (this build reads {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        if manifest.architecture.heads == 0 || manifest.architecture.heads > 64 {
            return Err(merr(format!(
                "heads {}: expected 1 to 64",
                manifest.architecture.heads
            )));
        }
        if manifest.architecture.activation != "elu" {
            return Err(merr(format!(
                "activation {:?} is not implemented (only elu)",
                manifest.architecture.activation
            )));
        }
        let kinks = &manifest.architecture.depth_kinks_km;
        if kinks.len() > 64 || kinks.iter().any(|z| !z.is_finite()) {
            return Err(merr(format!(
                "depth_kinks_km: expected at most 64 finite depths, got {kinks:?}"
            )));
        }
        manifest
            .bounds
            .validate()
            .map_err(|m| merr(format!("bounds: {m}")))?;
        let nc = manifest.architecture.inputs.n_coords();
        if manifest.scaling.center_km.len() != nc || manifest.scaling.half_width_km.len() != nc {
            return Err(merr(format!("scaling needs {nc} centres and half widths")));
        }
        if manifest
            .scaling
            .half_width_km
            .iter()
            .any(|h| !(h.is_finite() && *h > 0.0))
        {
            return Err(merr("scaling half widths must be positive".into()));
        }
        if manifest
            .reference_velocity_km_s
            .iter()
            .any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(merr("reference velocities must be positive".into()));
        }
        let b = &manifest.bounds;
        let background = manifest
            .background
            .medium(manifest.reference_velocity_km_s)
            .and_then(|m| {
                manifest
                    .background
                    .check_positive(
                        b.receiver_depth_min_km.min(b.source_depth_min_km),
                        b.receiver_depth_max_km.max(b.source_depth_max_km),
                    )
                    .map(|()| super::AnalyticModel::new(m))
            })
            .map_err(merr)?;
        let widths = manifest.architecture.widths();
        let mut nets = Vec::new();
        let mut net_of_phase = [None, None];
        for (k, spec) in manifest.nets.iter().enumerate() {
            match (manifest.architecture.phase_mode, spec.phase) {
                (PhaseMode::Separate, Some(p)) => net_of_phase[p.index()] = Some(k),
                (PhaseMode::Input, None) => net_of_phase = [Some(k), Some(k)],
                _ => {
                    return Err(merr(format!(
                        "net {k}: phase {:?} does not fit phase_mode {:?}",
                        spec.phase, manifest.architecture.phase_mode
                    )))
                }
            }
            if spec.layers.len() + 1 != widths.len() {
                return Err(merr(format!(
                    "net {k}: {} layers, architecture has {}",
                    spec.layers.len(),
                    widths.len() - 1
                )));
            }
            let mut layers = Vec::new();
            for (l, ls) in spec.layers.iter().enumerate() {
                if ls.d_in != widths[l] || ls.d_out != widths[l + 1] {
                    return Err(merr(format!(
                        "net {k} layer {l}: shape [{}, {}] but architecture says [{}, {}]",
                        ls.d_in,
                        ls.d_out,
                        widths[l],
                        widths[l + 1]
                    )));
                }
                let take = |off: usize, len: usize| {
                    flat.get(off..off + len)
                        .map(|s| s.to_vec())
                        .ok_or_else(|| PinnError::Weights {
                            file: dir.join(&manifest.weights_file),
                            message: format!(
                                "net {k} layer {l}: elements {off}..{} beyond the file's {}",
                                off + len,
                                flat.len()
                            ),
                        })
                };
                let weight = take(ls.weight_offset, ls.d_in * ls.d_out)?;
                let bias = take(ls.bias_offset, ls.d_out)?;
                if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
                    return Err(PinnError::Weights {
                        file: dir.join(&manifest.weights_file),
                        message: format!("net {k} layer {l}: non-finite weight"),
                    });
                }
                layers.push(DenseLayer {
                    d_in: ls.d_in,
                    d_out: ls.d_out,
                    weight,
                    bias,
                });
            }
            nets.push(DenseNet { layers });
        }
        for p in &manifest.phases {
            if net_of_phase[p.index()].is_none() {
                return Err(merr(format!("phase {p} is listed but has no net")));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            net_of_phase,
            nets,
            background,
        })
    }

    /// The folder the model was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &PinnManifest {
        &self.manifest
    }

    /// The network serving `phase`, if any.
    pub fn net(&self, phase: Phase) -> Option<&DenseNet> {
        self.net_of_phase[phase.index()].map(|k| &self.nets[k])
    }

    /// Box the model was trained on.
    pub fn bounds(&self) -> &ModelBounds {
        &self.manifest.bounds
    }

    /// Refuses a model trained for another velocity model or a smaller box than the config needs.
    pub fn check_compatible(
        &self,
        velocity_hash: &str,
        bounds: &ModelBounds,
    ) -> Result<(), PinnError> {
        if self.manifest.velocity.hash != velocity_hash {
            return Err(PinnError::VelocityMismatch {
                dir: self.dir.clone(),
                trained: self.manifest.velocity.hash.clone(),
                configured: velocity_hash.to_string(),
            });
        }
        if !self.manifest.bounds.contains(bounds) {
            return Err(PinnError::BoundsMismatch {
                dir: self.dir.clone(),
                trained: self.manifest.bounds.to_string(),
                configured: bounds.to_string(),
            });
        }
        Ok(())
    }

    /// Network inputs for one row (coordinates scaled, phase input appended); also returns
    /// the geometric coordinates.
    pub fn features(&self, phase: Phase, s: &LocalPoint, r: &LocalPoint, u: &mut [f32]) {
        let a = &self.manifest.architecture;
        let sc = &self.manifest.scaling;
        let coords: [f64; 6];
        let c: &[f64] = match a.inputs {
            InputKind::Radial1d => {
                let (dx, dy) = (s.x_km - r.x_km, s.y_km - r.y_km);
                // sqrt of the sum of squares, not hypot (a libm call): no overflow at km scales
                coords = [(dx * dx + dy * dy).sqrt(), s.z_km, r.z_km, 0.0, 0.0, 0.0];
                &coords[..3]
            }
            InputKind::Cartesian3d => {
                coords = [s.x_km, s.y_km, s.z_km, r.x_km, r.y_km, r.z_km];
                &coords
            }
        };
        for (k, ck) in c.iter().enumerate() {
            u[k] = ((ck - sc.center_km[k]) / sc.half_width_km[k]) as f32;
        }
        if a.phase_mode == PhaseMode::Input {
            u[c.len()] = if phase == Phase::P { -1.0 } else { 1.0 };
        }
        if !a.depth_kinks_km.is_empty() {
            let zi = a.inputs.source_depth_index();
            let inv = 1.0 / sc.half_width_km[zi];
            let off = a.kink_offset();
            for (j, zk) in a.depth_kinks_km.iter().enumerate() {
                u[off + j] = ((s.z_km - zk).max(0.0) * inv) as f32;
            }
        }
    }

    fn check_inside(&self, s: &LocalPoint, r: &LocalPoint) -> Result<(), TraveltimeError> {
        check_finite(s)?;
        check_finite(r)?;
        let b = &self.manifest.bounds;
        let tol = 1e-6;
        let horiz_ok = match self.manifest.architecture.inputs {
            InputKind::Radial1d => s.horizontal_distance_km(r) <= b.max_distance_km + tol,
            InputKind::Cartesian3d => {
                let h = b.cartesian_half_width_km() + tol;
                s.x_km.abs() <= h && s.y_km.abs() <= h
            }
        };
        if !horiz_ok || s.z_km < b.source_depth_min_km - tol || s.z_km > b.source_depth_max_km + tol
        {
            return Err(TraveltimeError::OutsideModel {
                what: "source",
                x_km: s.x_km,
                y_km: s.y_km,
                z_km: s.z_km,
            });
        }
        let rec_h_ok = match self.manifest.architecture.inputs {
            InputKind::Radial1d => true,
            InputKind::Cartesian3d => {
                let h = b.cartesian_half_width_km() + tol;
                r.x_km.abs() <= h && r.y_km.abs() <= h
            }
        };
        if !rec_h_ok
            || r.z_km < b.receiver_depth_min_km - tol
            || r.z_km > b.receiver_depth_max_km + tol
        {
            return Err(TraveltimeError::OutsideModel {
                what: "receiver",
                x_km: r.x_km,
                y_km: r.y_km,
                z_km: r.z_km,
            });
        }
        Ok(())
    }

    /// Evaluates `b` rows with net `k` in one block: `row(i)` gives row i, `put(i, value)`
    /// receives its result.
    fn eval_block(
        &self,
        k: usize,
        ws: &mut Workspace,
        grad: bool,
        b: usize,
        row: impl Fn(usize) -> (Phase, LocalPoint, LocalPoint),
        mut put: impl FnMut(usize, TimeAndGradient),
    ) {
        let net = &self.nets[k];
        let d_in = net.d_in();
        let a = &self.manifest.architecture;
        let sc = &self.manifest.scaling;
        ws.x.resize(b * d_in, 0.0);
        for i in 0..b {
            let (p, s, r) = row(i);
            self.features(p, &s, &r, &mut ws.x[i * d_in..(i + 1) * d_in]);
        }
        net.forward_block(ws, b, grad);
        let inv_hw = [
            1.0 / sc.half_width_km[0],
            1.0 / sc.half_width_km[1],
            1.0 / sc.half_width_km[2],
        ];
        for i in 0..b {
            let (p, s, r) = row(i);
            let tau = ws.out[i] as f64;
            let d = [s.x_km - r.x_km, s.y_km - r.y_km, s.z_km - r.z_km];
            // the box was checked, and the loader checked the background velocity is positive
            // over it, so the unchecked closed form applies
            let (v0, kz, z0) = self.background.params(p);
            let bg = super::AnalyticModel::eval_core(
                d,
                v0 + kz * (s.z_km - z0),
                v0 + kz * (r.z_km - z0),
                kz,
            );
            let t0 = bg.t_s;
            let mut g = [0.0; 3];
            if grad {
                let gu = &ws.g[i * d_in..(i + 1) * d_in];
                // dT/ds = dT0/ds tau + T0 dtau/ds
                for (gc, b) in g.iter_mut().zip(bg.grad_s_per_km) {
                    *gc = b * tau;
                }
                match a.inputs {
                    InputKind::Radial1d => {
                        let rh = (d[0] * d[0] + d[1] * d[1]).sqrt();
                        let dtau_dr = gu[0] as f64 * inv_hw[0];
                        if rh > 1e-9 {
                            let c = t0 * dtau_dr / rh;
                            g[0] += c * d[0];
                            g[1] += c * d[1];
                        }
                        g[2] += t0 * gu[1] as f64 * inv_hw[1];
                    }
                    InputKind::Cartesian3d => {
                        for c in 0..3 {
                            g[c] += t0 * gu[c] as f64 / sc.half_width_km[c];
                        }
                    }
                }
                // the kink inputs max(z_s - z_j, 0) / hw move with the source depth below z_j
                if !a.depth_kinks_km.is_empty() {
                    let inv = 1.0 / sc.half_width_km[a.inputs.source_depth_index()];
                    let off = a.kink_offset();
                    for (j, zk) in a.depth_kinks_km.iter().enumerate() {
                        if s.z_km > *zk {
                            g[2] += t0 * gu[off + j] as f64 * inv;
                        }
                    }
                }
            }
            put(
                i,
                TimeAndGradient {
                    t_s: t0 * tau,
                    grad_s_per_km: g,
                },
            );
        }
    }

    /// Evaluates `rows` (all served by net `k`) into `out`, in parallel blocks.
    fn eval_rows(
        &self,
        k: usize,
        rows: &[(Phase, LocalPoint, LocalPoint)],
        grad: bool,
        out: &mut [TimeAndGradient],
    ) {
        out.par_chunks_mut(BLOCK_ROWS)
            .zip(rows.par_chunks(BLOCK_ROWS))
            .for_each(|(o, rs)| {
                WORKSPACE.with(|ws| {
                    self.eval_block(
                        k,
                        &mut ws.borrow_mut(),
                        grad,
                        rs.len(),
                        |i| rs[i],
                        |i, v| o[i] = v,
                    )
                })
            });
    }

    /// Evaluates arbitrary (phase, source, receiver) rows in one parallel pass per net.
    pub fn eval_pairs(
        &self,
        rows: &[(Phase, LocalPoint, LocalPoint)],
        grad: bool,
    ) -> Result<Vec<TimeAndGradient>, TraveltimeError> {
        for (p, s, r) in rows {
            if self.net_of_phase[p.index()].is_none() {
                return Err(TraveltimeError::PhaseUnavailable(*p));
            }
            self.check_inside(s, r)?;
        }
        let mut out = vec![TimeAndGradient::default(); rows.len()];
        for k in 0..self.nets.len() {
            let idx: Vec<usize> = (0..rows.len())
                .filter(|&i| self.net_of_phase[rows[i].0.index()] == Some(k))
                .collect();
            if idx.is_empty() {
                continue;
            }
            let mine: Vec<_> = idx.iter().map(|&i| rows[i]).collect();
            let mut tmp = vec![TimeAndGradient::default(); mine.len()];
            self.eval_rows(k, &mine, grad, &mut tmp);
            for (&i, v) in idx.iter().zip(tmp) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn eval_one(
        &self,
        phase: Phase,
        s: LocalPoint,
        r: LocalPoint,
        grad: bool,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        let k = self.net_of_phase[phase.index()].ok_or(TraveltimeError::PhaseUnavailable(phase))?;
        self.check_inside(&s, &r)?;
        let mut out = TimeAndGradient::default();
        WORKSPACE.with(|ws| {
            self.eval_block(
                k,
                &mut ws.borrow_mut(),
                grad,
                1,
                |_| (phase, s, r),
                |_, v| out = v,
            )
        });
        Ok(out)
    }

    /// Like [`TraveltimeModel::batch_with_gradient`] but `grad` false skips the reverse pass
    /// (traveltimes only; gradients are left 0).
    ///
    /// Parallel over groups of whole sources: each group runs one block per net (its
    /// receivers x the group's sources) and writes straight into its own rows of `out`.
    pub fn batch(
        &self,
        sources: &[LocalPoint],
        receivers: &[Receiver],
        grad: bool,
        out: &mut [TimeAndGradient],
    ) -> Result<(), TraveltimeError> {
        let m = receivers.len();
        if out.len() != sources.len() * m {
            return Err(TraveltimeError::Other(format!(
                "output buffer has {} rows, expected {}",
                out.len(),
                sources.len() * m
            )));
        }
        if m == 0 || sources.is_empty() {
            return Ok(());
        }
        for r in receivers {
            if self.net_of_phase[r.phase.index()].is_none() {
                return Err(TraveltimeError::PhaseUnavailable(r.phase));
            }
        }
        // every bound but the radial distance concerns one point: check those once per point,
        // the distance (the only pair condition) per pair
        for s in sources {
            self.check_inside(s, &receivers[0].position)?;
        }
        for r in receivers {
            self.check_inside(&sources[0], &r.position)?;
        }
        if self.manifest.architecture.inputs == InputKind::Radial1d {
            let dmax = self.manifest.bounds.max_distance_km + 1e-6;
            for s in sources {
                for r in receivers {
                    let (dx, dy) = (s.x_km - r.position.x_km, s.y_km - r.position.y_km);
                    if dx * dx + dy * dy > dmax * dmax {
                        // the exact check decides (and names the point)
                        self.check_inside(s, &r.position)?;
                    }
                }
            }
        }
        let mine: Vec<Vec<usize>> = (0..self.nets.len())
            .map(|k| {
                (0..m)
                    .filter(|&j| self.net_of_phase[receivers[j].phase.index()] == Some(k))
                    .collect()
            })
            .collect();
        let fewest = mine
            .iter()
            .map(Vec::len)
            .filter(|&n| n > 0)
            .min()
            .unwrap_or(m);
        let per_group = BLOCK_ROWS.div_ceil(fewest).max(1);
        out.par_chunks_mut(per_group * m)
            .enumerate()
            .for_each(|(gi, o)| {
                let s0 = gi * per_group;
                WORKSPACE.with(|ws| {
                    let ws = &mut ws.borrow_mut();
                    for (k, rx) in mine.iter().enumerate() {
                        let nr = rx.len();
                        if nr == 0 {
                            continue;
                        }
                        let b = (o.len() / m) * nr;
                        self.eval_block(
                            k,
                            ws,
                            grad,
                            b,
                            |i| {
                                let r = &receivers[rx[i % nr]];
                                (r.phase, sources[s0 + i / nr], r.position)
                            },
                            |i, v| o[(i / nr) * m + rx[i % nr]] = v,
                        );
                    }
                })
            });
        Ok(())
    }
}

impl TraveltimeModel for PinnModel {
    fn name(&self) -> String {
        format!("pinn:{}", self.manifest.name)
    }
    fn max_distance_km(&self) -> Option<f64> {
        match self.manifest.architecture.inputs {
            InputKind::Radial1d => Some(self.manifest.bounds.max_distance_km),
            InputKind::Cartesian3d => None,
        }
    }
    fn traveltime_s(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<f64, TraveltimeError> {
        Ok(self.eval_one(phase, source, receiver, false)?.t_s)
    }
    fn traveltime_and_gradient(
        &self,
        phase: Phase,
        source: LocalPoint,
        receiver: LocalPoint,
    ) -> Result<TimeAndGradient, TraveltimeError> {
        self.eval_one(phase, source, receiver, true)
    }
    fn batch_with_gradient(
        &self,
        sources: &[LocalPoint],
        receivers: &[Receiver],
        out: &mut [TimeAndGradient],
    ) -> Result<(), TraveltimeError> {
        self.batch(sources, receivers, true, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_without_heads_read_as_one_head() {
        let a: Architecture = serde_json::from_str(
            r#"{"inputs":"radial1d","hidden":[8,8],"activation":"elu","phase_mode":"separate"}"#,
        )
        .unwrap();
        assert_eq!(a.heads, 1);
        assert_eq!(a.widths(), vec![3, 8, 8, 1]);
    }

    #[test]
    fn fast_exp_is_accurate_on_the_elu_range() {
        let mut worst = 0.0f64;
        for i in 0..=100_000 {
            let x = -30.0 * i as f32 / 100_000.0;
            let e = exp_nonpos(x) as f64;
            let t = (x as f64).exp();
            worst = worst.max(((e - t) / t).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert!(exp_nonpos(-200.0) >= 0.0 && exp_nonpos(-200.0) < 1e-37);
    }

    fn tiny_net(seed: u64, widths: &[usize]) -> DenseNet {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let layers = widths
            .windows(2)
            .map(|w| DenseLayer {
                d_in: w[0],
                d_out: w[1],
                weight: (0..w[0] * w[1]).map(|_| rng.gen_range(-0.8..0.8)).collect(),
                bias: (0..w[1]).map(|_| rng.gen_range(-0.3..0.3)).collect(),
            })
            .collect();
        DenseNet { layers }
    }

    /// Straightforward f64 forward, the independent truth for the sgemm path.
    fn naive(net: &DenseNet, x: &[f32]) -> f64 {
        naive_heads(net, x)
            .into_iter()
            .fold(f64::INFINITY, f64::min)
    }

    fn naive_heads(net: &DenseNet, x: &[f32]) -> Vec<f64> {
        let mut a: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for (l, layer) in net.layers.iter().enumerate() {
            let mut z: Vec<f64> = layer.bias.iter().map(|&b| b as f64).collect();
            for (i, ai) in a.iter().enumerate().take(layer.d_in) {
                for (j, zj) in z.iter_mut().enumerate() {
                    *zj += ai * layer.weight[i * layer.d_out + j] as f64;
                }
            }
            if l + 1 < net.layers.len() {
                for v in z.iter_mut() {
                    *v = if *v > 0.0 { *v } else { v.exp() - 1.0 };
                }
            }
            a = z;
        }
        a
    }

    fn winner(net: &DenseNet, x: &[f32]) -> usize {
        let h = naive_heads(net, x);
        (0..h.len())
            .min_by(|&a, &b| h[a].partial_cmp(&h[b]).unwrap())
            .unwrap()
    }

    /// The portable build of the kernels (no FMA) against the naive f64 net, whichever build
    /// `forward_block` picks on this CPU; odd widths exercise the tile remainders.
    #[test]
    fn portable_and_fused_kernels_agree_with_the_naive_net() {
        for widths in [
            vec![3, 16, 16, 1],
            vec![3, 37, 20, 2],
            vec![6, 48, 48, 48, 1],
        ] {
            let net = tiny_net(5, &widths);
            let d = widths[0];
            let n = 67;
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 29 % 89) as f32 / 44.0) - 1.0)
                .collect();
            let run = |fma: bool| {
                let mut ws = Workspace {
                    x: x.clone(),
                    ..Default::default()
                };
                if fma {
                    net.forward_block_impl::<true>(&mut ws, n, true);
                } else {
                    net.forward_block_impl::<false>(&mut ws, n, true);
                }
                (ws.out[..n].to_vec(), ws.g[..n * d].to_vec())
            };
            let (y0, g0) = run(false);
            let (y1, g1) = run(true);
            for i in 0..n {
                let t = naive(&net, &x[i * d..(i + 1) * d]);
                for y in [y0[i], y1[i]] {
                    assert!(
                        (y as f64 - t).abs() < 1e-5 * (1.0 + t.abs()),
                        "{widths:?} row {i}"
                    );
                }
                for k in 0..d {
                    let (a, b) = (g0[i * d + k], g1[i * d + k]);
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                        "{widths:?} row {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn min_of_heads_and_its_gradient_match_a_naive_f64_evaluation() {
        let net = tiny_net(11, &[3, 16, 16, 4]);
        let n = 300;
        let x: Vec<f32> = (0..n * 3)
            .map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0)
            .collect();
        let (y, g) = net.forward_with_input_grad(&x, n);
        let mut smooth_rows = 0;
        let mut winners = [0usize; 4];
        for i in 0..n {
            let row = &x[i * 3..i * 3 + 3];
            let t = naive(&net, row);
            assert!((y[i] as f64 - t).abs() < 1e-5 * (1.0 + t.abs()), "row {i}");
            let w = winner(&net, row);
            winners[w] += 1;
            let h = 1e-3;
            let shifted = |k: usize, s: f32| {
                let mut a = row.to_vec();
                a[k] += s;
                a
            };
            if (0..3)
                .any(|k| winner(&net, &shifted(k, h)) != w || winner(&net, &shifted(k, -h)) != w)
            {
                continue; // a finite difference across the kink is no derivative
            }
            smooth_rows += 1;
            for k in 0..3 {
                let fd =
                    (naive(&net, &shifted(k, h)) - naive(&net, &shifted(k, -h))) / (2.0 * h as f64);
                assert!(
                    (g[i * 3 + k] as f64 - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                    "row {i} input {k}: {} vs {fd}",
                    g[i * 3 + k]
                );
            }
        }
        assert!(smooth_rows > n * 9 / 10, "{smooth_rows} smooth rows");
        // the test only means something if several heads win somewhere
        assert!(
            winners.iter().filter(|&&c| c > 0).count() >= 2,
            "{winners:?}"
        );
    }

    #[test]
    fn forward_and_input_gradient_match_a_naive_f64_evaluation() {
        let net = tiny_net(7, &[3, 16, 16, 1]);
        let n = 300;
        let x: Vec<f32> = (0..n * 3)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let (y, g) = net.forward_with_input_grad(&x, n);
        let y2 = net.forward(&x, n);
        for i in 0..n {
            let row = &x[i * 3..i * 3 + 3];
            let t = naive(&net, row);
            assert!(
                (y[i] as f64 - t).abs() < 1e-5 * (1.0 + t.abs()),
                "row {i}: {} vs {t}",
                y[i]
            );
            assert_eq!(y[i], y2[i]);
            for k in 0..3 {
                let h = 1e-3;
                let mut a = row.to_vec();
                let mut b = row.to_vec();
                a[k] += h;
                b[k] -= h;
                let fd = (naive(&net, &a) - naive(&net, &b)) / (2.0 * h as f64);
                assert!(
                    (g[i * 3 + k] as f64 - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                    "row {i} input {k}: {} vs {fd}",
                    g[i * 3 + k]
                );
            }
        }
    }
}
