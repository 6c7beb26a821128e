//! Helpers: fresh seeds, random Unicode text, small files written on the fly.

use std::path::{Path, PathBuf};

use rand::{rngs::StdRng, Rng, SeedableRng};

/// A generator from [`crate::fresh_seed`].
pub fn fresh_rng(test: &str) -> StdRng {
    StdRng::seed_from_u64(crate::fresh_seed(test))
}

/// Random text mixing ASCII words, accented Latin, Greek, CJK, emoji (with ZWJ sequences),
/// combining marks, whitespace and newlines.
pub fn unicode_text(rng: &mut StdRng, words: usize) -> String {
    const PIECES: &[&str] = &[
        "the",
        "model",
        "ternary",
        "naïve",
        "façade",
        "Ελληνικά",
        "日本語",
        "中文",
        "한국어",
        "🙂",
        "👩‍💻",
        "🇩🇪",
        "e\u{301}",
        "Zürich",
        "ß",
        "∑x²",
        "—",
        "\t",
        "\n",
        "  ",
        "\"quoted\"",
        "{json}",
        "\\",
        "\u{0}",
    ];
    let mut out = String::new();
    for i in 0..words {
        if i > 0 && rng.random_bool(0.7) {
            out.push(' ');
        }
        if rng.random_bool(0.2) {
            // A random scalar value anywhere in Unicode (surrogates excluded by char::from_u32).
            let c = loop {
                if let Some(c) = char::from_u32(rng.random_range(0x20..0x10_FFFF)) {
                    break c;
                }
            };
            out.push(c);
        } else {
            out.push_str(PIECES[rng.random_range(0..PIECES.len())]);
        }
    }
    out
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// JSONL with one `{field: text}` object per line.
pub fn jsonl(field: &str, texts: &[String]) -> String {
    texts.iter().map(|t| serde_json::json!({ field: t }).to_string() + "\n").collect()
}
