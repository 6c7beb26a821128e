//! 2-bit packing of ternary weights: layout, exact round trips, agreement with the quantizer.

use rand::Rng;
use tritter::ternary::{fake_quantize_weight, PackedTernary};
use tritter::{WeightQuantEps, WeightScale};

use crate::model::common::{fresh_rng, random_tensor, to_vec, B};

#[test]
fn packed_words_follow_the_spec_layout() {
    // Codes value + 1 = [0, 1, 2, 2] in bits 0..8, the rest of the word padding (code 1).
    let packed = PackedTernary::from_values(&[-1, 0, 1, 1], 1, 4, vec![0.5], WeightScale::PerTensor).unwrap();
    assert_eq!(packed.codes, vec![0x5555_55A4]);
    // 17 columns take two words; the second holds one code (value -1 → code 0) and padding.
    let row: Vec<i8> = (0..17).map(|c| if c == 16 { -1 } else { 1 }).collect();
    let packed = PackedTernary::from_values(&row, 1, 17, vec![1.0], WeightScale::PerTensor).unwrap();
    assert_eq!(packed.codes, vec![0xAAAA_AAAA, 0x5555_5554]);
}

#[test]
fn packing_round_trips_exactly_for_awkward_shapes() {
    let mut rng = fresh_rng("packing_round_trips_exactly_for_awkward_shapes");
    for (rows, cols) in [(1, 1), (3, 15), (2, 16), (5, 17), (4, 33), (7, rng.random_range(1..300))] {
        let values: Vec<i8> = (0..rows * cols).map(|_| rng.random_range(-1..=1)).collect();
        let packed = PackedTernary::from_values(&values, rows, cols, vec![1.0], WeightScale::PerTensor).unwrap();
        assert_eq!(packed.codes.len(), rows * cols.div_ceil(16));
        assert_eq!(packed.values(), values, "{rows}×{cols}");
    }
    assert!(PackedTernary::from_values(&[0, 2], 1, 2, vec![1.0], WeightScale::PerTensor).is_err());
    assert!(PackedTernary::from_values(&[0, 1, 1], 1, 2, vec![1.0], WeightScale::PerTensor).is_err());
}

#[test]
fn dequantized_packed_weights_equal_the_fake_quantized_weights() {
    let mut rng = fresh_rng("dequantized_packed_weights_equal_the_fake_quantized_weights");
    let device = Default::default();
    let scales = [WeightScale::PerTensor, WeightScale::PerRow, WeightScale::PerGroup(8)];
    for (scale, eps) in scales.into_iter().flat_map(|s| [(s, WeightQuantEps::Add), (s, WeightQuantEps::Clamp)]) {
        let (rows, cols) = (rng.random_range(1..20), 8 * rng.random_range(1..12));
        let w = random_tensor::<B, 2>(&mut rng, [rows, cols], 0.05, &device);
        let packed = PackedTernary::quantize(w.clone(), scale, eps).unwrap();
        let expected = to_vec(fake_quantize_weight(w, scale, eps));
        assert_eq!(to_vec(packed.dequantize::<B>(&device)), expected, "{scale:?} {eps:?}: not bit-identical");
        assert!(packed.values().iter().any(|&v| v != 0), "all-zero codes");
    }
}
