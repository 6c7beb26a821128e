//! Rotary position embedding, rotate-half layout (spec section 2).

use burn::tensor::Tensor;

use crate::backend::reference::rope_tables;
use crate::backend::TritterBackend;

/// RoPE with base `theta` over heads of `head_dim` (even) features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotaryEmbedding {
    pub theta: f64,
    pub head_dim: usize,
}

impl RotaryEmbedding {
    /// The `cos` and `sin` tables of positions `offset..offset + len` ([`rope_tables`]).
    pub fn tables(&self, offset: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
        rope_tables(self.theta, self.head_dim, offset, len)
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
