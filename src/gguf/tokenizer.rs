//! The tokenizer as llama.cpp reads it from a GGUF file (`tokenizer.ggml.*`): a byte-level BPE
//! (`gpt2` model) with its tokens, token types, merges, special ids and the pre-tokenizer
//! llama.cpp must split text with. Tokenizers llama.cpp would split differently are refused,
//! naming the tokenizer.json field.

use serde_json::Value;

use super::file::GgufValue;
use crate::data::fast_bpe::byte_char_table;
use crate::data::tokenizer::SPECIAL_TOKENS;
use crate::data::Tokenizer;
use crate::error::{Result, TritterError};
use crate::infer::PromptFormat;

/// llama.cpp's `llama_token_type`.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Llama 3's pre-tokenizer regex (tokenizer.json), which llama.cpp calls `llama-bpe`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The vocabulary as llama.cpp lists it.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    pre: &'static str,
}

/// The `tokenizer.*` metadata of `tokenizer` for a model with `model_vocab` embeddings.
pub(crate) fn tokenizer_metadata(
    tokenizer: &Tokenizer,
    model_vocab: usize,
    prompt: &PromptFormat,
    chat_template: Option<&str>,
) -> Result<Vec<(String, GgufValue)>> {
    tokenizer.check_fits(model_vocab)?;
    let mut vocab = match tokenizer {
        Tokenizer::Bytes => byte_vocab(),
        Tokenizer::Hf { tokenizer, .. } => {
            let json = tokenizer.to_string(false).map_err(|e| refuse("tokenizer.json", &e.to_string()))?;
            hf_vocab(&serde_json::from_str(&json).map_err(|e| refuse("tokenizer.json", &e.to_string()))?)?
        }
    };
    for id in vocab.tokens.len()..model_vocab {
        vocab.tokens.push(format!("[PAD{id}]"));
        vocab.types.push(UNUSED);
    }
    let special = tokenizer.special_ids();
    let id = |v: u32| GgufValue::U32(v);
    let mut out = vec![
        ("tokenizer.ggml.model".to_string(), GgufValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), GgufValue::Str(vocab.pre.into())),
        ("tokenizer.ggml.tokens".into(), GgufValue::StrArray(vocab.tokens)),
        ("tokenizer.ggml.token_type".into(), GgufValue::I32Array(vocab.types)),
        ("tokenizer.ggml.merges".into(), GgufValue::StrArray(vocab.merges)),
        ("tokenizer.ggml.eos_token_id".into(), id(special.eos)),
        ("tokenizer.ggml.padding_token_id".into(), id(special.pad)),
        ("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(prompt.bos.is_some())),
        ("tokenizer.ggml.add_eos_token".into(), GgufValue::Bool(false)),
    ];
    if let Some(bos) = prompt.bos {
        out.push(("tokenizer.ggml.bos_token_id".into(), id(bos)));
    }
    if let Some(unk) = special.unk {
        out.push(("tokenizer.ggml.unknown_token_id".into(), id(unk)));
    }
    if let Some(&eot) = prompt.stop.iter().find(|&&s| s != special.eos) {
        out.push(("tokenizer.ggml.eot_token_id".into(), id(eot)));
    }
    if let Some(template) = chat_template {
        out.push(("tokenizer.chat_template".into(), GgufValue::Str(template.into())));
    }
    Ok(out)
}

fn refuse(field: &str, reason: &str) -> TritterError {
    TritterError::Unsupported { path: "tokenizer.json".into(), what: field.into(), reason: reason.into() }
}

/// Tritter's byte tokenizer: its special tokens, then one token per byte and no merges, which
/// llama.cpp's BPE turns into one token per byte, as Tritter does.
fn byte_vocab() -> Vocab {
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![CONTROL; tokens.len()];
    tokens.extend(byte_char_table().iter().map(char::to_string));
    types.resize(tokens.len(), NORMAL);
    Vocab { tokens, types, merges: Vec::new(), pre: "gpt-2" }
}

/// A tokenizer.json byte-level BPE, refusing what llama.cpp's `gpt2` tokenizer computes otherwise.
fn hf_vocab(json: &Value) -> Result<Vocab> {
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(refuse("model.type", &format!("{}; llama.cpp's gpt2 tokenizer is a BPE", model["type"])));
    }
    if !json["normalizer"].is_null() {
        return Err(refuse("normalizer", "set; llama.cpp's byte-level BPE does not normalize text"));
    }
    let pre = pre_tokenizer(&json["pre_tokenizer"])?;
    let entries = model["vocab"].as_object().ok_or_else(|| refuse("model.vocab", "not an object"))?;
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    let mut put = |id: usize, token: &str, kind: i32| {
        if tokens.len() <= id {
            tokens.resize(id + 1, String::new());
            types.resize(id + 1, UNUSED);
        }
        tokens[id] = token.to_string();
        types[id] = kind;
    };
    for (token, id) in entries {
        put(id.as_u64().ok_or_else(|| refuse("model.vocab", "an id is not a number"))? as usize, token, NORMAL);
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            return Err(refuse("added_tokens", "an entry without id or content"));
        };
        put(id as usize, content, if added["special"] == true { CONTROL } else { USER_DEFINED });
    }
    for (id, token) in tokens.iter_mut().enumerate().filter(|(_, t)| t.is_empty()) {
        *token = format!("[PAD{id}]");
    }
    let merges = model["merges"].as_array().into_iter().flatten().map(merge).collect::<Result<_>>()?;
    Ok(Vocab { tokens, types, merges, pre })
}

/// A merge as llama.cpp lists it, `"a b"`, from either tokenizer.json form (`"a b"`, `["a", "b"]`).
fn merge(entry: &Value) -> Result<String> {
    match entry {
        Value::String(s) => Ok(s.clone()),
        Value::Array(pair) if pair.len() == 2 && pair.iter().all(Value::is_string) => {
            Ok(format!("{} {}", pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default()))
        }
        other => Err(refuse("model.merges", &format!("entry {other} is not a pair of strings"))),
    }
}

/// llama.cpp's name for the way `pre` splits text: GPT-2's byte-level regex (`gpt-2`) or
/// Llama 3's split then byte level (`llama-bpe`).
fn pre_tokenizer(pre: &Value) -> Result<&'static str> {
    let byte_level = |v: &Value, regex: bool| {
        v["type"] == "ByteLevel" && v["add_prefix_space"] != true && (v["use_regex"] != false) == regex
    };
    if byte_level(pre, true) {
        return Ok("gpt-2");
    }
    if let Some([split, level]) = pre["pretokenizers"].as_array().map(Vec::as_slice) {
        if split["type"] == "Split" && split["pattern"]["Regex"] == LLAMA3_REGEX && byte_level(level, false) {
            return Ok("llama-bpe");
        }
    }
    Err(refuse(
        "pre_tokenizer",
        &format!("{pre}; llama.cpp splits text as GPT-2's ByteLevel or Llama 3's pre-tokenizer, and Tritter exports only those"),
    ))
}
