//! The burn network: an ELU MLP for tau with forward-mode input tangents.
//!
//! burn's autodiff cannot differentiate a gradient, so the input Jacobian needed by the
//! eikonal loss is propagated forward as ordinary tensor ops: the first layer's tangent is the
//! seed times the weight, each later one is act'(z) * (tangent x W). The K tangents ride in
//! the batch dimension (`[K * N, h]`), so each layer costs one extra matmul, and one ordinary
//! backward pass then trains the whole loss.
//!
//! With K > 1 output heads tau is min_k(head_k): each head can fit one smooth traveltime
//! branch (the direct wave, each head wave) and the min reproduces the crossover kinks
//! exactly, which one smooth output can only round off. The min is taken by `argmin` + `gather`,
//! so the primal, its tangents and the backward pass all follow the winning head.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::traveltime::pinn::{DenseLayer, DenseNet};

/// An MLP with ELU hidden layers and a linear output layer of K heads; tau = min over heads.
#[derive(Module, Debug)]
pub struct TauNet {
    /// Dense layers, input first.
    pub layers: Vec<Linear>,
}

impl TauNet {
    /// A freshly initialised net with layer widths `widths` (e.g. `[3, 32, 32, 1]`; the last
    /// width is the number of heads).
    pub fn new(widths: &[usize], device: &Device) -> Self {
        let layers = widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Self { layers }
    }

    /// Number of output heads (the last layer's width).
    pub fn heads(&self) -> usize {
        self.layers.last().map_or(1, |l| l.weight.val().dims()[1])
    }

    /// tau for inputs `x` `[N, d_in]` -> `[N, 1]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = self.layers.len();
        let mut a = x;
        for (l, layer) in self.layers.iter().enumerate() {
            let z = layer.forward(a);
            a = if l + 1 < n { elu(z) } else { z };
        }
        if self.heads() > 1 {
            let idx = a.clone().argmin(1);
            a = a.gather(1, idx);
        }
        a
    }

    /// tau `[N, 1]` and its directional derivatives along `k` input seeds, stacked
    /// `[k * N, 1]` (seed-major: rows `j * N .. (j + 1) * N` belong to seed j);
    /// `seeds` is `[k * N, d_in]`.
    pub fn forward_with_tangents(
        &self,
        x: Tensor<2>,
        seeds: Tensor<2>,
        k: usize,
    ) -> (Tensor<2>, Tensor<2>) {
        let (a, t) = self.forward_heads_with_tangents(x, seeds, k);
        min_head(a, t, k)
    }

    /// Every head `[N, K]` and its directional derivatives `[k * N, K]` (as
    /// [`TauNet::forward_with_tangents`], before the min over heads).
    pub fn forward_heads_with_tangents(
        &self,
        x: Tensor<2>,
        seeds: Tensor<2>,
        k: usize,
    ) -> (Tensor<2>, Tensor<2>) {
        let n = self.layers.len();
        let mut a = x;
        let mut t = seeds;
        for (l, layer) in self.layers.iter().enumerate() {
            let z = layer.forward(a);
            // tangents see the weight but not the bias: [kN, d_in] x [d_in, d_out]
            let tz = t.matmul(layer.weight.val());
            if l + 1 < n {
                let d = z.clone().clamp_max(0.0).exp(); // ELU'(z) = exp(min(z, 0))
                a = z.clamp_min(0.0) + d.clone() - 1.0;
                t = tz * d.repeat_dim(0, k);
            } else {
                a = z;
                t = tz;
            }
        }
        (a, t)
    }

    /// The same weights as a burn-free [`DenseNet`] (f32, `[d_in, d_out]` row-major).
    pub fn to_dense(&self) -> DenseNet {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let [d_in, d_out] = l.weight.val().dims();
                let weight = l
                    .weight
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32 weights");
                let bias = match &l.bias {
                    Some(b) => b
                        .val()
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .expect("f32 bias"),
                    None => vec![0.0; d_out],
                };
                DenseLayer {
                    d_in,
                    d_out,
                    weight,
                    bias,
                }
            })
            .collect();
        DenseNet { layers }
    }
}

/// tau = the smallest head `[N, 1]` and the tangents `[k * N, 1]` of that head, from all
/// heads `[N, K]` and their tangents `[k * N, K]`.
pub fn min_head(a: Tensor<2>, t: Tensor<2>, k: usize) -> (Tensor<2>, Tensor<2>) {
    if a.dims()[1] == 1 {
        return (a, t);
    }
    // tau and every tangent follow the winning head of each row
    let idx = a.clone().argmin(1);
    let t = t.gather(1, idx.clone().repeat_dim(0, k));
    (a.gather(1, idx), t)
}

/// ELU with alpha 1, written as max(z, 0) + exp(min(z, 0)) - 1.
pub fn elu(z: Tensor<2>) -> Tensor<2> {
    z.clone().clamp_min(0.0) + z.clamp_max(0.0).exp() - 1.0
}

/// A `[rows, cols]` tensor from row-major f32 data.
pub fn tensor2(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(data, [rows, cols]), device)
}
