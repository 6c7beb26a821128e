//! Rotary position embedding, rotate-half layout (spec section 2).

use burn::tensor::Tensor;

use crate::backend::TritterBackend;

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
    pub fn apply<B: TritterBackend>(&self, x: Tensor<B, 4>, offset: usize) -> Tensor<B, 4> {
        let [_, t, _, d] = x.dims();
        assert_eq!(d, self.head_dim, "RoPE head dim mismatch");
        let (cos, sin) = self.tables(offset, t);
        B::rope(x, cos, sin)
    }
}
