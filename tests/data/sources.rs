//! Document sources: JSONL, text, parquet, gzip, directories, and every bad-input case.

use std::path::Path;
use std::sync::Arc;

use tritter::data::{for_each_document, list_files, SourceOptions, SourceStats, TextSplit};
use tritter::TritterError;

use crate::data::common::{fresh_rng, gzip, jsonl, temp_dir, unicode_text, write};

fn read_all(path: &Path, options: &SourceOptions) -> Result<(Vec<String>, SourceStats), TritterError> {
    let mut docs = Vec::new();
    let mut stats = SourceStats::default();
    for_each_document(path, options, &mut stats, &mut |d| {
        docs.push(d);
        Ok(())
    })?;
    Ok((docs, stats))
}

fn data_error(result: Result<(Vec<String>, SourceStats), TritterError>) -> (String, Option<usize>, String) {
    match result {
        Err(TritterError::Data { path, line, reason }) => {
            (path.file_name().unwrap().to_string_lossy().into_owned(), line, reason)
        }
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn jsonl_text_field_detection_and_override() {
    let dir = temp_dir();
    let path = write(
        dir.path(),
        "mixed.jsonl",
        concat!(
            r#"{"text": "from text", "content": "not this"}"#,
            "\n",
            r#"{"id": 3, "content": "from content"}"#,
            "\n",
            "\n",
            r#"{"code": "fn main() {}", "solution": "no"}"#,
            "\n",
            r#"{"question": "q?", "response": "from response"}"#,
            "\n",
            r#"{"input": "from input", "question": "later"}"#,
            "\r\n",
        ),
    );
    let (docs, stats) = read_all(&path, &SourceOptions::default()).unwrap();
    assert_eq!(docs, ["from text", "from content", "fn main() {}", "from response", "from input"]);
    assert_eq!((stats.files, stats.documents, stats.skipped_records), (1, 5, 0));

    let options = SourceOptions { text_field: Some("question".into()), skip_bad_records: true, ..Default::default() };
    let (docs, stats) = read_all(&path, &options).unwrap();
    assert_eq!(docs, ["q?", "later"]);
    assert_eq!(stats.skipped_records, 3);
}

#[test]
fn malformed_jsonl_names_file_and_line() {
    let dir = temp_dir();
    let cases: [(&str, &str, usize, &str); 5] = [
        ("broken.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n", 2, "malformed JSON"),
        ("nofield.jsonl", "{\"text\": \"ok\"}\n\n{\"title\": \"x\"}\n", 3, "no text field"),
        ("array.jsonl", "[1, 2]\n", 1, "expected a JSON object"),
        ("number.jsonl", "{\"text\": 5}\n", 1, "no text field"),
        ("wrongtype.jsonl", "{\"body\": [\"x\"]}\n", 1, "not a string"),
    ];
    for (name, content, line, reason) in cases {
        let path = write(dir.path(), name, content);
        let options =
            SourceOptions { text_field: (name == "wrongtype.jsonl").then(|| "body".into()), ..Default::default() };
        let (file, got_line, got_reason) = data_error(read_all(&path, &options));
        assert_eq!((file.as_str(), got_line), (name, Some(line)), "{got_reason}");
        assert!(got_reason.contains(reason), "{name}: {got_reason}");
        // The message a user sees names both.
        let message = read_all(&path, &options).unwrap_err().to_string();
        assert!(message.contains(name) && message.contains(&format!("line {line}")), "{message}");
    }
}

#[test]
fn non_utf8_empty_files_and_empty_datasets_are_errors() {
    let dir = temp_dir();
    let bad = write(dir.path(), "latin1.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n");
    let (_, line, reason) = data_error(read_all(&bad, &SourceOptions::default()));
    assert_eq!(line, Some(2));
    assert!(reason.contains("invalid UTF-8"), "{reason}");
    let bad_text = write(dir.path(), "latin1.txt", b"fine\nalso fine\ncaf\xe9\n");
    let (_, line, reason) = data_error(read_all(&bad_text, &SourceOptions::default()));
    assert_eq!(line, Some(3));
    assert!(reason.contains("invalid UTF-8"), "{reason}");

    let empty = write(dir.path(), "empty.jsonl", "");
    let (_, _, reason) = data_error(read_all(&empty, &SourceOptions::default()));
    assert!(reason.contains("empty"), "{reason}");
    let blank = write(dir.path(), "blank.txt", "\n   \n");
    assert!(read_all(&blank, &SourceOptions::default()).is_err());

    let empty_dir = dir.path().join("nothing");
    std::fs::create_dir_all(empty_dir.join("sub")).unwrap();
    write(&empty_dir, "notes.csv", "a,b\n");
    let (_, _, reason) = data_error(read_all(&empty_dir, &SourceOptions::default()));
    assert!(reason.contains("no data files"), "{reason}");
    let err = read_all(&dir.path().join("missing.jsonl"), &SourceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn an_enormous_line_is_a_bad_record_not_an_allocation() {
    let dir = temp_dir();
    // 8 MiB on one line against a 64 KiB limit: refused without reading it into memory whole.
    let mut content = b"{\"text\": \"short\"}\n{\"text\": \"".to_vec();
    content.extend(std::iter::repeat_n(b'x', 8 << 20));
    content.extend_from_slice(b"\"}\n{\"text\": \"after\"}\n");
    let path = write(dir.path(), "huge.jsonl", &content);
    let options = SourceOptions { max_record_bytes: 64 << 10, ..Default::default() };
    let (_, line, reason) = data_error(read_all(&path, &options));
    assert_eq!(line, Some(2));
    assert!(reason.contains("longer than"), "{reason}");
    let skipping = SourceOptions { skip_bad_records: true, ..options };
    let (docs, stats) = read_all(&path, &skipping).unwrap();
    assert_eq!(docs, ["short", "after"]);
    assert_eq!(stats.skipped_records, 1);
}

#[test]
fn text_files_split_by_file_or_paragraph_and_gzip_is_transparent() {
    let mut rng = fresh_rng("text_files_split_by_file_or_paragraph_and_gzip_is_transparent");
    let dir = temp_dir();
    let paragraphs: Vec<String> = (0..5)
        .map(|_| unicode_text(&mut rng, 10).replace('\n', " ").trim().replace("  ", " "))
        .filter(|p| !p.trim().is_empty())
        .collect();
    let text = paragraphs.join("\n\n\n");
    let plain = write(dir.path(), "a.txt", &text);
    let packed = write(dir.path(), "b.txt.gz", gzip(text.as_bytes()));
    for path in [&plain, &packed] {
        let (docs, _) = read_all(path, &SourceOptions::default()).unwrap();
        assert_eq!(docs, std::slice::from_ref(&text));
        let options = SourceOptions { text_split: TextSplit::Paragraph, ..Default::default() };
        let (docs, _) = read_all(path, &options).unwrap();
        assert_eq!(docs, paragraphs);
    }
    let texts: Vec<String> = (0..20).map(|_| unicode_text(&mut rng, 15)).collect();
    let gz = write(dir.path(), "c.jsonl.gz", gzip(jsonl("content", &texts).as_bytes()));
    assert_eq!(read_all(&gz, &SourceOptions::default()).unwrap().0, texts);
}

#[test]
fn parquet_column_detection_nulls_and_batches() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let mut rng = fresh_rng("parquet_column_detection_nulls_and_batches");
    let dir = temp_dir();
    let n = 2500; // more than one 1024-row record batch
    let texts: Vec<String> = (0..n).map(|_| unicode_text(&mut rng, 8)).collect();
    let write_parquet = |name: &str, column: &str, values: Vec<Option<String>>| {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..values.len() as i64));
        let strings: ArrayRef = Arc::new(StringArray::from(values));
        let batch = RecordBatch::try_from_iter([("id", ids), (column, strings)]).unwrap();
        let path = dir.path().join(name);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    };
    let path = write_parquet("data.parquet", "solution", texts.iter().cloned().map(Some).collect());
    let (docs, stats) = read_all(&path, &SourceOptions::default()).unwrap();
    assert_eq!(docs, texts);
    assert_eq!(stats.documents, n);
    let wrong = SourceOptions { text_field: Some("id".into()), ..Default::default() };
    let (_, _, reason) = data_error(read_all(&path, &wrong));
    assert!(reason.contains("no string column `id`"), "{reason}");

    let with_null = write_parquet("nulls.parquet", "text", vec![Some("a".into()), None, Some("c".into())]);
    let (_, row, reason) = data_error(read_all(&with_null, &SourceOptions::default()));
    assert_eq!(row, Some(2));
    assert!(reason.contains("null"), "{reason}");
    let skipping = SourceOptions { skip_bad_records: true, ..Default::default() };
    assert_eq!(read_all(&with_null, &skipping).unwrap().0, ["a", "c"]);

    let not_parquet = write(dir.path(), "fake.parquet", "hello");
    let (_, _, reason) = data_error(read_all(&not_parquet, &SourceOptions::default()));
    assert!(reason.contains("parquet"), "{reason}");
}

#[test]
fn directories_are_read_recursively_in_sorted_order() {
    let dir = temp_dir();
    write(dir.path(), "b/2.jsonl", jsonl("text", &["b2".into()]));
    write(dir.path(), "a.txt", "a");
    write(dir.path(), "b/1.txt.gz", gzip(b"b1"));
    write(dir.path(), "c/deep/x.jsonl", jsonl("text", &["x".into()]));
    write(dir.path(), "README.csv", "ignored");
    let files: Vec<String> = list_files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["a.txt", "b/1.txt.gz", "b/2.jsonl", "c/deep/x.jsonl"]);
    let (docs, stats) = read_all(dir.path(), &SourceOptions::default()).unwrap();
    assert_eq!(docs, ["a", "b1", "b2", "x"]);
    assert_eq!(stats.files, 4);
    let unknown = write(dir.path(), "data.xml", "<a/>");
    assert!(read_all(&unknown, &SourceOptions::default()).unwrap_err().to_string().contains("unknown format"));
}
