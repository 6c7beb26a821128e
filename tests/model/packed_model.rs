//! The packed inference form of a whole model: logits, checkpoints (names, size, bad files),
//! generation, and the bitnet-quantize export.

use rand::Rng;
use tritter::export::{export_bitnet, BitnetTernaryWeight, FloatFormat};
use tritter::infer::{generate, GenerateOptions};
use tritter::ternary::Projection;
use tritter::{TritterConfig, TritterError, TritterModel, WeightScale};

use crate::model::common::{fresh_rng, ids_tensor, max_rel_diff, named_params, random_ids, temp_dir, to_vec, B};
use crate::model::reference::Reference;
use crate::model::reference_f64::random_tiny_config;

fn config(weight_scale: WeightScale) -> TritterConfig {
    let mut config = TritterConfig::test();
    config.weight_scale = weight_scale;
    config.init_std = 0.3;
    config
}

fn model(config: &TritterConfig) -> TritterModel<B> {
    TritterModel::<B>::new(config, &Default::default()).unwrap()
}

#[test]
fn packed_logits_equal_the_fake_quantized_forward() {
    let mut rng = fresh_rng("packed_logits_equal_the_fake_quantized_forward");
    let device = Default::default();
    let packed_logits = |latent: TritterModel<B>, ids: &Vec<Vec<usize>>| {
        let expected: Vec<f64> =
            to_vec(latent.forward(ids_tensor::<B>(ids, &device))).iter().map(|&v| v as f64).collect();
        let packed = latent.into_packed().unwrap();
        let packed_count = packed.projections().iter().filter(|(_, p)| matches!(p, Projection::Packed(_))).count();
        // A tied ternary head is the embedding, which stays f32 for the lookup.
        let config = packed.config();
        let tied_head = (config.ternary_lm_head && config.tie_embeddings) as usize;
        assert_eq!(packed_count, config.ternary_matrices().len() - tied_head, "every ternary projection is packed");
        max_rel_diff(&to_vec(packed.forward(ids_tensor::<B>(ids, &device))), &expected)
    };
    for scale in [WeightScale::PerTensor, WeightScale::PerRow, WeightScale::PerGroup(8)] {
        // Full-precision activations: only the summation order differs, so f32 rounding bounds it.
        let config = TritterConfig { activation_bits: None, ..config(scale) };
        let seq = rng.random_range(1..20);
        let ids = random_ids(&mut rng, 2, seq, config.vocab_size);
        let err = packed_logits(model(&config), &ids);
        assert!(err < 1e-5, "{scale:?}, f32 activations: packed logits differ by {err} (relative)");

        // Int8 activations: the two forms quantize the same values, but where float rounding puts
        // a value on the other side of a .5 boundary one code differs, and such flips compound
        // through the layers. So, as in the f64 reference test, draws whose f64 forward passes
        // within 3e-5 of a rounding boundary are skipped and the clean ones compared at the same
        // 1e-5 (about 3 in 10 short draws are clean). A wrong weight, scale or code moves logits by O(1).
        let mut clean = 0;
        for _ in 0..100 {
            let config =
                TritterConfig { activation_bits: Some(8), weight_scale: scale, ..random_tiny_config(&mut rng, true) };
            let latent = model(&config);
            let dir = temp_dir();
            latent.save_checkpoint(dir.path()).unwrap();
            let seq = rng.random_range(1..=6);
            let ids = random_ids(&mut rng, 1, seq, config.vocab_size);
            let mut reference = Reference::load(dir.path());
            ids.iter().for_each(|row| drop(reference.forward(row)));
            if reference.min_boundary_distance < 3e-5 {
                continue;
            }
            let err = packed_logits(latent, &ids);
            assert!(err < 1e-5, "{scale:?}, int8 activations: packed logits differ by {err} (relative) for {config:?}");
            clean += 1;
            if clean == 3 {
                break;
            }
        }
        assert!(clean >= 3, "{scale:?}: only {clean} draws clear of rounding ties");
    }
}

#[test]
fn packed_checkpoints_round_trip_and_meet_the_size_goal() {
    let mut rng = fresh_rng("packed_checkpoints_round_trip_and_meet_the_size_goal");
    let device = Default::default();
    let config = config(WeightScale::PerTensor);
    let packed = model(&config).into_packed().unwrap();
    let dir = temp_dir();
    let size = packed.save_packed_checkpoint(dir.path(), FloatFormat::F32).unwrap();
    assert!(size.bits_per_ternary_weight() <= 2.1, "{} bits per ternary weight", size.bits_per_ternary_weight());
    let ternary: u64 = config.ternary_matrices().iter().map(|[o, i]| (o * i) as u64).sum();
    assert_eq!(size.ternary_weights, ternary);

    // Tensor names: spec names, packed projections as weight_packed (u32) + weight_scale (f32).
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let q = file.tensor("model.layers.0.self_attn.q_proj.weight_packed").unwrap();
    assert_eq!(q.dtype(), safetensors::Dtype::U32);
    assert_eq!(q.shape(), [config.hidden_size, config.hidden_size.div_ceil(16)]);
    assert!(file.tensor("model.layers.0.self_attn.q_proj.weight").is_err(), "the latent weight is dropped");
    assert!(file.tensor("model.layers.0.mlp.down_proj.weight_scale").is_ok());
    assert!(file.tensor("model.embed_tokens.weight").is_ok());
    let file_bytes = bytes.len() as u64;
    assert!(file_bytes < size.ternary_bytes + size.float_bytes + 64 * 1024, "{file_bytes} bytes on disk");

    let loaded = TritterModel::<B>::load_checkpoint(dir.path(), &device).unwrap();
    assert!(loaded.is_packed());
    let ids = ids_tensor::<B>(&random_ids(&mut rng, 1, 12, config.vocab_size), &device);
    assert_eq!(to_vec(loaded.forward(ids.clone())), to_vec(packed.forward(ids.clone())), "bit-identical after reload");

    // f16 full-precision tensors: half the bytes, each value the f16 rounding of the original.
    let half_dir = temp_dir();
    let half = packed.save_packed_checkpoint(half_dir.path(), FloatFormat::F16).unwrap();
    assert_eq!(half.float_bytes * 2, size.float_bytes);
    let loaded = TritterModel::<B>::load_checkpoint(half_dir.path(), &device).unwrap();
    let (ours, theirs) = (named_params::<B, _>(&packed), named_params::<B, _>(&loaded));
    assert_eq!(ours.len(), theirs.len());
    for ((name, shape, values), (name2, shape2, values2)) in ours.iter().zip(&theirs) {
        assert_eq!((name, shape), (name2, shape2));
        let rounded: Vec<f32> = values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(&rounded, values2, "{name}");
    }
    assert_eq!(loaded.packed_weights(), packed.packed_weights());

    assert!(
        model(&config).save_packed_checkpoint(temp_dir().path(), FloatFormat::F32).is_err(),
        "latent models are not packed"
    );
}

/// One tensor of a safetensors file: name, dtype, shape, bytes.
type Entry = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Rewrites `dir`'s weights from `original` with `edit` applied to each tensor (`None` drops
/// it), then returns the error loading it gives.
fn load_error_after(dir: &std::path::Path, original: &[u8], edit: impl Fn(Entry) -> Option<Entry>) -> TritterError {
    let file = safetensors::SafeTensors::deserialize(original).unwrap();
    let entries: Vec<Entry> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, v)| edit((name, v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    let views: Vec<_> = entries
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    TritterModel::<B>::load_checkpoint(dir, &Default::default()).map(|_| ()).unwrap_err()
}

#[test]
fn damaged_packed_checkpoints_are_rejected_by_name() {
    let config = config(WeightScale::PerRow);
    let dir = temp_dir();
    model(&config).into_packed().unwrap().save_packed_checkpoint(dir.path(), FloatFormat::F32).unwrap();
    let original = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let (codes, scales) = ("model.layers.1.mlp.up_proj.weight_packed", "model.layers.1.mlp.up_proj.weight_scale");

    let err = load_error_after(dir.path(), &original, |(n, d, s, mut b)| {
        if n == codes {
            b[0] |= 0b11; // code 3 is not a ternary value
        }
        Some((n, d, s, b))
    });
    assert!(matches!(&err, TritterError::TensorLoad { tensor, .. } if tensor == codes), "{err}");

    let err = load_error_after(dir.path(), &original, |(n, d, s, b)| {
        Some(if n == scales { (n, d, vec![1, 1], b[..4].to_vec()) } else { (n, d, s, b) })
    });
    assert!(matches!(&err, TritterError::ShapeMismatch { tensor, .. } if tensor == scales), "{err}");

    let err = load_error_after(dir.path(), &original, |(n, d, s, b)| {
        Some(if n == codes { (n, safetensors::Dtype::F32, s, b) } else { (n, d, s, b) })
    });
    assert!(matches!(&err, TritterError::TensorLoad { tensor, .. } if tensor == codes), "{err}");

    let err = load_error_after(dir.path(), &original, |e| (e.0 != scales).then_some(e));
    assert!(matches!(&err, TritterError::MissingTensor { tensor, .. } if tensor == scales), "{err}");

    let err = load_error_after(dir.path(), &original, |e| (e.0 != "model.norm.weight").then_some(e));
    assert!(
        matches!(&err, TritterError::MissingTensor { tensor, .. } if tensor.contains("model.norm.weight")),
        "{err}"
    );

    let err = load_error_after(dir.path(), &original, |(n, d, s, b)| {
        Some((if n == "model.norm.weight" { "model.extra.weight".into() } else { n }, d, s, b))
    });
    assert!(err.to_string().contains("model.norm.weight") || err.to_string().contains("model.extra.weight"), "{err}");
}

#[test]
fn packed_cached_generation_equals_its_uncached_recomputation() {
    let mut rng = fresh_rng("packed_cached_generation_equals_its_uncached_recomputation");
    let device = Default::default();
    let config = config(WeightScale::PerTensor);
    let packed = model(&config).into_packed().unwrap();
    let prompt: Vec<u32> = (0..5).map(|_| rng.random_range(0..config.vocab_size as u32)).collect();
    let options = GenerateOptions { max_new_tokens: 8, ..Default::default() };
    let cached = generate(&packed, std::slice::from_ref(&prompt), &options, &mut |_, _| {}).unwrap().remove(0);
    let mut ids = prompt;
    for _ in 0..8 {
        let input = ids_tensor::<B>(&[ids.iter().map(|&i| i as usize).collect()], &device);
        let logits = to_vec(packed.forward(input));
        let last = &logits[(ids.len() - 1) * config.vocab_size..];
        let next =
            last.iter().enumerate().fold((0, f32::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0;
        ids.push(next as u32);
    }
    assert_eq!(cached, ids[5..].to_vec());
}

#[test]
fn bitnet_quantize_export_round_trips() {
    let device = candle_core::Device::Cpu;
    for scale in [WeightScale::PerTensor, WeightScale::PerRow, WeightScale::PerGroup(32)] {
        let packed = model(&config(scale)).into_packed().unwrap();
        let exported = export_bitnet(&packed).unwrap();
        assert_eq!(exported.len(), packed.packed_weights().len());
        let json = serde_json::to_string(&exported).unwrap();
        // What the candle BitNet ecosystem reads: bitnet_quantize's own type.
        let theirs: std::collections::BTreeMap<String, bitnet_quantize::TernaryWeight> =
            serde_json::from_str(&json).unwrap();
        for (name, ours) in packed.packed_weights() {
            let weight = &theirs[&name];
            assert_eq!(weight.shape, (ours.rows, ours.cols));
            let dequantized: Vec<f32> =
                bitnet_quantize::dequantize_weights(weight, &device).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(dequantized, to_vec(ours.dequantize::<B>(&Default::default())), "{name} {scale:?}");
            // And back into our packed form, same values and effective scales.
            let back: BitnetTernaryWeight = serde_json::from_str(&serde_json::to_string(weight).unwrap()).unwrap();
            let back = back.to_packed().unwrap();
            assert_eq!(back.values(), ours.values());
            assert_eq!(
                to_vec(back.dequantize::<B>(&Default::default())),
                to_vec(ours.dequantize::<B>(&Default::default()))
            );
        }
    }
}
