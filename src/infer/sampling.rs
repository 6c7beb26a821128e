//! Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus), seeded.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TritterError};

/// How tokens are drawn. `temperature = 0` is greedy (argmax); otherwise logits are divided
/// by the temperature, cut to the `top_k` most likely and then to the smallest set whose
/// probability reaches `top_p`, renormalised and sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// Seeds the draws: the same seed, model and prompt give the same text.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

impl SamplingConfig {
    pub fn greedy() -> Self {
        Self::default()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TritterError::InvalidConfig { field, reason });
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", format!("must be >= 0, got {}", self.temperature));
        }
        if self.top_k == Some(0) {
            return bad("top_k", "must be at least 1".into());
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad("top_p", format!("must be in (0, 1], got {p}"));
            }
        }
        Ok(())
    }
}

/// A seeded sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(config: SamplingConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config, rng: StdRng::seed_from_u64(config.seed) })
    }

    /// The probabilities the sampler draws from (after temperature, top-k, top-p), as
    /// `(token, probability)` sorted by decreasing probability; greedy gives the argmax with 1.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let argmax = || {
            let best =
                logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &l)| if l > b.1 { (i, l) } else { b });
            vec![(best.0 as u32, 1.0)]
        };
        if self.config.temperature == 0.0 {
            return argmax();
        }
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        if let Some(k) = self.config.top_k {
            order.truncate(k.max(1));
        }
        let t = self.config.temperature as f64;
        let max = logits[order[0] as usize] as f64;
        let weights: Vec<f64> = order.iter().map(|&i| ((logits[i as usize] as f64 - max) / t).exp()).collect();
        let sum: f64 = weights.iter().sum();
        if !sum.is_finite() || sum <= 0.0 {
            return argmax();
        }
        let mut dist: Vec<(u32, f64)> = order.into_iter().zip(weights.into_iter().map(|w| w / sum)).collect();
        if let Some(p) = self.config.top_p {
            let mut mass = 0.0;
            let keep = dist.iter().position(|&(_, q)| {
                mass += q;
                mass >= p as f64
            });
            dist.truncate(keep.map_or(dist.len(), |i| i + 1));
            let kept: f64 = dist.iter().map(|&(_, q)| q).sum();
            dist.iter_mut().for_each(|(_, q)| *q /= kept);
        }
        dist
    }

    /// Draws the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let dist = self.distribution(logits);
        if dist.len() == 1 {
            return dist[0].0;
        }
        let mut u: f64 = self.rng.random();
        for &(token, q) in &dist {
            if u < q {
                return token;
            }
            u -= q;
        }
        dist.last().map_or(0, |&(t, _)| t)
    }
}
