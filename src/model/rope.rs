//! Rotary position embedding, rotate-half layout (spec section 2).

use burn::tensor::{backend::Backend, Tensor, TensorData};

#[allow(unused_imports)] // unused in a build without the ndarray feature
use crate::backend::same;

/// RoPE with base `theta` over heads of `head_dim` (even) features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotaryEmbedding {
    pub theta: f64,
    pub head_dim: usize,
}

impl RotaryEmbedding {
    /// `cos` and `sin` of the angles `p · θ^(-2i/d)` for positions `offset..offset + len` and
    /// `i < d/2`, computed in f64 and rounded once to f32; each `[len * d/2]`, row-major.
    pub fn tables(&self, offset: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.head_dim / 2;
        let freqs: Vec<f64> = (0..half).map(|i| self.theta.powf(-2.0 * i as f64 / self.head_dim as f64)).collect();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in offset..offset + len {
            for &freq in &freqs {
                let angle = p as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }

    /// Rotates `x: [B, T, heads, d]` at positions `offset..offset + T`:
    /// `x'[i] = x[i]·cos − x[i+d/2]·sin`, `x'[i+d/2] = x[i+d/2]·cos + x[i]·sin`.
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>, offset: usize) -> Tensor<B, 4> {
        // `heads` is for the CPU kernel, absent without the `ndarray` feature.
        #[cfg_attr(not(feature = "ndarray"), allow(unused_variables))]
        let [_, t, heads, d] = x.dims();
        assert_eq!(d, self.head_dim, "RoPE head dim mismatch");
        let (cos, sin) = self.tables(offset, t);
        crate::backend::for_cpu_backends!(B,
            plain: same(super::cpu_rope::rope(same(x), &super::cpu_rope::Tables { cos, sin, heads })),
            autodiff: |C| same(super::cpu_rope::fused_rope::<C>(same(x), super::cpu_rope::Tables { cos, sin, heads })));
        reference_rope(x, cos, sin)
    }
}

/// [`RotaryEmbedding::apply`] with tensor ops, given the tables of [`RotaryEmbedding::tables`].
pub fn reference_rope<B: Backend>(x: Tensor<B, 4>, cos: Vec<f32>, sin: Vec<f32>) -> Tensor<B, 4> {
    let [_, t, _, d] = x.dims();
    let half = d / 2;
    let device = x.device();
    let cos = Tensor::<B, 4>::from_data(TensorData::new(cos, [1, t, 1, half]), &device);
    let sin = Tensor::<B, 4>::from_data(TensorData::new(sin, [1, t, 1, half]), &device);
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let out1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let out2 = x2 * cos + x1 * sin;
    Tensor::cat(vec![out1, out2], 3)
}
