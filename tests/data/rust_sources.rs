//! The Rust-text corpus: the listed crates' `.rs` files from cargo's registry, in a fixed order,
//! a clear error for a crate that is not there, and a list pinned to this repository's Cargo.lock.

use tritter::data::{read_crate_list, write_rust_corpus};
use tritter::TritterError;

use crate::data::common::{fresh_rng, temp_dir, unicode_text, write};

#[test]
fn the_rust_corpus_holds_the_listed_crates_files_in_order() {
    let mut rng = fresh_rng("the_rust_corpus_holds_the_listed_crates_files_in_order");
    let home = temp_dir();
    let mut text = || unicode_text(&mut rng, 40);
    let files = [
        ("index-a/alpha-1.0.0/src/lib.rs", text()),
        ("index-a/alpha-1.0.0/src/nested/mod.rs", text()),
        ("index-b/beta-0.1.0/build.rs", text()),
    ];
    for (path, text) in &files {
        write(&home.path().join("registry/src"), path, text);
    }
    // Not listed, not Rust, or another version: left out.
    write(&home.path().join("registry/src"), "index-a/alpha-1.0.0/README.md", text());
    write(&home.path().join("registry/src"), "index-a/alpha-2.0.0/src/lib.rs", text());
    write(&home.path().join("registry/src"), "index-a/gamma-0.3.0/src/lib.rs", text());
    let list = write(home.path(), "crates.txt", "# the corpus\nalpha 1.0.0\n\nbeta 0.1.0  # a build script only\n");

    let out = home.path().join("out/rust.jsonl");
    let stats = write_rust_corpus(&read_crate_list(&list).unwrap(), home.path(), &out).unwrap();
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(&str, &str)> =
        records.iter().map(|r| (r["path"].as_str().unwrap(), r["text"].as_str().unwrap())).collect();
    let expected: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.split_once('/').unwrap().1, t.as_str())).collect();
    assert_eq!(got, expected);
    assert_eq!((stats.crates, stats.files), (2, 3));
    assert_eq!(stats.bytes, files.iter().map(|(_, t)| t.len() as u64).sum::<u64>());
}

#[test]
fn a_crate_missing_from_the_registry_or_a_bad_list_line_is_named() {
    let home = temp_dir();
    write(&home.path().join("registry/src"), "index-a/alpha-1.0.0/src/lib.rs", "fn main() {}");
    let list = write(home.path(), "crates.txt", "alpha 1.0.0\ndelta 0.2.0\n");
    let out = home.path().join("rust.jsonl");
    let error = write_rust_corpus(&read_crate_list(&list).unwrap(), home.path(), &out).unwrap_err().to_string();
    assert!(error.contains("delta-0.2.0") && error.contains("cargo fetch"), "{error}");
    assert!(!out.exists(), "nothing written when a crate is missing");

    let list = write(home.path(), "bad.txt", "alpha 1.0.0\n# fine\nbeta\n");
    match read_crate_list(&list) {
        Err(TritterError::Data { line: Some(3), reason, .. }) => assert!(reason.contains("NAME VERSION"), "{reason}"),
        other => panic!("expected an error on line 3, got {other:?}"),
    }
}

/// Every crate of `data/rust-crates.txt` and of its held-out twin is in Cargo.lock at exactly
/// that version, so `cargo fetch` (or any build of Tritter) puts it in the registry; no crate
/// is in both.
#[test]
fn the_rust_crate_lists_pin_cargo_lock_versions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let value = |block: &str, key: &str| {
        block.lines().find_map(|l| {
            l.strip_prefix(key)?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"').map(String::from)
        })
    };
    let locked: std::collections::HashSet<(String, String)> =
        lock.split("[[package]]").filter_map(|block| Some((value(block, "name")?, value(block, "version")?))).collect();
    assert!(locked.len() > 100, "Cargo.lock parsed");
    let train = read_crate_list(&root.join("data/rust-crates.txt")).unwrap();
    let valid = read_crate_list(&root.join("data/rust-crates-valid.txt")).unwrap();
    assert!(train.len() >= 10 && !valid.is_empty());
    for krate in train.iter().chain(&valid) {
        assert!(
            locked.contains(&(krate.name.clone(), krate.version.clone())),
            "{} is not in Cargo.lock",
            krate.dir_name()
        );
    }
    assert!(valid.iter().all(|v| train.iter().all(|t| t.name != v.name)), "a held-out crate is also trained on");
}
