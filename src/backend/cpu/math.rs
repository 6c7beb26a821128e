//! Elementwise maths for the CPU's fused ops.

/// Elements per parallel task: below this, waking a second thread costs more than it saves.
pub(crate) const TASK_ELEMENTS: usize = 1 << 15;

/// Rows of `row_len` elements per parallel task.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (TASK_ELEMENTS / row_len.max(1)).max(1)
}

/// `1.5 · 2²³`: adding it to a float of magnitude below 2²² rounds it to an integer (half to
/// even, in the default rounding mode), held in the low mantissa bits.
pub(crate) const MAGIC: f32 = 12_582_912.0;

/// `e^x` in plain f32 arithmetic (so a loop of it vectorizes; libm's `expf` is a call per
/// element): `2^n · p(r)` with `n = round(x·log₂e)`, `r = x − n·ln 2` in two parts and Cephes'
/// degree-5 polynomial, within 2 ulp of `expf` from −87 up. Exactly 0 below −87 (and for −∞),
/// where `e^x` nears the end of f32's normal range.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let clamped = x.clamp(-87.0, 88.0);
    let n = (clamped * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = clamped - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scaled = e * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        scaled
    }
}

/// `f` folded over 8 interleaved lanes and then across them: a reduction the compiler can
/// vectorize (a single running value is a dependency chain it must keep in order).
#[inline(always)]
fn fold8(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(init, |a, &x| f(a, x));
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, x);
        }
    }
    lanes.iter().fold(tail, |a, &x| f(a, x))
}

/// `Σ xs`, in 8 lanes.
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    fold8(xs, 0.0, |a, x| a + x)
}

/// `max xs` (−∞ for none), in 8 lanes.
#[inline(always)]
pub(crate) fn max(xs: &[f32]) -> f32 {
    fold8(xs, f32::NEG_INFINITY, |a, x| if x > a { x } else { a })
}

/// `max |xs|` (0 for none; NaNs are skipped, as `f32::max` skips them), in 8 lanes.
#[inline(always)]
pub(crate) fn abs_max(xs: &[f32]) -> f32 {
    fold8(xs, 0.0, |a, x| if x.abs() > a { x.abs() } else { a })
}

/// `Σ a ⊙ b`, in 8 lanes.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_2_ulp_of_libm() {
        let mut worst = 0u32;
        for i in 0..2_000_000u32 {
            let x = -87.0 + 175.0 * (i as f32 / 2_000_000.0);
            let (ours, libm) = (super::exp(x), x.exp());
            worst = worst.max(ours.to_bits().abs_diff(libm.to_bits()));
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp(-100.0), 0.0);
        assert_eq!(super::exp(0.0), 1.0);
    }
}
