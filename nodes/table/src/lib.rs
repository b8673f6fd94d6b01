//! Rows in and out: JSONL, JSON, CSV and Parquet (each optionally gzip-compressed) are
//! read into JSON objects; datasets are stored as JSONL, one object per line, keys in
//! source column order.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use serde_json::{Map, Value};

/// A row: column name to value, in column order.
pub type Row = Map<String, Value>;

/// A supported file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects (or an object with one array of objects).
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// Parses a format name (`jsonl`, `json`, `csv`, `parquet`).
    pub fn from_name(s: &str) -> Option<Format> {
        Some(match s {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// The format of `name` by extension, looking through a `.gz` suffix.
    pub fn from_extension(name: &str) -> Option<Format> {
        let base = name.strip_suffix(".gz").unwrap_or(name);
        Format::from_name(base.rsplit_once('.')?.1)
    }
}

/// What went wrong reading a table, located as precisely as the format allows.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("Failed to read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A malformed row.
    #[error("`{path}` line {line}: {message}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is not in the format.
    #[error("`{path}` is not valid {format}: {message}")]
    Format {
        /// The file.
        path: String,
        /// Expected format.
        format: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Rows read from a file, with the malformed rows that were skipped (when asked to).
#[derive(Debug, Default)]
pub struct ReadRows {
    /// The rows.
    pub rows: Vec<Row>,
    /// Malformed rows skipped, as `(line, message)`.
    pub skipped: Vec<(usize, String)>,
    /// CSV records whose quoted fields span lines, as `(first line, lines spanned)`: real
    /// multi-line text, or an unbalanced quote that swallowed the rows after it.
    pub multiline: Vec<(usize, usize)>,
}

fn open(path: &Path) -> Result<Box<dyn Read>, TableError> {
    let f = File::open(path).map_err(|e| TableError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// Reads every row of `path`. With `skip_bad`, malformed rows are counted and skipped;
/// otherwise the first one is an error naming its line.
pub fn read_rows(path: &Path, format: Format, skip_bad: bool) -> Result<ReadRows, TableError> {
    let p = path.display().to_string();
    let mut out = ReadRows::default();
    let bad = |line: usize, message: String, out: &mut ReadRows| -> Result<(), TableError> {
        if skip_bad {
            out.skipped.push((line, message));
            Ok(())
        } else {
            Err(TableError::Row {
                path: p.clone(),
                line,
                message,
            })
        }
    };
    match format {
        Format::Jsonl => {
            let reader = BufReader::new(open(path)?);
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| TableError::Io {
                    path: p.clone(),
                    source: e,
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(o)) => out.rows.push(o),
                    Ok(other) => bad(
                        i + 1,
                        format!("expected a JSON object, found {}", kind(&other)),
                        &mut out,
                    )?,
                    Err(e) => bad(i + 1, format!("invalid JSON: {e}"), &mut out)?,
                }
            }
        }
        Format::Json => {
            let mut text = String::new();
            open(path)?
                .read_to_string(&mut text)
                .map_err(|e| TableError::Io {
                    path: p.clone(),
                    source: e,
                })?;
            let v: Value = serde_json::from_str(&text).map_err(|e| TableError::Row {
                path: p.clone(),
                line: e.line(),
                message: format!("invalid JSON: {e}"),
            })?;
            let items = match v {
                Value::Array(a) => a,
                Value::Object(o)
                    if o.len() == 1 && o.values().next().is_some_and(Value::is_array) =>
                {
                    match o.into_iter().next() {
                        Some((_, Value::Array(a))) => a,
                        _ => unreachable!("checked above"),
                    }
                }
                other => {
                    return Err(TableError::Format {
                        path: p,
                        format: "JSON rows",
                        message: format!("expected an array of objects, found {}", kind(&other)),
                    });
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::Object(o) => out.rows.push(o),
                    other => bad(
                        i + 1,
                        format!("element {} is {}, not an object", i + 1, kind(&other)),
                        &mut out,
                    )?,
                }
            }
        }
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(open(path)?);
            let headers = rdr
                .headers()
                .map_err(|e| TableError::Format {
                    path: p.clone(),
                    format: "CSV",
                    message: e.to_string(),
                })?
                .clone();
            // Spreadsheet exports often end every line with a comma: an unnamed,
            // empty column that is not data.
            let keep: Vec<usize> = (0..headers.len())
                .filter(|&i| !headers[i].trim().is_empty())
                .collect();
            for rec in rdr.records() {
                match rec {
                    Ok(r) => {
                        let newlines: usize = r.iter().map(|f| f.matches('\n').count()).sum();
                        if newlines > 0 {
                            let line = r.position().map(|pos| pos.line() as usize).unwrap_or(0);
                            out.multiline.push((line, newlines + 1));
                        }
                        let mut row = Row::new();
                        for &i in &keep {
                            row.insert(
                                headers[i].to_string(),
                                Value::String(r.get(i).unwrap_or("").to_string()),
                            );
                        }
                        out.rows.push(row);
                    }
                    Err(e) => {
                        let line = e.position().map(|pos| pos.line() as usize).unwrap_or(0);
                        bad(line, e.to_string(), &mut out)?;
                    }
                }
            }
        }
        Format::Parquet => {
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let f = File::open(path).map_err(|e| TableError::Io {
                path: p.clone(),
                source: e,
            })?;
            let reader = SerializedFileReader::new(f).map_err(|e| TableError::Format {
                path: p.clone(),
                format: "Parquet",
                message: e.to_string(),
            })?;
            let iter = reader.get_row_iter(None).map_err(|e| TableError::Format {
                path: p.clone(),
                format: "Parquet",
                message: e.to_string(),
            })?;
            for (i, row) in iter.enumerate() {
                let row = row.map_err(|e| TableError::Row {
                    path: p.clone(),
                    line: i + 1,
                    message: e.to_string(),
                })?;
                match row.to_json_value() {
                    Value::Object(o) => out.rows.push(o),
                    other => bad(i + 1, format!("row is {}", kind(&other)), &mut out)?,
                }
            }
        }
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes rows as JSONL.
pub fn write_jsonl(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(File::create(path)?);
    for r in rows {
        serde_json::to_writer(&mut w, r)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Reads a stored dataset (JSONL written by [`write_jsonl`]).
pub fn read_dataset(path: &Path) -> Result<Vec<Row>, TableError> {
    Ok(read_rows(path, Format::Jsonl, false)?.rows)
}

/// A value as text, for filters and grouping: strings as they are, other values as JSON.
pub fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_reads_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(
            &jsonl,
            "{\"x\": \"1\", \"y\": \"a\"}\n\n{\"x\": \"2\", \"y\": \"b\"}\n",
        )
        .unwrap();
        let json = dir.path().join("a.json");
        std::fs::write(
            &json,
            "[{\"x\": \"1\", \"y\": \"a\"}, {\"x\": \"2\", \"y\": \"b\"}]",
        )
        .unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "x,y,\n1,a,\n2,b,\n").unwrap();
        let gz = dir.path().join("a.csv.gz");
        let mut e = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        e.write_all(b"x,y,\n1,a,\n2,b,\n").unwrap();
        e.finish().unwrap();
        let want = read_rows(&jsonl, Format::Jsonl, false).unwrap().rows;
        assert_eq!(want.len(), 2);
        for p in [&json, &csv, &gz] {
            let f = Format::from_extension(&p.display().to_string()).unwrap();
            assert_eq!(
                read_rows(p, f, false).unwrap().rows,
                want,
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn malformed_rows_name_their_line_or_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n{\"a\": \n[1]\n{\"a\": 2}\n").unwrap();
        let err = read_rows(&p, Format::Jsonl, false).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl` line 2: invalid JSON"), "{err}");
        let r = read_rows(&p, Format::Jsonl, true).unwrap();
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.skipped.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 3]);
        let c = dir.path().join("bad.csv");
        std::fs::write(&c, "a,b\n1,2\n3\n").unwrap();
        let err = read_rows(&c, Format::Csv, false).unwrap_err().to_string();
        assert!(err.contains("bad.csv` line 3"), "{err}");
    }
}

#[cfg(test)]
mod parquet_tests {
    use std::sync::Arc;

    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;

    #[test]
    fn parquet_rows_read_as_json_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(
            parse_message_type(
                "message t { REQUIRED INT64 id; REQUIRED BYTE_ARRAY question (UTF8); }",
            )
            .unwrap(),
        );
        let mut w = SerializedFileWriter::new(
            File::create(&path).unwrap(),
            schema,
            Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&[7, 8], None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&[ByteArray::from("a?"), ByteArray::from("b?")], None, None)
            .unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();
        let rows = read_rows(&path, Format::Parquet, false).unwrap().rows;
        assert_eq!(
            serde_json::Value::Array(rows.into_iter().map(Value::Object).collect()),
            serde_json::json!([{"id": 7, "question": "a?"}, {"id": 8, "question": "b?"}])
        );
    }
}
