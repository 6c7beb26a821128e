//! Atomic file writes: a crash mid-write never leaves a half-written file under the final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TritterError};

/// The temporary name a file is written under before it is renamed into place.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let io = |action, source| TritterError::Io { action, path: path.to_path_buf(), source };
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("cannot create", e))?;
    let written = file.write_all(bytes).map_err(|e| io("cannot write", e));
    if let Err(error) = written.and_then(|()| file.sync_all().map_err(|e| io("cannot sync", e))) {
        let _ = std::fs::remove_file(&tmp); // e.g. a full disk: leave nothing half-written
        return Err(error);
    }
    rename_into_place(&tmp, path)
}

/// Creates the directory `path` will be written to, if it has one that is missing.
pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|source| TritterError::Io {
            action: "cannot create",
            path: parent.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// Renames a finished temporary file over its final name.
pub(crate) fn rename_into_place(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(tmp);
        TritterError::Io { action: "cannot rename into place", path: path.to_path_buf(), source }
    })
}

/// Reads a JSON file into `T`; errors name the file (and serde's line and column).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, action: &'static str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| TritterError::Io {
        action,
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TritterError::ConfigParse { path: path.to_path_buf(), source })
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("configs always serialise");
    write_atomic(path, json.as_bytes())
}
