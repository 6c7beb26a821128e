//! Ternary layers as `bitnet-quantize` `TernaryWeight` values, for the candle BitNet ecosystem.
//!
//! [`BitnetTernaryWeight`] has the exact serde layout of `bitnet_quantize::TernaryWeight`
//! (bitsliced `trit_vsa::PackedTritVec` rows, scales `[out, in / group_size]`, shape, group
//! size), so its serialized form deserializes as one; this crate does not pull in candle.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use trit_vsa::PackedTritVec;

use crate::config::WeightScale;
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::ternary::PackedTernary;

/// `bitnet_quantize::TernaryWeight`, field for field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BitnetTernaryWeight {
    /// One bitsliced row per output feature.
    pub data: Vec<PackedTritVec>,
    /// γ per row and group, `[out, in / group_size]` row-major.
    pub scales: Vec<f32>,
    /// `(out_features, in_features)`.
    pub shape: (usize, usize),
    /// Inputs per scale; `in_features` for per-tensor and per-row scales.
    pub group_size: usize,
}

impl BitnetTernaryWeight {
    /// Same values and scales as `packed` (a per-tensor γ is repeated for every row).
    pub fn from_packed(packed: &PackedTernary) -> Result<Self> {
        let values = packed.values();
        let data = values
            .chunks(packed.cols.max(1))
            .map(|row| PackedTritVec::from_i8_slice(row).map_err(|e| TritterError::InvalidInput(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let (group_size, scales) = match packed.weight_scale {
            WeightScale::PerTensor => (packed.cols, vec![packed.scales[0]; packed.rows]),
            WeightScale::PerRow => (packed.cols, packed.scales.clone()),
            WeightScale::PerGroup(n) => (n, packed.scales.clone()),
        };
        Ok(Self { data, scales, shape: (packed.rows, packed.cols), group_size })
    }

    /// Back to our packed form (scales per row when a group spans the row, else per group).
    pub fn to_packed(&self) -> Result<PackedTernary> {
        let (rows, cols) = self.shape;
        if self.data.len() != rows
            || self.group_size == 0
            || cols % self.group_size != 0
            || self.scales.len() != rows * (cols / self.group_size)
        {
            return Err(TritterError::InvalidInput(format!(
                "inconsistent TernaryWeight: shape {:?}, {} rows, group_size {}, {} scales",
                self.shape,
                self.data.len(),
                self.group_size,
                self.scales.len()
            )));
        }
        let values: Vec<i8> = self.data.iter().flat_map(|row| row.to_i8_vec()).collect();
        let weight_scale =
            if self.group_size == cols { WeightScale::PerRow } else { WeightScale::PerGroup(self.group_size) };
        PackedTernary::from_values(&values, rows, cols, self.scales.clone(), weight_scale)
    }
}

/// The ternary projections of a packed model by tensor-name prefix.
pub fn export_bitnet<B: Backend>(model: &TritterModel<B>) -> Result<BTreeMap<String, BitnetTernaryWeight>> {
    model.require_packed()?;
    model
        .packed_weights()
        .into_iter()
        .map(|(name, packed)| Ok((name, BitnetTernaryWeight::from_packed(packed)?)))
        .collect()
}
