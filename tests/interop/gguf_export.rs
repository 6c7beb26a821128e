//! Export to GGUF for llama.cpp, read back by an independent reader (`gguf_reader.rs`): the
//! ternary blocks decode to the model's codes with γ as each block's f16 scale, the float tensors
//! are the model's, the tensor set and shapes are what llama.cpp's loader asks for, every
//! metadata key it reads is there, and what its graphs do not compute is refused by field.

use burn_store::ModuleSnapshot;
use rand::{rngs::StdRng, Rng};
use tritter::data::{train_bpe, BpeOptions, Tokenizer};
use tritter::gguf::{GgmlType, GgufOptions};
use tritter::infer::PromptFormat;
use tritter::{Activation, MlpNorm, NormKind, TritterConfig, TritterError, TritterModel, WeightScale};

use super::gguf_reader::{Gguf, Value};
use crate::model::common::{fresh_rng, temp_dir, B};

/// A random shape of the models llama.cpp runs: RMSNorm, SiLU, no QK-Norm; `sub_norm` selects
/// its `bitnet` architecture (tied), else `llama` (untied, so the LM head is written too).
fn runnable(rng: &mut StdRng, sub_norm: bool, weight_scale: WeightScale) -> TritterConfig {
    let num_heads = [2, 4][rng.random_range(0..2)];
    TritterConfig {
        vocab_size: rng.random_range(260..400),
        hidden_size: 256,
        num_layers: rng.random_range(1..3),
        num_heads,
        num_kv_heads: [1, num_heads][rng.random_range(0..2)],
        intermediate_size: 256 * rng.random_range(1..4),
        norm: NormKind::RmsNorm,
        qk_norm: false,
        sub_norm,
        activation: Activation::Silu,
        tie_embeddings: sub_norm,
        weight_scale,
        ..TritterConfig::test()
    }
}

fn options<'a>(
    ternary: GgmlType,
    floats: GgmlType,
    tokenizer: &'a Tokenizer,
    prompt: &'a PromptFormat,
) -> GgufOptions<'a> {
    GgufOptions { ternary, floats, tokenizer, prompt, chat_template: None, name: "test" }
}

fn export(model: &TritterModel<B>, options: &GgufOptions) -> (tempfile::TempDir, Gguf) {
    let dir = temp_dir();
    let path = dir.path().join("model.gguf");
    let mut calls = 0;
    let summary = model.save_gguf(&path, options, &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, summary.tensors, "one progress call per tensor");
    let file = Gguf::read(&path);
    assert_eq!(file.tensors.len(), summary.tensors);
    (dir, file)
}

fn byte_prompt() -> PromptFormat {
    PromptFormat::for_model(std::path::Path::new("/nonexistent"), &Tokenizer::bytes()).unwrap()
}

/// llama.cpp's name of a Tritter projection (from `LLM_TENSOR_NAMES`, llama-arch.cpp).
fn llama_cpp_name(prefix: &str) -> String {
    let parts: Vec<&str> = prefix.split('.').collect();
    let local = match parts[4] {
        "q_proj" => "attn_q",
        "k_proj" => "attn_k",
        "v_proj" => "attn_v",
        "o_proj" => "attn_output",
        "gate_proj" => "ffn_gate",
        "up_proj" => "ffn_up",
        "down_proj" => "ffn_down",
        other => panic!("unexpected projection {other}"),
    };
    format!("blk.{}.{local}.weight", parts[2])
}

/// The source row of each row of a q/k projection as llama.cpp's converter writes it for the
/// `llama` architecture: `w.reshape(heads, 2, d/2, in).swapaxes(1, 2)`.
fn llama_rope_rows(rows: usize, heads: usize) -> Vec<usize> {
    let d = rows / heads;
    let mut order = Vec::new();
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                order.push(h * d + j * (d / 2) + i);
            }
        }
    }
    order
}

fn source_rows(arch: &str, name: &str, rows: usize, config: &TritterConfig) -> Vec<usize> {
    match (arch, name.rsplit('.').nth(1)) {
        ("llama", Some("attn_q")) => llama_rope_rows(rows, config.num_heads),
        ("llama", Some("attn_k")) => llama_rope_rows(rows, config.num_kv_heads),
        _ => (0..rows).collect(),
    }
}

/// Every projection decodes to the packed codes (rows in llama.cpp's RoPE order) and every
/// block's scale is the f16 of its γ, for TQ2_0 and TQ1_0, both architectures, per-tensor and
/// per-row scales.
#[test]
fn ternary_blocks_decode_to_the_codes_and_scales() {
    let mut rng = fresh_rng("gguf_ternary_blocks");
    let tokenizer = Tokenizer::bytes();
    let prompt = byte_prompt();
    for (sub_norm, scale, ternary) in [
        (true, WeightScale::PerTensor, GgmlType::Tq2_0),
        (true, WeightScale::PerRow, GgmlType::Tq1_0),
        (false, WeightScale::PerTensor, GgmlType::Tq1_0),
        (false, WeightScale::PerGroup(256), GgmlType::Tq2_0),
    ] {
        let config = runnable(&mut rng, sub_norm, scale);
        let model = TritterModel::<B>::new(&config, &Default::default()).unwrap().into_packed().unwrap();
        let (_dir, file) = export(&model, &options(ternary, GgmlType::F32, &tokenizer, &prompt));
        let arch = file.get("general.architecture").str().to_string();
        assert_eq!(arch, if sub_norm { "bitnet" } else { "llama" });
        for (prefix, packed) in model.packed_weights() {
            let name = llama_cpp_name(&prefix);
            let info = &file.tensors[&name];
            assert_eq!(info.ty, if ternary == GgmlType::Tq2_0 { 35 } else { 34 }, "{name}: type");
            assert_eq!(info.dims, vec![packed.cols as u64, packed.rows as u64], "{name}: dims");
            let (values, scales) = file.ternary(&name);
            let codes = packed.values();
            let blocks_per_row = packed.cols / 256;
            for (r, &src) in source_rows(&arch, &name, packed.rows, &config).iter().enumerate() {
                let row = &values[r * packed.cols..(r + 1) * packed.cols];
                assert_eq!(row, &codes[src * packed.cols..(src + 1) * packed.cols], "{name}: row {r} ({scale:?})");
                for b in 0..blocks_per_row {
                    let want = half::f16::from_f32(packed.scale_at(src, b * 256));
                    assert_eq!(scales[r * blocks_per_row + b], want, "{name}: row {r} block {b} scale");
                }
            }
        }
        // Embeddings and norms are the model's own f32 values.
        for snapshot in model.collect(None, None, true) {
            let values = snapshot.to_data().unwrap().convert::<f32>().to_vec::<f32>().unwrap();
            let name = match snapshot.full_path().as_str() {
                "model.embed_tokens.weight" => "token_embd.weight".to_string(),
                "model.norm.weight" => "output_norm.weight".to_string(),
                "lm_head.weight" => "output.weight".to_string(),
                other => {
                    let parts: Vec<&str> = other.split('.').collect();
                    let local = match parts[3] {
                        "input_layernorm" => "attn_norm",
                        "post_attention_layernorm" => "ffn_norm",
                        _ => parts[4], // attn_sub_norm, ffn_sub_norm
                    };
                    format!("blk.{}.{local}.weight", parts[2])
                }
            };
            assert_eq!(file.tensors[&name].ty, 0, "{name}: f32 asked for");
            assert!(file.floats(&name) == values, "{name}: values differ");
        }
    }
}

/// A model without ternary weights exports its projections as floats (f16 here), q and k in
/// llama.cpp's RoPE row order; a latent ternary model is packed on the way, giving the same file
/// as its packed form.
#[test]
fn float_projections_and_latent_models_export() {
    let mut rng = fresh_rng("gguf_float_projections");
    let tokenizer = Tokenizer::bytes();
    let prompt = byte_prompt();
    let config = TritterConfig { bitnet: false, ..runnable(&mut rng, false, WeightScale::PerTensor) };
    let model = TritterModel::<B>::new(&config, &Default::default()).unwrap();
    let (_dir, file) = export(&model, &options(GgmlType::Tq2_0, GgmlType::F16, &tokenizer, &prompt));
    assert_eq!(file.get("general.file_type").int(), 1, "mostly f16");
    for snapshot in model.collect(None, None, true) {
        let path = snapshot.full_path();
        let Some(projection) = path.strip_suffix(".weight").filter(|p| p.ends_with("_proj")) else { continue };
        let name = llama_cpp_name(projection);
        let values = snapshot.to_data().unwrap().convert::<f32>().to_vec::<f32>().unwrap();
        let (rows, cols) = (snapshot.shape[0], snapshot.shape[1]);
        assert_eq!(file.tensors[&name].ty, 1, "{name}: f16");
        let got = file.floats(&name);
        for (r, src) in source_rows("llama", &name, rows, &config).into_iter().enumerate() {
            for c in 0..cols {
                let want = half::f16::from_f32(values[src * cols + c]).to_f32();
                assert_eq!(got[r * cols + c], want, "{name}[{r}, {c}]");
            }
        }
    }

    let ternary = runnable(&mut rng, true, WeightScale::PerRow);
    let latent = TritterModel::<B>::new(&ternary, &Default::default()).unwrap();
    let packed = latent.clone().into_packed().unwrap();
    let opts = options(GgmlType::Tq2_0, GgmlType::BF16, &tokenizer, &prompt);
    let (a, _) = export(&latent, &opts);
    let (b, _) = export(&packed, &opts);
    let bytes = |d: &tempfile::TempDir| std::fs::read(d.path().join("model.gguf")).unwrap();
    assert!(bytes(&a) == bytes(&b), "the latent model's file differs from its packed form's");
}

/// What llama.cpp's loader reads: the model shape keys, every tensor it creates with the shape
/// it creates it with (llama.cpp `src/models/bitnet.cpp` / llama), and the tokenizer.
#[test]
fn metadata_and_tensors_are_what_llama_cpp_loads() {
    let mut rng = fresh_rng("gguf_metadata");
    let tokenizer = Tokenizer::bytes();
    let prompt = byte_prompt();
    for sub_norm in [true, false] {
        let c = runnable(&mut rng, sub_norm, WeightScale::PerTensor);
        let model = TritterModel::<B>::new(&c, &Default::default()).unwrap();
        let (_dir, file) = export(&model, &options(GgmlType::Tq2_0, GgmlType::F16, &tokenizer, &prompt));
        let arch = if sub_norm { "bitnet" } else { "llama" };
        let key = |k: &str| file.get(&format!("{arch}.{k}")).clone();
        assert_eq!(file.get("general.architecture").str(), arch);
        assert_eq!(file.get("general.file_type").int(), 37, "mostly TQ2_0");
        let (h, d, kv) = (c.hidden_size as i64, c.head_dim() as i64, c.num_kv_heads as i64);
        for (k, want) in [
            ("context_length", c.max_seq_len as i64),
            ("embedding_length", h),
            ("block_count", c.num_layers as i64),
            ("feed_forward_length", c.intermediate_size as i64),
            ("attention.head_count", c.num_heads as i64),
            ("attention.head_count_kv", kv),
            ("rope.dimension_count", d),
            ("vocab_size", c.vocab_size as i64),
        ] {
            assert_eq!(key(k).int(), want, "{arch}.{k}");
        }
        assert_eq!(key("attention.layer_norm_rms_epsilon").float(), c.norm_eps as f32 as f64);
        assert_eq!(key("rope.freq_base").float(), c.rope_theta as f32 as f64);

        let (v, i) = (c.vocab_size as u64, c.intermediate_size as u64);
        let (h, d, kv) = (h as u64, d as u64, kv as u64);
        let mut want = vec![("token_embd.weight".to_string(), vec![h, v]), ("output_norm.weight".into(), vec![h])];
        if !c.tie_embeddings {
            want.push(("output.weight".into(), vec![h, v]));
        }
        for l in 0..c.num_layers {
            let mut layer = vec![
                ("attn_norm", vec![h]),
                ("attn_q", vec![h, h]),
                ("attn_k", vec![h, kv * d]),
                ("attn_v", vec![h, kv * d]),
                ("attn_output", vec![h, h]),
                ("ffn_norm", vec![h]),
                ("ffn_gate", vec![h, i]),
                ("ffn_up", vec![h, i]),
                ("ffn_down", vec![i, h]),
            ];
            if sub_norm {
                layer.extend([("attn_sub_norm", vec![h]), ("ffn_sub_norm", vec![i])]);
            }
            want.extend(layer.into_iter().map(|(n, dims)| (format!("blk.{l}.{n}.weight"), dims)));
        }
        want.sort();
        let got: Vec<(String, Vec<u64>)> = file.tensors.iter().map(|(n, t)| (n.clone(), t.dims.clone())).collect();
        assert_eq!(got, want, "{arch}: tensor set");
        assert_eq!(file.order[0], "token_embd.weight");

        // Tritter's byte tokenizer: specials, then each byte spelled as GPT-2's byte-level BPE
        // spells it, padded with unused tokens to the model's vocabulary.
        let tokens = file.get("tokenizer.ggml.tokens").array();
        let types = file.get("tokenizer.ggml.token_type").array();
        assert_eq!((tokens.len(), types.len()), (c.vocab_size, c.vocab_size));
        assert_eq!(file.get("tokenizer.ggml.model").str(), "gpt2");
        assert_eq!(file.get("tokenizer.ggml.pre").str(), "gpt-2");
        assert!(file.get("tokenizer.ggml.merges").array().is_empty());
        let gpt2 = gpt2_byte_chars();
        for (id, (token, ty)) in tokens.iter().zip(types).enumerate() {
            let (want, want_ty) = match id {
                0..4 => (["<pad>", "<bos>", "<eos>", "<unk>"][id].to_string(), 3),
                4..260 => (gpt2[id - 4].to_string(), 1),
                _ => (format!("[PAD{id}]"), 5),
            };
            assert_eq!((token.str(), ty.int()), (want.as_str(), want_ty), "token {id}");
        }
        for (k, want) in [("eos_token_id", 2), ("bos_token_id", 2), ("padding_token_id", 0), ("unknown_token_id", 3)] {
            assert_eq!(file.get(&format!("tokenizer.ggml.{k}")).int(), want, "{k}");
        }
        assert_eq!(file.get("tokenizer.ggml.add_bos_token"), &Value::Bool(true), "prompts start with <eos>");
    }
}

/// GPT-2's `bytes_to_unicode` as its encoder.py writes it.
fn gpt2_byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut by_byte = vec!['\0'; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        by_byte[b as usize] = char::from_u32(c).unwrap();
    }
    by_byte
}

/// A trained BPE tokenizer is embedded with its tokens by id, its merges in order and its
/// special tokens marked as control tokens.
#[test]
fn bpe_tokenizer_is_embedded() {
    let mut rng = fresh_rng("gguf_bpe_tokenizer");
    let words = ["ternary", "weights", "llama", "tokens", "merge", "bits", "scale"];
    let docs: Vec<String> = (0..200)
        .map(|_| (0..12).map(|_| words[rng.random_range(0..words.len())]).collect::<Vec<_>>().join(" "))
        .collect();
    let tokenizer =
        train_bpe(docs.iter(), &BpeOptions { vocab_size: 300, min_frequency: 2, show_progress: false }).unwrap();
    let Tokenizer::Hf { tokenizer: hf, .. } = &tokenizer else { panic!("train_bpe gives a tokenizer.json") };
    let prompt = byte_prompt();
    let config = TritterConfig { vocab_size: 320, ..runnable(&mut rng, true, WeightScale::PerTensor) };
    let model = TritterModel::<B>::new(&config, &Default::default()).unwrap();
    let (_dir, file) = export(&model, &options(GgmlType::Tq2_0, GgmlType::F16, &tokenizer, &prompt));
    let tokens = file.get("tokenizer.ggml.tokens").array();
    let types = file.get("tokenizer.ggml.token_type").array();
    for id in 0..hf.get_vocab_size(true) as u32 {
        let want = hf.id_to_token(id).unwrap();
        assert_eq!(tokens[id as usize].str(), want, "token {id}");
        let special = tritter::data::tokenizer::SPECIAL_TOKENS.contains(&want.as_str());
        assert_eq!(types[id as usize].int(), if special { 3 } else { 1 }, "type of {want}");
    }
    let json: serde_json::Value = serde_json::from_str(&hf.to_string(false).unwrap()).unwrap();
    let merges = json["model"]["merges"].as_array().unwrap();
    let written = file.get("tokenizer.ggml.merges").array();
    assert_eq!(written.len(), merges.len());
    assert!(!merges.is_empty());
    for (w, m) in written.iter().zip(merges) {
        let want = match m {
            serde_json::Value::Array(pair) => format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()),
            other => other.as_str().unwrap().to_string(),
        };
        assert_eq!(w.str(), want);
    }
    assert_eq!(file.get("tokenizer.ggml.pre").str(), "gpt-2");

    // The same vocabulary behind Llama 3's pre-tokenizer is llama.cpp's `llama-bpe`; behind a
    // pre-tokenizer llama.cpp has no name for, or with a normalizer, it is refused by field.
    let llama3 = serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]});
    let metaspace =
        serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true});
    let nfc = serde_json::json!({"type": "NFC"});
    for (field, pre, normalizer) in
        [(None, &llama3, None), (Some("pre_tokenizer"), &metaspace, None), (Some("normalizer"), &llama3, Some(&nfc))]
    {
        let mut edited = json.clone();
        edited["pre_tokenizer"] = pre.clone();
        if let Some(n) = normalizer {
            edited["normalizer"] = n.clone();
        }
        let hf: tokenizers::Tokenizer = edited.to_string().parse().unwrap();
        let tokenizer = Tokenizer::from_hf(hf).unwrap();
        let out = temp_dir();
        let result = model.save_gguf(
            &out.path().join("m.gguf"),
            &options(GgmlType::Tq2_0, GgmlType::F16, &tokenizer, &prompt),
            &mut |_, _| {},
        );
        match (field, result) {
            (None, Ok(_)) => {
                assert_eq!(Gguf::read(&out.path().join("m.gguf")).get("tokenizer.ggml.pre").str(), "llama-bpe")
            }
            (Some(field), Err(e)) => assert!(e.to_string().contains(&format!(": {field}:")), "{field}: {e}"),
            (field, other) => panic!("{field:?}: unexpected {other:?}"),
        }
    }
}

/// Llama 3's pre-tokenizer regex as its tokenizer.json spells it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[test]
fn what_llama_cpp_cannot_run_is_refused_by_field() {
    let mut rng = fresh_rng("gguf_refusals");
    let base = runnable(&mut rng, true, WeightScale::PerTensor);
    let cases: [(&str, TritterConfig); 9] = [
        ("qk_norm", TritterConfig { qk_norm: true, ..base.clone() }),
        ("norm", TritterConfig { norm: NormKind::LayerNorm, ..base.clone() }),
        ("mlp_norm", TritterConfig { mlp_norm: MlpNorm::Post, ..base.clone() }),
        ("activation", TritterConfig { activation: Activation::ReluSquared, ..base.clone() }),
        ("tie_embeddings", TritterConfig { tie_embeddings: false, ..base.clone() }),
        (
            "ternary_lm_head",
            TritterConfig { ternary_lm_head: true, sub_norm: false, tie_embeddings: false, ..base.clone() },
        ),
        ("hidden_size", TritterConfig { hidden_size: 128, num_heads: 2, num_kv_heads: 1, ..base.clone() }),
        ("intermediate_size", TritterConfig { intermediate_size: 384, ..base.clone() }),
        ("weight_scale.per_group", TritterConfig { weight_scale: WeightScale::PerGroup(128), ..base.clone() }),
    ];
    let tokenizer = Tokenizer::bytes();
    let prompt = byte_prompt();
    for (field, config) in cases {
        let model = TritterModel::<B>::new(&config, &Default::default()).unwrap();
        let dir = temp_dir();
        let out = dir.path().join("model.gguf");
        match model.save_gguf(&out, &options(GgmlType::Tq2_0, GgmlType::F16, &tokenizer, &prompt), &mut |_, _| {}) {
            Err(e @ TritterError::Unsupported { .. }) => {
                assert!(e.to_string().contains(&format!(": {field}:")), "{field}: {e}");
            }
            other => panic!("{field}: expected a refusal, got {other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{field}: a file was left behind");
    }
}
