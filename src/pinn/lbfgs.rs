//! L-BFGS fine-tuning of a [`TauNet`] on large fixed batches (the usual PINN recipe: Adam
//! first, then a quasi-Newton method on a low-noise loss).
//!
//! Adam on small fresh batches stops at a noise floor set by the batch; L-BFGS on one large
//! batch sees an (almost) deterministic loss and can use curvature. The optimiser is argmin's
//! L-BFGS with a More-Thuente line search on `Vec<f64>` parameters; burn supplies the loss
//! and its gradient (one forward with tangents and one backward per evaluation). Parameters
//! are flattened layer by layer, weight (`[d_in, d_out]` row-major) then bias, the same
//! order as the artifact's weight file.

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use super::data::Batch;
use super::model::{tensor2, TauNet};
use super::training::loss;
use super::TrainError;
use crate::traveltime::pinn::{Architecture, TrainingSettings};

/// Number of parameters of an MLP with layer widths `widths` (weights and biases).
pub fn n_params(widths: &[usize]) -> usize {
    widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

/// The parameters of `net` as one vector (layer by layer: weight row-major, then bias).
pub fn flatten(net: &TauNet) -> Vec<f64> {
    let dense = net.to_dense();
    let mut out = Vec::new();
    for l in &dense.layers {
        out.extend(l.weight.iter().map(|v| f64::from(*v)));
        out.extend(l.bias.iter().map(|v| f64::from(*v)));
    }
    out
}

/// A net with layer widths `widths` holding the parameters `flat` (rounded to f32), as
/// trainable burn parameters on `device`.
pub fn unflatten(widths: &[usize], flat: &[f64], device: &Device) -> Result<TauNet, TrainError> {
    if widths.len() < 2 || flat.len() != n_params(widths) {
        return Err(TrainError::Config(format!(
            "{} parameters for layer widths {widths:?} (expected {})",
            flat.len(),
            n_params(widths)
        )));
    }
    let mut at = 0;
    let mut take = |n: usize| {
        let v: Vec<f32> = flat[at..at + n].iter().map(|x| *x as f32).collect();
        at += n;
        v
    };
    let layers = widths
        .windows(2)
        .map(|w| {
            let weight = Param::from_tensor(tensor2(take(w[0] * w[1]), w[0], w[1], device));
            let bias = Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(take(w[1]), [w[1]]),
                device,
            ));
            Linear {
                weight,
                bias: Some(bias),
            }
        })
        .collect();
    Ok(TauNet { layers })
}

/// The training loss of the net with parameters `flat` on `batch`, and its gradient with
/// respect to `flat` (the loss is computed in f32 by burn).
pub fn loss_and_gradient(
    widths: &[usize],
    flat: &[f64],
    batch: &Batch,
    arch: &Architecture,
    settings: &TrainingSettings,
    device: &Device,
) -> Result<(f64, Vec<f64>), TrainError> {
    let net = unflatten(widths, flat, device)?;
    let total = loss(&net, batch, arch, settings, device).total;
    let grads = total.backward();
    let value = f64::from(total.detach().into_scalar::<f32>());
    let mut g = Vec::with_capacity(flat.len());
    let as_f64 = |t: Option<Tensor<2>>, n: usize| -> Vec<f64> {
        match t {
            Some(t) => t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 gradient")
                .into_iter()
                .map(f64::from)
                .collect(),
            // a parameter the loss does not reach has zero gradient
            None => vec![0.0; n],
        }
    };
    for (l, w) in net.layers.iter().zip(widths.windows(2)) {
        g.extend(as_f64(l.weight.val().grad(&grads), w[0] * w[1]));
        let bias = l
            .bias
            .as_ref()
            .and_then(|b| b.val().grad(&grads))
            .map(|b| b.reshape([1, w[1]]));
        g.extend(as_f64(bias, w[1]));
    }
    Ok((value, g))
}

/// Parameters, loss and gradient of one burn pass.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// The loss on one fixed batch as an argmin problem, divided by `scale` (the loss at the
/// start of the round) so that argmin's absolute tolerances see numbers near 1.
struct FixedBatchLoss<'a> {
    widths: &'a [usize],
    batch: &'a Batch,
    arch: &'a Architecture,
    settings: &'a TrainingSettings,
    device: &'a Device,
    scale: f64,
    /// The line search asks for the cost and then the gradient at the same point, and L-BFGS
    /// asks for the gradient at the accepted point again: one burn pass answers all three.
    cache: RefCell<Vec<Evaluation>>,
    evaluations: RefCell<usize>,
}

impl FixedBatchLoss<'_> {
    fn eval(&self, p: &[f64]) -> Result<(f64, Vec<f64>), argmin::core::Error> {
        if let Some((_, c, g)) = self.cache.borrow().iter().find(|(q, _, _)| q == p) {
            return Ok((*c, g.clone()));
        }
        let (c, mut g) = loss_and_gradient(
            self.widths,
            p,
            self.batch,
            self.arch,
            self.settings,
            self.device,
        )?;
        *self.evaluations.borrow_mut() += 1;
        if !c.is_finite() || g.iter().any(|v| !v.is_finite()) {
            return Err(argmin::core::Error::msg(format!(
                "non-finite loss {c} during L-BFGS"
            )));
        }
        let c = c / self.scale;
        g.iter_mut().for_each(|v| *v /= self.scale);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push((p.to_vec(), c, g.clone()));
        Ok((c, g))
    }
}

impl CostFunction for FixedBatchLoss<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.eval(p)?.0)
    }
}

impl Gradient for FixedBatchLoss<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(p)?.1)
    }
}

/// What one L-BFGS round on one batch did.
#[derive(Debug, Clone, Copy)]
pub struct RoundReport {
    /// L-BFGS iterations done.
    pub iterations: usize,
    /// Loss and gradient evaluations (burn forward + backward passes).
    pub evaluations: usize,
    /// Loss on the batch before the round.
    pub loss_start: f64,
    /// Loss on the batch after the round (never above `loss_start`).
    pub loss_end: f64,
}

/// Runs at most `iterations` L-BFGS iterations (history `memory`) on the fixed `batch` from
/// the parameters `flat`; returns the best parameters seen and what the round did. A line
/// search that fails (the loss is flat to f32 precision) ends the round early.
#[allow(clippy::too_many_arguments)]
pub fn lbfgs_round(
    widths: &[usize],
    flat: Vec<f64>,
    batch: &Batch,
    arch: &Architecture,
    settings: &TrainingSettings,
    device: &Device,
    iterations: usize,
    memory: usize,
) -> Result<(Vec<f64>, RoundReport), TrainError> {
    let (loss0, _) = loss_and_gradient(widths, &flat, batch, arch, settings, device)?;
    if !(loss0.is_finite() && loss0 > 0.0) || iterations == 0 {
        let report = RoundReport {
            iterations: 0,
            evaluations: 1,
            loss_start: loss0,
            loss_end: loss0,
        };
        return Ok((flat, report));
    }
    let problem = FixedBatchLoss {
        widths,
        batch,
        arch,
        settings,
        device,
        scale: loss0,
        cache: RefCell::new(Vec::new()),
        evaluations: RefCell::new(1),
    };
    let lbfgs_err = |e: argmin::core::Error| TrainError::Config(format!("L-BFGS: {e}"));
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), memory.max(1))
        .with_tolerance_grad(0.0)
        .map_err(lbfgs_err)?
        .with_tolerance_cost(0.0)
        .map_err(lbfgs_err)?;
    let start = flat.clone();
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(flat).max_iters(iterations as u64))
        .ctrlc(false)
        .timer(false)
        .run();
    match res {
        Ok(res) => {
            let evaluations = res
                .problem
                .problem
                .as_ref()
                .map_or(0, |p| *p.evaluations.borrow());
            let state = res.state();
            let best_cost = state.get_best_cost();
            let iters = state.get_iter() as usize;
            let best = state.get_best_param().cloned();
            match best {
                Some(b) if best_cost.is_finite() && best_cost <= 1.0 => Ok((
                    b,
                    RoundReport {
                        iterations: iters,
                        evaluations,
                        loss_start: loss0,
                        loss_end: best_cost * loss0,
                    },
                )),
                _ => Ok((
                    start,
                    RoundReport {
                        iterations: iters,
                        evaluations,
                        loss_start: loss0,
                        loss_end: loss0,
                    },
                )),
            }
        }
        // a failure before the first step (e.g. a non-finite loss): keep the parameters
        Err(_) => Ok((
            start,
            RoundReport {
                iterations: 0,
                evaluations: 1,
                loss_start: loss0,
                loss_end: loss0,
            },
        )),
    }
}
