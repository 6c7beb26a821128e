//! What every checkpoint format shares: the file names and the errors of reading tensors.

use std::path::{Path, PathBuf};

use burn_store::{ApplyError, SafetensorsStoreError};

use crate::error::{Result, TritterError};

/// File name of the config inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Turns what burn-store reports after applying tensors into our errors: every tensor the
/// config implies must have been found with its shape, and no other tensor may be in the file.
pub(crate) fn check_apply(weights: &Path, result: burn_store::ApplyResult) -> Result<()> {
    if let Some(error) = result.errors.into_iter().next() {
        return Err(apply_error(weights.to_path_buf(), error));
    }
    if !result.missing.is_empty() {
        let tensor = result.missing.into_iter().map(|(path, _)| path).collect::<Vec<_>>().join(", ");
        return Err(TritterError::MissingTensor { path: weights.to_path_buf(), tensor });
    }
    if !result.unused.is_empty() {
        return Err(TritterError::UnexpectedTensors { path: weights.to_path_buf(), tensors: result.unused });
    }
    Ok(())
}

pub(crate) fn store_error(path: &Path, error: SafetensorsStoreError) -> TritterError {
    match error {
        SafetensorsStoreError::Io(source)
        | SafetensorsStoreError::Safetensors(safetensors::SafeTensorError::IoError(source)) => {
            TritterError::Io { action: "cannot access", path: path.to_path_buf(), source }
        }
        other => TritterError::CorruptCheckpoint { path: path.to_path_buf(), reason: other.to_string() },
    }
}

/// A weights file that safetensors cannot read, or whose contents contradict themselves.
pub(crate) fn corrupt(path: &Path, reason: impl std::fmt::Display) -> TritterError {
    TritterError::CorruptCheckpoint { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Refuses tensor `name` of `path` unless its shape is `expected`.
pub(crate) fn check_shape(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView,
    expected: &[usize],
) -> Result<()> {
    if view.shape() != expected {
        return Err(TritterError::ShapeMismatch {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            expected: expected.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    Ok(())
}

/// The values of an F32, F16 or BF16 tensor as f32 (`None` for any other dtype).
pub(crate) fn floats_of(view: &safetensors::tensor::TensorView) -> Option<Vec<f32>> {
    decode_floats(view.data(), view.dtype())
}

/// Little-endian F32, F16 or BF16 bytes as f32 (`None` for any other dtype).
pub(crate) fn decode_floats(data: &[u8], dtype: safetensors::tensor::Dtype) -> Option<Vec<f32>> {
    use safetensors::tensor::Dtype;
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        _ => return None,
    };
    let mut out = crate::allocator::with_huge_pages(data.len() / width);
    match dtype {
        Dtype::F32 => out.extend(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Dtype::F16 => out.extend(data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        _ => out.extend(data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
    }
    Some(out)
}

fn apply_error(path: PathBuf, error: ApplyError) -> TritterError {
    match error {
        ApplyError::ShapeMismatch { path: tensor, expected, found } => {
            TritterError::ShapeMismatch { path, tensor, expected, found }
        }
        ApplyError::DTypeMismatch { path: tensor, expected, found } => {
            TritterError::TensorLoad { path, tensor, reason: format!("dtype {found:?}, expected {expected:?}") }
        }
        ApplyError::AdapterError { path: tensor, message } | ApplyError::LoadError { path: tensor, message } => {
            TritterError::TensorLoad { path, tensor, reason: message }
        }
    }
}

/// The values of a module tensor snapshot as f32.
pub(crate) fn snapshot_f32(snapshot: &burn_store::TensorSnapshot) -> Result<Vec<f32>> {
    let data = snapshot.to_data().map_err(|e| TritterError::InvalidInput(format!("{e:?}")))?;
    data.convert::<f32>().into_vec::<f32>().map_err(|e| TritterError::InvalidInput(format!("{e:?}")))
}
