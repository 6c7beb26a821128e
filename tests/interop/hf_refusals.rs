//! What the importer cannot represent is refused with an error naming the config field or
//! tensor; each case edits a copy of a fixture.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use tritter::hf::{import_hf, ImportOptions};
use tritter::TritterError;

use super::hf_import::committed_fixture as fixture;
use crate::model::common::temp_dir;

/// A copy of fixture `name` in a fresh directory.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = temp_dir();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
}

/// Rewrites `model.safetensors` after `edit` changes its tensors (name → (dtype, shape, bytes)).
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> =
        file.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

fn refusal(dir: &Path) -> String {
    let out = temp_dir();
    match import_hf(dir, out.path(), &ImportOptions::default(), &mut |_, _| {}) {
        Ok(_) => panic!("imported {} although it should be refused", dir.display()),
        Err(e) => {
            assert!(!out.path().join("model.safetensors").exists(), "a refused import left weights behind");
            e.to_string()
        }
    }
}

fn refused_field(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>), field: &str) {
    let dir = copy_of(name);
    edit_config(dir.path(), edit);
    let message = refusal(dir.path());
    assert!(message.contains(&format!("{field}:")) || message.contains(&format!("`{field}`")), "{field}: {message}");
}

#[test]
fn unrepresentable_configs_are_refused_by_field() {
    let online = "bitnet_gqa_online";
    refused_field(online, |c| drop(c.insert("model_type".into(), json!("gpt2"))), "model_type");
    refused_field(online, |c| drop(c.insert("attention_bias".into(), json!(true))), "attention_bias");
    refused_field(online, |c| drop(c.insert("mlp_bias".into(), json!(true))), "mlp_bias");
    refused_field(
        online,
        |c| drop(c.insert("rope_scaling".into(), json!({"rope_type": "linear", "factor": 2.0}))),
        "rope_scaling",
    );
    refused_field(
        online,
        |c| drop(c.insert("rope_parameters".into(), json!({"rope_type": "yarn", "rope_theta": 1e4}))),
        "rope_parameters.rope_type",
    );
    refused_field(online, |c| drop(c.insert("hidden_act".into(), json!("gelu"))), "hidden_act");
    refused_field(online, |c| drop(c.insert("head_dim".into(), json!(16))), "head_dim");
    refused_field(online, |c| drop(c.remove("hidden_size")), "hidden_size");
    refused_field(online, |c| drop(c.insert("num_key_value_heads".into(), json!(3))), "config.json");
    let quant = |field: &str, value: Value| {
        let field = field.to_string();
        move |c: &mut serde_json::Map<String, Value>| {
            c["quantization_config"].as_object_mut().unwrap().insert(field, value);
        }
    };
    refused_field(online, quant("quant_method", json!("gptq")), "quantization_config.quant_method");
    refused_field(online, quant("use_rms_norm", json!(true)), "quantization_config.use_rms_norm");
    refused_field(online, quant("linear_class", json!("fancylinear")), "quantization_config.linear_class");
    refused_field(online, quant("quantization_mode", json!("sometimes")), "quantization_config.quantization_mode");
    refused_field(
        online,
        quant("modules_to_not_convert", json!(["model.layers.0.mlp.up_proj"])),
        "quantization_config.modules_to_not_convert",
    );
}

fn refused_tensor(name: &str, edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>), tensor: &str) {
    let dir = copy_of(name);
    edit_tensors(dir.path(), edit);
    let message = refusal(dir.path());
    assert!(message.contains(tensor), "{tensor}: {message}");
}

#[test]
fn bad_tensors_are_refused_by_name() {
    let q = "model.layers.1.self_attn.q_proj.weight";
    let online = "bitnet_gqa_online";
    refused_tensor(online, |t| drop(t.remove(q)), q);
    refused_tensor(online, |t| t.get_mut(q).unwrap().1 = vec![16, 64], q); // same bytes, wrong shape
    refused_tensor(online, |t| t.get_mut(q).unwrap().0 = Dtype::I32, q);
    let bias = "model.layers.0.self_attn.q_proj.bias";
    refused_tensor(online, |t| drop(t.insert(bias.into(), (Dtype::F32, vec![32], vec![0; 128]))), bias);
    let offline = "bitnet_offline_bitlinear";
    refused_tensor(offline, |t| drop(t.remove(&q.replace(".weight", ".weight_scale"))), "weight_scale");
    refused_tensor(offline, |t| t.get_mut(q).unwrap().2[5] = 0b1100_0000, q); // code 3 in row 3·out/4
    refused_tensor(
        offline,
        |t| t.get_mut(&q.replace(".weight", ".weight_scale")).unwrap().2 = 0f32.to_le_bytes().to_vec(),
        "weight_scale",
    );
}

#[test]
fn import_never_writes_into_a_non_empty_directory() {
    let out = temp_dir();
    std::fs::write(out.path().join("notes.txt"), "another model's directory").unwrap();
    let error = import_hf(&fixture("bitnet_gqa_online"), out.path(), &ImportOptions::default(), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(error.contains("not empty") && error.contains(&out.path().display().to_string()), "{error}");
    assert!(!out.path().join("config.json").exists());
}

#[test]
fn hugging_face_directories_are_detected() {
    assert!(tritter::hf::is_hf_dir(&fixture("bitnet_gqa_online")));
    let dir = temp_dir();
    tritter::TritterConfig::test().to_json_file(dir.path().join("config.json")).unwrap();
    assert!(!tritter::hf::is_hf_dir(dir.path()));
    assert!(matches!(
        import_hf(dir.path(), temp_dir().path(), &ImportOptions::default(), &mut |_, _| {}),
        Err(TritterError::Unsupported { .. })
    ));
}
