//! Answer-only targets for the generated tasks: the loss on each answer and its EOS, not on the
//! prompt before it.

use crate::data::Tokenizer;
use crate::error::Result;

/// Which tokens of a generated-task window the loss covers: the answers and the EOS after
/// each, not the prompts (random letters and digits no model can predict, which otherwise
/// make up most of the loss). A document is `prompt separator answer EOS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerTargets {
    /// The token that ends a prompt (`=`).
    pub separator: u32,
    pub eos: u32,
    pub pad: u32,
}

impl AnswerTargets {
    /// The generated tasks' answer targets under `tokenizer`, when it encodes the prompt
    /// separator `=` as one token.
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> Result<Option<Self>> {
        let special = tokenizer.special_ids();
        Ok(match tokenizer.encode("=")?.as_slice() {
            &[separator] => Some(Self { separator, eos: special.eos, pad: special.pad }),
            _ => None,
        })
    }

    /// `window[1..]` with every token that is not part of an answer (or its EOS) set to `pad`.
    /// A window that starts inside an answer skips it (its prompt is not in the window).
    pub fn targets(&self, window: &[u32]) -> Vec<u32> {
        let mut in_answer = false;
        window
            .windows(2)
            .map(|pair| {
                if pair[0] == self.separator {
                    in_answer = true;
                } else if pair[0] == self.eos {
                    in_answer = false;
                }
                if in_answer {
                    pair[1]
                } else {
                    self.pad
                }
            })
            .collect()
    }
}
