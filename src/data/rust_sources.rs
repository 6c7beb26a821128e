//! A real-text corpus on every Rust user's machine without a download: the `.rs` files of a
//! fixed list of crates at pinned versions, read from cargo's registry
//! (`$CARGO_HOME/registry/src/*/NAME-VERSION/`). The list (`data/rust-crates.txt`) pins each
//! version to this repository's Cargo.lock, so the corpus is the same on every machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::data::source::files_under;
use crate::error::{Result, TritterError};

/// One crate of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateVersion {
    pub name: String,
    pub version: String,
}

impl CrateVersion {
    /// The directory name cargo unpacks it to.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// What [`write_rust_corpus`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RustCorpusStats {
    pub crates: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Reads a crate list: one `NAME VERSION` per line; blank lines and `#` comments are skipped.
pub fn read_crate_list(path: &Path) -> Result<Vec<CrateVersion>> {
    let text = std::fs::read_to_string(path).map_err(|source| TritterError::Io {
        action: "cannot read crate list",
        path: path.to_path_buf(),
        source,
    })?;
    let mut crates = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let &[name, version] = fields.as_slice() else {
            return Err(TritterError::Data {
                path: path.to_path_buf(),
                line: Some(index + 1),
                reason: format!("expected `NAME VERSION`, got `{line}`"),
            });
        };
        crates.push(CrateVersion { name: name.into(), version: version.into() });
    }
    if crates.is_empty() {
        return Err(TritterError::Data { path: path.to_path_buf(), line: None, reason: "lists no crates".into() });
    }
    Ok(crates)
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub fn default_cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

/// Where cargo unpacked `krate` under `cargo_home`, or an error saying to run `cargo fetch`.
pub fn locate_crate(cargo_home: &Path, krate: &CrateVersion) -> Result<PathBuf> {
    let registry = cargo_home.join("registry").join("src");
    let mut registries: Vec<PathBuf> = std::fs::read_dir(&registry)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    registries.sort();
    registries.into_iter().map(|dir| dir.join(krate.dir_name())).find(|dir| dir.is_dir()).ok_or_else(|| {
        TritterError::InvalidInput(format!(
            "crate {} is not in cargo's registry ({}/*/{}); run `cargo fetch` in the Tritter repository \
             (its Cargo.lock pins this version) and try again",
            krate.dir_name(),
            registry.display(),
            krate.dir_name()
        ))
    })
}

/// Writes every `.rs` file of the listed crates as JSONL (`{"text", "path"}` per file, crate by
/// crate in list order, files sorted), atomically. Files that are not UTF-8 are skipped.
pub fn write_rust_corpus(crates: &[CrateVersion], cargo_home: &Path, out: &Path) -> Result<RustCorpusStats> {
    let dirs: Vec<PathBuf> = crates.iter().map(|k| locate_crate(cargo_home, k)).collect::<Result<_>>()?;
    let mut stats = RustCorpusStats { crates: crates.len(), ..Default::default() };
    let mut bytes = Vec::new();
    for (krate, dir) in crates.iter().zip(&dirs) {
        for file in files_under(dir, |p| p.extension().is_some_and(|e| e == "rs"))? {
            let raw = std::fs::read(&file).map_err(|source| TritterError::Io {
                action: "cannot read",
                path: file.clone(),
                source,
            })?;
            let Ok(text) = String::from_utf8(raw) else { continue };
            let relative = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            let record = serde_json::json!({ "text": text, "path": format!("{}/{relative}", krate.dir_name()) });
            serde_json::to_writer(&mut bytes, &record).expect("json to a Vec");
            bytes.write_all(b"\n").expect("write to a Vec");
            stats.files += 1;
            stats.bytes += text.len() as u64;
        }
    }
    crate::io::create_parent(out)?;
    crate::io::write_atomic(out, &bytes)?;
    Ok(stats)
}
