//! Tokenizers from a Hugging Face folder (`tokenizer.json` + `tokenizer_config.json`) or
//! rebuilt from GGUF metadata.
//!
//! The GGUF rebuild mirrors what transformers does when given `gguf_file=` (its
//! `integrations/gguf/gguf_tokenizer_mapping.py`) for byte-level BPE vocabularies
//! (`tokenizer.ggml.model = "gpt2"`, used by Llama 3, SmolLM2 and Qwen): the vocabulary and
//! merges as stored, the byte-level pre-tokenizer (with the split regex llama.cpp names in
//! `tokenizer.ggml.pre` where transformers knows it), control tokens as special added tokens,
//! and BOS prepended only when `tokenizer.ggml.add_bos_token` says so.

use std::path::Path;

use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};

/// The special tokens a chat template and generation need, as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token.
    pub bos: Option<String>,
    /// End-of-sequence token.
    pub eos: Option<String>,
    /// Padding token.
    pub pad: Option<String>,
    /// Unknown token.
    pub unk: Option<String>,
}

/// A tokenizer plus the chat template and special tokens that travel with it.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Special token strings.
    pub special: SpecialTokens,
    /// The model's Jinja chat template, if any.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("special", &self.special)
            .finish_non_exhaustive()
    }
}

/// A token given in `tokenizer_config.json` either as a string or as an `AddedToken` object.
fn token_string(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Split regexes transformers applies for `tokenizer.ggml.pre` values of supported models.
fn pre_tokenizer_split(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => Some(LLAMA3),
        "qwen2" | "deepseek-r1-qwen" => Some(QWEN2),
        _ => None,
    }
}

/// GPT-2's byte → printable-char table (`bytes_to_unicode`).
fn byte_alphabet() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!'..=b'~')
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .map(u32::from)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).expect("valid code point");
    }
    table
}

impl Tokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` (when present)
    /// from a Hugging Face model folder.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::Config {
                path,
                reason: "the folder has no `tokenizer.json` (slow sentencepiece-only tokenizers are not supported)".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|source| Error::Tokenizer {
            action: format!("load `{}`", path.display()),
            source,
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Json = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path).map_err(Error::io(&config_path))?;
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: config_path.clone(),
                source,
            })?
        } else {
            Json::Null
        };
        let special = SpecialTokens {
            bos: token_string(config.get("bos_token")),
            eos: token_string(config.get("eos_token")),
            pad: token_string(config.get("pad_token")),
            unk: token_string(config.get("unk_token")),
        };
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.exists() {
            Some(std::fs::read_to_string(&jinja).map_err(Error::io(&jinja))?)
        } else {
            match config.get("chat_template") {
                Some(Json::String(s)) => Some(s.clone()),
                // A list of named templates: the one called "default" is what transformers uses.
                Some(Json::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                    .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
                _ => None,
            }
        };
        Ok(Tokenizer {
            inner,
            special,
            chat_template,
        })
    }

    /// Rebuilds the tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let bad = |reason: String| Error::Gguf {
            path: file.path().to_path_buf(),
            reason,
        };
        let model = file.require("tokenizer.ggml.model")?.as_str().unwrap_or("");
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer model `{model}` is not supported (supported: gpt2 byte-level BPE)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            file.require(key)?
                .as_array()
                .ok_or_else(|| bad(format!("`{key}` is not an array")))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("`{key}` holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = file
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
            .unwrap_or_default();
        let alphabet = byte_alphabet();
        let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        let mut vocab = serde_json::Map::new();
        for (id, token) in tokens.iter().enumerate() {
            let spelled = if in_alphabet(token) {
                token.clone()
            } else {
                token.bytes().map(|b| alphabet[b as usize]).collect()
            };
            vocab.insert(spelled, json!(id));
        }
        let merges: Vec<Json> = merges
            .iter()
            .map(|m| {
                let (a, b) = m.split_once(' ').unwrap_or((m, ""));
                json!([a, b])
            })
            .collect();
        let mut added = Vec::new();
        for (id, (token, ty)) in tokens.iter().zip(&types).enumerate() {
            // 3 = CONTROL (special), 4 = USER_DEFINED (added, not special). A control token
            // outside the byte alphabet is a llama.cpp mislabel that transformers skips.
            let special = match ty {
                3 if in_alphabet(token) => true,
                4 => false,
                _ => continue,
            };
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            }));
        }
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let pre = file
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("");
        let pre_tokenizer = match pre_tokenizer_split(pre) {
            Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
            None => byte_level(true),
        };
        let token_at = |key: &str| {
            file.metadata
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|id| tokens.get(id as usize).cloned())
        };
        let special = SpecialTokens {
            bos: token_at("tokenizer.ggml.bos_token_id"),
            eos: token_at("tokenizer.ggml.eos_token_id"),
            pad: token_at("tokenizer.ggml.padding_token_id"),
            unk: token_at("tokenizer.ggml.unknown_token_id"),
        };
        let add_bos = file
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let post_processor = match (&special.bos, add_bos) {
            (Some(bos), true) => {
                let id = vocab[bos].clone();
                json!({"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {bos.as_str(): {"id": bos, "ids": [id], "tokens": [bos]}}})
            }
            _ => Json::Null,
        };
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab, "merges": merges,
            },
        });
        let inner: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(Error::tokenizer("build from GGUF metadata"))?;
        let chat_template = file
            .metadata
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Tokenizer {
            inner,
            special,
            chat_template,
        })
    }

    /// Token ids of `text`; `add_special_tokens` applies the post-processor (e.g. BOS), as
    /// transformers' `encode(text, add_special_tokens=...)`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(Error::tokenizer("encode"))?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, optionally leaving out special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(Error::tokenizer("decode"))
    }

    /// The id of a token string (including added and special tokens).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Canonical JSON of the tokenizer, for identity hashing.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(Error::tokenizer("serialize"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_alphabet_matches_gpt2() {
        let t = super::byte_alphabet();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
    }
}
