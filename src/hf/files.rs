//! The tokenizer and generation files that travel with a model between directories.

use std::path::Path;

use crate::error::{Result, TritterError};

/// The files copied beside a model's weights when the source directory has them.
pub const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// Copies the tokenizer and generation files of `from` that exist to `out`; returns their names.
pub fn copy_model_files(from: &Path, out: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.is_file() {
            let bytes = std::fs::read(&src).map_err(|source| TritterError::Io {
                action: "cannot read",
                path: src.clone(),
                source,
            })?;
            crate::io::write_atomic(&out.join(name), &bytes)?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}
