//! How a model's prompts begin and its replies end: from `generation_config.json` for imported
//! Hugging Face models, else Tritter's own convention (documents are separated, so prompts begin
//! and replies end, with the tokenizer's end-of-sequence token).

use std::path::Path;

use serde_json::Value;

use crate::data::Tokenizer;
use crate::error::Result;
use crate::hf::config::token_ids_field;
use crate::io::read_json;

/// The token a prompt starts with and the tokens that end generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFormat {
    pub bos: Option<u32>,
    pub stop: Vec<u32>,
}

impl PromptFormat {
    /// The format of the model in `dir` with `tokenizer`.
    pub fn for_model(dir: &Path, tokenizer: &Tokenizer) -> Result<Self> {
        let eos = tokenizer.special_ids().eos;
        let path = dir.join("generation_config.json");
        if !path.is_file() {
            return Ok(Self { bos: Some(eos), stop: vec![eos] });
        }
        let json: Value = read_json(&path, "cannot read generation config")?;
        let ids = |field: &str| token_ids_field(&json, field, &path).map(Option::unwrap_or_default);
        let mut stop = ids("eos_token_id")?;
        if !stop.contains(&eos) {
            stop.push(eos);
        }
        Ok(Self { bos: ids("bos_token_id")?.first().copied(), stop })
    }

    /// `ids` after the start token.
    pub fn prompt(&self, ids: Vec<u32>) -> Vec<u32> {
        self.bos.into_iter().chain(ids).collect()
    }
}
