//! Checkpoint directories: bit-exact round trips, spec tensor names, and a clear error for each
//! way a checkpoint can be broken.

use std::path::Path;

use tritter::{NormKind, TritterConfig, TritterError, TritterModel};

use crate::model::common::{fresh_rng, ids_tensor, named_params, random_ids, temp_dir, to_vec, B};

/// The spec's tensor names (section 4), written out independently of the model code.
fn spec_names(config: &TritterConfig) -> Vec<String> {
    let norm = |p: String| {
        let mut v = vec![format!("{p}.weight")];
        if config.norm == NormKind::LayerNorm {
            v.push(format!("{p}.bias"));
        }
        v
    };
    let mut names = vec!["model.embed_tokens.weight".to_string()];
    for i in 0..config.num_layers {
        let l = format!("model.layers.{i}");
        names.extend(norm(format!("{l}.input_layernorm")));
        names.extend(["q", "k", "v", "o"].map(|p| format!("{l}.self_attn.{p}_proj.weight")));
        if config.qk_norm {
            names.extend(norm(format!("{l}.self_attn.q_norm")));
            names.extend(norm(format!("{l}.self_attn.k_norm")));
        }
        names.extend(norm(format!("{l}.post_attention_layernorm")));
        names.extend(["gate", "up", "down"].map(|p| format!("{l}.mlp.{p}_proj.weight")));
    }
    names.extend(norm("model.norm".to_string()));
    if !config.tie_embeddings {
        names.push("lm_head.weight".to_string());
    }
    names.sort();
    names
}

fn file_tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    names.sort();
    names
}

#[test]
fn round_trip_is_bit_exact_with_spec_names() {
    let mut rng = fresh_rng("round_trip_is_bit_exact_with_spec_names");
    let device = Default::default();
    for (norm, tie) in [(NormKind::LayerNorm, true), (NormKind::RmsNorm, false)] {
        let mut config = TritterConfig::test();
        config.norm = norm;
        config.tie_embeddings = tie;
        let model = TritterModel::<B>::new(&config, &device).unwrap();
        let dir = temp_dir();
        model.save_checkpoint(dir.path()).unwrap();
        assert_eq!(file_tensor_names(&dir.path().join("model.safetensors")), spec_names(&config));
        let loaded = TritterModel::<B>::load_checkpoint(dir.path(), &device).unwrap();
        assert_eq!(loaded.config(), &config);
        let (a, b) = (named_params(&model), named_params(&loaded));
        assert_eq!(a.len(), b.len());
        for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(&b) {
            assert_eq!((na, sa), (nb, sb));
            assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "`{na}` changed in the round trip");
        }
        let ids = ids_tensor::<B>(&random_ids(&mut rng, 2, 10, config.vocab_size), &device);
        let (la, lb) = (to_vec(model.forward(ids.clone())), to_vec(loaded.forward(ids)));
        assert!(la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()));
        // Saving again over the same directory works and leaves no temporary files.
        loaded.save_checkpoint(dir.path()).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        files.sort();
        assert_eq!(files, ["config.json", "model.safetensors"]);
    }
}

/// Saves a `test` model and returns its directory.
fn saved() -> tempfile::TempDir {
    let dir = temp_dir();
    TritterModel::<B>::new(&TritterConfig::test(), &Default::default()).unwrap().save_checkpoint(dir.path()).unwrap();
    dir
}

fn load_err(dir: &Path) -> TritterError {
    match TritterModel::<B>::load_checkpoint(dir, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

/// Rewrites `model.safetensors` through `edit`, which gets and returns `(name, shape, f32 values)`.
fn rewrite_weights(
    dir: &Path,
    edit: impl FnOnce(Vec<(String, Vec<usize>, Vec<f32>)>) -> Vec<(String, Vec<usize>, Vec<f32>)>,
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let values = v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            (n, v.shape().to_vec(), values)
        })
        .collect();
    let edited = edit(tensors);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        edited.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn missing_directory_and_files_are_named() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-run");
    let err = load_err(&missing).to_string();
    assert!(err.contains("no-such-run"), "{err}");

    let dir = saved();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    let dir = saved();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn truncated_and_foreign_files_are_corrupt_checkpoints() {
    let dir = saved();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 20, 3, 0] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load_err(dir.path());
        assert!(matches!(err, TritterError::CorruptCheckpoint { .. }), "cut at {cut}: {err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
    std::fs::write(&path, b"PK\x03\x04 this is a zip file, not safetensors").unwrap();
    assert!(matches!(load_err(dir.path()), TritterError::CorruptCheckpoint { .. }));
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let name = "model.layers.1.self_attn.k_proj.weight";
    let dir = saved();
    rewrite_weights(dir.path(), |t| t.into_iter().filter(|(n, _, _)| n != name).collect());
    match load_err(dir.path()) {
        TritterError::MissingTensor { tensor, .. } => assert_eq!(tensor, name),
        other => panic!("{other}"),
    }

    let dir = saved();
    rewrite_weights(dir.path(), |t| {
        t.into_iter().map(|(n, s, v)| if n == name { (n, vec![s[1], s[0]], v) } else { (n, s, v) }).collect()
    });
    match load_err(dir.path()) {
        TritterError::ShapeMismatch { tensor, expected, found, .. } => {
            assert_eq!((tensor.as_str(), expected, found), (name, vec![32, 64], vec![64, 32]));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_config_that_does_not_fit_the_weights_is_refused() {
    let edit_config = |dir: &Path, edit: &dyn Fn(&mut TritterConfig)| {
        let path = dir.join("config.json");
        let mut config = TritterConfig::from_json_file(&path).unwrap();
        edit(&mut config);
        config.to_json_file(&path).unwrap();
    };
    // More layers than the file has: missing tensors of layer 2.
    let dir = saved();
    edit_config(dir.path(), &|c| c.num_layers = 3);
    let err = load_err(dir.path());
    assert!(matches!(&err, TritterError::MissingTensor { tensor, .. } if tensor.contains("model.layers.2.")), "{err}");
    // Fewer: the file has tensors the config does not describe.
    let dir = saved();
    edit_config(dir.path(), &|c| c.num_layers = 1);
    let err = load_err(dir.path());
    assert!(
        matches!(&err, TritterError::UnexpectedTensors { tensors, .. } if tensors.iter().all(|t| t.contains("layers.1."))),
        "{err}"
    );
    // A different width: shape mismatch.
    let dir = saved();
    edit_config(dir.path(), &|c| c.intermediate_size = 128);
    assert!(matches!(load_err(dir.path()), TritterError::ShapeMismatch { .. }));
    // Untied config, tied weights: lm_head.weight is missing.
    let dir = saved();
    edit_config(dir.path(), &|c| c.tie_embeddings = false);
    assert!(matches!(load_err(dir.path()), TritterError::MissingTensor { tensor, .. } if tensor == "lm_head.weight"));
    // An invalid config.json names the field.
    let dir = saved();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"num_kv_heads\": 1", "\"num_kv_heads\": 0");
    std::fs::write(&path, text).unwrap();
    assert!(matches!(load_err(dir.path()), TritterError::InvalidConfig { field: "num_kv_heads", .. }));
}

/// A weights file as its header (JSON) and its data bytes.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header.as_object().unwrap().clone(), bytes[8 + n..].to_vec())
}

fn join_safetensors(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

/// One random edit of one header field (or of the header's bytes), always one that makes the
/// file wrong for its config; returns the new file and what was done.
fn mutate_header(rng: &mut impl rand::Rng, bytes: &[u8]) -> (Vec<u8>, String) {
    use rand::seq::IndexedRandom;
    use serde_json::{json, Value};
    let (mut header, data) = split_safetensors(bytes);
    header.remove("__metadata__");
    let names: Vec<String> = header.keys().cloned().collect();
    let name = names.choose(rng).unwrap().clone();
    let entry = header[&name].clone();
    let shape: Vec<u64> = entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
    let offsets: Vec<u64> = entry["data_offsets"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
    let field = |header: &mut serde_json::Map<String, Value>, key: &str, value: Value| {
        header.get_mut(&name).unwrap()[key] = value;
    };
    let what = match rng.random_range(0..7) {
        0 => {
            let dtypes =
                ["I32", "U32", "I64", "U64", "F64", "I16", "U16", "I8", "U8", "BOOL", "F16", "BF16", "F8_E4M3"];
            let old = entry["dtype"].as_str().unwrap().to_string();
            let dtype = *dtypes.iter().filter(|d| **d != old).collect::<Vec<_>>().choose(rng).unwrap();
            field(&mut header, "dtype", json!(dtype));
            format!("dtype of {name}: {old} -> {dtype}")
        }
        1 => {
            let mut new = shape.clone();
            match rng.random_range(0..4) {
                0 if new.len() == 2 && new[0] != new[1] => new.swap(0, 1),
                1 => new.push(1),
                2 if new.len() > 1 => {
                    let last = new.pop().unwrap();
                    new[0] *= last;
                }
                _ => {
                    let i = rng.random_range(0..new.len());
                    new[i] = *[0, new[i] + 1, new[i].saturating_sub(1).max(2), 1 << 40].choose(rng).unwrap();
                    if new == shape {
                        new[i] += 7;
                    }
                }
            }
            field(&mut header, "shape", json!(new));
            format!("shape of {name}: {shape:?} -> {new:?}")
        }
        2 => {
            let (begin, end) = (offsets[0], offsets[1]);
            let new = match rng.random_range(0..4) {
                0 => [end, begin],
                1 => [begin + 4, end + 4],
                2 => [begin, end + rng.random_range(1..64)],
                _ => [begin + (1 << 40), end + (1 << 40)],
            };
            field(&mut header, "data_offsets", json!(new));
            format!("offsets of {name}: {offsets:?} -> {new:?}")
        }
        3 => {
            let other = names.choose(rng).unwrap().clone();
            let new =
                if other != name && rng.random_bool(0.5) { other } else { format!("{name}.x{}", rng.random::<u16>()) };
            header.remove(&name);
            header.insert(new.clone(), entry);
            format!("name {name} -> {new}")
        }
        4 => {
            header.remove(&name);
            format!("entry {name} removed")
        }
        5 => {
            let mut text = serde_json::to_vec(&header).unwrap();
            let at = rng.random_range(0..text.len());
            let old = text[at];
            text[at] = loop {
                let b = rng.random_range(0x20u8..0x7f);
                if b != old {
                    break b;
                }
            };
            return (
                join_safetensors(&text, &data),
                format!("header byte {at}: {:?} -> {:?}", old as char, text[at] as char),
            );
        }
        _ => {
            let text = serde_json::to_vec(&header).unwrap();
            let mut bytes = join_safetensors(&text, &data);
            let n = *[text.len() as u64 - 1, text.len() as u64 + 1, rng.random_range(0..1u64 << 50), 0]
                .choose(rng)
                .unwrap();
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            return (bytes, format!("header length {} -> {n}", text.len()));
        }
    };
    (join_safetensors(&serde_json::to_vec(&header).unwrap(), &data), what)
}

thread_local! {
    /// Set when this thread panics, even where the panic is caught (burn-store turns a panic
    /// while reading a tensor into an error, which would hide it).
    static PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
fn any_header_edit_is_an_error_never_a_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.with(|p| p.set(true));
        previous(info)
    }));
    let mut rng = fresh_rng("any_header_edit_is_an_error_never_a_panic");
    let device = Default::default();
    let latent = saved();
    let packed = temp_dir();
    let model = TritterModel::<B>::load_checkpoint(latent.path(), &device).unwrap().into_packed().unwrap();
    model.save_packed_checkpoint(packed.path(), tritter::export::FloatFormat::F32).unwrap();
    for dir in [latent.path(), packed.path()] {
        let path = dir.join("model.safetensors");
        let original = std::fs::read(&path).unwrap();
        for _ in 0..150 {
            let (bytes, what) = mutate_header(&mut rng, &original);
            std::fs::write(&path, &bytes).unwrap();
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                TritterModel::<B>::load_checkpoint(dir, &device).map(|_| ())
            }));
            match loaded {
                _ if PANICKED.with(|p| p.replace(false)) => panic!("{}: a panic (caught) after {what}", path.display()),
                Err(_) => panic!("{}: loading panicked after {what}", path.display()),
                Ok(Ok(())) => panic!("{}: loaded after {what}", path.display()),
                Ok(Err(e)) => {
                    assert!(e.to_string().contains("model.safetensors"), "{what}: `{e}` does not name the file")
                }
            }
        }
        std::fs::write(&path, &original).unwrap();
        TritterModel::<B>::load_checkpoint(dir, &device).expect("the unedited file loads");
    }
}
