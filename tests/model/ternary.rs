//! Quantizers and the straight-through estimator against hand-computed and f64 references,
//! and against `bitnet-quantize` as an independent implementation.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use rand::{rngs::StdRng, Rng};
use tritter::ternary::{
    absmean_scales, fake_quantize_activation, fake_quantize_weight, quantize_activation_int8, quantize_weight_absmean,
    TernaryLinearConfig,
};
use tritter::{WeightQuantEps, WeightScale};

use crate::model::common::{fresh_rng, gammas_f64, normal, random_tensor, to_vec, AD, B};

fn scales_to_check(rng: &mut StdRng, inp: usize) -> Vec<WeightScale> {
    let divisors: Vec<usize> = (1..=inp).filter(|n| inp.is_multiple_of(*n)).collect();
    let n = divisors[rng.random_range(0..divisors.len())];
    vec![WeightScale::PerTensor, WeightScale::PerRow, WeightScale::PerGroup(n)]
}

/// The two ε rules by hand on weights whose γ = 4e-6 is below ε = 1e-5: `add` divides by
/// γ + ε = 1.4e-5 (ratios 0.571, −0.429, 0, 0.143) and scales by γ; `clamp` divides and scales by
/// max(γ, ε) = 1e-5 (ratios 0.8, −0.6, 0, 0.2). Every backend's quantizer, and the packed form.
#[test]
fn weight_eps_rules_by_hand() {
    let device = Default::default();
    let w = || Tensor::<B, 2>::from_data(TensorData::new(vec![8e-6f32, -6e-6, 0.0, 2e-6], [1, 4]), &device);
    let cases = [(WeightQuantEps::Add, [4e-6f32, 0.0, 0.0, 0.0]), (WeightQuantEps::Clamp, [1e-5, -1e-5, 0.0, 0.0])];
    for (eps, want) in cases {
        let quant = tritter::TernaryQuant::bitnet(WeightScale::PerTensor, eps, None);
        let got = [
            to_vec(fake_quantize_weight(w(), WeightScale::PerTensor, eps)),
            to_vec(<B as tritter::TritterBackend>::quantize_weight(w(), &quant)),
            to_vec(<burn::backend::NdArray<f32, i32> as tritter::TritterBackend>::quantize_weight(
                Tensor::from_data(w().into_data(), &device),
                &quant,
            )),
            to_vec(
                tritter::ternary::PackedTernary::quantize(w(), WeightScale::PerTensor, eps)
                    .unwrap()
                    .dequantize::<B>(&device),
            ),
        ];
        for (how, got) in ["tensor ops", "CPU kernel", "reference backend", "packed"].iter().zip(got) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-6), "{eps:?} {how}: {got:?}, want {want:?}");
            }
        }
    }
}

#[test]
fn ternary_weights_are_gamma_times_minus_one_zero_one() {
    let mut rng = fresh_rng("ternary_weights_are_gamma_times_minus_one_zero_one");
    let device = Default::default();
    for (out, inp) in [(1, 1), (3, 7), (17, 48), (33, 96), (5, 130)] {
        let w = random_tensor::<B, 2>(&mut rng, [out, inp], 0.02, &device);
        let wv = to_vec(w.clone());
        for scale in scales_to_check(&mut rng, inp) {
            let gamma = gammas_f64(&wv, out, inp, scale);
            let fake = to_vec(fake_quantize_weight(w.clone(), scale, WeightQuantEps::Add));
            let (codes, scales) = quantize_weight_absmean(w.clone(), scale, WeightQuantEps::Add);
            let codes = to_vec(codes);
            assert_eq!(to_vec(scales.clone()), to_vec(absmean_scales(w.clone(), scale)));
            let scales = to_vec(scales);
            assert_eq!(
                scales.len(),
                match scale {
                    WeightScale::PerTensor => 1,
                    WeightScale::PerRow => out,
                    WeightScale::PerGroup(n) => out * inp / n,
                }
            );
            for i in 0..out * inp {
                assert!([-1.0, 0.0, 1.0].contains(&codes[i]), "{scale:?}: code {}", codes[i]);
                let ratio = fake[i] as f64 / gamma[i];
                assert!((ratio - codes[i] as f64).abs() < 1e-5, "{scale:?}: W̃/γ = {ratio}, code {}", codes[i]);
                // The code is round-half-even(W / (γ + ε)) clamped, unless within float error of ±0.5.
                let v = wv[i] as f64 / (gamma[i] + 1e-5);
                if (v.abs() - 0.5).abs() > 1e-4 {
                    assert_eq!(codes[i] as f64, v.round_ties_even().clamp(-1.0, 1.0), "{scale:?}: W/γ = {v}");
                }
            }
            for s in &scales {
                assert!(gamma.iter().any(|g| ((*s as f64) - g).abs() <= 1e-5 * g), "{scale:?}: γ {s} not a group mean");
            }
        }
    }
}

#[test]
fn rounding_is_half_to_even() {
    // Hand-made: γ = mean|W| = 1 for W = [0.5, -0.5, 1.5, 2.5 ...] would be disturbed by ε, so
    // test the activation quantizer, whose scale is exact here: max|x| = 127 ⇒ s = 1.
    let x = Tensor::<B, 2>::from_data(
        TensorData::new(vec![0.5f32, 1.5, 2.5, -0.5, -2.5, 127.0], [1, 6]),
        &Default::default(),
    );
    let (codes, s) = quantize_activation_int8(x);
    assert_eq!(to_vec(s), vec![1.0]);
    assert_eq!(to_vec(codes), vec![0.0, 2.0, 2.0, -0.0, -2.0, 127.0]);
}

#[test]
fn activation_error_is_at_most_max_over_254_per_token() {
    let mut rng = fresh_rng("activation_error_is_at_most_max_over_254_per_token");
    let device = Default::default();
    let (tokens, dim) = (rng.random_range(1..20), rng.random_range(1..300));
    let mut values = Vec::with_capacity(tokens * dim);
    for t in 0..tokens {
        // Tokens of very different magnitudes, one all-zero token, one with an outlier.
        let scale = 10f32.powi(rng.random_range(-4..4));
        for j in 0..dim {
            let v = if t == 0 {
                0.0
            } else if t == 1 && j == 0 {
                1000.0 * scale
            } else {
                normal(&mut rng) * scale
            };
            values.push(v);
        }
    }
    let x = Tensor::<B, 2>::from_data(TensorData::new(values.clone(), [tokens, dim]), &device);
    let (codes, s) = quantize_activation_int8(x.clone());
    let (codes, s, fake) = (to_vec(codes), to_vec(s), to_vec(fake_quantize_activation(x)));
    for t in 0..tokens {
        let row = &values[t * dim..(t + 1) * dim];
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let expected_s = 127.0 / max.max(1e-5);
        assert!((s[t] - expected_s).abs() <= 1e-6 * expected_s, "token {t}: s = {}, want {expected_s}", s[t]);
        for j in 0..dim {
            let code = codes[t * dim + j];
            assert!(code == code.round() && (-128.0..=127.0).contains(&code));
            let err = (fake[t * dim + j] - row[j]).abs();
            assert!(err <= max / 254.0 * (1.0 + 1e-5) + f32::MIN_POSITIVE, "token {t}: error {err} > {max}/254");
        }
    }
}

#[test]
fn straight_through_gradients_follow_the_spec() {
    // L = Σ y ⊙ G, so ∂L/∂y = G. Spec: ∂L/∂x = G · W̃ and ∂L/∂W = Gᵀ · x̃, with W̃, x̃ the
    // fake-quantized values (recomputed here from the quantizers) and summed over all tokens.
    let mut rng = fresh_rng("straight_through_gradients_follow_the_spec");
    let device = Default::default();
    let (batch, seq, inp, out) = (2, 3, 8, 5);
    for scale in [WeightScale::PerTensor, WeightScale::PerRow, WeightScale::PerGroup(4)] {
        for activation_bits in [Some(8), None] {
            let mut layer = TernaryLinearConfig::new(inp, out)
                .with_weight_scale(Some(scale))
                .with_activation_bits(activation_bits)
                .init::<AD>(&device);
            layer.weight =
                Param::from_tensor(random_tensor::<AD, 2>(&mut rng, [out, inp], 0.5, &device).require_grad());
            let x = random_tensor::<AD, 3>(&mut rng, [batch, seq, inp], 1.0, &device).require_grad();
            let g = random_tensor::<AD, 3>(&mut rng, [batch, seq, out], 1.0, &device);
            let y = layer.forward(x.clone());
            let grads = (y * g.clone()).sum().backward();
            let dx = to_vec(x.grad(&grads).unwrap());
            let dw = to_vec(layer.weight.val().grad(&grads).unwrap());

            let w_t = to_vec(fake_quantize_weight(layer.weight.val().inner(), scale, WeightQuantEps::Add)); // [out, in]
            let x_t = match activation_bits {
                Some(_) => to_vec(fake_quantize_activation(x.clone().inner())),
                None => to_vec(x.clone().inner()),
            };
            let g = to_vec(g.inner());
            let tokens = batch * seq;
            for n in 0..tokens {
                for i in 0..inp {
                    let want: f64 = (0..out).map(|o| g[n * out + o] as f64 * w_t[o * inp + i] as f64).sum();
                    assert!((dx[n * inp + i] as f64 - want).abs() < 1e-5, "{scale:?} {activation_bits:?}: dx");
                }
            }
            for o in 0..out {
                for i in 0..inp {
                    let want: f64 = (0..tokens).map(|n| g[n * out + o] as f64 * x_t[n * inp + i] as f64).sum();
                    assert!((dw[o * inp + i] as f64 - want).abs() < 1e-5, "{scale:?} {activation_bits:?}: dW");
                }
            }
        }
    }
}

#[test]
fn per_group_quantizer_agrees_with_bitnet_quantize() {
    // bitnet-quantize scales per row and group of 64 by mean|W| with no ε, gives an all-zero
    // group scale 1, and rounds half away from zero. Codes may therefore differ only where
    // round(W/γ) ≠ round(W/(γ + ε)) (recomputed in f64 here), and scales only for zero groups.
    let mut rng = fresh_rng("per_group_quantizer_agrees_with_bitnet_quantize");
    let (out, groups) = (rng.random_range(1..40), rng.random_range(1..6));
    let inp = 64 * groups;
    let mut w: Vec<f32> = (0..out * inp).map(|_| normal(&mut rng) * 0.02).collect();
    w[..64].iter_mut().for_each(|v| *v = 0.0); // one all-zero group
    let ours = Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [out, inp]), &Default::default());
    let (codes, scales) = quantize_weight_absmean(ours, WeightScale::PerGroup(64), WeightQuantEps::Add);
    let (codes, scales) = (to_vec(codes), to_vec(scales));

    let candle_w = candle_core::Tensor::from_vec(w.clone(), (out, inp), &candle_core::Device::Cpu).unwrap();
    let config = bitnet_quantize::BitNetConfig { group_size: 64, ..Default::default() };
    let theirs = bitnet_quantize::quantize_weights(&candle_w, &config).unwrap();
    assert_eq!(theirs.scales.len(), scales.len());
    assert_eq!(scales[0], 0.0);
    assert_eq!(theirs.scales[0], 1.0, "documented: an all-zero group gets scale 1");
    for (g, (a, b)) in scales.iter().zip(&theirs.scales).enumerate().skip(1) {
        assert!((a - b).abs() <= 1e-6 * b, "group {g}: γ {a} vs {b}");
    }
    let mut explained = 0;
    for r in 0..out {
        for c in 0..inp {
            let ours = codes[r * inp + c] as i32;
            let theirs = theirs.data[r].get(c).value() as i32;
            if ours != theirs {
                let gamma = scales[r * groups + c / 64] as f64;
                let v = w[r * inp + c] as f64;
                let with_eps = (v / (gamma + 1e-5)).round_ties_even().clamp(-1.0, 1.0) as i32;
                let without = (v / gamma).round().clamp(-1.0, 1.0) as i32;
                assert!(
                    with_eps == ours && without == theirs,
                    "row {r} col {c}: ours {ours}, theirs {theirs}, W/γ = {}",
                    v / gamma
                );
                explained += 1;
            }
        }
    }
    assert!(explained * 100 <= out * inp, "{explained} of {} codes differ", out * inp);
}
