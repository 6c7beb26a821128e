//! Export to transformers: round trips through the importer keep every tensor bit for bit, the
//! packed form reproduces transformers' own `pack_weights` bytes, and what no transformers class
//! computes is refused by field.

use std::collections::BTreeMap;
use std::path::Path;

use tritter::hf::{import_hf, HfDtype, ImportOptions};
use tritter::{MlpNorm, NormKind, TritterConfig, TritterError, TritterModel, WeightQuantEps, WeightScale};

use super::hf_import::fixture;
use crate::model::common::{temp_dir, B};

/// Every tensor of a safetensors file: name → (dtype, shape, bytes).
fn tensors(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(n, v)| (n, (format!("{:?}", v.dtype()), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn import(from: &Path) -> tempfile::TempDir {
    let out = temp_dir();
    import_hf(from, out.path(), &ImportOptions::default(), &mut |_, _| {}).unwrap();
    out
}

/// import → export (f32) → import: the second import's checkpoint equals the first, tensor for
/// tensor and byte for byte, for latent (online) and packed (offline) models alike.
#[test]
fn export_then_import_gives_bit_identical_tensors() {
    for name in [
        "bitnet_gqa_online",
        "llama_silu_online_bf16",
        "bitnet_plain",
        "bitnet_offline_bitlinear",
        "bitnet_offline_autobitlinear",
    ] {
        let first = import(&fixture(name));
        let model = TritterModel::<B>::load_checkpoint(first.path(), &Default::default()).unwrap();
        let exported = temp_dir();
        let summary = model.save_hf(exported.path(), HfDtype::F32).unwrap();
        assert_eq!(summary.packed, model.is_packed(), "{name}");
        let second = import(exported.path());
        let (a, b) =
            (tensors(&first.path().join("model.safetensors")), tensors(&second.path().join("model.safetensors")));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{name}: tensor names");
        for (tensor, value) in &a {
            assert!(b[tensor] == *value, "{name}: {tensor} differs after export and import");
        }
        let config = |dir: &Path| TritterConfig::from_json_file(dir.join("config.json")).unwrap();
        assert_eq!(config(first.path()), config(second.path()), "{name}: config");
    }
}

/// The packed export of a model imported from transformers' `AutoBitLinear` offline form writes
/// the very bytes transformers' `pack_weights` wrote, and the same scales.
#[test]
fn packed_export_reproduces_transformers_packing() {
    let source = fixture("bitnet_offline_autobitlinear");
    let model = TritterModel::<B>::load_checkpoint(import(&source).path(), &Default::default()).unwrap();
    let exported = temp_dir();
    model.save_hf(exported.path(), HfDtype::F32).unwrap();
    let (want, got) = (tensors(&source.join("model.safetensors")), tensors(&exported.path().join("model.safetensors")));
    let mut compared = 0;
    for (name, value) in &want {
        if name.ends_with("_proj.weight") || name.ends_with("weight_scale") {
            assert!(got[name] == *value, "{name}: exported bytes differ from transformers'");
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * 7 * model.config().num_layers);
}

fn refused(config: TritterConfig, packed: bool) -> String {
    let mut model = TritterModel::<B>::new(&config, &Default::default()).unwrap();
    if packed {
        model = model.into_packed().unwrap();
    }
    let out = temp_dir();
    match model.save_hf(out.path(), HfDtype::F32) {
        Err(e @ TritterError::Unsupported { .. }) => {
            assert!(!out.path().join("model.safetensors").exists());
            e.to_string()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn what_transformers_cannot_compute_is_refused_by_field() {
    let base = TritterConfig {
        norm: NormKind::RmsNorm,
        qk_norm: false,
        sub_norm: true,
        weight_quant_eps: WeightQuantEps::Clamp,
        ..TritterConfig::test()
    };
    let cases: [(&str, TritterConfig, bool); 7] = [
        ("qk_norm", TritterConfig { qk_norm: true, ..base.clone() }, false),
        ("norm", TritterConfig { norm: NormKind::LayerNorm, ..base.clone() }, false),
        ("mlp_norm", TritterConfig { mlp_norm: MlpNorm::Post, ..base.clone() }, false),
        ("weight_scale", TritterConfig { weight_scale: WeightScale::PerRow, ..base.clone() }, true),
        ("activation_bits", TritterConfig { activation_bits: None, ..base.clone() }, false),
        ("ternary_lm_head", TritterConfig { ternary_lm_head: true, tie_embeddings: false, ..base.clone() }, false),
        ("weight_quant_eps", TritterConfig { weight_quant_eps: WeightQuantEps::Add, ..base.clone() }, false),
    ];
    for (field, config, packed) in cases {
        let message = refused(config, packed);
        assert!(message.contains(&format!(": {field}:")), "{field}: {message}");
    }
    // The same `add` model exports packed: its codes and scales are kept as they are.
    let add =
        TritterModel::<B>::new(&TritterConfig { weight_quant_eps: WeightQuantEps::Add, ..base }, &Default::default())
            .unwrap();
    add.into_packed().unwrap().save_hf(temp_dir().path(), HfDtype::Bf16).unwrap();
}
