//! The GGUF container (ggml's `docs/gguf.md`, version 3): a header of typed metadata and tensor
//! descriptions, then the tensor data, each tensor aligned. Tensors are made one at a time as the
//! writer reaches them, and the file appears under its name only when complete.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Result, TritterError};
use crate::io::{rename_into_place, temp_path};

/// Where every tensor's data starts: a multiple of this (GGUF's default, written explicitly).
pub const ALIGNMENT: usize = 32;

/// A metadata value (the GGUF value types Tritter writes).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

impl GgufValue {
    fn type_id(&self) -> u32 {
        match self {
            GgufValue::U32(_) => 4,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::Str(_) => 8,
            GgufValue::StrArray(_) | GgufValue::I32Array(_) => 9,
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            GgufValue::U32(v) => out.extend(v.to_le_bytes()),
            GgufValue::F32(v) => out.extend(v.to_le_bytes()),
            GgufValue::Bool(v) => out.push(*v as u8),
            GgufValue::Str(s) => write_str(out, s),
            GgufValue::StrArray(items) => {
                out.extend(8u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|s| write_str(out, s));
            }
            GgufValue::I32Array(items) => {
                out.extend(5u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// The ggml tensor types Tritter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    /// Ternary, 5 values per byte in base 3: 54 bytes per 256 values (1.6875 bits).
    Tq1_0,
    /// Ternary, 2-bit codes `value + 1`: 66 bytes per 256 values (2.0625 bits).
    Tq2_0,
}

impl GgmlType {
    /// ggml's `enum ggml_type` number.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::Tq1_0 => 34,
            GgmlType::Tq2_0 => 35,
        }
    }

    /// (values, bytes) of one block.
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Tq1_0 => (256, 54),
            GgmlType::Tq2_0 => (256, 66),
        }
    }

    /// Bytes of a row of `n` values, or `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let (values, bytes) = self.block();
        n.is_multiple_of(values).then_some(n / values * bytes)
    }
}

/// One tensor to write: `dims` in GGUF order (the contiguous dimension first, so a Tritter
/// `[out, in]` weight is `[in, out]`) and how to make its bytes.
pub(crate) struct GgufTensor<'a> {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<usize>,
    pub make: Box<dyn Fn() -> Result<Vec<u8>> + 'a>,
}

impl GgufTensor<'_> {
    fn byte_len(&self) -> usize {
        let rows: usize = self.dims[1..].iter().product();
        self.ty.row_bytes(self.dims[0]).expect("rows checked when planned") * rows
    }
}

fn padding(len: usize) -> usize {
    len.next_multiple_of(ALIGNMENT) - len
}

/// The header: magic, version, counts, metadata, tensor descriptions, padding to the data.
fn header(metadata: &[(String, GgufValue)], tensors: &[GgufTensor]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_str(&mut out, key);
        out.extend(value.type_id().to_le_bytes());
        value.write_to(&mut out);
    }
    let mut offset = 0usize;
    for tensor in tensors {
        write_str(&mut out, &tensor.name);
        out.extend((tensor.dims.len() as u32).to_le_bytes());
        tensor.dims.iter().for_each(|&d| out.extend((d as u64).to_le_bytes()));
        out.extend(tensor.ty.id().to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offset += tensor.byte_len() + padding(tensor.byte_len());
    }
    out.resize(out.len() + padding(out.len()), 0);
    out
}

/// Writes a GGUF file atomically (with `general.alignment` added to `metadata`); returns its
/// size. `progress(done, total)` is called after each tensor.
pub(crate) fn write_gguf(
    path: &Path,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensor],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<u64> {
    let mut metadata = metadata.to_vec();
    metadata.push(("general.alignment".into(), GgufValue::U32(ALIGNMENT as u32)));
    let tmp = temp_path(path);
    let written = write_parts(&tmp, &header(&metadata, tensors), tensors, progress);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    rename_into_place(&tmp, path)?;
    std::fs::metadata(path).map(|m| m.len()).map_err(|source| TritterError::Io {
        action: "cannot stat",
        path: path.to_path_buf(),
        source,
    })
}

fn write_parts(
    tmp: &Path,
    header: &[u8],
    tensors: &[GgufTensor],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let io = |source| TritterError::Io { action: "cannot write", path: tmp.to_path_buf(), source };
    let file = std::fs::File::create(tmp).map_err(io)?;
    let mut out = BufWriter::new(file);
    out.write_all(header).map_err(io)?;
    for (i, tensor) in tensors.iter().enumerate() {
        let bytes = (tensor.make)()?;
        if bytes.len() != tensor.byte_len() {
            return Err(TritterError::InvalidInput(format!(
                "GGUF tensor `{}`: {} bytes made, {} expected",
                tensor.name,
                bytes.len(),
                tensor.byte_len()
            )));
        }
        out.write_all(&bytes).map_err(io)?;
        out.write_all(&vec![0; padding(bytes.len())]).map_err(io)?;
        progress(i + 1, tensors.len());
    }
    out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
}
