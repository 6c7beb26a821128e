//! `tritter export --format gguf` as the README runs it: a saved model becomes a GGUF file of the
//! asked block type, and a model llama.cpp cannot run is refused by field with exit code 1.

use std::process::Command;

use tritter::{Activation, NormKind, TritterConfig, TritterModel};

use crate::interop::gguf_reader::Gguf;
use crate::model::common::{temp_dir, B};

fn export(config: &TritterConfig, gguf_type: &str) -> (std::process::Output, Option<Gguf>) {
    let dir = temp_dir();
    let model = dir.path().join("model");
    TritterModel::<B>::new(config, &Default::default()).unwrap().save_checkpoint(&model).unwrap();
    let out = dir.path().join("model.gguf");
    let output = Command::new(env!("CARGO_BIN_EXE_tritter"))
        .args(["export", "--model", model.to_str().unwrap(), "--format", "gguf", "--gguf-type", gguf_type])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    (output, out.is_file().then(|| Gguf::read(&out)))
}

#[test]
fn export_gguf_from_the_command_line() {
    let config = TritterConfig {
        vocab_size: 300,
        hidden_size: 256,
        num_heads: 4,
        num_kv_heads: 2,
        intermediate_size: 512,
        norm: NormKind::RmsNorm,
        qk_norm: false,
        sub_norm: true,
        activation: Activation::Silu,
        tie_embeddings: true,
        ..TritterConfig::test()
    };
    for (flag, ty) in [("tq1_0", 34), ("tq2-0", 35)] {
        let (output, file) = export(&config, flag);
        assert!(output.status.success(), "{flag}: {}", String::from_utf8_lossy(&output.stderr));
        let file = file.expect("the GGUF file was written");
        assert_eq!(file.tensors["blk.0.attn_q.weight"].ty, ty, "{flag}");
        assert_eq!(file.get("general.architecture").str(), "bitnet");
    }
    let (output, file) = export(&TritterConfig { activation: Activation::ReluSquared, ..config }, "tq2_0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("activation") && file.is_none(), "{stderr}");
}
