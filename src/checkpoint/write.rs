//! Writing a safetensors file tensor by tensor (packed checkpoints, imports, Hugging Face
//! exports): each tensor's bytes are made when the writer reaches it, so only one is in memory,
//! and the file appears under its name only when complete.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, View};

use crate::error::{Result, TritterError};
use crate::io::{rename_into_place, temp_path};

/// One output tensor and how to make its bytes.
pub(crate) struct Planned<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub make: Box<dyn Fn() -> Result<Vec<u8>> + 'a>,
}

/// `values` as little-endian F32, F16 or BF16 bytes.
pub(crate) fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        Dtype::BF16 => values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The count of tensors written so far and the progress callback that sees it.
type Progress<'f> = (usize, &'f mut (dyn FnMut(usize, usize) + 'f));

/// A planned tensor as safetensors writes it: its bytes made when the writer reaches it, so only
/// one tensor is in memory; the first error is kept (and the file discarded) since `View` cannot fail.
struct LazyView<'p, 'a, 'f> {
    tensor: &'p Planned<'a>,
    error: &'p RefCell<Option<TritterError>>,
    done: &'p RefCell<Progress<'f>>,
    total: usize,
}

impl View for LazyView<'_, '_, '_> {
    fn dtype(&self) -> Dtype {
        self.tensor.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let bytes = match (self.tensor.make)() {
            Ok(bytes) if bytes.len() == self.data_len() => bytes,
            result => {
                let mut error = self.error.borrow_mut();
                if error.is_none() {
                    *error = Some(result.err().unwrap_or_else(|| {
                        TritterError::InvalidInput(format!(
                            "tensor `{}` produced the wrong byte count",
                            self.tensor.name
                        ))
                    }));
                }
                vec![0; self.data_len()]
            }
        };
        let mut done = self.done.borrow_mut();
        done.0 += 1;
        let count = done.0;
        (done.1)(count, self.total);
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.tensor.shape.iter().product::<usize>() * self.tensor.dtype.bitsize() / 8
    }
}

/// Writes the planned tensors to `path` atomically; returns the file's size.
pub(crate) fn write_tensors(
    path: &Path,
    plan: &[Planned],
    metadata: Option<HashMap<String, String>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<u64> {
    let tmp = temp_path(path);
    let error = RefCell::new(None);
    let done = RefCell::new((0usize, progress));
    let views = plan
        .iter()
        .map(|tensor| (tensor.name.clone(), LazyView { tensor, error: &error, done: &done, total: plan.len() }));
    let written = safetensors::serialize_to_file(views, metadata, &tmp);
    if let Some(error) = error.into_inner() {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TritterError::Io { action: "cannot write", path: tmp.clone(), source: std::io::Error::other(e.to_string()) }
    })?;
    rename_into_place(&tmp, path)?;
    std::fs::metadata(path).map(|m| m.len()).map_err(|source| TritterError::Io {
        action: "cannot stat",
        path: path.to_path_buf(),
        source,
    })
}
