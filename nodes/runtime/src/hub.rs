//! `hf://org/name[@revision]` references, resolved through the standard Hugging Face cache.
//!
//! Layout (shared with `huggingface_hub`, so existing downloads are reused):
//! `$HF_HUB_CACHE` (else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`) /
//! `models--org--name/` with `blobs/<etag>` (file contents), `snapshots/<commit>/<file>`
//! (relative symlinks into `blobs/`), `refs/<revision>` (the commit a branch or tag resolved to)
//! and `.no_exist/<commit>/<file>` (optional files the hub reported missing).
//!
//! Downloads go to `blobs/<etag>.incomplete` and resume from its length with a `Range`
//! request; LFS files (whose etag is their sha256) are verified before being renamed into place.
//! The endpoint is `$HF_ENDPOINT`; `$HF_TOKEN` is sent as a bearer token; with
//! `$HF_HUB_OFFLINE=1` nothing is requested and a missing file is an [`Error::Offline`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A parsed `hf://org/name[@revision]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` when not given.
    pub revision: String,
}

impl FromStr for HubRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<HubRef> {
        let bad = |reason: &str| Error::Reference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        let rest = s
            .strip_prefix("hf://")
            .ok_or_else(|| bad("expected the `hf://` prefix"))?;
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => (repo, rev),
            Some(_) => return Err(bad("empty revision after `@`")),
            None => (rest, "main"),
        };
        let mut parts = repo.split('/');
        let valid = |p: Option<&str>| {
            p.is_some_and(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
        };
        if !(valid(parts.next()) && valid(parts.next()) && parts.next().is_none()) {
            return Err(bad("expected `hf://org/name[@revision]`"));
        }
        Ok(HubRef {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

/// Environment-derived hub settings.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Base URL (no trailing slash).
    pub endpoint: String,
    /// The cache root (`.../hub`).
    pub cache: PathBuf,
    /// Bearer token.
    pub token: Option<String>,
    /// Never touch the network.
    pub offline: bool,
}

impl HubSettings {
    /// Reads `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HOME`, `HF_TOKEN` and `HF_HUB_OFFLINE`.
    pub fn from_env() -> HubSettings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .unwrap_or_else(|| {
                PathBuf::from(var("HOME").unwrap_or_else(|| ".".into()))
                    .join(".cache/huggingface/hub")
            });
        HubSettings {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".to_string())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token: var("HF_TOKEN"),
            offline: var("HF_HUB_OFFLINE")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes")),
        }
    }
}

/// Files of a model folder, fetched in this order; `true` = required.
const FILES: &[(&str, bool)] = &[
    ("config.json", true),
    ("generation_config.json", false),
    ("tokenizer.json", true),
    ("tokenizer_config.json", false),
    ("chat_template.jinja", false),
    ("special_tokens_map.json", false),
    ("model.safetensors.index.json", false),
];

/// Downloads (or finds) a model folder with the process environment's settings; returns the
/// snapshot folder.
pub fn download(r: &HubRef) -> Result<PathBuf> {
    Hub::new(HubSettings::from_env())?.snapshot(r)
}

/// A hub client bound to settings.
pub struct Hub {
    settings: HubSettings,
    client: Option<reqwest::blocking::Client>,
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

struct Remote {
    commit: String,
    etag: String,
    size: Option<u64>,
}

impl Hub {
    /// A client for `settings` (no network client is built when offline).
    pub fn new(settings: HubSettings) -> Result<Hub> {
        let client = if settings.offline {
            None
        } else {
            Some(
                reqwest::blocking::Client::builder()
                    // Hub resolves answer HEAD with a redirect to the CDN for LFS files; the
                    // metadata we need (etag, commit) is on the first response.
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(None)
                    .build()
                    .map_err(|e| Error::Download {
                        url: settings.endpoint.clone(),
                        reason: "could not build an HTTP client".into(),
                        source: Some(e),
                    })?,
            )
        };
        Ok(Hub { settings, client })
    }

    fn repo_dir(&self, r: &HubRef) -> PathBuf {
        self.settings
            .cache
            .join(format!("models--{}", r.repo.replace('/', "--")))
    }

    /// Makes every file of the model available under `snapshots/<commit>/` and returns that
    /// folder.
    pub fn snapshot(&self, r: &HubRef) -> Result<PathBuf> {
        let repo_dir = self.repo_dir(r);
        let mut commit = self.local_commit(&repo_dir, &r.revision);
        for &(file, required) in FILES {
            commit = Some(
                self.file(r, &repo_dir, commit.as_deref(), file, required)?
                    .0,
            );
        }
        let commit = commit.expect("config.json resolved a commit");
        let snap = repo_dir.join("snapshots").join(&commit);
        let index = snap.join("model.safetensors.index.json");
        if index.exists() {
            let shards = crate::model::shard_names(&index)?;
            for shard in shards {
                self.file(r, &repo_dir, Some(&commit), &shard, true)?;
            }
        } else {
            let (_, found) = self.file(r, &repo_dir, Some(&commit), "model.safetensors", false)?;
            if !found {
                let (_, pickled) = self.file(
                    r,
                    &repo_dir,
                    Some(&commit),
                    "pytorch_model.bin.index.json",
                    false,
                )?;
                let (_, pickled_single) = if pickled {
                    (String::new(), true)
                } else {
                    self.file(r, &repo_dir, Some(&commit), "pytorch_model.bin", false)?
                };
                return Err(if pickled_single {
                    Error::PickleRefused { path: snap }
                } else {
                    Error::Config {
                        path: snap,
                        reason: "the repository has no `model.safetensors` or `model.safetensors.index.json`".into(),
                    }
                });
            }
        }
        Ok(snap)
    }

    /// The commit `revision` resolved to last time, from `refs/` (or the revision itself when
    /// it is a commit hash).
    fn local_commit(&self, repo_dir: &Path, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        std::fs::read_to_string(repo_dir.join("refs").join(revision))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Ensures `file` is in the snapshot. Returns the commit and whether the file exists.
    fn file(
        &self,
        r: &HubRef,
        repo_dir: &Path,
        commit: Option<&str>,
        file: &str,
        required: bool,
    ) -> Result<(String, bool)> {
        if let Some(commit) = commit {
            let snap_file = repo_dir.join("snapshots").join(commit).join(file);
            if snap_file.exists() {
                return Ok((commit.to_string(), true));
            }
            let no_exist = repo_dir.join(".no_exist").join(commit).join(file);
            if no_exist.exists() && !required {
                return Ok((commit.to_string(), false));
            }
        }
        let Some(client) = &self.client else {
            if required || commit.is_none() {
                return Err(Error::Offline {
                    repo: r.repo.clone(),
                    revision: r.revision.clone(),
                    file: file.to_string(),
                    cache: self.settings.cache.clone(),
                });
            }
            return Ok((commit.unwrap_or_default().to_string(), false));
        };
        // Pin later files to the commit the first one resolved to, so a branch moving mid-way
        // cannot mix files of two commits.
        let rev = commit.unwrap_or(&r.revision);
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.settings.endpoint, r.repo, rev, file
        );
        let Some(remote) = self.head(client, &url)? else {
            if required {
                return Err(Error::Download {
                    url,
                    reason: "the hub has no such file (404)".into(),
                    source: None,
                });
            }
            if let Some(commit) = commit {
                let marker = repo_dir.join(".no_exist").join(commit).join(file);
                create_parent(&marker)?;
                std::fs::write(&marker, b"").map_err(Error::io(&marker))?;
                return Ok((commit.to_string(), false));
            }
            return Err(Error::Download {
                url,
                reason: "the hub has no such file (404), and no commit is known yet".into(),
                source: None,
            });
        };
        if commit.is_none() && !is_commit(&r.revision) {
            let refs = repo_dir.join("refs").join(&r.revision);
            create_parent(&refs)?;
            std::fs::write(&refs, &remote.commit).map_err(Error::io(&refs))?;
        }
        let blob = repo_dir.join("blobs").join(&remote.etag);
        if !blob.exists() {
            self.fetch_blob(client, &url, &blob, &remote)?;
        }
        let link = repo_dir.join("snapshots").join(&remote.commit).join(file);
        create_parent(&link)?;
        let depth = file.matches('/').count() + 2;
        let target = PathBuf::from("../".repeat(depth))
            .join("blobs")
            .join(&remote.etag);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(Error::io(&link))?;
        }
        symlink_or_copy(&target, &blob, &link)?;
        Ok((remote.commit, true))
    }

    fn request(
        &self,
        client: &reqwest::blocking::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let req = client
            .request(method, url)
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        match &self.settings.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn head(&self, client: &reqwest::blocking::Client, url: &str) -> Result<Option<Remote>> {
        let fail = |reason: String, source| Error::Download {
            url: url.to_string(),
            reason,
            source,
        };
        let resp = self
            .request(client, reqwest::Method::HEAD, url)
            .send()
            .map_err(|e| fail("request failed".into(), Some(e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(fail(
                format!("HTTP {status}; the repository may be gated or private: set HF_TOKEN"),
                None,
            ));
        }
        if !(status.is_success() || status.is_redirection()) {
            return Err(fail(format!("HTTP {status}"), None));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| {
                    s.trim_matches('"')
                        .trim_start_matches("W/")
                        .trim_matches('"')
                        .to_string()
                })
        };
        let commit = header("x-repo-commit")
            .ok_or_else(|| fail("the response has no `X-Repo-Commit` header".into(), None))?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .ok_or_else(|| fail("the response has no `ETag` header".into(), None))?;
        let size = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|s| s.parse().ok());
        Ok(Some(Remote { commit, etag, size }))
    }

    fn fetch_blob(
        &self,
        client: &reqwest::blocking::Client,
        url: &str,
        blob: &Path,
        remote: &Remote,
    ) -> Result<()> {
        let fail = |reason: String, source| Error::Download {
            url: url.to_string(),
            reason,
            source,
        };
        create_parent(blob)?;
        let partial = blob.with_extension("incomplete");
        let have = partial.metadata().map(|m| m.len()).unwrap_or(0);
        let mut req = self.request(client, reqwest::Method::GET, url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        // Redirects are off for HEAD; follow one CDN redirect for the body by hand.
        let mut resp = req
            .send()
            .map_err(|e| fail("request failed".into(), Some(e)))?;
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| fail("redirect without `Location`".into(), None))?;
            let target = reqwest::Url::parse(url)
                .and_then(|base| base.join(location))
                .map_err(|_| fail(format!("bad redirect `{location}`"), None))?;
            let mut req = client.get(target);
            if have > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
            }
            resp = req
                .send()
                .map_err(|e| fail("request failed".into(), Some(e)))?;
        }
        let resumed = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status()), None));
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(&partial)
            .map_err(Error::io(&partial))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = resp
                .read(&mut buf)
                .map_err(|e| fail(format!("reading the body failed: {e}"), None))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(Error::io(&partial))?;
        }
        out.sync_all().map_err(Error::io(&partial))?;
        drop(out);
        let len = partial.metadata().map_err(Error::io(&partial))?.len();
        if let Some(size) = remote.size
            && len != size
        {
            return Err(fail(
                format!("got {len} bytes, expected {size}; rerun to resume"),
                None,
            ));
        }
        // LFS etags are the file's sha256; git etags (40 hex) are blob sha1s of small files,
        // which the size check above covers.
        if remote.etag.len() == 64 && remote.etag.chars().all(|c| c.is_ascii_hexdigit()) {
            let digest = sha256_file(&partial)?;
            if digest != remote.etag.to_ascii_lowercase() {
                std::fs::remove_file(&partial).map_err(Error::io(&partial))?;
                return Err(fail(
                    format!(
                        "sha256 {digest} does not match the hub's {}; the partial download was removed, rerun to retry",
                        remote.etag
                    ),
                    None,
                ));
            }
        }
        std::fs::rename(&partial, blob).map_err(Error::io(blob))?;
        Ok(())
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn create_parent(path: &Path) -> Result<()> {
    let parent = path.parent().expect("cache paths have parents");
    std::fs::create_dir_all(parent).map_err(Error::io(parent))
}

#[cfg(unix)]
fn symlink_or_copy(target: &Path, _blob: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(Error::io(link))
}

#[cfg(not(unix))]
fn symlink_or_copy(_target: &Path, blob: &Path, link: &Path) -> Result<()> {
    std::fs::copy(blob, link).map(drop).map_err(Error::io(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r: HubRef = "hf://HuggingFaceTB/SmolLM2-135M-Instruct@v1.0"
            .parse()
            .unwrap();
        assert_eq!(r.repo, "HuggingFaceTB/SmolLM2-135M-Instruct");
        assert_eq!(r.revision, "v1.0");
        assert_eq!("hf://a/b".parse::<HubRef>().unwrap().revision, "main");
        for bad in ["hf://a", "hf://a/b/c", "a/b", "hf://a/b@", "hf://a/b c"] {
            assert!(bad.parse::<HubRef>().is_err(), "{bad}");
        }
    }
}
