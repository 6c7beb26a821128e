//! Checkpoint directories: `config.json` + `model.safetensors` with the spec's tensor names,
//! the latent weights or (read here, written by [`super::packed`]) the packed ones.

use std::path::Path;

use burn_store::{ModuleSnapshot, SafetensorsStore};

use super::format::{check_apply, store_error, CONFIG_FILE, WEIGHTS_FILE};
use super::packed::{is_packed_file, load_packed};
use crate::backend::{with_owned_params, TritterBackend};
use crate::config::TritterConfig;
use crate::error::{Result, TritterError};
use crate::io::{rename_into_place, temp_path};
use crate::model::TritterModel;

impl<B: TritterBackend> TritterModel<B> {
    /// Writes `dir/model.safetensors` then `dir/config.json`, each atomically (temp file +
    /// rename), creating `dir` if needed.
    pub fn save_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| TritterError::Io {
            action: "cannot create checkpoint directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let weights = dir.join(WEIGHTS_FILE);
        let tmp = temp_path(&weights);
        let mut store = SafetensorsStore::from_file(&tmp).overwrite(true).skip_enum_variants(true);
        self.save_into(&mut store).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            store_error(&weights, e)
        })?;
        rename_into_place(&tmp, &weights)?;
        self.config().to_json_file(dir.join(CONFIG_FILE))?;
        tracing::debug!(dir = %dir.display(), "saved checkpoint");
        Ok(())
    }

    /// Loads a checkpoint directory written by [`Self::save_checkpoint`] (or any file with the
    /// spec's tensor names). Every tensor the config implies must be present with its shape, and
    /// no other tensor may be.
    pub fn load_checkpoint(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(TritterError::Io {
                action: "cannot open checkpoint directory",
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory or does not exist"),
            });
        }
        let config = TritterConfig::from_json_file(dir.join(CONFIG_FILE))?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(TritterError::Io {
                action: "cannot open weights",
                path: weights,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "file does not exist"),
            });
        }
        if let Some(model) = load_if_packed(&config, &weights, device)? {
            tracing::debug!(dir = %dir.display(), "loaded packed checkpoint");
            return Ok(model);
        }
        let mut model = Self::new(&config, device)?;
        let mut store =
            SafetensorsStore::from_file(&weights).validate(false).allow_partial(true).skip_enum_variants(true);
        let result = model.load_from(&mut store).map_err(|e| store_error(&weights, e))?;
        check_apply(&weights, result)?;
        let model = with_owned_params(model);
        tracing::debug!(dir = %dir.display(), "loaded checkpoint");
        Ok(model)
    }
}

/// The packed model if `weights` is a packed file (it has `...weight_packed` tensors).
fn load_if_packed<B: TritterBackend>(
    config: &TritterConfig,
    weights: &Path,
    device: &B::Device,
) -> Result<Option<TritterModel<B>>> {
    let file = std::fs::File::open(weights).map_err(|source| TritterError::Io {
        action: "cannot open weights",
        path: weights.to_path_buf(),
        source,
    })?;
    // SAFETY: the map is read-only and dropped before this function returns; a file changed
    // underneath would give wrong values, not unsoundness in safe code reading bytes.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| TritterError::Io {
        action: "cannot map weights",
        path: weights.to_path_buf(),
        source,
    })?;
    let tensors = safetensors::SafeTensors::deserialize(&map)
        .map_err(|e| TritterError::CorruptCheckpoint { path: weights.to_path_buf(), reason: e.to_string() })?;
    if !is_packed_file(&tensors) {
        return Ok(None);
    }
    load_packed(config, weights, &tensors, device).map(Some)
}
