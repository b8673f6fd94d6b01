//! `dataset`: rows from a local file or a pinned `https://` source, mapped, filtered,
//! limited and split, stored as JSONL.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, ParamType, PortSpec, Resources,
    RunContext, Value,
};
use rand::SeedableRng;
use serde_json::json;
use sha2::Digest as _;

use dag_table::{self as table, Format, Row};

/// The `dataset` node type.
pub struct Dataset(NodeSpec);

impl Dataset {
    /// The node type with its spec.
    pub fn new() -> Self {
        let list_map = || ParamType::Map(Box::new(ParamType::List(Box::new(ParamType::Str))));
        Dataset(NodeSpec {
            name: "dataset",
            version: 1,
            doc: "Reads rows from a local file (`path`) or an `https://` URL pinned by `checksum`; \
                  renames, selects and filters columns, limits or samples rows, and splits off a \
                  held-out set by column values or a seeded fraction.",
            inputs: vec![],
            outputs: vec![
                PortSpec::new(
                    "dataset",
                    ArtifactKind::Dataset,
                    "the selected rows (the training side of a split)",
                ),
                PortSpec::new(
                    "held_out",
                    ArtifactKind::Dataset,
                    "rows split off by `held_out` or `held_out_fraction` (empty without a split)",
                ),
            ],
            params: vec![
                ParamSpec::optional(
                    "path",
                    ParamType::Path,
                    "local file, relative to the graph file (.jsonl, .json, .csv, .parquet, optionally .gz)",
                ),
                ParamSpec::optional(
                    "url",
                    ParamType::Str,
                    "https:// source (plain http only for a loopback host: 127.0.0.1, localhost, [::1]); requires `checksum`",
                ),
                ParamSpec::optional(
                    "checksum",
                    ParamType::Str,
                    "`sha256:HEX` or `blake3:HEX` (64 hex digits) of the file `url` downloads",
                ),
                ParamSpec::with_default(
                    "format",
                    ParamType::Enum(&["auto", "jsonl", "json", "csv", "parquet"]),
                    Value::Str("auto".into()),
                    "file format; `auto` goes by extension",
                ),
                ParamSpec::optional(
                    "rename",
                    ParamType::Map(Box::new(ParamType::Str)),
                    "columns to rename, `{ old = \"new\" }`",
                ),
                ParamSpec::optional(
                    "select",
                    ParamType::List(Box::new(ParamType::Str)),
                    "keep only these columns (after renaming)",
                ),
                ParamSpec::optional(
                    "filter",
                    list_map(),
                    "keep rows whose column value is in the list, `{ col = [\"a\", \"b\"] }`",
                ),
                ParamSpec::optional(
                    "exclude",
                    list_map(),
                    "drop rows whose column value is in the list",
                ),
                ParamSpec::optional(
                    "limit",
                    ParamType::Int,
                    "keep the first N rows (after filtering and `sample`)",
                )
                .min(1.0),
                ParamSpec::optional(
                    "sample",
                    ParamType::Int,
                    "keep N rows drawn with `seed` (after filtering), in file order",
                )
                .min(1.0),
                ParamSpec::optional(
                    "held_out",
                    list_map(),
                    "rows whose column value is in the list go to `held_out`",
                ),
                ParamSpec::optional(
                    "held_out_fraction",
                    ParamType::Float,
                    "this fraction of rows, drawn with `seed`, goes to `held_out` (not with `held_out`)",
                )
                .above(0.0)
                .below(1.0),
                ParamSpec::with_default(
                    "seed",
                    ParamType::Int,
                    Value::Int(0),
                    "seed for `sample` and `held_out_fraction`",
                )
                .min(0.0),
                ParamSpec::optional(
                    "multiline",
                    ParamType::Bool,
                    "CSV fields that span lines: true allows them, false refuses them; unset, a file with exactly one such record is refused as an unbalanced quote",
                ),
                ParamSpec::with_default(
                    "on_error",
                    ParamType::Enum(&["error", "skip"]),
                    Value::Str("error".into()),
                    "malformed rows: stop with file and line, or skip and count",
                ),
                ParamSpec::with_default(
                    "row_ids",
                    ParamType::Bool,
                    Value::Bool(true),
                    "add `_row`, the row's 0-based position in the source",
                ),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Dataset {
    fn default() -> Self {
        Self::new()
    }
}

fn str_lists(v: Option<&Value>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if let Some(Value::Table(t)) = v {
        for (k, v) in t {
            if let Value::List(items) = v {
                out.insert(
                    k.clone(),
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect(),
                );
            }
        }
    }
    out
}

fn matches(row: &Row, conds: &BTreeMap<String, Vec<String>>) -> Result<bool, NodeError> {
    for (col, values) in conds {
        let v = row.get(col).ok_or_else(|| {
            let cols: Vec<&str> = row.keys().map(String::as_str).collect();
            NodeError::msg(format!("Column `{col}` does not exist"))
                .hint(format!("columns are: {}", cols.join(", ")))
        })?;
        if !values.contains(&table::as_text(v)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Hosts a `url` may reach over plain `http://`: this machine only (tests serve files on a
/// loopback port), never the network, where an attacker could swap the bytes before the
/// checksum is compared.
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "localhost", "[::1]"];

/// Whether `url` is `https://HOST...`, or `http://` to a loopback host.
fn url_error(url: &str) -> Option<String> {
    // A URL parser drops tabs and newlines and reads `\` as `/`: refuse them rather than
    // read the host differently from the download.
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Some(format!(
            "`{}` holds whitespace, a control character or a backslash",
            url.escape_debug()
        ));
    }
    let lower = url.to_ascii_lowercase();
    let (secure, rest) = if let Some(rest) = lower.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (false, rest)
    } else {
        return Some(format!("`{url}` is not an https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.find(']') {
        Some(end) if host_port.starts_with('[') => &host_port[..=end],
        _ => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Some(format!("`{url}` names no host"));
    }
    if !secure && !LOOPBACK_HOSTS.contains(&host) {
        return Some(format!(
            "`{url}` is plain http: the download could be altered on the way"
        ));
    }
    None
}

/// Whether `checksum` is `sha256:HEX` or `blake3:HEX` with 64 hex digits.
fn checksum_error(checksum: &str) -> Option<String> {
    let Some((algo, hex)) = checksum.split_once(':') else {
        return Some(format!("`{checksum}` names no algorithm"));
    };
    if algo != "sha256" && algo != "blake3" {
        return Some(format!(
            "`{algo}` is not an accepted checksum algorithm (sha256 or blake3)"
        ));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(format!(
            "`{checksum}` does not end in 64 hex digits (found {} characters)",
            hex.len()
        ));
    }
    None
}

const URL_HINT: &str = "write `url = \"https://...\"`; plain http is accepted only for a loopback host (127.0.0.1, localhost, [::1])";
const CHECKSUM_HINT: &str = "write `checksum = \"sha256:HEX\"` or `\"blake3:HEX\"` (64 hex digits); the error after a first download shows the value";

/// Downloads `url` into `dest`, checking `checksum` (`sha256:HEX` or `blake3:HEX`).
fn download(url: &str, checksum: &str, dest: &Path) -> Result<(), NodeError> {
    let (algo, want) = checksum.split_once(':').ok_or_else(|| {
        NodeError::msg(format!("Checksum `{checksum}` has no algorithm"))
            .hint("write `sha256:HEX` or `blake3:HEX`")
    })?;
    let resp = reqwest::blocking::Client::builder()
        .user_agent(concat!("dag/", env!("CARGO_PKG_VERSION")))
        .build()
        .and_then(|c| c.get(url).send())
        .and_then(|r| r.error_for_status())
        .map_err(|e| {
            NodeError::caused(format!("Failed to download `{url}`"), &e)
                .hint("check the URL and your network; a local copy can be given with `path`")
        })?;
    let mut bytes = vec![];
    resp.take(u64::MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| NodeError::caused(format!("Failed to download `{url}`"), &e))?;
    let got = match algo {
        "sha256" => sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        "blake3" => blake3::hash(&bytes).to_hex().to_string(),
        other => {
            return Err(
                NodeError::msg(format!("Unknown checksum algorithm `{other}`"))
                    .hint("use `sha256` or `blake3`"),
            );
        }
    };
    if !got.eq_ignore_ascii_case(want) {
        return Err(NodeError::msg(format!("Downloaded `{url}` does not match its checksum: expected {algo}:{want}, got {algo}:{got}"))
            .hint("the source changed; check it, then update `checksum` to the new value"));
    }
    std::fs::write(dest, &bytes)
        .map_err(|e| NodeError::caused(format!("Failed to write `{}`", dest.display()), &e))
}

impl Node for Dataset {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    /// Where the rows come from, checked before anything runs: one of `path` and `url`; a
    /// `url` over https (or http to a loopback host) pinned by a sha256 or blake3
    /// `checksum`; a `checksum` only with a `url`. One split, not two. A matrix variable is
    /// absent here, so "neither `path` nor `url`" is left to the run.
    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        let str_param = |k: &str| params.get(k).and_then(Value::as_str);
        let (path, url, checksum) = (str_param("path"), str_param("url"), str_param("checksum"));
        if path.is_some() && url.is_some() {
            return Err(ParamError::new(
                "url",
                "`path` and `url` are both set",
                "keep one of them: a local file, or a pinned download",
            ));
        }
        if let Some(url) = url {
            if let Some(e) = url_error(url) {
                return Err(ParamError::new("url", e, URL_HINT));
            }
            match checksum {
                None => {
                    return Err(ParamError::new(
                        "url",
                        format!("`url = \"{url}\"` has no `checksum`"),
                        CHECKSUM_HINT,
                    ));
                }
                Some(c) => {
                    if let Some(e) = checksum_error(c) {
                        return Err(ParamError::new("checksum", e, CHECKSUM_HINT));
                    }
                }
            }
        }
        if path.is_some() && checksum.is_some() {
            return Err(ParamError::new(
                "checksum",
                "`checksum` is set with `path`: only a `url` download is checked against it",
                "remove `checksum`, or read the file from its `url`",
            ));
        }
        let splits_by_value =
            matches!(params.get("held_out"), Some(Value::Table(t)) if !t.is_empty());
        if splits_by_value && params.contains_key("held_out_fraction") {
            return Err(ParamError::new(
                "held_out_fraction",
                "`held_out` and `held_out_fraction` are both set, and `held_out` would win",
                "split by column values (`held_out`) or by a seeded fraction (`held_out_fraction`), not both",
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (source, name): (PathBuf, String) = match (ctx.str("path"), ctx.str("url")) {
            (Some(p), None) => (PathBuf::from(p), p.to_string()),
            (None, Some(url)) => {
                // Checked at load too; again here for a `url` given by a matrix.
                if let Some(e) = url_error(url) {
                    return Err(NodeError::msg(e).hint(URL_HINT));
                }
                let checksum = ctx.str("checksum").ok_or_else(|| {
                    NodeError::msg(format!("`url = \"{url}\"` has no `checksum`")).hint("pin the content: add `checksum = \"sha256:HEX\"`; the error after a first download shows the value")
                })?;
                if let Some(e) = checksum_error(checksum) {
                    return Err(NodeError::msg(e).hint(CHECKSUM_HINT));
                }
                let file = url
                    .rsplit('/')
                    .next()
                    .unwrap_or("download")
                    .split('?')
                    .next()
                    .unwrap_or("download")
                    .to_string();
                let dest = ctx.scratch().join(&file);
                download(url, checksum, &dest)?;
                (dest, file)
            }
            (Some(_), Some(_)) => {
                return Err(
                    NodeError::msg("Both `path` and `url` are set").hint("keep one of them")
                );
            }
            (None, None) => {
                return Err(NodeError::msg("Neither `path` nor `url` is set")
                    .hint("add `path = \"data/file.jsonl\"`"));
            }
        };
        let format = match ctx.str("format").unwrap_or("auto") {
            "auto" => Format::from_extension(&name).ok_or_else(|| {
                NodeError::msg(format!(
                    "Cannot tell the format of `{name}` from its extension"
                ))
                .hint("set `format = \"jsonl\"` (or json, csv, parquet)")
            })?,
            f => Format::from_name(f).expect("enum param"),
        };
        let skip = ctx.str("on_error") == Some("skip");
        let read = table::read_rows(&source, format, skip).map_err(|e| {
            let hint = if skip {
                "fix the file"
            } else {
                "fix the row, or set `on_error = \"skip\"` to skip and count malformed rows"
            };
            NodeError::caused("Failed to read the dataset", &e).hint(hint)
        })?;
        // An unbalanced quote makes the CSV reader take every row after it, up to the next
        // quote, as one field of one record: no error, just rows gone. One multi-line
        // record in a file that has no other is that, far more often than real text.
        let suspicious = match ctx.bool("multiline") {
            Some(true) => None,
            Some(false) => read.multiline.first(),
            None if read.multiline.len() == 1 => read.multiline.first(),
            None => None,
        };
        if let Some((line, spanned)) = suspicious {
            return Err(NodeError::msg(format!(
                "`{}` line {line}: a quoted field runs over {spanned} lines, which looks like an unbalanced quote that swallowed the rows after it",
                source.display()
            ))
            .hint("close the quote on that line; if the field really spans lines, set `multiline = true`"));
        }
        for (line, msg) in read.skipped.iter().take(5) {
            ctx.info(format!("skipped malformed row at line {line}: {msg}"));
        }
        let source_rows = read.rows.len();
        let mut rows: Vec<Row> = read.rows;
        if ctx.bool("row_ids").unwrap_or(true) {
            for (i, r) in rows.iter_mut().enumerate() {
                r.insert("_row".into(), json!(i));
            }
        }
        if let Some(Value::Table(ren)) = ctx.value("rename") {
            for (old, new) in ren {
                let new = new.as_str().unwrap_or_default();
                for r in rows.iter_mut() {
                    let Some(v) = r.shift_remove(old) else {
                        return Err(NodeError::msg(format!(
                            "Cannot rename column `{old}`: it does not exist"
                        ))
                        .hint(format!(
                            "columns are: {}",
                            r.keys().cloned().collect::<Vec<_>>().join(", ")
                        )));
                    };
                    r.insert(new.to_string(), v);
                }
            }
        }
        let keep = str_lists(ctx.value("filter"));
        let drop = str_lists(ctx.value("exclude"));
        let mut kept = Vec::with_capacity(rows.len());
        for r in rows {
            if matches(&r, &keep)? && (drop.is_empty() || !matches(&r, &drop)?) {
                kept.push(r);
            }
        }
        let mut rows = kept;
        let seed = ctx.int("seed").unwrap_or(0) as u64;
        if let Some(n) = ctx.int("sample") {
            let n = (n.max(0) as usize).min(rows.len());
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut idx = rand::seq::index::sample(&mut rng, rows.len(), n).into_vec();
            idx.sort_unstable();
            rows = idx.into_iter().map(|i| rows[i].clone()).collect();
        }
        if let Some(n) = ctx.int("limit") {
            rows.truncate(n.max(0) as usize);
        }
        let held_cond = str_lists(ctx.value("held_out"));
        let (train, held): (Vec<Row>, Vec<Row>) = if !held_cond.is_empty() {
            let mut t = vec![];
            let mut h = vec![];
            for r in rows {
                if matches(&r, &held_cond)? {
                    h.push(r)
                } else {
                    t.push(r)
                }
            }
            (t, h)
        } else if let Some(frac) = ctx.float("held_out_fraction") {
            // In (0, 1): the range is checked when the graph loads.
            let n = (frac * rows.len() as f64).round() as usize;
            // A different stream from `sample`'s so that both can use one seed.
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ SPLIT_STREAM);
            let held: std::collections::HashSet<usize> =
                rand::seq::index::sample(&mut rng, rows.len(), n)
                    .into_iter()
                    .collect();
            let mut t = vec![];
            let mut h = vec![];
            for (i, r) in rows.into_iter().enumerate() {
                if held.contains(&i) {
                    h.push(r)
                } else {
                    t.push(r)
                }
            }
            (t, h)
        } else {
            (rows, vec![])
        };
        if let Some(Value::List(cols)) = ctx.value("select") {
            let cols: Vec<&str> = cols.iter().filter_map(Value::as_str).collect();
            let project = |rows: Vec<Row>| -> Result<Vec<Row>, NodeError> {
                rows.into_iter()
                    .map(|r| {
                        cols.iter()
                            .map(|c| {
                                r.get(*c)
                                    .map(|v| (c.to_string(), v.clone()))
                                    .ok_or_else(|| {
                                        NodeError::msg(format!(
                                            "Cannot select column `{c}`: it does not exist"
                                        ))
                                        .hint(format!(
                                            "columns are: {}",
                                            r.keys().cloned().collect::<Vec<_>>().join(", ")
                                        ))
                                    })
                            })
                            .collect()
                    })
                    .collect()
            };
            let (t, h) = (project(train)?, project(held)?);
            return self.write(ctx, t, h, source_rows, read.skipped.len());
        }
        self.write(ctx, train, held, source_rows, read.skipped.len())
    }
}

/// Mixed into the seed of the held-out draw so it is independent of `sample`'s draw.
const SPLIT_STREAM: u64 = 0x5eed_0005_0011_7000;

impl Dataset {
    fn write(
        &self,
        ctx: &mut RunContext<'_>,
        train: Vec<Row>,
        held: Vec<Row>,
        source_rows: usize,
        skipped: usize,
    ) -> Result<(), NodeError> {
        let columns = |rows: &[Row]| {
            rows.first()
                .map(|r| r.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        for (port, rows) in [("dataset", &train), ("held_out", &held)] {
            let path = ctx.output_path(port);
            table::write_jsonl(&path, rows).map_err(|e| {
                NodeError::caused(format!("Failed to write `{}`", path.display()), &e)
            })?;
            ctx.set_meta(port, json!({ "rows": rows.len(), "columns": columns(rows), "source_rows": source_rows, "skipped_rows": skipped }));
        }
        ctx.info(format!(
            "{} rows ({} held out) from {source_rows} source rows, {skipped} malformed skipped",
            train.len(),
            held.len()
        ));
        Ok(())
    }
}
