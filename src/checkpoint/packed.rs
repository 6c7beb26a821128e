//! Packed checkpoints (spec section 4): `config.json` + `model.safetensors` where each ternary
//! projection is `...weight_packed` (u32 `[out, ⌈in/16⌉]`) + `...weight_scale` (f32) instead of
//! its latent weight; the other tensors keep their names, in f32 or f16.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use burn_store::ModuleSnapshot;
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::format::{check_apply, check_shape, floats_of, snapshot_f32, CONFIG_FILE, WEIGHTS_FILE};
use super::read::{float_snapshots, wrong_dtype};
use super::write::{encode, write_tensors, Planned};
use crate::backend::TritterBackend;
use crate::config::TritterConfig;
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::ternary::{PackedLinear, PackedTernary, Projection};

/// Suffix of a packed projection's codes.
pub const PACKED_SUFFIX: &str = ".weight_packed";
/// Suffix of a packed projection's scales.
pub const SCALE_SUFFIX: &str = ".weight_scale";

/// How the full-precision tensors (embeddings, norms, full-precision LM head) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FloatFormat {
    #[default]
    F32,
    F16,
}

/// What a packed checkpoint holds, in bytes of tensor data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackedSize {
    /// Ternary weights (`out × in` summed over the packed projections).
    pub ternary_weights: u64,
    /// Bytes of their codes and scales.
    pub ternary_bytes: u64,
    /// Bytes of the other tensors.
    pub float_bytes: u64,
}

impl PackedSize {
    /// Bits per ternary weight, codes and scales included (spec goal: ≤ 2.1).
    pub fn bits_per_ternary_weight(&self) -> f64 {
        8.0 * self.ternary_bytes as f64 / self.ternary_weights.max(1) as f64
    }
}

impl<B: TritterBackend> TritterModel<B> {
    /// Writes a packed checkpoint directory (the model must be packed, see
    /// [`TritterModel::into_packed`]); the weights file is written atomically.
    pub fn save_packed_checkpoint(&self, dir: impl AsRef<Path>, floats: FloatFormat) -> Result<PackedSize> {
        let dir = dir.as_ref();
        self.require_packed()?;
        std::fs::create_dir_all(dir).map_err(|source| TritterError::Io {
            action: "cannot create checkpoint directory",
            path: dir.to_path_buf(),
            source,
        })?;

        let dtype = match floats {
            FloatFormat::F32 => Dtype::F32,
            FloatFormat::F16 => Dtype::F16,
        };
        let mut size = PackedSize { ternary_weights: 0, ternary_bytes: 0, float_bytes: 0 };
        let snapshots = self.collect(None, None, true);
        let mut plan: Vec<Planned> = Vec::new();
        for snapshot in &snapshots {
            size.float_bytes += (snapshot.shape.iter().product::<usize>() * dtype.bitsize() / 8) as u64;
            let make = move || Ok(encode(&snapshot_f32(snapshot)?, dtype));
            plan.push(Planned {
                name: snapshot.full_path(),
                dtype,
                shape: snapshot.shape.clone(),
                make: Box::new(make),
            });
        }
        for (name, packed) in self.packed_weights() {
            size.ternary_weights += (packed.rows * packed.cols) as u64;
            size.ternary_bytes += 4 * (packed.codes.len() + packed.scales.len()) as u64;
            let codes = move || Ok(packed.codes.iter().flat_map(|w| w.to_le_bytes()).collect());
            let scales = move || Ok(encode(&packed.scales, Dtype::F32));
            let words = PackedTernary::words_per_row(packed.cols);
            plan.push(Planned {
                name: format!("{name}{PACKED_SUFFIX}"),
                dtype: Dtype::U32,
                shape: vec![packed.rows, words],
                make: Box::new(codes),
            });
            plan.push(Planned {
                name: format!("{name}{SCALE_SUFFIX}"),
                dtype: Dtype::F32,
                shape: packed.scale_shape().to_vec(),
                make: Box::new(scales),
            });
        }
        let metadata = HashMap::from([("format".to_string(), "tritter-packed".to_string())]);
        write_tensors(&dir.join(WEIGHTS_FILE), &plan, Some(metadata), &mut |_, _| {})?;
        self.config().to_json_file(dir.join(CONFIG_FILE))?;
        tracing::debug!(dir = %dir.display(), bits = size.bits_per_ternary_weight(), "saved packed checkpoint");
        Ok(size)
    }
}

/// Whether a weights file holds packed projections.
pub(crate) fn is_packed_file(tensors: &SafeTensors) -> bool {
    tensors.names().iter().any(|n| n.ends_with(PACKED_SUFFIX))
}

/// Builds the packed model from a packed weights file: every ternary projection from its codes
/// and scales, every other tensor (f32 or f16) applied by name.
pub(crate) fn load_packed<B: TritterBackend>(
    config: &TritterConfig,
    path: &Path,
    map: &Rc<Mmap>,
    file: &SafeTensors,
    device: &B::Device,
) -> Result<TritterModel<B>> {
    let model = TritterModel::<B>::new(config, device)?; // latent weights are lazy: never allocated
    let mut model = model.try_map_projections(|name, projection| {
        let Projection::Latent(linear) = &projection else { return Ok(projection) };
        let Some(weight_scale) = linear.quant.weight_scale else { return Ok(projection) };
        let [rows, cols] = config.projection_shape(name);
        let mut packed = PackedTernary { rows, cols, codes: Vec::new(), scales: Vec::new(), weight_scale };
        let code_name = format!("{name}{PACKED_SUFFIX}");
        packed.codes = read_words(path, file, &code_name, &[rows, PackedTernary::words_per_row(cols)])?;
        if let Some(bad) = packed.codes.iter().position(|w| (w & (w >> 1) & 0x5555_5555) != 0) {
            let reason = format!("word {bad} holds code 3 (codes are 0, 1, 2)");
            return Err(TritterError::TensorLoad { path: path.to_path_buf(), tensor: code_name, reason });
        }
        packed.scales = read_floats(path, file, &format!("{name}{SCALE_SUFFIX}"), &packed.scale_shape())?;
        Ok(Projection::Packed(PackedLinear::new(packed, linear.quant.activation_bits, device)))
    })?;

    let is_packed = |name: &str| name.ends_with(PACKED_SUFFIX) || name.ends_with(SCALE_SUFFIX);
    let snapshots = float_snapshots(path, map, file, &config.expected_shapes(), is_packed)?;
    let result = model.apply(snapshots, None, None, true);
    check_apply(path, result)?;
    Ok(crate::backend::with_owned_params(model))
}

fn tensor<'a>(path: &Path, file: &'a SafeTensors, name: &str) -> Result<TensorView<'a>> {
    file.tensor(name).map_err(|_| TritterError::MissingTensor { path: path.to_path_buf(), tensor: name.to_string() })
}

fn read_words(path: &Path, file: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<u32>> {
    let view = tensor(path, file, name)?;
    check_shape(path, name, &view, shape)?;
    if view.dtype() != Dtype::U32 {
        return Err(wrong_dtype(path, name, &view, "U32"));
    }
    Ok(view.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// An f32, f16 or bf16 tensor of shape `shape` as f32 values.
fn read_floats(path: &Path, file: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let view = tensor(path, file, name)?;
    check_shape(path, name, &view, shape)?;
    floats_of(&view).ok_or_else(|| wrong_dtype(path, name, &view, "F32, F16 or BF16"))
}
