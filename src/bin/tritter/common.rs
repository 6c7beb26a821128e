//! Pieces the `tritter` subcommands (and `examples/train.rs`) share.

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tritter::data::{SourceOptions, TextSplit};

/// The backend the cargo features pick: CUDA, else wgpu, else the CPU.
#[cfg(feature = "cuda")]
pub type Inner = tritter::backend::Cuda;
#[cfg(feature = "cuda")]
pub const BACKEND: &str = "CUDA";
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Inner = tritter::backend::Wgpu;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub const BACKEND: &str = "wgpu";
#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda"))))]
pub type Inner = tritter::backend::Cpu;
#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda"))))]
pub const BACKEND: &str = "the CPU (ndarray)";

/// A device of [`Inner`].
pub type Device = <Inner as burn::tensor::backend::Backend>::Device;

/// `count` devices to train on: the GPUs in order, or the CPU `count` times. Each is tried
/// first, so a missing GPU is an error that names it instead of a panic deep in training.
pub fn devices(count: usize) -> tritter::Result<Vec<Device>> {
    #[cfg(feature = "cuda")]
    let devices: Vec<Device> = (0..count).map(burn::backend::cuda::CudaDevice::new).collect();
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    let devices: Vec<Device> = match count {
        1 => vec![Device::default()],
        _ => (0..count).map(Device::DiscreteGpu).collect(),
    };
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let devices = vec![Device::default(); count];
    if count > 1 {
        devices.iter().try_for_each(usable)?;
    }
    Ok(devices)
}

/// Whether `device` exists: the backends panic when asked for a device they do not find.
fn usable(device: &Device) -> tritter::Result<()> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| burn::tensor::Tensor::<Inner, 1>::zeros([1], device).into_data());
    std::panic::set_hook(hook);
    probe.map(|_| ()).map_err(|panic| {
        let reason = panic.downcast_ref::<String>().cloned().unwrap_or_else(|| "it cannot be opened".into());
        tritter::TritterError::InvalidConfig {
            field: "devices",
            reason: format!("{BACKEND} device {device:?}: {reason}"),
        }
    })
}

#[derive(Copy, Clone, ValueEnum)]
pub enum SplitArg {
    /// Each text file is one document.
    File,
    /// Each blank-line-separated paragraph is a document.
    Paragraph,
}

#[derive(Args)]
pub struct SourceArgs {
    /// JSONL key / parquet column with the text (default: the first of text, content, code,
    /// solution, output, response, input, question).
    #[arg(long)]
    pub text_field: Option<String>,
    /// How plain-text files become documents.
    #[arg(long, value_enum, default_value = "file")]
    pub text_split: SplitArg,
    /// Skip malformed records (counted in the summary) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_records: bool,
}

impl SourceArgs {
    pub fn options(&self) -> SourceOptions {
        SourceOptions {
            text_field: self.text_field.clone(),
            text_split: match self.text_split {
                SplitArg::File => TextSplit::File,
                SplitArg::Paragraph => TextSplit::Paragraph,
            },
            skip_bad_records: self.skip_bad_records,
            ..Default::default()
        }
    }
}

pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A bar counting `len` items (`{message} ▕███ ▏ 12/250 eta 3s`).
pub fn count_bar(message: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{message} {{bar:30}} {{pos}}/{{len}} eta {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

/// A bar counting tensors (`{verb} ▕███ ▏ 12/30 tensors`); its length comes with the first update.
pub fn tensor_bar(verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    let template = format!("{verb} {{bar:30}} {{pos}}/{{len}} tensors {{elapsed}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

/// The top-level fields in which two configs differ, as `(field, a's value, b's value)` in JSON.
pub fn json_differences(a: &impl serde::Serialize, b: &impl serde::Serialize) -> Vec<(String, String, String)> {
    let (a, b) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return Vec::new() };
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    let value =
        |map: &serde_json::Map<String, serde_json::Value>, f: &str| map.get(f).map_or("none".into(), |v| v.to_string());
    fields.into_iter().filter(|f| a.get(*f) != b.get(*f)).map(|f| (f.clone(), value(a, f), value(b, f))).collect()
}
