//! Counts a command cannot work with are refused before any work, naming the flag.

use std::process::{Command, Output};

fn tritter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tritter")).args(args).output().unwrap()
}

#[test]
fn eval_refuses_zero_counts_and_an_empty_evaluation() {
    for flag in ["--batch", "--seq"] {
        let out = tritter(&["eval", "--model", "/nonexistent", flag, "0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} 0: {stderr}");
        assert!(stderr.contains(flag), "{flag} 0: {stderr}");
    }
    let out = tritter(&["eval", "--model", "/nonexistent", "--tasks", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing to evaluate"), "{stderr}");
}

/// A flag the chosen export format does not use is refused by name, not ignored.
#[test]
fn export_refuses_flags_its_format_does_not_use() {
    for (format, flag, value) in [
        ("bitnet-json", "--f16", None),
        ("packed", "--packed", None),
        ("packed", "--dtype", Some("f16")),
        ("hf", "--gguf-type", Some("tq1_0")),
        ("hf", "--tokenizer", Some("tokenizer.json")),
    ] {
        let mut args = vec!["export", "--model", "/nonexistent", "--out", "/nonexistent/x", "--format", format, flag];
        args.extend(value);
        let out = tritter(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{format} {flag}: {stderr}");
        assert!(stderr.contains(&format!("{flag} applies to --format")), "{format} {flag}: {stderr}");
    }
}
