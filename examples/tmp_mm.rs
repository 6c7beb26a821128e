use std::time::Instant;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tritter::ternary::cpu_kernel::packed_matmul_int8;
use tritter::ternary::{CpuKernel, PackedTernary};
use tritter::WeightScale;
fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    for (rows, cols) in [(2048usize, 768usize), (768, 2048), (4096, 4096)] {
        let values: Vec<i8> = (0..rows * cols).map(|_| rng.random_range(-1..=1)).collect();
        let packed = PackedTernary::from_values(&values, rows, cols, vec![0.05], WeightScale::PerTensor).unwrap();
        for tokens in [1usize, 4, 16, 64, 256] {
            let x: Vec<f32> = (0..tokens * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut out = vec![0f32; tokens * rows];
            packed_matmul_int8(CpuKernel::detect(), &packed, &x, &mut out);
            let reps = (20_000_000_000usize / (rows * cols * tokens)).clamp(1, 200);
            let t = Instant::now();
            for _ in 0..reps { packed_matmul_int8(CpuKernel::detect(), &packed, &x, &mut out); }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!("{rows}x{cols} tokens {tokens}: {:.3} ms, {:.1} GMAC/s", s * 1e3, (rows * cols * tokens) as f64 / s / 1e9);
        }
    }
}
