//! Causality, RoPE, grouped-query attention and input checks.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use tritter::model::{attention_mask, Attention, RotaryEmbedding};
use tritter::ternary::Projection;
use tritter::{TernaryQuant, TritterConfig, TritterError, TritterModel};

use crate::model::common::{fresh_rng, ids_tensor, random_ids, random_tensor, to_vec, B};

#[test]
fn changing_token_t_leaves_earlier_logits_unchanged() {
    let mut rng = fresh_rng("changing_token_t_leaves_earlier_logits_unchanged");
    let device = Default::default();
    for bitnet in [true, false] {
        let mut config = TritterConfig::test();
        config.bitnet = bitnet;
        let model = TritterModel::<B>::new(&config, &device).unwrap();
        let (seq, vocab) = (12, config.vocab_size);
        let ids = random_ids(&mut rng, 2, seq, vocab);
        let t = rng.random_range(1..seq);
        let mut changed = ids.clone();
        for row in &mut changed {
            row[t] = (row[t] + rng.random_range(1..vocab)) % vocab;
        }
        let a = to_vec(model.forward(ids_tensor::<B>(&ids, &device)));
        let b = to_vec(model.forward(ids_tensor::<B>(&changed, &device)));
        for batch in 0..2 {
            for pos in 0..seq {
                let range = (batch * seq + pos) * vocab..(batch * seq + pos + 1) * vocab;
                let same = a[range.clone()] == b[range];
                if pos < t {
                    assert!(same, "bitnet={bitnet}: logits at {pos} changed when token {t} changed");
                } else if pos == t {
                    assert!(!same, "bitnet={bitnet}: logits at {t} ignore token {t}");
                }
            }
        }
    }
}

#[test]
fn pad_keys_are_masked() {
    // Keys after the query and pad keys are masked; a pad query still sees itself.
    let device = Default::default();
    let ids = ids_tensor::<B>(&[vec![5, 0, 7, 0]], &device);
    let mask: Vec<bool> = attention_mask(&ids, Some(0)).into_data().to_vec().unwrap();
    #[rustfmt::skip]
    let expected = [
        false, true,  true,  true,
        false, false, true,  true, // the pad query sees itself
        false, true,  false, true,
        false, true,  false, false,
    ];
    assert_eq!(mask, expected);
    let causal: Vec<bool> = attention_mask(&ids, None).into_data().to_vec().unwrap();
    let expected: Vec<bool> = (0..16).map(|k| k % 4 > k / 4).collect();
    assert_eq!(causal, expected);
}

fn rope_apply(rope: &RotaryEmbedding, x: &[f32], heads: usize, offset: usize) -> Vec<f32> {
    let d = rope.head_dim;
    let t = x.len() / (heads * d);
    let x = Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), [1, t, heads, d]), &Default::default());
    to_vec(rope.apply(x, offset))
}

#[test]
fn rope_matches_hand_computed_values() {
    // d = 4, θ = 100: frequencies 100^0 = 1 and 100^(-1/2) = 0.1. For x = [1, 2, 3, 4] at p = 1:
    // x'0 = 1·cos 1 − 3·sin 1, x'1 = 2·cos 0.1 − 4·sin 0.1, x'2 = 3·cos 1 + 1·sin 1,
    // x'3 = 4·cos 0.1 + 2·sin 0.1 (cos 1 = 0.540302, sin 1 = 0.841471, cos 0.1 = 0.995004,
    // sin 0.1 = 0.0998334). At p = 2 the angles are 2 and 0.2; at p = 0 nothing moves.
    let rope = RotaryEmbedding { theta: 100.0, head_dim: 4 };
    let x = [1.0, 2.0, 3.0, 4.0];
    let cases: [(usize, [f32; 4]); 3] = [
        (0, [1.0, 2.0, 3.0, 4.0]),
        (1, [-1.984_110_6, 1.590_674_7, 2.462_377_9, 4.179_683_5]),
        (2, [-3.144_039_1, 1.165_455_8, -0.339_143_1, 4.317_605]),
    ];
    for (pos, expected) in cases {
        let got = rope_apply(&rope, &x, 1, pos);
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "p={pos}: {got:?} vs {expected:?}");
        }
    }
    // Position p of a sequence equals offset p of a one-token sequence.
    let two = rope_apply(&rope, &[x, x].concat(), 1, 0);
    assert_eq!(&two[4..], &rope_apply(&rope, &x, 1, 1)[..]);
}

#[test]
fn rope_preserves_norms_and_depends_on_relative_offset_only() {
    let mut rng = fresh_rng("rope_preserves_norms_and_depends_on_relative_offset_only");
    let device = Default::default();
    let d = 2 * rng.random_range(2..33);
    let rope = RotaryEmbedding { theta: 10_000.0, head_dim: d };
    let (heads, t) = (3, 7);
    let x: Vec<f32> = to_vec(random_tensor::<B, 4>(&mut rng, [1, t, heads, d], 1.0, &device));
    let offset = rng.random_range(0..1000);
    let y = rope_apply(&rope, &x, heads, offset);
    for (a, b) in x.chunks(d).zip(y.chunks(d)) {
        let (na, nb) = (a.iter().map(|v| v * v).sum::<f32>().sqrt(), b.iter().map(|v| v * v).sum::<f32>().sqrt());
        assert!((na - nb).abs() <= 1e-5 * na.max(1.0), "norm {na} -> {nb}");
    }
    // q at position m, k at position n: q·k is the same after shifting both by s.
    let q: Vec<f32> = to_vec(random_tensor::<B, 1>(&mut rng, [d], 1.0, &device));
    let k: Vec<f32> = to_vec(random_tensor::<B, 1>(&mut rng, [d], 1.0, &device));
    let (m, n, s) = (rng.random_range(0..200), rng.random_range(0..200), rng.random_range(1..500));
    let dot = |m: usize, n: usize| -> f32 {
        let (qr, kr) = (rope_apply(&rope, &q, 1, m), rope_apply(&rope, &k, 1, n));
        qr.iter().zip(&kr).map(|(a, b)| a * b).sum()
    };
    let (base, shifted) = (dot(m, n), dot(m + s, n + s));
    assert!((base - shifted).abs() < 1e-3, "q·k at ({m},{n}) = {base}, shifted by {s}: {shifted}");
    // And it does depend on the offset m − n (else the test above proves nothing).
    assert!((dot(m, n) - dot(m + 1, n)).abs() > 1e-6);
}

/// Plain multi-head attention, head by head with separate per-head matmuls (no kv sharing
/// logic, no batched reshapes): the independent reference for `n_kv = n_h`.
fn per_head_attention(attn: &Attention<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, t, _] = x.dims();
    let d = attn.rope.head_dim;
    let (q, k, v) = (attn.q_proj.forward(x.clone()), attn.k_proj.forward(x.clone()), attn.v_proj.forward(x));
    let device = q.device();
    let future: Vec<bool> = (0..t * t).map(|k| k % t > k / t).collect(); // key j > query i
    let causal = Tensor::<B, 2, burn::tensor::Bool>::from_data(TensorData::new(future, [t, t]), &device);
    let heads = (0..attn.num_heads)
        .map(|h| {
            let head = |m: &Tensor<B, 3>| m.clone().narrow(2, h * d, d).reshape([batch, t, 1, d]);
            let (mut qh, mut kh) = (head(&q), head(&k));
            if let (Some(qn), Some(kn)) = (&attn.q_norm, &attn.k_norm) {
                qh = qn.forward(qh);
                kh = kn.forward(kh);
            }
            let qh = attn.rope.apply(qh, 0).reshape([batch, t, d]);
            let kh = attn.rope.apply(kh, 0).reshape([batch, t, d]);
            let scores = qh.matmul(kh.swap_dims(1, 2)) / (d as f64).sqrt();
            let scores = scores.mask_fill(causal.clone().unsqueeze::<3>().expand([batch, t, t]), f32::NEG_INFINITY);
            burn::tensor::activation::softmax(scores, 2).matmul(head(&v).reshape([batch, t, d]))
        })
        .collect();
    attn.o_proj.forward(Tensor::cat(heads, 2))
}

fn attention_of(num_kv_heads: usize, bitnet: bool) -> (TritterConfig, Attention<B>) {
    let mut config = TritterConfig::test();
    config.hidden_size = 32;
    config.num_heads = 4;
    config.num_kv_heads = num_kv_heads;
    config.bitnet = bitnet;
    let quant = if bitnet {
        TernaryQuant::bitnet(config.weight_scale, config.weight_quant_eps, config.activation_bits)
    } else {
        TernaryQuant::FULL_PRECISION
    };
    (config.clone(), Attention::new(&config, quant, &Default::default()))
}

#[test]
fn mha_equals_per_head_attention() {
    let mut rng = fresh_rng("mha_equals_per_head_attention");
    for bitnet in [false, true] {
        let (config, attn) = attention_of(4, bitnet);
        let x = random_tensor::<B, 3>(&mut rng, [2, 9, config.hidden_size], 1.0, &Default::default());
        let mask = attention_mask(&ids_tensor::<B>(&[vec![0; 9], vec![0; 9]], &Default::default()), None);
        let got = to_vec(attn.forward(x.clone(), 0, mask));
        let want = to_vec(per_head_attention(&attn, x));
        assert!(got.iter().chain(&want).all(|v| v.is_finite()));
        let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-5, "bitnet={bitnet}: max diff {diff}");
    }
}

#[test]
fn gqa_query_heads_share_their_kv_head() {
    // A GQA block equals an MHA block whose k/v projections repeat each kv head's rows for the
    // n_h / n_kv query heads that read it (h reads kv head h / (n_h / n_kv)).
    let mut rng = fresh_rng("gqa_query_heads_share_their_kv_head");
    let device = Default::default();
    for num_kv in [1, 2] {
        let (config, gqa) = attention_of(num_kv, false);
        let (_, mut mha) = attention_of(4, false);
        let d = config.head_dim();
        let n_rep = config.num_heads / num_kv;
        let repeat = |w: &Param<Tensor<B, 2>>| -> Param<Tensor<B, 2>> {
            let heads: Vec<Tensor<B, 2>> =
                (0..config.num_heads).map(|h| w.val().narrow(0, (h / n_rep) * d, d)).collect();
            Param::from_tensor(Tensor::cat(heads, 0))
        };
        let weight = |p: &Projection<B>| p.latent().unwrap().weight.clone();
        mha.q_proj.latent_mut().unwrap().weight = Param::from_tensor(weight(&gqa.q_proj).val());
        mha.o_proj.latent_mut().unwrap().weight = Param::from_tensor(weight(&gqa.o_proj).val());
        mha.k_proj.latent_mut().unwrap().weight = repeat(&weight(&gqa.k_proj));
        mha.v_proj.latent_mut().unwrap().weight = repeat(&weight(&gqa.v_proj));
        let x = random_tensor::<B, 3>(&mut rng, [1, 6, config.hidden_size], 1.0, &device);
        let mask = attention_mask(&ids_tensor::<B>(&[vec![0; 6]], &device), None);
        let a = to_vec(gqa.forward(x.clone(), 0, mask.clone()));
        let b = to_vec(mha.forward(x, 0, mask));
        assert!(a.iter().chain(&b).all(|v| v.is_finite()));
        let diff = a.iter().zip(&b).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-5, "n_kv={num_kv}: max diff {diff}");
    }
}

#[test]
fn checked_entry_points_reject_bad_ids_and_long_sequences() {
    let device = Default::default();
    let mut config = TritterConfig::test();
    config.max_seq_len = 8;
    let model = TritterModel::<B>::new(&config, &device).unwrap();
    let err = model.forward_checked(ids_tensor::<B>(&[vec![1, 2, 3], vec![4, 512, 6]], &device)).unwrap_err();
    assert!(matches!(err, TritterError::TokenOutOfRange { id: 512, batch: 1, position: 1, vocab_size: 512 }), "{err}");
    let negative = Tensor::<B, 2, burn::tensor::Int>::from_data(TensorData::new(vec![3i64, -1], [1, 2]), &device);
    assert!(matches!(model.loss_checked(negative).unwrap_err(), TritterError::TokenOutOfRange { id: -1, .. }));
    let err = model.forward_checked(ids_tensor::<B>(&[vec![1; 9]], &device)).unwrap_err();
    assert!(matches!(err, TritterError::SequenceTooLong { len: 9, max_seq_len: 8 }), "{err}");
    assert!(model.loss_checked(ids_tensor::<B>(&[vec![1]], &device)).is_err());
    let ok = model.forward_checked(ids_tensor::<B>(&[vec![0, 511, 7]], &device)).unwrap();
    assert_eq!(ok.dims(), [1, 3, 512]);
}
