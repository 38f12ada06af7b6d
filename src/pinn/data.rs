//! Collocation sampling: geometry over the model box, weighted toward the source and toward
//! velocity discontinuities, with reference traveltimes and gradients from an exact solver.

use rand::Rng;
use rayon::prelude::*;

use super::TrainError;
use crate::domain::{LocalPoint, Phase};
use crate::traveltime::layered_exact::{ArrivalPath, LayeredExact};
use crate::traveltime::pinn::{InputKind, InputScaling, ModelBounds, PhaseMode};
use crate::traveltime::TraveltimeModel;
use crate::velocity::VelocityModel;

/// Smallest source-receiver distance sampled, km: tau = T / T0 is 0/0 at the source itself.
const MIN_DISTANCE_KM: f64 = 0.01;

/// How collocation points are drawn and what they are compared with.
pub struct Sampler<'a> {
    /// Network inputs.
    pub inputs: InputKind,
    /// P/S handling (adds the phase input).
    pub phase_mode: PhaseMode,
    /// Source-depth kink inputs (see [`crate::traveltime::pinn::Architecture::depth_kinks_km`]).
    pub depth_kinks_km: Vec<f64>,
    /// Box to cover.
    pub bounds: ModelBounds,
    /// Coordinate -> input scaling.
    pub scaling: InputScaling,
    /// The closed-form T0 (the manifest's background medium).
    pub background: crate::traveltime::AnalyticModel,
    /// Depths of velocity discontinuities, km (source depths are drawn densely around them).
    pub interfaces_km: Vec<f64>,
    /// Fraction of points with a short source-receiver distance.
    pub frac_near_source: f64,
    /// Fraction of source depths drawn within ~0.5 km of an interface.
    pub frac_near_interface: f64,
    /// Exact traveltimes (e.g. the 1-D layered solver).
    pub reference: &'a dyn TraveltimeModel,
    /// Velocity for the eikonal residual.
    pub velocity: &'a dyn VelocityModel,
    /// The layered solver whose separate paths the heads are fitted to (branch heads; None:
    /// off). Head j fits the paths whose deepest layer is j (see [`branch_index`]).
    pub branches: Option<&'a LayeredExact>,
    /// Paths later than the first arrival by more than this fraction count as absent (the
    /// hinge only); see [`crate::traveltime::pinn::TrainingSettings::branch_window`].
    pub branch_window: f64,
}

/// Heads a branch-headed net needs for `model`: one per layer.
pub fn branch_count(model: &LayeredExact) -> usize {
    model.model().layers().len()
}

/// Which head fits `path`: the index of the deepest layer it travels in, so that one head
/// holds one smooth family. Layer j carries the head wave along its top and the direct ray
/// when the deeper end point lies in it (`deeper_layer`); the two join as the end point
/// crosses the interface (a source just below it sends a nearly horizontal direct ray along
/// it, the head wave's path). A head wave under a fast lid slides in layer `interface - 1`.
pub fn branch_index(path: ArrivalPath, deeper_layer: usize) -> usize {
    match path {
        ArrivalPath::Direct => deeper_layer,
        ArrivalPath::HeadBelow { interface } => interface,
        ArrivalPath::HeadAbove { interface } => interface - 1,
    }
}

/// One batch of collocation points, laid out for the loss (all row-major f32).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Points.
    pub n: usize,
    /// Tangent directions (coordinates differentiated).
    pub k: usize,
    /// Network input width.
    pub d_in: usize,
    /// Inputs `[n, d_in]`.
    pub x: Vec<f32>,
    /// Input seeds du/dc_j, seed-major `[k * n, d_in]`.
    pub seeds: Vec<f32>,
    /// T0 `[n]`, s.
    pub t0: Vec<f32>,
    /// dT0/dc_j `[k, n]`, s/km.
    pub dt0: Vec<f32>,
    /// Reference tau = T_ref / T0 `[n]`.
    pub tau_ref: Vec<f32>,
    /// Reference dT/dc_j for the supervised directions `[sup_dirs.len(), n]`, s/km.
    pub grad_ref: Vec<f32>,
    /// Velocity at the source `[n]`, km/s.
    pub v_src: Vec<f32>,
    /// Velocity at the receiver `[n]`, km/s.
    pub v_rec: Vec<f32>,
    /// Phases of the points `[n]`.
    pub phase: Vec<Phase>,
    /// Reference T `[n]`, s.
    pub t_ref: Vec<f64>,
    /// Heads K of the branch term (0: no branch term).
    pub n_branches: usize,
    /// Each path's tau = T_path / T0 where it is fitted (mask 1), else the first arrival's tau,
    /// `[n, K]` (empty without the branch term).
    pub branch_tau: Vec<f32>,
    /// 1 where the path exists and is within the window of the first arrival, else 0,
    /// `[n, K]`.
    pub branch_mask: Vec<f32>,
    /// Each path's reference dT/dr, dT/dz_source and dT/dz_receiver (0 where the path is not
    /// fitted), `[3, n, K]`, s/km. The receiver depth is supervised too: the eikonal residual
    /// cannot tell a wave arriving from below from one arriving from above.
    pub branch_grad: Vec<f32>,
}

/// Coordinates whose derivatives are supervised against the reference (source side).
pub fn sup_dirs(inputs: InputKind) -> &'static [usize] {
    match inputs {
        InputKind::Radial1d => &[0, 1],
        InputKind::Cartesian3d => &[0, 1, 2],
    }
}

/// Coordinates making up the receiver gradient (for the eikonal residual at the receiver);
/// for the radial net |grad_receiver T|^2 = (dT/dr)^2 + (dT/dz_r)^2.
pub fn rec_dirs(inputs: InputKind) -> &'static [usize] {
    match inputs {
        InputKind::Radial1d => &[0, 2],
        InputKind::Cartesian3d => &[3, 4, 5],
    }
}

#[derive(Debug, Clone, Copy)]
struct Geo {
    phase: Phase,
    s: LocalPoint,
    r: LocalPoint,
}

/// Drawn collocation geometries with their reference traveltimes, before they are laid out
/// as a [`Batch`] (so a batch can be put together from several draws).
#[derive(Debug, Clone, Default)]
pub struct Drawn {
    geos: Vec<Geo>,
    refs: Vec<crate::traveltime::TimeAndGradient>,
    /// Per point, each branch's (T s, dT/dr, dT/dz_source, dT/dz_receiver s/km) (T NaN
    /// where the path does not exist); empty rows without the branch term.
    branch_t: Vec<Vec<[f64; 4]>>,
}

impl Drawn {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.geos.len()
    }

    /// True when no point was drawn.
    pub fn is_empty(&self) -> bool {
        self.geos.is_empty()
    }

    /// The points at `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> Drawn {
        Drawn {
            geos: idx.iter().map(|&i| self.geos[i]).collect(),
            refs: idx.iter().map(|&i| self.refs[i]).collect(),
            branch_t: idx.iter().map(|&i| self.branch_t[i].clone()).collect(),
        }
    }

    /// Appends `other`'s points.
    pub fn extend(&mut self, other: Drawn) {
        self.geos.extend(other.geos);
        self.refs.extend(other.refs);
        self.branch_t.extend(other.branch_t);
    }
}

impl Sampler<'_> {
    fn draw_geometry<R: Rng>(&self, phase: Phase, rng: &mut R) -> Geo {
        let b = &self.bounds;
        let zs_draw = |rng: &mut R| {
            let ifs: Vec<f64> = self
                .interfaces_km
                .iter()
                .copied()
                .filter(|z| *z > b.source_depth_min_km && *z < b.source_depth_max_km)
                .collect();
            if !ifs.is_empty() && rng.gen_bool(self.frac_near_interface.clamp(0.0, 1.0)) {
                let z0 = ifs[rng.gen_range(0..ifs.len())];
                let off: f64 = rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.5;
                (z0 + off).clamp(b.source_depth_min_km, b.source_depth_max_km)
            } else {
                rng.gen_range(b.source_depth_min_km..=b.source_depth_max_km)
            }
        };
        loop {
            let near = rng.gen_bool(self.frac_near_source.clamp(0.0, 1.0));
            let zs = zs_draw(rng);
            let zr = if b.receiver_depth_max_km > b.receiver_depth_min_km {
                rng.gen_range(b.receiver_depth_min_km..=b.receiver_depth_max_km)
            } else {
                b.receiver_depth_min_km
            };
            let (s, r) = match self.inputs {
                InputKind::Radial1d => {
                    let u: f64 = rng.gen();
                    let d = if near {
                        b.max_distance_km * u * u * u
                    } else {
                        b.max_distance_km * u
                    };
                    (LocalPoint::new(d, 0.0, zs), LocalPoint::new(0.0, 0.0, zr))
                }
                InputKind::Cartesian3d => {
                    let h = b.cartesian_half_width_km();
                    let sx = rng.gen_range(-h..=h);
                    let sy = rng.gen_range(-h..=h);
                    let (rx, ry) = if near {
                        let rad = 0.1 * h * rng.gen::<f64>().powi(2);
                        let az: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
                        (
                            (sx + rad * az.cos()).clamp(-h, h),
                            (sy + rad * az.sin()).clamp(-h, h),
                        )
                    } else {
                        (rng.gen_range(-h..=h), rng.gen_range(-h..=h))
                    };
                    (LocalPoint::new(sx, sy, zs), LocalPoint::new(rx, ry, zr))
                }
            };
            let d = [s.x_km - r.x_km, s.y_km - r.y_km, s.z_km - r.z_km];
            if (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() >= MIN_DISTANCE_KM {
                return Geo { phase, s, r };
            }
        }
    }

    /// `n` points cycling through `phases`, with references computed in parallel.
    pub fn sample<R: Rng>(
        &self,
        phases: &[Phase],
        n: usize,
        rng: &mut R,
    ) -> Result<Batch, TrainError> {
        let drawn = self.draw(phases, n, rng)?;
        self.assemble(&drawn)
    }

    /// `n` geometries cycling through `phases` with their (finite) reference traveltimes.
    pub fn draw<R: Rng>(
        &self,
        phases: &[Phase],
        n: usize,
        rng: &mut R,
    ) -> Result<Drawn, TrainError> {
        let geos: Vec<Geo> = (0..n)
            .map(|i| self.draw_geometry(phases[i % phases.len()], rng))
            .collect();
        let mut geos = geos;
        let mut refs: Vec<_> = geos
            .par_iter()
            .map(|g| self.reference.traveltime_and_gradient(g.phase, g.s, g.r))
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::Reference(e.to_string()))?;
        // one non-finite reference would turn the whole loss into NaN: redraw such points
        for i in 0..n {
            let mut tries = 0;
            while !(refs[i].t_s.is_finite() && refs[i].grad_s_per_km.iter().all(|g| g.is_finite()))
            {
                tries += 1;
                if tries > 100 {
                    return Err(TrainError::Reference(format!(
                        "non-finite reference traveltime at {:?} -> {:?}",
                        geos[i].s, geos[i].r
                    )));
                }
                geos[i] = self.draw_geometry(geos[i].phase, rng);
                refs[i] = self
                    .reference
                    .traveltime_and_gradient(geos[i].phase, geos[i].s, geos[i].r)
                    .map_err(|e| TrainError::Reference(e.to_string()))?;
            }
        }
        let branch_t = geos
            .par_iter()
            .map(|g| self.branch_times(g))
            .collect::<Result<_, _>>()?;
        Ok(Drawn {
            geos,
            refs,
            branch_t,
        })
    }

    /// Each path's (T, dT/dr, dT/dz_source, dT/dz_receiver) for `g` (T NaN where it does not
    /// exist; empty without branches).
    fn branch_times(&self, g: &Geo) -> Result<Vec<[f64; 4]>, TrainError> {
        let Some(ex) = self.branches else {
            return Ok(Vec::new());
        };
        let r = (g.s.x_km - g.r.x_km).hypot(g.s.y_km - g.r.y_km);
        let mut t = vec![[f64::NAN; 4]; branch_count(ex)];
        let deeper = ex.model().layer_index(g.s.z_km.max(g.r.z_km));
        for a in ex
            .arrivals(g.phase, r, g.s.z_km, g.r.z_km)
            .map_err(|e| TrainError::Reference(e.to_string()))?
        {
            let slot = &mut t[branch_index(a.path, deeper)];
            // NaN (no path yet) or a later path of the same family: keep the earlier one
            if slot[0].is_nan() || a.t_s < slot[0] {
                *slot = [
                    a.t_s,
                    a.dt_dr_s_per_km,
                    a.dt_dzs_s_per_km,
                    a.dt_dzr_s_per_km,
                ];
            }
        }
        Ok(t)
    }

    /// The loss's batch for drawn points.
    pub fn assemble(&self, drawn: &Drawn) -> Result<Batch, TrainError> {
        let (geos, refs) = (&drawn.geos, &drawn.refs);
        let n = geos.len();
        let nc = self.inputs.n_coords();
        let kink_off = nc + usize::from(self.phase_mode == PhaseMode::Input);
        let d_in = kink_off + self.depth_kinks_km.len();
        let k = nc;
        let sup = sup_dirs(self.inputs);
        let mut bt = Batch {
            n,
            k,
            d_in,
            x: vec![0.0; n * d_in],
            seeds: vec![0.0; k * n * d_in],
            t0: vec![0.0; n],
            dt0: vec![0.0; k * n],
            tau_ref: vec![0.0; n],
            grad_ref: vec![0.0; sup.len() * n],
            v_src: vec![0.0; n],
            v_rec: vec![0.0; n],
            phase: Vec::with_capacity(n),
            t_ref: Vec::with_capacity(n),
            n_branches: self.branches.map_or(0, branch_count),
            branch_tau: Vec::new(),
            branch_mask: Vec::new(),
            branch_grad: Vec::new(),
        };
        let nb = bt.n_branches;
        if nb > 0 && self.inputs != InputKind::Radial1d {
            return Err(TrainError::Config(
                "the branch term is implemented for radial1d inputs only".into(),
            ));
        }
        bt.branch_tau.reserve(n * nb);
        bt.branch_mask.reserve(n * nb);
        bt.branch_grad = vec![0.0; 3 * n * nb];
        for (i, (g, rf)) in geos.iter().zip(refs).enumerate() {
            let d = [
                g.s.x_km - g.r.x_km,
                g.s.y_km - g.r.y_km,
                g.s.z_km - g.r.z_km,
            ];
            let bg_err = |e: crate::traveltime::TraveltimeError| {
                TrainError::Config(format!("background T0: {e}"))
            };
            // T0 with its source gradient, and (reciprocity) its receiver gradient
            let bs = self
                .background
                .traveltime_and_gradient(g.phase, g.s, g.r)
                .map_err(bg_err)?;
            let br = self
                .background
                .traveltime_and_gradient(g.phase, g.r, g.s)
                .map_err(bg_err)?;
            let t0 = bs.t_s;
            let (c, dc): (Vec<f64>, Vec<f64>) = match self.inputs {
                InputKind::Radial1d => {
                    // the source lies on the +x axis from the receiver: dT0/dr = dT0/dx_s
                    let rh = d[0].hypot(d[1]);
                    (
                        vec![rh, g.s.z_km, g.r.z_km],
                        vec![
                            bs.grad_s_per_km[0],
                            bs.grad_s_per_km[2],
                            br.grad_s_per_km[2],
                        ],
                    )
                }
                InputKind::Cartesian3d => (
                    vec![g.s.x_km, g.s.y_km, g.s.z_km, g.r.x_km, g.r.y_km, g.r.z_km],
                    vec![
                        bs.grad_s_per_km[0],
                        bs.grad_s_per_km[1],
                        bs.grad_s_per_km[2],
                        br.grad_s_per_km[0],
                        br.grad_s_per_km[1],
                        br.grad_s_per_km[2],
                    ],
                ),
            };
            for j in 0..nc {
                bt.x[i * d_in + j] =
                    ((c[j] - self.scaling.center_km[j]) / self.scaling.half_width_km[j]) as f32;
                bt.seeds[(j * n + i) * d_in + j] = (1.0 / self.scaling.half_width_km[j]) as f32;
                bt.dt0[j * n + i] = dc[j] as f32;
            }
            if self.phase_mode == PhaseMode::Input {
                bt.x[i * d_in + nc] = if g.phase == Phase::P { -1.0 } else { 1.0 };
            }
            // kink inputs max(z_s - z_j, 0) / hw and their tangent along the source depth
            let zi = self.inputs.source_depth_index();
            let inv = 1.0 / self.scaling.half_width_km[zi];
            for (j, zk) in self.depth_kinks_km.iter().enumerate() {
                bt.x[i * d_in + kink_off + j] = ((g.s.z_km - zk).max(0.0) * inv) as f32;
                if g.s.z_km > *zk {
                    bt.seeds[(zi * n + i) * d_in + kink_off + j] = inv as f32;
                }
            }
            bt.t0[i] = t0 as f32;
            bt.tau_ref[i] = (rf.t_s / t0) as f32;
            // the reference gradient is dT/d(source x, y, z); in the radial frame the source
            // sits on the +x axis from the receiver, so dT/dr = dT/dx_s
            let gref: Vec<f64> = match self.inputs {
                InputKind::Radial1d => vec![rf.grad_s_per_km[0], rf.grad_s_per_km[2]],
                InputKind::Cartesian3d => rf.grad_s_per_km.to_vec(),
            };
            for (a, gv) in gref.iter().enumerate() {
                bt.grad_ref[a * n + i] = *gv as f32;
            }
            bt.v_src[i] =
                self.velocity
                    .velocity_km_s(g.phase, g.s.x_km, g.s.y_km, g.s.z_km) as f32;
            bt.v_rec[i] =
                self.velocity
                    .velocity_km_s(g.phase, g.r.x_km, g.r.y_km, g.r.z_km) as f32;
            bt.phase.push(g.phase);
            bt.t_ref.push(rf.t_s);
            if nb > 0 {
                for (j, tb) in drawn.branch_t[i].iter().enumerate() {
                    let exists = tb[0].is_finite() && tb[0] <= rf.t_s * (1.0 + self.branch_window);
                    bt.branch_tau
                        .push((if exists { tb[0] } else { rf.t_s } / t0) as f32);
                    bt.branch_mask.push(if exists { 1.0 } else { 0.0 });
                    if exists {
                        for c in 0..3 {
                            bt.branch_grad[(c * n + i) * nb + j] = tb[c + 1] as f32;
                        }
                    }
                }
            }
        }
        Ok(bt)
    }
}
