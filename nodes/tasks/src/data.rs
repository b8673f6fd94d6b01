//! A minimal local reader for task data files (JSONL, JSON, CSV), enough to resolve an lm-eval
//! `dataset_path` / `data_files` or a TOML task's `splits`. General data loading (Parquet,
//! compression, remote sources) is the dataset node's job; it hands rows over as [`Doc`]s.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One document: a row of a data set.
pub type Doc = Map<String, Value>;

/// Read a data file by extension: `.jsonl` (one object per line), `.json` (an array of objects,
/// or JSON Lines), `.csv` (header row; cells that parse as numbers become numbers, as the
/// `datasets` CSV loader infers them; empty cells become `null`).
pub fn read_docs(path: &Path) -> Result<Vec<Doc>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => read_csv(&text, path),
        "json" if text.trim_start().starts_with('[') => {
            let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| Error::Data {
                path: path.to_path_buf(),
                row: e.line(),
                message: e.to_string(),
            })?;
            rows.into_iter()
                .enumerate()
                .map(|(i, row)| into_object(row, path, i + 1))
                .collect()
        }
        "jsonl" | "json" | "ndjson" => read_jsonl(&text, path),
        _ => Err(Error::Data {
            path: path.to_path_buf(),
            row: 0,
            message: format!(
                "unsupported file type `.{ext}`; use .jsonl, .json or .csv, or load the rows with a dataset node and pass them in"
            ),
        }),
    }
}

fn into_object(row: Value, path: &Path, row_no: usize) -> Result<Doc> {
    match row {
        Value::Object(map) => Ok(map),
        other => Err(Error::Data {
            path: path.to_path_buf(),
            row: row_no,
            message: format!("expected a JSON object, found `{other}`"),
        }),
    }
}

fn read_jsonl(text: &str, path: &Path) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(line).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            row: i + 1,
            message: e.to_string(),
        })?;
        docs.push(into_object(row, path, i + 1)?);
    }
    Ok(docs)
}

fn read_csv(text: &str, path: &Path) -> Result<Vec<Doc>> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::Data {
            path: path.to_path_buf(),
            row: 1,
            message: e.to_string(),
        })?
        .clone();
    let mut docs = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| Error::Data {
            path: path.to_path_buf(),
            row: i + 2,
            message: e.to_string(),
        })?;
        let mut doc = Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            doc.insert(name.to_string(), infer_cell(cell));
        }
        docs.push(doc);
    }
    Ok(docs)
}

fn infer_cell(cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = cell.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = cell.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(cell.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jsonl_json_and_csv() {
        let dir = std::env::temp_dir().join(format!("dag-tasks-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jsonl = dir.join("a.jsonl");
        std::fs::write(&jsonl, "{\"q\": \"x\"}\n\n{\"q\": \"y\"}\n").unwrap();
        assert_eq!(read_docs(&jsonl).unwrap().len(), 2);
        let json = dir.join("a.json");
        std::fs::write(&json, "[{\"q\": 1}]").unwrap();
        assert_eq!(read_docs(&json).unwrap()[0]["q"], 1);
        let csv = dir.join("a.csv");
        std::fs::write(&csv, "question,answer,note\n\"a, b\",2,\n").unwrap();
        let rows = read_docs(&csv).unwrap();
        assert_eq!(rows[0]["question"], "a, b");
        assert_eq!(rows[0]["answer"], 2);
        assert!(rows[0]["note"].is_null());
        let bad = dir.join("b.jsonl");
        std::fs::write(&bad, "{\"q\": 1}\n[1]\n").unwrap();
        let err = read_docs(&bad).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
