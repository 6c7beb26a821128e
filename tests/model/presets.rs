//! Presets, parameter counts, config validation and JSON files.

use tritter::{MlpNorm, NormKind, TritterConfig, TritterError, TritterModel, WeightScale};

use crate::model::common::{temp_dir, B};

#[test]
fn parameter_count_equals_instantiated_count() {
    let device = Default::default();
    let mut configs = vec![TritterConfig::test(), TritterConfig::small_100m()];
    // Variants that change which tensors exist.
    let mut variant = TritterConfig::test();
    variant.norm = NormKind::RmsNorm;
    variant.qk_norm = false;
    variant.tie_embeddings = false;
    variant.num_kv_heads = 2;
    variant.mlp_norm = MlpNorm::Post;
    configs.push(variant.clone());
    variant.sub_norm = true;
    configs.push(variant);
    for config in configs {
        let model = TritterModel::<B>::new(&config, &device).unwrap();
        assert_eq!(model.num_params() as u64, config.parameter_count(), "{config:?}");
    }
}

/// `tensor_specs` names every tensor the module has, with its shape (what importers and
/// exporters write), on random configs of every option.
#[test]
fn tensor_specs_list_the_module_tensors() {
    let mut rng = crate::model::common::fresh_rng("tensor_specs_list_the_module_tensors");
    for bitnet in [false, true, true, true] {
        let config = crate::model::reference_f64::random_tiny_config(&mut rng, bitnet);
        let model = TritterModel::<B>::new(&config, &Default::default()).unwrap();
        let mut module: Vec<(String, Vec<usize>)> =
            crate::model::common::named_params(&model).into_iter().map(|(n, s, _)| (n, s)).collect();
        let mut specs: Vec<(String, Vec<usize>)> =
            config.tensor_specs().into_iter().map(|t| (t.name, t.shape)).collect();
        module.sort();
        specs.sort();
        assert_eq!(specs, module, "{config:?}");
        // A tied ternary head is the embedding matrix, which is stored as a float tensor.
        let ternary = config.tensor_specs().iter().filter(|t| t.ternary).count();
        let tied_head = usize::from(config.tie_embeddings && config.ternary_lm_head);
        assert_eq!(ternary, config.ternary_matrices().len() - tied_head, "{config:?}");
    }
}

#[test]
fn presets_are_within_ten_percent_of_their_names() {
    for (name, config, nominal) in TritterConfig::presets() {
        config.validate().unwrap();
        let count = config.parameter_count();
        let (lo, hi) = if name == "test" { (80_000, 150_000) } else { (nominal * 9 / 10, nominal * 11 / 10) };
        assert!((lo..=hi).contains(&count), "{name}: {count} not in {lo}..={hi}");
        assert_eq!(TritterConfig::from_preset(name).unwrap(), config);
    }
    assert!(matches!(TritterConfig::from_preset("tiny"), Err(TritterError::InvalidConfig { field: "preset", .. })));
}

#[test]
fn presets_keep_the_seed_shapes() {
    let shapes: Vec<(usize, usize, usize)> =
        TritterConfig::presets().iter().map(|(_, c, _)| (c.hidden_size, c.num_layers, c.num_heads)).collect();
    assert_eq!(
        shapes,
        [(64, 2, 2), (768, 12, 12), (1024, 24, 16), (2048, 24, 16), (2560, 26, 20), (4096, 32, 32), (2560, 30, 20)]
    );
}

#[test]
fn bitnet_2b4t_preset_counts_like_the_published_model() {
    let c = TritterConfig::from_preset("bitnet_2b4t").unwrap();
    assert_eq!((c.num_kv_heads, c.intermediate_size, c.vocab_size), (5, 6912, 128_256));
    assert!(c.sub_norm && c.tie_embeddings && !c.qk_norm && c.norm == NormKind::RmsNorm);
    // Hand count: embedding; per layer q, k, v, o, gate, up, down, two RMSNorms of 2560 and the
    // sub-norms of 2560 (attention) and 6912 (MLP); final norm.
    let (h, kv, i, v) = (2560u64, 640u64, 6912u64, 128_256u64);
    let layer = h * h + 2 * kv * h + h * h + 3 * i * h + 2 * h + h + i;
    assert_eq!(c.parameter_count(), v * h + 30 * layer + h);
}

fn rejected_field(mutate: impl FnOnce(&mut TritterConfig)) -> &'static str {
    let mut config = TritterConfig::test();
    mutate(&mut config);
    match config.validate() {
        Err(TritterError::InvalidConfig { field, .. }) => {
            // Construction must refuse it the same way.
            let built = TritterModel::<B>::new(&config, &Default::default());
            assert!(matches!(built, Err(TritterError::InvalidConfig { field: f, .. }) if f == field));
            field
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn invalid_configs_name_the_field() {
    assert_eq!(rejected_field(|c| c.vocab_size = 0), "vocab_size");
    assert_eq!(rejected_field(|c| c.hidden_size = 0), "hidden_size");
    assert_eq!(rejected_field(|c| c.num_layers = 0), "num_layers");
    assert_eq!(rejected_field(|c| c.intermediate_size = 0), "intermediate_size");
    assert_eq!(rejected_field(|c| c.max_seq_len = 0), "max_seq_len");
    assert_eq!(rejected_field(|c| c.num_heads = 3), "num_heads"); // 64 % 3 != 0
    assert_eq!(rejected_field(|c| c.num_kv_heads = 3), "num_kv_heads"); // 2 % 3 != 0
    assert_eq!(
        rejected_field(|c| {
            c.hidden_size = 66;
            c.num_heads = 2
        }),
        "num_heads"
    ); // d = 33 is odd
    assert_eq!(rejected_field(|c| c.weight_scale = WeightScale::PerGroup(48)), "weight_scale");
    assert_eq!(rejected_field(|c| c.weight_scale = WeightScale::PerGroup(0)), "weight_scale");
    assert_eq!(rejected_field(|c| c.activation_bits = Some(4)), "activation_bits");
    assert_eq!(rejected_field(|c| c.pad_token_id = Some(512)), "pad_token_id");
    assert_eq!(rejected_field(|c| c.init_std = 0.0), "init_std");
    assert_eq!(rejected_field(|c| c.norm_eps = -1.0), "norm_eps");
    assert_eq!(rejected_field(|c| c.rope_theta = f64::NAN), "rope_theta");
    assert_eq!(
        rejected_field(|c| {
            c.bitnet = false;
            c.ternary_lm_head = true
        }),
        "ternary_lm_head"
    );
    // A group size that divides every input dim is accepted.
    let mut ok = TritterConfig::test();
    ok.weight_scale = WeightScale::PerGroup(32);
    ok.validate().unwrap();
}

#[test]
fn config_json_round_trip_and_errors() {
    let dir = temp_dir();
    let path = dir.path().join("config.json");
    let mut config = TritterConfig::test();
    config.weight_scale = WeightScale::PerGroup(32);
    config.pad_token_id = Some(0);
    config.to_json_file(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"per_group\": 32"), "{text}");
    assert!(text.contains("\"norm\": \"layer_norm\""), "{text}");
    assert_eq!(TritterConfig::from_json_file(&path).unwrap(), config);

    // Fields the spec gives defaults for may be left out.
    std::fs::write(
        &path,
        r#"{"vocab_size": 100, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
            "intermediate_size": 64, "max_seq_len": 16, "tie_embeddings": true}"#,
    )
    .unwrap();
    let minimal = TritterConfig::from_json_file(&path).unwrap();
    assert_eq!(
        (minimal.rope_theta, minimal.norm, minimal.bitnet, minimal.activation_bits),
        (500000.0, NormKind::LayerNorm, true, Some(8))
    );
    assert_eq!((minimal.weight_scale, minimal.init_std, minimal.qk_norm), (WeightScale::PerTensor, 0.02, true));

    // A typo is an error naming the file and the field, not silently ignored.
    std::fs::write(&path, text.replace("\"hidden_size\"", "\"hiden_size\"")).unwrap();
    let err = TritterConfig::from_json_file(&path).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("hiden_size"), "{err}");
    // Valid JSON, invalid config: names the field.
    std::fs::write(&path, text.replace("\"num_kv_heads\": 1", "\"num_kv_heads\": 3")).unwrap();
    let err = TritterConfig::from_json_file(&path).unwrap_err().to_string();
    assert!(err.contains("num_kv_heads"), "{err}");
    // Missing file.
    let err = TritterConfig::from_json_file(dir.path().join("nope.json")).unwrap_err().to_string();
    assert!(err.contains("nope.json"), "{err}");
}

#[test]
fn packed_size_is_two_bits_per_ternary_weight_plus_scales() {
    let config = TritterConfig::test();
    let (h, d, i) = (config.hidden_size, config.head_dim(), config.intermediate_size);
    let (nh, nkv) = (config.num_heads, config.num_kv_heads);
    let per_layer = h * nh * d * 2 + h * nkv * d * 2 + 3 * h * i;
    let ternary = (config.num_layers * per_layer) as u64;
    assert_eq!(config.ternary_matrices().iter().map(|[r, c]| (r * c) as u64).sum::<u64>(), ternary);
    // Every dimension of the test preset is a multiple of 16: exactly 2 bits per weight, plus one
    // f32 scale per matrix (per-tensor scales), plus f32 for the rest.
    assert!(config.ternary_matrices().iter().all(|[_, c]| c % 16 == 0));
    let matrices = 7 * config.num_layers as u64;
    let expected = ternary / 4 + 4 * matrices + (config.parameter_count() - ternary) * 4;
    assert_eq!(config.packed_size_bytes(4), expected);
    let off = TritterConfig { bitnet: false, ..config.clone() };
    assert_eq!(off.packed_size_bytes(4), off.parameter_count() * 4);
}
