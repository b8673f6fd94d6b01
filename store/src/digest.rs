//! Content digests: blake3, streamed and memory-mapped for large files.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Files above this size are hashed with blake3's memory-mapped, multithreaded path;
/// below it the thread pool costs more than it saves.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// A blake3 digest naming an artifact, a blob or a cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The lowercase hex form (64 characters), as shown to users.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, enough to tell artifacts apart in listings.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        blake3::Hash::from_hex(s)
            .map(Digest::from)
            .map_err(|_| Error::BadDigest(s.to_string()))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let v: Vec<u8> = serde_bytes_vec(d)?;
            let arr: [u8; 32] = v
                .try_into()
                .map_err(|_| serde::de::Error::custom("digest must be 32 bytes"))?;
            Ok(Digest(arr))
        }
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("32 bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(32);
            while let Some(b) = a.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V)
}

/// The digest of a byte string.
pub fn hash_bytes(bytes: &[u8]) -> Digest {
    blake3::hash(bytes).into()
}

/// The digest of a file's content, streamed: large files go through blake3's
/// memory-mapped multithreaded path, so a 50 GB checkpoint never sits in memory.
pub fn hash_file(path: &Path) -> Result<Digest, Error> {
    let io = |e| Error::io("hash", path, e);
    let len = std::fs::metadata(path).map_err(io)?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= MMAP_THRESHOLD {
        hasher.update_mmap_rayon(path).map_err(io)?;
    } else {
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher.finalize().into())
}

/// Tree manifests are hashed in their own domain so that no file's bytes can ever
/// collide with a directory's identity.
pub(crate) fn hash_tree_manifest(bytes: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("dag-store tree manifest v1");
    h.update(bytes);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_serde_forms() {
        let d = hash_bytes(b"abc");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", d.to_hex()));
        let bin = bincode::serde::encode_to_vec(d, bincode::config::standard()).unwrap();
        let (back, _): (Digest, _) =
            bincode::serde::decode_from_slice(&bin, bincode::config::standard()).unwrap();
        assert_eq!(back, d);
        assert!("nothex".parse::<Digest>().is_err());
    }

    #[test]
    fn mmap_and_streamed_paths_agree() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        let p = dir.path().join("big");
        std::fs::write(&p, &big).unwrap();
        assert_eq!(hash_file(&p).unwrap(), hash_bytes(&big));
        let small = dir.path().join("small");
        std::fs::write(&small, b"tiny").unwrap();
        assert_eq!(hash_file(&small).unwrap(), hash_bytes(b"tiny"));
        assert_ne!(hash_tree_manifest(b"tiny"), hash_bytes(b"tiny"));
    }
}
