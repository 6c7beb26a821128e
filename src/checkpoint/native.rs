//! Checkpoint directories: `config.json` + `model.safetensors` with the spec's tensor names,
//! the latent weights or (read here, written by [`super::packed`]) the packed ones.

use std::path::Path;

use burn_store::{ModuleSnapshot, SafetensorsStore};

use super::format::{check_apply, store_error, CONFIG_FILE, WEIGHTS_FILE};
use super::packed::{is_packed_file, load_packed};
use super::read::{float_snapshots, map_weights, parse};
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
    /// spec's tensor names). Every tensor the config implies must be present with its shape and a
    /// float dtype (F32, F16 or BF16), and no other tensor may be; all of it is checked before
    /// a tensor is read, so a damaged file is an error, never a panic.
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
        let map = std::rc::Rc::new(map_weights(&weights)?);
        let file = parse(&weights, &map)?;
        if is_packed_file(&file) {
            let model = load_packed(&config, &weights, &map, &file, device)?;
            tracing::debug!(dir = %dir.display(), "loaded packed checkpoint");
            return Ok(model);
        }
        let mut model = Self::new(&config, device)?;
        let snapshots = float_snapshots(&weights, &map, &file, &config.expected_shapes(), |_| false)?;
        check_apply(&weights, model.apply(snapshots, None, None, true))?;
        let model = with_owned_params(model);
        tracing::debug!(dir = %dir.display(), "loaded checkpoint");
        Ok(model)
    }
}
