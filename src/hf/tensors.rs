//! The weights of a Hugging Face model directory: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` names, memory-mapped so a tensor is read only when asked for.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::checkpoint::format::{check_shape, corrupt, decode_floats, floats_of};
use crate::checkpoint::write::encode;
use crate::error::{Result, TritterError};

/// One memory-mapped shard.
struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
}

/// Every tensor of a model directory, by name.
pub struct HfWeights {
    shards: Vec<Shard>,
    /// Tensor name → index of its shard.
    index: BTreeMap<String, usize>,
}

/// A tensor as stored: its dtype, shape and little-endian bytes, and the file it is in.
pub struct StoredTensor<'a> {
    pub path: &'a Path,
    pub name: &'a str,
    pub view: TensorView<'a>,
}

impl StoredTensor<'_> {
    /// The values as f32 (from F32, F16 or BF16), refusing any other dtype.
    pub fn floats(&self) -> Result<Vec<f32>> {
        floats_of(&self.view).ok_or_else(|| self.wrong_dtype())
    }

    /// The values in `dtype`'s bytes (F32, F16 or BF16), converted a slice at a time so a large
    /// tensor is never held as f32 in full.
    pub fn encoded(&self, dtype: Dtype) -> Result<Vec<u8>> {
        const CHUNK: usize = 1 << 16;
        let width = self.view.dtype().bitsize() / 8;
        let mut out = Vec::with_capacity(self.view.data().len() / width.max(1) * (dtype.bitsize() / 8));
        for bytes in self.view.data().chunks(CHUNK * width.max(1)) {
            let values = decode_floats(bytes, self.view.dtype()).ok_or_else(|| self.wrong_dtype())?;
            out.extend(encode(&values, dtype));
        }
        Ok(out)
    }

    /// Refuses the tensor unless it is F32, F16 or BF16 and shaped `expected`.
    pub fn check_float(&self, expected: &[usize]) -> Result<()> {
        if !matches!(self.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(self.wrong_dtype());
        }
        check_shape(self.path, self.name, &self.view, expected)
    }

    fn wrong_dtype(&self) -> TritterError {
        TritterError::TensorLoad {
            path: self.path.to_path_buf(),
            tensor: self.name.to_string(),
            reason: format!("dtype {:?}; expected F32, F16 or BF16", self.view.dtype()),
        }
    }

    pub fn shape(&self) -> &[usize] {
        self.view.shape()
    }

    pub fn dtype(&self) -> Dtype {
        self.view.dtype()
    }
}

impl HfWeights {
    /// Opens `dir/model.safetensors` or, failing that, the shards of `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let files = if single.is_file() {
            vec![single]
        } else {
            let index = dir.join("model.safetensors.index.json");
            if !index.is_file() {
                return Err(TritterError::Io {
                    action: "cannot find the weights (model.safetensors or model.safetensors.index.json) in",
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no weights file"),
                });
            }
            shard_files(dir, &index)?
        };
        let mut weights = Self { shards: Vec::new(), index: BTreeMap::new() };
        for path in files {
            let map = crate::checkpoint::read::map_weights(&path)?;
            let names =
                crate::checkpoint::read::parse(&path, &map)?.names().into_iter().map(String::from).collect::<Vec<_>>();
            for name in names {
                if weights.index.insert(name.clone(), weights.shards.len()).is_some() {
                    return Err(corrupt(&path, format!("tensor `{name}` is in two shards")));
                }
            }
            weights.shards.push(Shard { path, map });
        }
        Ok(weights)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The tensor `name`, if the checkpoint has it.
    pub fn get(&self, name: &str) -> Result<Option<StoredTensor<'_>>> {
        let Some((name, &shard)) = self.index.get_key_value(name) else { return Ok(None) };
        let shard = &self.shards[shard];
        let file = crate::checkpoint::read::parse(&shard.path, &shard.map)?;
        let view = file.tensor(name).map_err(|e| corrupt(&shard.path, e))?;
        Ok(Some(StoredTensor { path: &shard.path, name, view }))
    }

    /// The tensor `name`, which must exist.
    pub fn require(&self, name: &str) -> Result<StoredTensor<'_>> {
        self.get(name)?.ok_or_else(|| TritterError::MissingTensor {
            path: self.shards.first().map(|s| s.path.clone()).unwrap_or_default(),
            tensor: name.to_string(),
        })
    }
}

/// The distinct shard files of an index, in the order they first appear.
fn shard_files(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let parsed: Index = crate::io::read_json(index, "cannot read weights index")?;
    let mut files: Vec<&String> = parsed.weight_map.values().collect();
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            if Path::new(name).components().count() != 1 || !path.is_file() {
                return Err(corrupt(index, format!("names shard `{name}`, which is not a file in {}", dir.display())));
            }
            Ok(path)
        })
        .collect()
}
