//! `import_hf`: a Hugging Face model directory → a Tritter checkpoint directory (latent or
//! packed), tensor by tensor from the memory-mapped input so memory stays near one tensor.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use safetensors::tensor::Dtype;

use super::config::{read_hf_config, HfModel, WeightForm};
use super::offline::{self, OfflineWeight};
use super::tensors::HfWeights;
use crate::checkpoint::packed::{PACKED_SUFFIX, SCALE_SUFFIX};
use crate::checkpoint::write::{encode, write_tensors, Planned};
use crate::checkpoint::{FloatFormat, CONFIG_FILE, WEIGHTS_FILE};
use crate::config::TensorSpec;
use crate::error::{Result, TritterError};
use crate::quant::PackedTernary;

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Dequantize a packed ("offline") model to latent weights for fine-tuning, instead of
    /// keeping it packed for inference.
    pub latent: bool,
    /// Storage of the non-ternary tensors of a packed result (a latent result is f32).
    pub floats: FloatFormat,
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The source's description; its `config` is the imported model's (`config.json`).
    pub source: HfModel,
    /// Whether the result is a packed checkpoint.
    pub packed: bool,
    pub tensors: usize,
    /// Bytes of `model.safetensors`.
    pub bytes: u64,
    /// The tokenizer and generation files copied beside it.
    pub copied: Vec<String>,
}

/// Imports the Hugging Face model in `from` into a Tritter checkpoint directory `out`
/// (`config.json` + `model.safetensors`, plus the tokenizer files). `progress(done, total)` sees
/// each tensor written.
pub fn import_hf(
    from: &Path,
    out: &Path,
    options: &ImportOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportSummary> {
    refuse_non_empty(out)?;
    let source = read_hf_config(from)?;
    let weights = HfWeights::open(from)?;
    let packed = matches!(source.weights, WeightForm::Offline { .. }) && !options.latent;
    let specs = source.config.tensor_specs();
    let plan = plan(&source, &weights, &specs, packed, options)?;
    std::fs::create_dir_all(out).map_err(|source| TritterError::Io {
        action: "cannot create",
        path: out.to_path_buf(),
        source,
    })?;
    let metadata = packed.then(|| HashMap::from([("format".to_string(), "tritter-packed".to_string())]));
    let bytes = write_tensors(&out.join(WEIGHTS_FILE), &plan, metadata, progress)?;
    source.config.to_json_file(out.join(CONFIG_FILE))?;
    let copied = copy_tokenizer_files(from, out, &source)?;
    tracing::info!(from = %from.display(), out = %out.display(), packed, "imported Hugging Face model");
    Ok(ImportSummary { source, packed, tensors: plan.len(), bytes, copied })
}

/// An import never mixes its files with another model's.
fn refuse_non_empty(out: &Path) -> Result<()> {
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
    match non_empty {
        true => Err(TritterError::Io {
            action: "cannot import into",
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the directory is not empty; choose a new one or remove it",
            ),
        }),
        false => Ok(()),
    }
}

/// Every output tensor, after checking that each one the config implies is in the source with its
/// shape and dtype, and that the source holds nothing else.
fn plan<'a>(
    source: &HfModel,
    weights: &'a HfWeights,
    specs: &[TensorSpec],
    packed: bool,
    options: &ImportOptions,
) -> Result<Vec<Planned<'a>>> {
    let mut used = BTreeSet::new();
    let mut planned = Vec::new();
    for spec in specs {
        let stored = weights.require(&spec.name)?;
        used.insert(spec.name.clone());
        match source.weights {
            WeightForm::Offline { divide_by_scale } if spec.ternary => {
                let prefix = spec.name.strip_suffix(".weight").expect("projection names end in .weight");
                let scale_name = format!("{prefix}{SCALE_SUFFIX}");
                used.insert(scale_name.clone());
                let weight =
                    OfflineWeight::check(&stored, &weights.require(&scale_name)?, &spec.shape, divide_by_scale)?;
                planned.extend(offline_outputs(weights, spec, prefix, weight, packed));
            }
            _ => {
                stored.check_float(&spec.shape)?;
                let dtype = if packed && options.floats == FloatFormat::F16 { Dtype::F16 } else { Dtype::F32 };
                let name = spec.name.clone();
                let make = move || -> Result<Vec<u8>> { weights.require(&name)?.encoded(dtype) };
                planned.push(Planned {
                    name: spec.name.clone(),
                    dtype,
                    shape: spec.shape.clone(),
                    make: Box::new(make),
                });
            }
        }
    }
    let ignored = |name: &str| {
        name.ends_with("rotary_emb.inv_freq") || (source.config.tie_embeddings && name == "lm_head.weight")
    };
    let unused: Vec<String> = weights.names().filter(|n| !used.contains(*n) && !ignored(n)).map(String::from).collect();
    if let Some(first) = unused.first() {
        return Err(TritterError::Unsupported {
            path: weights.require(first)?.path.to_path_buf(),
            what: format!("tensor `{first}`"),
            reason: format!(
                "the config describes no such tensor (Tritter has no biases or extra modules); {} such tensor(s): {}",
                unused.len(),
                unused.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(planned)
}

/// The outputs of one packed projection: codes and scale (packed), or the dequantized latent weight.
fn offline_outputs<'a>(
    weights: &'a HfWeights,
    spec: &TensorSpec,
    prefix: &str,
    weight: OfflineWeight,
    packed: bool,
) -> Vec<Planned<'a>> {
    let [rows, cols] = [spec.shape[0], spec.shape[1]];
    let name = spec.name.clone();
    let values = move || -> Result<(Vec<i8>, f32)> { offline::values(&weights.require(&name)?, rows, cols, weight) };
    if !packed {
        let make = move || values().map(|(v, scale)| encode(&offline::latent(&v, scale), Dtype::F32));
        return vec![Planned {
            name: spec.name.clone(),
            dtype: Dtype::F32,
            shape: spec.shape.clone(),
            make: Box::new(make),
        }];
    }
    let words = PackedTernary::words_per_row(cols);
    let codes = move || -> Result<Vec<u8>> {
        let (v, scale) = values()?;
        let packed = PackedTernary::from_values(&v, rows, cols, vec![scale], crate::config::WeightScale::PerTensor)?;
        Ok(packed.codes.iter().flat_map(|w| w.to_le_bytes()).collect())
    };
    let scale_of = move || -> Result<Vec<u8>> { Ok(weight.gamma().to_le_bytes().to_vec()) };
    vec![
        Planned {
            name: format!("{prefix}{PACKED_SUFFIX}"),
            dtype: Dtype::U32,
            shape: vec![rows, words],
            make: Box::new(codes),
        },
        Planned {
            name: format!("{prefix}{SCALE_SUFFIX}"),
            dtype: Dtype::F32,
            shape: vec![1, 1],
            make: Box::new(scale_of),
        },
    ]
}

/// Copies the tokenizer and generation files; writes a `generation_config.json` from
/// `config.json`'s token ids when the source has none, so generation knows where to stop.
fn copy_tokenizer_files(from: &Path, out: &Path, source: &HfModel) -> Result<Vec<String>> {
    let copied = super::files::copy_model_files(from, out)?;
    if !copied.iter().any(|n| n == "generation_config.json") && !source.eos_token_ids.is_empty() {
        let generation =
            serde_json::json!({ "bos_token_id": source.bos_token_id, "eos_token_id": source.eos_token_ids });
        crate::io::write_json(&out.join("generation_config.json"), &generation)?;
    }
    Ok(copied)
}
