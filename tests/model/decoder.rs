//! The backend's one-token decoder against the model's cached forward pass.

use rand::Rng;
use tritter::backend::Reference;
use tritter::model::KvCache;
use tritter::{TritterError, TritterModel};

use crate::model::common::{fresh_rng, ids_tensor, max_rel_diff, to_vec, B};
use crate::model::reference_f64::random_tiny_config;

/// Random packed models of every variant (norms, QK-Norm, SubLN, post-MLP norm, GQA, tied, f32
/// and packed heads, pads): after a prefill of two left-padded rows, each decoder step's logits
/// equal the cached forward pass on the same ids. With full-precision activations up to float
/// rounding; with int8 activations a last-bit difference before a quantizer (the two sum the
/// attention in different orders) can move one code by a step, so the bound is that of a step.
#[test]
fn decoder_steps_equal_the_cached_forward_pass() {
    let mut rng = fresh_rng("decoder_steps_equal_the_cached_forward_pass");
    let device = Default::default();
    for draw in 0..24 {
        let mut config = random_tiny_config(&mut rng, true);
        config.max_seq_len = 24;
        let model = TritterModel::<B>::new(&config, &device).unwrap().into_packed().unwrap();
        let mut cache = KvCache::new(&model);
        let mut prompts =
            vec![(0..rng.random_range(1..6)).map(|_| rng.random_range(1..config.vocab_size)).collect(); 2];
        if config.pad_token_id.is_some() {
            prompts[1] = vec![0, 0, rng.random_range(1..config.vocab_size)]; // left-padded
            prompts[0].resize(3, 7);
        } else {
            prompts[1] = prompts[0].iter().map(|&id| (id * 7) % config.vocab_size).collect();
        }
        model.forward_cached_last(ids_tensor::<B>(&prompts, &device), &mut cache).unwrap();
        let case = format!("draw {draw}: {config:?}");
        let tied_ternary_head = config.tie_embeddings && config.ternary_lm_head;
        let Some(mut decoder) = model.token_decoder(&cache) else {
            assert!(tied_ternary_head, "{case}: the CPU backend has a decoder for this model");
            continue;
        };
        assert!(!tied_ternary_head, "{case}: a tied ternary head is not a dense or packed weight");
        let bound = if config.activation_bits.is_some() { 3e-2 } else { 1e-5 };
        for step in 0..8 {
            // Row 1 sometimes feeds the pad id (a finished row), which later queries must skip.
            let ids: Vec<usize> = (0..2).map(|_| rng.random_range(0..config.vocab_size)).collect();
            let got = decoder.step(&ids.iter().map(|&id| id as u32).collect::<Vec<_>>()).unwrap();
            let expected = to_vec(
                model.forward_cached_last(ids_tensor::<B>(&[vec![ids[0]], vec![ids[1]]], &device), &mut cache).unwrap(),
            );
            let expected: Vec<f64> = expected.iter().map(|&v| v as f64).collect();
            let err = max_rel_diff(&got.concat(), &expected);
            assert!(err < bound, "{case}, step {step}: decoder vs cached forward: {err:e}");
            assert_eq!(decoder.len(), cache.len(), "{case}: positions fed");
        }
    }
}

/// A backend without a decoder of its own (the trait's default) generates through the forward
/// pass.
#[test]
fn backends_without_a_decoder_have_none() {
    let mut rng = fresh_rng("backends_without_a_decoder_have_none");
    let mut config = random_tiny_config(&mut rng, true);
    config.ternary_lm_head = false;
    let model = TritterModel::<Reference>::new(&config, &Default::default()).unwrap().into_packed().unwrap();
    let mut cache = KvCache::new(&model);
    model.forward_cached_last(ids_tensor::<Reference>(&[vec![1, 2]], &Default::default()), &mut cache).unwrap();
    assert!(model.token_decoder(&cache).is_none());
}

/// A wrong number of ids, an id outside the vocabulary and a step past `max_seq_len` are errors
/// that name the value, and feed nothing.
#[test]
fn decoder_steps_refuse_bad_ids() {
    let mut rng = fresh_rng("decoder_steps_refuse_bad_ids");
    let mut config = random_tiny_config(&mut rng, true);
    config.ternary_lm_head = false;
    config.max_seq_len = 4;
    let model = TritterModel::<B>::new(&config, &Default::default()).unwrap().into_packed().unwrap();
    let mut cache = KvCache::new(&model);
    model.forward_cached_last(ids_tensor::<B>(&[vec![1, 2], vec![3, 4]], &Default::default()), &mut cache).unwrap();
    let mut decoder = model.token_decoder(&cache).unwrap();
    let vocab = config.vocab_size as u32;
    let err = decoder.step(&[1]).unwrap_err().to_string();
    assert!(err.contains("1 ids for a cache of 2 rows"), "{err}");
    let err = decoder.step(&[1, vocab]).unwrap_err();
    assert!(
        matches!(err, TritterError::TokenOutOfRange { id, batch: 1, position: 2, .. } if id == vocab as i64),
        "{err}"
    );
    assert_eq!(decoder.len(), 2, "nothing fed");
    decoder.step(&[1, 2]).unwrap();
    decoder.step(&[1, 2]).unwrap();
    let err = decoder.step(&[1, 2]).unwrap_err();
    assert!(matches!(err, TritterError::SequenceTooLong { len: 5, max_seq_len: 4 }), "{err}");
}
