//! Reading a checkpoint's weights file: one memory map whose header safetensors has checked
//! (JSON, offsets, sizes), and every tensor's name, shape and dtype checked against the config
//! before Burn sees a byte of it, so a damaged or hand-edited file is an error, never a panic.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use burn::module::ParamId;
use burn::tensor::{DType, TensorData};
use burn_store::{TensorSnapshot, TensorSnapshotError};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::format::{check_shape, corrupt, decode_floats};
use crate::error::{Result, TritterError};

/// A weights file mapped into memory.
pub(crate) fn map_weights(path: &Path) -> Result<Mmap> {
    let open_error = |source| TritterError::Io { action: "cannot open weights", path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(open_error)?;
    // SAFETY: the map is read-only; a file changed underneath would give wrong values, not
    // unsoundness in safe code reading bytes.
    unsafe { Mmap::map(&file) }.map_err(|source| TritterError::Io {
        action: "cannot map weights",
        path: path.to_path_buf(),
        source,
    })
}

/// The safetensors view of a mapped weights file (its header parsed and checked).
pub(crate) fn parse<'a>(path: &Path, map: &'a Mmap) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(map).map_err(|e| corrupt(path, e))
}

/// The file's tensors other than those `skip` names, as snapshots that read and convert their
/// bytes only when applied. Each is checked first: its name is in `expected`, its shape the one
/// given there and its dtype F32, F16 or BF16 (read as f32, the model's float type).
pub(crate) fn float_snapshots(
    path: &Path,
    map: &Rc<Mmap>,
    file: &SafeTensors,
    expected: &HashMap<String, Vec<usize>>,
    skip: impl Fn(&str) -> bool,
) -> Result<Vec<TensorSnapshot>> {
    let mut names: Vec<&str> = file.names().into_iter().filter(|n| !skip(n)).collect();
    names.sort_unstable();
    let unexpected: Vec<String> = names.iter().filter(|n| !expected.contains_key(**n)).map(|n| n.to_string()).collect();
    if !unexpected.is_empty() {
        return Err(TritterError::UnexpectedTensors { path: path.to_path_buf(), tensors: unexpected });
    }
    names.into_iter().map(|name| float_snapshot(path, map, file, name, &expected[name])).collect()
}

fn float_snapshot(
    path: &Path,
    map: &Rc<Mmap>,
    file: &SafeTensors,
    name: &str,
    shape: &[usize],
) -> Result<TensorSnapshot> {
    let view = file.tensor(name).map_err(|e| corrupt(path, e))?;
    check_shape(path, name, &view, shape)?;
    let dtype = view.dtype();
    if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(wrong_dtype(path, name, &view, "F32, F16 or BF16"));
    }
    let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
    let bytes = start..start + view.data().len();
    let (map, data_shape) = (map.clone(), shape.to_vec());
    let read = move || -> std::result::Result<TensorData, TensorSnapshotError> {
        let values = decode_floats(&map[bytes.clone()], dtype).expect("dtype checked when the snapshot was made");
        Ok(TensorData::new(values, data_shape.clone()))
    };
    let stack: Vec<String> = name.split('.').map(str::to_string).collect();
    let containers = vec![String::new(); stack.len()];
    Ok(TensorSnapshot::from_closure(Rc::new(read), DType::F32, shape.to_vec(), stack, containers, ParamId::new()))
}

/// A tensor whose dtype is not one this file may hold there.
pub(crate) fn wrong_dtype(path: &Path, name: &str, view: &TensorView, expected: &str) -> TritterError {
    TritterError::TensorLoad {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        reason: format!("dtype {:?}, expected {expected}", view.dtype()),
    }
}
