//! Cached generation against uncached recomputation, batching, sampling distributions.

use rand::Rng;
use tritter::infer::{generate, generate_greedy, GenerateOptions, Sampler, SamplingConfig};
use tritter::model::KvCache;
use tritter::{TritterConfig, TritterError, TritterModel};

use crate::model::common::{fresh_rng, ids_tensor, max_rel_diff, to_vec, B};

fn model(config: &TritterConfig) -> TritterModel<B> {
    TritterModel::<B>::new(config, &Default::default()).unwrap()
}

/// A small model whose logits are spread out (larger weights), so argmax ties are unlikely, with
/// full-precision activations: a cached step, a batch and a lone prompt sum in different orders,
/// and with int8 activations such a last-bit difference can flip an activation code, which at this
/// wide init moves logits by more than rounding and, a few times in a hundred runs, a near-tied
/// argmax. The cache and batching logic is the same either way; the packed model's cached
/// generation test runs with int8 activations.
fn config() -> TritterConfig {
    let mut config = TritterConfig::test();
    config.pad_token_id = Some(0);
    config.init_std = 0.5;
    config.activation_bits = None;
    config
}

#[test]
fn cached_logits_equal_the_full_forward_pass() {
    let mut rng = fresh_rng("cached_logits_equal_the_full_forward_pass");
    // MHA with Tritter's defaults; MQA with the BitNet 2B4T variant (SubLN, RMSNorm, no QK-Norm) and SwiGLU.
    for num_kv_heads in [config().num_heads, 1] {
        let variant = num_kv_heads == 1;
        let config = TritterConfig {
            num_kv_heads,
            sub_norm: variant,
            qk_norm: !variant,
            norm: if variant { tritter::NormKind::RmsNorm } else { tritter::NormKind::LayerNorm },
            activation: if variant { tritter::Activation::Silu } else { tritter::Activation::ReluSquared },
            ..config()
        };
        let model = model(&config);
        let (batch, prompt, steps) = (2, rng.random_range(1..9), rng.random_range(1..8));
        let ids: Vec<Vec<usize>> =
            (0..batch).map(|_| (0..prompt + steps).map(|_| rng.random_range(4..config.vocab_size)).collect()).collect();
        let full = to_vec(model.forward(ids_tensor::<B>(&ids, &Default::default())));
        let vocab = config.vocab_size;

        let mut cache = KvCache::new(&model);
        let head: Vec<Vec<usize>> = ids.iter().map(|r| r[..prompt].to_vec()).collect();
        let mut cached = vec![Vec::new(); batch];
        let mut collect = |logits: Vec<f32>, len: usize| {
            for (b, row) in cached.iter_mut().enumerate() {
                row.extend_from_slice(&logits[b * len * vocab..(b + 1) * len * vocab]);
            }
        };
        collect(to_vec(model.forward_cached(ids_tensor::<B>(&head, &Default::default()), &mut cache).unwrap()), prompt);
        for t in prompt..prompt + steps {
            let step: Vec<Vec<usize>> = ids.iter().map(|r| vec![r[t]]).collect();
            collect(to_vec(model.forward_cached(ids_tensor::<B>(&step, &Default::default()), &mut cache).unwrap()), 1);
        }
        assert_eq!(cache.len(), prompt + steps);
        let cached: Vec<f32> = cached.concat();
        let reference: Vec<f64> = full.iter().map(|&v| v as f64).collect();
        let err = max_rel_diff(&cached, &reference);
        assert!(err < 1e-4, "n_kv = {num_kv_heads}: cached logits differ from the full pass by {err}");
        // GQA: the cache holds n_kv heads.
        let per_layer = 2 * batch * num_kv_heads * (prompt + steps) * config.head_dim() * 4;
        assert_eq!(cache.bytes(), config.num_layers * per_layer);
    }
}

#[test]
fn last_position_logits_equal_the_last_row_of_the_cached_pass() {
    let mut rng = fresh_rng("last_position_logits_equal_the_last_row_of_the_cached_pass");
    let config = config();
    let (model, vocab) = (model(&config), config.vocab_size);
    let (mut all, mut last) = (KvCache::new(&model), KvCache::new(&model));
    let (batch, prompt) = (rng.random_range(1..4), rng.random_range(1..12));
    // A prefill, then two single-token steps, through both caches.
    for len in [prompt, 1, 1] {
        let ids: Vec<Vec<usize>> = (0..batch).map(|_| (0..len).map(|_| rng.random_range(4..vocab)).collect()).collect();
        let full = to_vec(model.forward_cached(ids_tensor::<B>(&ids, &Default::default()), &mut all).unwrap());
        let reference: Vec<f64> = (0..batch)
            .flat_map(|b| &full[((b + 1) * len - 1) * vocab..(b + 1) * len * vocab])
            .map(|&v| v as f64)
            .collect();
        let logits = model.forward_cached_last(ids_tensor::<B>(&ids, &Default::default()), &mut last).unwrap();
        assert_eq!(logits.dims(), [batch, vocab]);
        let err = max_rel_diff(&to_vec(logits), &reference);
        assert!(err < 1e-5, "{len} positions: last-position logits differ from the full pass's last row by {err}");
        assert_eq!(last.len(), all.len());
    }
    let empty = ids_tensor::<B>(&vec![Vec::new(); batch], &Default::default());
    let err = model.forward_cached_last(empty, &mut last).unwrap_err();
    assert!(err.to_string().contains("no input ids"), "{err}");
}

#[test]
fn cached_greedy_generation_equals_uncached_recomputation() {
    let mut rng = fresh_rng("cached_greedy_generation_equals_uncached_recomputation");
    let config = config();
    let model = model(&config);
    for _ in 0..3 {
        let prompt: Vec<u32> =
            (0..rng.random_range(1..10)).map(|_| rng.random_range(4..config.vocab_size as u32)).collect();
        let uncached = generate_greedy(&model, &prompt, 20, &[]).unwrap();
        let options = GenerateOptions { max_new_tokens: 20, ..GenerateOptions::default() };
        let mut streamed = Vec::new();
        let cached =
            generate(&model, std::slice::from_ref(&prompt), &options, &mut |row, t| streamed.push((row, t))).unwrap();
        assert_eq!(cached[0], uncached, "prompt {prompt:?}");
        assert_eq!(streamed, uncached.iter().map(|&t| (0, t)).collect::<Vec<_>>(), "streamed tokens");
    }
}

#[test]
fn batched_prompts_of_different_lengths_match_single_runs() {
    let mut rng = fresh_rng("batched_prompts_of_different_lengths_match_single_runs");
    let config = config();
    let model = model(&config);
    let prompts: Vec<Vec<u32>> = [1usize, 7, 3, 12]
        .iter()
        .map(|&n| (0..n).map(|_| rng.random_range(4..config.vocab_size as u32)).collect())
        .collect();
    let stop = vec![rng.random_range(4..config.vocab_size as u32)];
    let options = GenerateOptions { max_new_tokens: 12, stop_tokens: stop.clone(), ..GenerateOptions::default() };
    let batched = generate(&model, &prompts, &options, &mut |_, _| {}).unwrap();
    for (prompt, out) in prompts.iter().zip(&batched) {
        let alone = generate(&model, std::slice::from_ref(prompt), &options, &mut |_, _| {}).unwrap();
        assert_eq!(out, &alone[0], "prompt of {} tokens", prompt.len());
        assert!(!out.contains(&stop[0]));
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_respects_top_k() {
    let mut rng = fresh_rng("seeded_sampling_is_reproducible_and_respects_top_k");
    let config = config();
    let model = model(&config);
    let prompt: Vec<u32> = (0..5).map(|_| rng.random_range(4..config.vocab_size as u32)).collect();
    let sampling = SamplingConfig { temperature: 1.0, top_k: Some(5), top_p: Some(0.9), seed: rng.random() };
    let options = GenerateOptions { max_new_tokens: 16, sampling, ..GenerateOptions::default() };
    let a = generate(&model, std::slice::from_ref(&prompt), &options, &mut |_, _| {}).unwrap();
    let b = generate(&model, std::slice::from_ref(&prompt), &options, &mut |_, _| {}).unwrap();
    assert_eq!(a, b, "same seed, same tokens");
    let other = GenerateOptions { sampling: SamplingConfig { seed: sampling.seed ^ 1, ..sampling }, ..options.clone() };
    let c = generate(&model, std::slice::from_ref(&prompt), &other, &mut |_, _| {}).unwrap();
    assert_ne!(a, c, "another seed should give other tokens (16 draws from up to 5 choices)");
    // top_k = 1 is greedy.
    let k1 = GenerateOptions { sampling: SamplingConfig { top_k: Some(1), ..sampling }, ..options };
    let greedy = generate_greedy(&model, &prompt, 16, &[]).unwrap();
    assert_eq!(generate(&model, &[prompt], &k1, &mut |_, _| {}).unwrap()[0], greedy);
}

#[test]
fn sampler_frequencies_match_the_softmax() {
    let mut rng = fresh_rng("sampler_frequencies_match_the_softmax");
    let logits: Vec<f32> = (0..12).map(|_| rng.random_range(-3.0..3.0)).collect();
    for (temperature, top_k, top_p) in [(1.0f32, None, None), (0.7, Some(4), None), (1.3, None, Some(0.8f32))] {
        // f64 reference: softmax(logits / T), cut to top-k, then to the nucleus.
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(top_k.unwrap_or(logits.len()));
        let w: Vec<f64> = order.iter().map(|&i| (logits[i] as f64 / temperature as f64).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut probs: Vec<(usize, f64)> =
            order.iter().zip(w.iter().map(|x| x / total)).map(|(&i, p)| (i, p)).collect();
        if let Some(p) = top_p {
            let mut mass = 0.0;
            let n = probs
                .iter()
                .take_while(|(_, q)| {
                    let before = mass;
                    mass += q;
                    before < p as f64
                })
                .count();
            probs.truncate(n);
            let kept: f64 = probs.iter().map(|(_, q)| q).sum();
            probs.iter_mut().for_each(|(_, q)| *q /= kept);
        }
        let mut sampler = Sampler::new(SamplingConfig { temperature, top_k, top_p, seed: rng.random() }).unwrap();
        let draws = 40_000;
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..draws {
            counts[sampler.sample(&logits) as usize] += 1;
        }
        for (i, count) in counts.iter().enumerate() {
            let p = probs.iter().find(|(j, _)| *j == i).map_or(0.0, |(_, q)| *q);
            let sigma = (draws as f64 * p * (1.0 - p)).sqrt().max(1.0);
            assert!(
                (*count as f64 - draws as f64 * p).abs() < 5.0 * sigma,
                "T={temperature} k={top_k:?} p={top_p:?}: token {i} drawn {count} times, expected {:.0}",
                draws as f64 * p
            );
        }
    }
}

#[test]
fn too_long_requests_fail_or_slide() {
    let config = TritterConfig { max_seq_len: 16, ..config() };
    let model = model(&config);
    let prompt: Vec<u32> = (4..14).collect();
    let options = GenerateOptions { max_new_tokens: 10, ..GenerateOptions::default() };
    match generate(&model, std::slice::from_ref(&prompt), &options, &mut |_, _| {}) {
        Err(TritterError::SequenceTooLong { len: 20, max_seq_len: 16 }) => {}
        other => panic!("expected SequenceTooLong, got {other:?}"),
    }
    // A length that overflows `prompt + max_new_tokens` is too long, not wrapped around.
    let huge = GenerateOptions { max_new_tokens: usize::MAX - 5, ..GenerateOptions::default() };
    match generate(&model, std::slice::from_ref(&prompt), &huge, &mut |_, _| {}) {
        Err(TritterError::SequenceTooLong { len: usize::MAX, max_seq_len: 16 }) => {}
        other => panic!("expected SequenceTooLong, got {other:?}"),
    }
    let sliding = GenerateOptions { slide_window: true, ..options };
    assert_eq!(generate(&model, &[prompt], &sliding, &mut |_, _| {}).unwrap()[0].len(), 10);
    let bad = GenerateOptions {
        sampling: SamplingConfig { top_p: Some(1.5), temperature: 1.0, ..SamplingConfig::default() },
        ..GenerateOptions::default()
    };
    assert!(matches!(
        generate(&model, &[vec![5]], &bad, &mut |_, _| {}),
        Err(TritterError::InvalidConfig { field: "top_p", .. })
    ));
    assert!(matches!(
        generate(&model, &[vec![5, 9999]], &GenerateOptions::default(), &mut |_, _| {}),
        Err(TritterError::TokenOutOfRange { id: 9999, position: 1, .. })
    ));
}
