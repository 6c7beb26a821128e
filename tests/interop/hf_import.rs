//! Imported transformers models against transformers' logits (`expected.json` of each fixture),
//! and the packed form's codes and scales against an independent unpacking of the fixture.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;
use tritter::hf::{import_hf, ImportOptions, ImportSummary, WeightForm};
use tritter::{Activation, TritterModel};

use crate::model::common::{max_rel_diff, temp_dir, to_vec, B};

/// Every model fixture and the form of its projections.
const FIXTURES: [(&str, WeightForm); 6] = [
    ("bitnet_gqa_online", WeightForm::Online),
    ("bitnet_mqa_tied_online_sharded", WeightForm::Online),
    ("bitnet_plain", WeightForm::Plain),
    ("llama_silu_online_bf16", WeightForm::Online),
    ("bitnet_offline_bitlinear", WeightForm::Offline { divide_by_scale: true }),
    ("bitnet_offline_autobitlinear", WeightForm::Offline { divide_by_scale: false }),
];

/// A committed fixture (what the refusal and chat tests edit).
pub fn committed_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

/// A model fixture: the committed one, or one of `TRITTER_HF_FIXTURES` (fresh random configs made
/// by `bench/hf/make_fixtures.py OUT SEED`).
pub fn fixture(name: &str) -> PathBuf {
    match std::env::var_os("TRITTER_HF_FIXTURES") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => committed_fixture(name),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Imports `name` and returns the summary and the logits of the fixture's ids against transformers'.
fn import_and_compare(name: &str, options: ImportOptions) -> (ImportSummary, f64) {
    let out = temp_dir();
    let summary = import_hf(&fixture(name), out.path(), &options, &mut |_, _| {}).unwrap();
    let model = TritterModel::<B>::load_checkpoint(out.path(), &Default::default()).unwrap();
    assert_eq!(model.is_packed(), summary.packed, "{name}");
    let expected = read_json(&fixture(name).join("expected.json"));
    let ids: Vec<i64> = expected["ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_i64().unwrap())
        .collect();
    let batch = expected["ids"].as_array().unwrap().len();
    let input =
        Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [batch, ids.len() / batch]), &Default::default());
    let logits = to_vec(model.forward(input));
    let want: Vec<f64> = expected["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(logits.len(), want.len(), "{name}: logits shape");
    (summary, max_rel_diff(&logits, &want))
}

/// The fixtures' inputs were drawn clear of rounding boundaries (5e-6, see the script), so with
/// bitnet on the only differences are float rounding, as with bitnet off.
#[test]
fn imported_models_give_transformers_logits() {
    for (name, form) in FIXTURES {
        let (summary, err) = import_and_compare(name, ImportOptions::default());
        assert_eq!(summary.source.weights, form, "{name}");
        assert_eq!(summary.packed, matches!(form, WeightForm::Offline { .. }), "{name}");
        assert!(err < 1e-5, "{name}: max relative logit difference {err:e} against transformers");
        let c = &summary.source.config;
        assert_eq!(c.sub_norm, name.starts_with("bitnet"), "{name}");
        assert_eq!(c.activation, if name.starts_with("llama") { Activation::Silu } else { Activation::ReluSquared });
        assert_eq!(c.bitnet, form != WeightForm::Plain, "{name}");
    }
}

/// `--latent` turns a packed model into latent weights that quantize back to the same codes and
/// scales: the same logits, and a trainable model.
#[test]
fn offline_models_import_as_latent_weights_with_the_same_logits() {
    for name in ["bitnet_offline_bitlinear", "bitnet_offline_autobitlinear"] {
        let (summary, err) = import_and_compare(name, ImportOptions { latent: true, ..Default::default() });
        assert!(!summary.packed);
        assert!(err < 1e-4, "{name} --latent: max relative logit difference {err:e} against transformers");
    }
}

/// transformers' packing, undone here independently: packed row r, bits 2j..2j+2 hold row
/// r + j·out/4 as value + 1.
fn unpack_transformers(bytes: &[u8], rows: usize, cols: usize) -> Vec<i8> {
    let mut values = vec![9i8; rows * cols];
    for r in 0..rows {
        let (packed_row, j) = (r % (rows / 4), r / (rows / 4));
        for c in 0..cols {
            values[r * cols + c] = ((bytes[packed_row * cols + c] >> (2 * j)) & 3) as i8 - 1;
        }
    }
    values
}

/// The packed import keeps every projection's ternary codes and its scale exactly: γ is
/// `weight_scale` for `AutoBitLinear` and `1 / weight_scale` for `BitLinear`.
#[test]
fn packed_import_keeps_codes_and_scales() {
    for (name, divide) in [("bitnet_offline_bitlinear", true), ("bitnet_offline_autobitlinear", false)] {
        let out = temp_dir();
        import_hf(&fixture(name), out.path(), &ImportOptions::default(), &mut |_, _| {}).unwrap();
        let model = TritterModel::<B>::load_checkpoint(out.path(), &Default::default()).unwrap();
        let source = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
        let source = safetensors::SafeTensors::deserialize(&source).unwrap();
        let mut checked = 0;
        for (prefix, packed) in model.packed_weights() {
            let weight = source.tensor(&format!("{prefix}.weight")).unwrap();
            let (rows, cols) = (weight.shape()[0] * 4, weight.shape()[1]);
            assert_eq!(packed.values(), unpack_transformers(weight.data(), rows, cols), "{name}: {prefix} codes");
            let scale = source.tensor(&format!("{prefix}.weight_scale")).unwrap();
            let stored = f32::from_le_bytes(scale.data()[..4].try_into().unwrap());
            assert_eq!(packed.scales, vec![if divide { 1.0 / stored } else { stored }], "{name}: {prefix} scale");
            checked += 1;
        }
        assert_eq!(checked, 7 * model.config().num_layers, "{name}: every projection of every layer");
    }
}

/// The tokenizer and generation files travel with the model; a source without a
/// generation_config.json gets one from config.json's token ids.
#[test]
fn import_copies_tokenizer_and_generation_files() {
    let out = temp_dir();
    let summary =
        import_hf(&fixture("bitnet_gqa_online"), out.path(), &ImportOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(summary.copied, ["generation_config.json"]);
    let out = temp_dir();
    import_hf(&fixture("bitnet_offline_bitlinear"), out.path(), &ImportOptions::default(), &mut |_, _| {}).unwrap();
    let generation = read_json(&out.path().join("generation_config.json"));
    assert_eq!(generation["eos_token_id"], serde_json::json!([128001]));
    assert_eq!(generation["bos_token_id"], 128000);
}

/// Progress counts every tensor written, up to the total.
#[test]
fn import_reports_progress_to_the_end() {
    let out = temp_dir();
    let mut seen = Vec::new();
    let summary =
        import_hf(&fixture("bitnet_gqa_online"), out.path(), &ImportOptions::default(), &mut |d, t| seen.push((d, t)))
            .unwrap();
    assert_eq!(seen.last(), Some(&(summary.tensors, summary.tensors)));
    assert_eq!(summary.tensors, summary.source.config.tensor_specs().len());
}
