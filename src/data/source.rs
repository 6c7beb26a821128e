//! Reading documents from JSONL, plain text and parquet files (optionally gzip-compressed),
//! from a file or a directory tree, with errors that name the file and line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TritterError};

/// Fields tried, in order, when no `text_field` is given.
pub const DEFAULT_TEXT_FIELDS: [&str; 8] =
    ["text", "content", "code", "solution", "output", "response", "input", "question"];

/// How a plain-text file becomes documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSplit {
    /// The whole file is one document.
    File,
    /// Each blank-line-separated paragraph is a document.
    Paragraph,
}

/// How documents are read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceOptions {
    /// JSONL key / parquet column holding the text; `None` tries [`DEFAULT_TEXT_FIELDS`].
    pub text_field: Option<String>,
    pub text_split: TextSplit,
    /// Skip (and count) malformed records instead of failing.
    pub skip_bad_records: bool,
    /// Longest accepted record (JSONL line, text document): longer ones are bad records, so a
    /// single enormous line cannot exhaust memory.
    pub max_record_bytes: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self { text_field: None, text_split: TextSplit::File, skip_bad_records: false, max_record_bytes: 64 << 20 }
    }
}

/// Counts of what a read saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    pub files: usize,
    pub documents: usize,
    pub skipped_records: usize,
    /// Bytes of document text.
    pub text_bytes: u64,
}

/// The file formats Tritter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Text,
    Parquet,
}

/// Format of a file from its name, with whether it is gzip-compressed; `None` if unknown.
pub fn format_of(path: &Path) -> Option<(Format, bool)> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(stem) => (stem.to_string(), true),
        None => (name, false),
    };
    let ext = stem.rsplit_once('.').map(|(_, e)| e)?;
    let format = match ext {
        "jsonl" | "ndjson" | "json" => Format::Jsonl,
        "txt" | "text" | "md" => Format::Text,
        "parquet" if !gz => Format::Parquet,
        _ => return None,
    };
    Some((format, gz))
}

/// The data files of `path`: the file itself, or every file with a known format under a
/// directory, recursively, in sorted order (deterministic).
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|source| TritterError::Io {
        action: "cannot open data path",
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        if format_of(path).is_none() {
            return Err(TritterError::Data {
                path: path.to_path_buf(),
                line: None,
                reason: "unknown format; expected .jsonl, .json, .ndjson, .txt, .text, .md (each optionally .gz) or .parquet".into(),
            });
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let files = files_under(path, |p| format_of(p).is_some())?;
    if files.is_empty() {
        return Err(TritterError::Data {
            path: path.to_path_buf(),
            line: None,
            reason: "no data files (.jsonl, .txt, .parquet, ...) in this directory".into(),
        });
    }
    Ok(files)
}

/// The files under directory `root` (recursively) that `keep` accepts, sorted.
pub(crate) fn files_under(root: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let list_error = |source| TritterError::Io { action: "cannot list", path: dir.clone(), source };
        for entry in std::fs::read_dir(&dir).map_err(list_error)? {
            let path = entry.map_err(list_error)?.path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Calls `emit` with every document of the file or directory `path`, in order.
pub fn for_each_document(
    path: &Path,
    options: &SourceOptions,
    stats: &mut SourceStats,
    emit: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    for file in list_files(path)? {
        read_file(&file, options, stats, emit)?;
    }
    Ok(())
}

/// A bad record: an error, or skipped and counted when `skip_bad_records` is set.
fn bad_record(
    options: &SourceOptions,
    stats: &mut SourceStats,
    path: &Path,
    line: Option<usize>,
    reason: String,
) -> Result<()> {
    if options.skip_bad_records {
        tracing::debug!(path = %path.display(), ?line, %reason, "skipping bad record");
        stats.skipped_records += 1;
        Ok(())
    } else {
        Err(TritterError::Data { path: path.to_path_buf(), line, reason })
    }
}

fn open(path: &Path, gz: bool) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|source| TritterError::Io {
        action: "cannot open",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    })
}

/// Reads one line (without its newline) into `buf`, keeping at most `cap + 1` bytes of it and
/// discarding the rest. Returns `None` at end of input, else whether the line fit.
fn read_line_capped(reader: &mut dyn BufRead, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut seen_any = false;
    let mut fits = true;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(seen_any.then_some(fits));
        }
        seen_any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if fits {
            let room = (cap + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            fits = buf.len() <= cap;
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(fits));
        }
    }
}

fn read_error(path: &Path, source: std::io::Error) -> TritterError {
    TritterError::Io { action: "cannot read", path: path.to_path_buf(), source }
}

fn read_file(
    path: &Path,
    options: &SourceOptions,
    stats: &mut SourceStats,
    emit: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let (format, gz) = format_of(path).expect("listed files have a known format");
    stats.files += 1;
    let before = (stats.documents, stats.skipped_records);
    match format {
        Format::Jsonl => read_jsonl(path, gz, options, stats, emit)?,
        Format::Text => read_text(path, gz, options, stats, emit)?,
        Format::Parquet => read_parquet(path, options, stats, emit)?,
    }
    if (stats.documents, stats.skipped_records) == before {
        bad_record(options, stats, path, None, "the file is empty (no documents)".into())?;
    }
    Ok(())
}

fn emit_document(text: String, stats: &mut SourceStats, emit: &mut dyn FnMut(String) -> Result<()>) -> Result<()> {
    stats.documents += 1;
    stats.text_bytes += text.len() as u64;
    emit(text)
}

fn read_jsonl(
    path: &Path,
    gz: bool,
    options: &SourceOptions,
    stats: &mut SourceStats,
    emit: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let mut reader = open(path, gz)?;
    let mut buf = Vec::new();
    let mut line = 0;
    while let Some(fits) =
        read_line_capped(&mut *reader, &mut buf, options.max_record_bytes).map_err(|e| read_error(path, e))?
    {
        line += 1;
        if !fits {
            bad_record(
                options,
                stats,
                path,
                Some(line),
                format!("line is longer than {} bytes", options.max_record_bytes),
            )?;
            continue;
        }
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(text) => text,
            Err(e) => {
                bad_record(options, stats, path, Some(line), format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
                continue;
            }
        };
        match extract_text(text, options.text_field.as_deref()) {
            Ok(doc) => emit_document(doc, stats, emit)?,
            Err(reason) => bad_record(options, stats, path, Some(line), reason)?,
        }
    }
    Ok(())
}

/// The text of one JSON object line.
fn extract_text(line: &str, field: Option<&str>) -> std::result::Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err("expected a JSON object".into());
    };
    match field {
        Some(field) => match object.remove(field) {
            Some(serde_json::Value::String(text)) => Ok(text),
            Some(other) => Err(format!("field `{field}` is not a string (found {})", json_kind(&other))),
            None => Err(format!("no field `{field}`")),
        },
        None => DEFAULT_TEXT_FIELDS
            .iter()
            .find_map(|f| match object.remove(*f) {
                Some(serde_json::Value::String(text)) => Some(text),
                _ => None,
            })
            .ok_or_else(|| {
                format!("no text field (looked for a string in {}; use --text-field)", DEFAULT_TEXT_FIELDS.join(", "))
            }),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn read_text(
    path: &Path,
    gz: bool,
    options: &SourceOptions,
    stats: &mut SourceStats,
    emit: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let mut reader = open(path, gz)?;
    let cap = options.max_record_bytes;
    match options.text_split {
        TextSplit::File => {
            let mut bytes = Vec::new();
            (&mut reader).take(cap as u64 + 1).read_to_end(&mut bytes).map_err(|e| read_error(path, e))?;
            if bytes.len() > cap {
                return bad_record(
                    options,
                    stats,
                    path,
                    None,
                    format!("file is larger than {cap} bytes; use paragraph splitting"),
                );
            }
            match String::from_utf8(bytes) {
                Ok(text) if text.trim().is_empty() => Ok(()),
                Ok(text) => emit_document(text, stats, emit),
                Err(e) => {
                    let offset = e.utf8_error().valid_up_to();
                    let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
                    bad_record(options, stats, path, Some(line), format!("invalid UTF-8 at byte {offset}"))
                }
            }
        }
        TextSplit::Paragraph => {
            let mut buf = Vec::new();
            let mut paragraph = String::new();
            let (mut line, mut start) = (0, 1);
            let mut bad = false;
            loop {
                let next = read_line_capped(&mut *reader, &mut buf, cap).map_err(|e| read_error(path, e))?;
                line += 1;
                let blank = next.is_none() || buf.iter().all(|b| b.is_ascii_whitespace());
                if blank {
                    if !paragraph.is_empty() && !bad {
                        emit_document(std::mem::take(&mut paragraph), stats, emit)?;
                    }
                    paragraph.clear();
                    bad = false;
                    start = line + 1;
                    if next.is_none() {
                        return Ok(());
                    }
                    continue;
                }
                if bad {
                    continue;
                }
                let reason = match (next, std::str::from_utf8(&buf)) {
                    (Some(false), _) => Some(format!("line is longer than {cap} bytes")),
                    (_, Err(e)) => Some(format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())),
                    (_, Ok(text)) if paragraph.len() + text.len() + 1 > cap => {
                        Some(format!("paragraph starting at line {start} is longer than {cap} bytes"))
                    }
                    (_, Ok(text)) => {
                        if !paragraph.is_empty() {
                            paragraph.push('\n');
                        }
                        paragraph.push_str(text);
                        None
                    }
                };
                if let Some(reason) = reason {
                    bad_record(options, stats, path, Some(line), reason)?;
                    bad = true;
                    paragraph.clear();
                }
            }
        }
    }
}

fn read_parquet(
    path: &Path,
    options: &SourceOptions,
    stats: &mut SourceStats,
    emit: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;

    let parquet_err = |e: &dyn std::fmt::Display| TritterError::Data {
        path: path.to_path_buf(),
        line: None,
        reason: format!("cannot read parquet: {e}"),
    };
    let file = File::open(path).map_err(|source| TritterError::Io {
        action: "cannot open",
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_err(&e))?;
    let schema = builder.schema().clone();
    let is_text = |name: &str| {
        schema
            .field_with_name(name)
            .map(|f| {
                matches!(
                    f.data_type(),
                    arrow_schema::DataType::Utf8 | arrow_schema::DataType::LargeUtf8 | arrow_schema::DataType::Utf8View
                )
            })
            .unwrap_or(false)
    };
    let column = match &options.text_field {
        Some(field) if is_text(field) => field.clone(),
        Some(field) => {
            return Err(TritterError::Data {
                path: path.to_path_buf(),
                line: None,
                reason: format!("no string column `{field}`"),
            });
        }
        None => DEFAULT_TEXT_FIELDS.iter().find(|f| is_text(f)).map(|f| f.to_string()).ok_or_else(|| {
            TritterError::Data {
                path: path.to_path_buf(),
                line: None,
                reason: format!("no string column among {} (use --text-field)", DEFAULT_TEXT_FIELDS.join(", ")),
            }
        })?,
    };
    let index = builder.parquet_schema().columns().iter().position(|c| c.path().parts() == [column.clone()]);
    let mask = match index {
        Some(i) => ProjectionMask::leaves(builder.parquet_schema(), [i]),
        None => ProjectionMask::all(),
    };
    let reader = builder.with_projection(mask).with_batch_size(1024).build().map_err(|e| parquet_err(&e))?;
    let mut row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_err(&e))?;
        let array = batch.column_by_name(&column).expect("projected column");
        let values: Box<dyn Iterator<Item = Option<&str>>> = if let Some(a) = array.as_string_opt::<i32>() {
            Box::new(a.iter())
        } else if let Some(a) = array.as_string_opt::<i64>() {
            Box::new(a.iter())
        } else if let Some(a) = array.as_string_view_opt() {
            Box::new(a.iter())
        } else {
            return Err(parquet_err(&format!("column `{column}` has type {}", array.data_type())));
        };
        for value in values {
            row += 1;
            match value {
                Some(text) if text.len() > options.max_record_bytes => bad_record(
                    options,
                    stats,
                    path,
                    Some(row),
                    format!("row is longer than {} bytes", options.max_record_bytes),
                )?,
                Some(text) => emit_document(text.to_string(), stats, emit)?,
                None => bad_record(options, stats, path, Some(row), format!("column `{column}` is null"))?,
            }
        }
    }
    Ok(())
}
