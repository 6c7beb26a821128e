//! The model's ternary projections by name, and its conversion to the packed inference form.

use std::sync::Arc;

use burn::tensor::backend::Backend;

use crate::config::{WeightScale, LAYER_PROJECTIONS};
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::ternary::{PackedLinear, PackedTernary, Projection};

impl<B: Backend> TritterModel<B> {
    /// Every projection with its tensor-name prefix (e.g. `model.layers.0.self_attn.q_proj`).
    pub fn projections(&self) -> Vec<(String, &Projection<B>)> {
        let mut out = Vec::new();
        for (i, layer) in self.model.layers.iter().enumerate() {
            for (spec, p) in LAYER_PROJECTIONS.iter().zip(layer.projections()) {
                out.push((format!("model.layers.{i}.{}.{}", spec.block, spec.name), p));
            }
        }
        if let Some(head) = &self.lm_head {
            out.push(("lm_head".to_string(), head));
        }
        out
    }

    /// Replaces every projection by `f(name, projection)`.
    pub fn try_map_projections(
        mut self,
        mut f: impl FnMut(&str, Projection<B>) -> Result<Projection<B>>,
    ) -> Result<Self> {
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            for (spec, slot) in LAYER_PROJECTIONS.iter().zip(layer.projections_mut()) {
                replace(slot, |p| f(&format!("model.layers.{i}.{}.{}", spec.block, spec.name), p))?;
            }
        }
        self.lm_head = self.lm_head.take().map(|head| f("lm_head", head)).transpose()?;
        Ok(self)
    }

    /// The packed weights by tensor-name prefix (empty for a model that is not packed).
    pub fn packed_weights(&self) -> Vec<(String, &PackedTernary)> {
        self.projections()
            .into_iter()
            .filter_map(|(name, p)| match p {
                Projection::Packed(linear) => Some((name, &**linear.packed)),
                Projection::Latent(_) => None,
            })
            .collect()
    }

    /// An error unless the model is packed (for what only a packed model can do).
    pub(crate) fn require_packed(&self) -> Result<()> {
        if self.is_packed() {
            Ok(())
        } else {
            Err(TritterError::InvalidInput("the model is not packed; call into_packed first".into()))
        }
    }

    /// Whether the projections are in packed form.
    pub fn is_packed(&self) -> bool {
        self.projections().iter().any(|(_, p)| matches!(p, Projection::Packed(_)))
    }
}

/// Replaces `*slot` by `f(*slot)`; an empty packed layer stands in while `f` runs (if `f`
/// fails, the caller drops the whole model with the error).
impl<B: crate::backend::TritterBackend> TritterModel<B> {
    /// The inference form: every ternary projection quantized and packed (2-bit codes + scales,
    /// spec section 3); embeddings, norms and a full-precision LM head stay f32. A tied ternary
    /// LM head keeps multiplying with the fake-quantized embedding.
    pub fn into_packed(self) -> Result<Self> {
        if !self.config().bitnet {
            return Err(TritterError::InvalidInput(
                "bitnet is off: the model has no ternary projections to pack".into(),
            ));
        }
        self.try_map_projections(|_, p| p.into_packed())
    }
}

fn replace<B: Backend>(slot: &mut Projection<B>, f: impl FnOnce(Projection<B>) -> Result<Projection<B>>) -> Result<()> {
    let empty =
        PackedTernary { rows: 0, cols: 0, codes: Vec::new(), scales: Vec::new(), weight_scale: WeightScale::PerTensor };
    let old = std::mem::replace(slot, Projection::Packed(PackedLinear::host_only(Arc::new(empty), None)));
    *slot = f(old)?;
    Ok(())
}
