//! A hint belongs to `Hint::hint`, never to an error's message: a hint written into a
//! `#[error("...")]` string is printed in the middle of the chain, is lost when the error
//! crosses to `dag` as text, and cannot be asked for. This scans every crate's sources.

use std::path::{Path, PathBuf};

/// The text of each `#[error(...)]` attribute in `source`, with the line it starts on.
fn error_attributes(source: &str) -> Vec<(usize, String)> {
    let mut found = vec![];
    let mut rest = source;
    let mut offset = 0;
    while let Some(at) = rest.find("#[error(") {
        let start = offset + at;
        let body = &source[start + "#[error(".len()..];
        let len = attribute_len(body);
        let line = source[..start].matches('\n').count() + 1;
        found.push((line, body[..len].to_string()));
        offset = start + "#[error(".len() + len;
        rest = &source[offset..];
    }
    found
}

/// Length of an attribute's arguments up to its closing parenthesis, skipping parentheses
/// inside string literals (`"(..."`, `r#"..."#`).
fn attribute_len(body: &str) -> usize {
    let bytes = body.as_bytes();
    let mut depth = 1;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#')) => {
                let hashes = body[i + 1..].bytes().take_while(|&b| b == b'#').count();
                let close = format!("\"{}", "#".repeat(hashes));
                let open = i + 1 + hashes + 1;
                i = body[open..]
                    .find(&close)
                    .map_or(bytes.len(), |e| open + e + close.len());
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Every `.rs` file under a `src` folder of the workspace.
fn sources(dir: &Path, in_src: bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                sources(&path, in_src || name == "src", out);
            }
        } else if in_src && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_error_message_carries_a_hint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace");
    let mut files = vec![];
    sources(root, false, &mut files);
    let mut attributes = 0;
    let mut offenders = vec![];
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (line, attr) in error_attributes(&text) {
            attributes += 1;
            if attr.to_lowercase().contains("hint:") {
                offenders.push(format!(
                    "{}:{line}",
                    file.strip_prefix(root).unwrap_or(file).display()
                ));
            }
        }
    }
    // A scan that finds nothing (a moved folder, a broken walk) must not pass as clean.
    assert!(
        attributes > 50,
        "found only {attributes} #[error(...)] attributes"
    );
    assert!(
        offenders.is_empty(),
        "these error messages carry a hint; return it from `Hint::hint` instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scan_sees_a_hint_in_any_literal_form() {
    let source = r##"
        #[error("Failed to (open) `{path}`")]
        A,
        #[error(
            "Failed to pair; \
             hint: pass one value per row"
        )]
        B,
        #[error(r#"Failed ("quoted")
hint: raw"#, x)]
        C,
        #[error("Failed: \"{0}\")\nhint: escaped")]
        D,
    "##;
    let attrs = error_attributes(source);
    let hinted: Vec<bool> = attrs.iter().map(|(_, a)| a.contains("hint:")).collect();
    assert_eq!(hinted, [false, true, true, true], "{attrs:#?}");
    assert_eq!(attrs[0].1, "\"Failed to (open) `{path}`\"");
    assert_eq!(attrs[1].0, 4);
}
