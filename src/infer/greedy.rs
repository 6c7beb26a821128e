//! Greedy decoding (uncached: each step re-runs the whole sequence, fine for the short answers
//! of evaluation) and exact-match accuracy on the generated tasks.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::backend::TritterBackend;
use crate::data::generated::{Task, TaskExample};
use crate::data::tokenizer::Tokenizer;
use crate::error::Result;
use crate::model::TritterModel;

/// Extends `prompt` by up to `max_new_tokens` argmax tokens, stopping after any of `stop`
/// (which is not returned). Returns the new tokens. Keeps the last `max_seq_len` tokens as
/// context when the sequence grows past it.
pub fn generate_greedy<B: TritterBackend>(
    model: &TritterModel<B>,
    prompt: &[u32],
    max_new_tokens: usize,
    stop: &[u32],
) -> Result<Vec<u32>> {
    let device = model.devices().into_iter().next().unwrap_or_default();
    let max_len = model.config().max_seq_len;
    let mut tokens: Vec<u32> = prompt.to_vec();
    let mut new = Vec::new();
    for _ in 0..max_new_tokens {
        let context = &tokens[tokens.len().saturating_sub(max_len)..];
        let ids: Vec<i64> = context.iter().map(|&t| t as i64).collect();
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, context.len()]), &device);
        let logits = model.forward_checked(input)?;
        let [_, t, v] = logits.dims();
        let next = logits.slice([0..1, t - 1..t, 0..v]).argmax(2).into_scalar().elem::<i64>() as u32;
        if stop.contains(&next) {
            break;
        }
        tokens.push(next);
        new.push(next);
    }
    Ok(new)
}

/// Exact-match accuracy, overall and per task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskAccuracy {
    pub correct: usize,
    pub total: usize,
    pub per_task: BTreeMap<Task, (usize, usize)>,
}

impl TaskAccuracy {
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    /// Prompts the model with `EOS + prompt` (how a document starts in a packed stream) and
    /// counts whether it completes the answer exactly, ending with EOS.
    pub fn score<B: TritterBackend>(
        &mut self,
        model: &TritterModel<B>,
        tokenizer: &Tokenizer,
        example: &TaskExample,
    ) -> Result<bool> {
        let eos = tokenizer.special_ids().eos;
        let mut prompt = vec![eos];
        prompt.extend(tokenizer.encode(&example.prompt)?);
        // Room for the answer at one token per byte (the most any tokenizer needs) plus EOS;
        // stopping early means EOS was produced.
        let max_new = example.answer.len() + 1;
        let out = generate_greedy(model, &prompt, max_new, &[eos])?;
        let correct = out.len() < max_new && tokenizer.decode(&out)? == example.answer;
        let entry = self.per_task.entry(example.task).or_default();
        entry.1 += 1;
        self.total += 1;
        if correct {
            entry.0 += 1;
            self.correct += 1;
        }
        Ok(correct)
    }
}

/// Scores every example (as [`TaskAccuracy::score`]).
pub fn task_accuracy<B: TritterBackend>(
    model: &TritterModel<B>,
    tokenizer: &Tokenizer,
    examples: &[TaskExample],
) -> Result<TaskAccuracy> {
    let mut result = TaskAccuracy::default();
    for example in examples {
        result.score(model, tokenizer, example)?;
    }
    Ok(result)
}
