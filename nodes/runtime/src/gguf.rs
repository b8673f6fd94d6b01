//! A reader for GGUF files (llama.cpp's single-file checkpoints), version 2 and 3.
//!
//! The file is memory-mapped; metadata is parsed eagerly, tensors are dequantised to f32 on
//! request. Layout reference: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.
//! Block layouts of the quantised types follow `ggml-common.h` (`block_q4_0`, `block_q4_1`,
//! `block_q8_0`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any integer type (u8 .. i64), widened.
    Int(i64),
    /// `u64` values, which may not fit an `i64`.
    UInt(u64),
    /// `f32` or `f64`, widened.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values of one type.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(v) => u64::try_from(v).ok(),
            Value::UInt(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            Value::UInt(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Tensor element types this reader dequantises (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale + 32 signed 4-bit values offset by 8.
    Q4_0,
    /// Blocks of 32: f16 scale, f16 minimum + 32 unsigned 4-bit values.
    Q4_1,
    /// Blocks of 32: f16 scale + 32 signed 8-bit values.
    Q8_0,
}

const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q8_0";
const QK: usize = 32;

impl GgmlType {
    fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// Bytes needed to store `n` elements (a multiple of the block size for quantised types).
    fn byte_len(self, n: usize) -> usize {
        match self {
            GgmlType::F32 => 4 * n,
            GgmlType::F16 | GgmlType::Bf16 => 2 * n,
            GgmlType::Q4_0 => n / QK * 18,
            GgmlType::Q4_1 => n / QK * 20,
            GgmlType::Q8_0 => n / QK * 34,
        }
    }

    fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => QK,
        }
    }
}

/// Dequantises `bytes` holding `n` elements of type `ty` into a flat f32 CPU tensor.
///
/// Works on whole blocks with libtorch ops (multi-threaded, and fast even in debug builds),
/// computing exactly what gguf-py's `quants.dequantize` computes: `d * q` or `d * q + m` in f32
/// with `d`, `m` widened from f16. `bytes` must be exactly `ty`'s storage for `n` elements;
/// [`GgufFile::open`] checks that.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> tch::Tensor {
    use tch::{Kind, Tensor};
    let raw = Tensor::from_slice(bytes);
    // One f16 field per block at byte `offset`, as an f32 column `[blocks, 1]`.
    let f16_field = |blocks: &Tensor, offset: i64| {
        blocks
            .narrow(1, offset, 2)
            .contiguous()
            .view_dtype(Kind::Half)
            .to_kind(Kind::Float)
    };
    // Low nibbles hold elements 0..16 of a block, high nibbles 16..32.
    let nibbles = |qs: &Tensor| {
        Tensor::cat(&[qs.bitwise_and(15), qs.floor_divide_scalar(16)], 1).to_kind(Kind::Float)
    };
    let out = match ty {
        GgmlType::F32 => raw.view_dtype(Kind::Float),
        GgmlType::F16 => raw.view_dtype(Kind::Half).to_kind(Kind::Float),
        GgmlType::Bf16 => raw.view_dtype(Kind::BFloat16).to_kind(Kind::Float),
        GgmlType::Q8_0 => {
            let blocks = raw.view([-1, 34]);
            let q = blocks
                .narrow(1, 2, 32)
                .contiguous()
                .view_dtype(Kind::Int8)
                .to_kind(Kind::Float);
            q * f16_field(&blocks, 0)
        }
        GgmlType::Q4_0 => {
            let blocks = raw.view([-1, 18]);
            f16_field(&blocks, 0) * (nibbles(&blocks.narrow(1, 2, 16)) - 8.0)
        }
        GgmlType::Q4_1 => {
            let blocks = raw.view([-1, 20]);
            f16_field(&blocks, 0) * nibbles(&blocks.narrow(1, 4, 16)) + f16_field(&blocks, 2)
        }
    };
    let out = out.reshape([-1]);
    debug_assert_eq!(out.size()[0] as usize, n);
    out
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Shape in PyTorch order (outermost first), i.e. ggml's `ne` reversed.
    pub shape: Vec<i64>,
    /// Storage type.
    pub ty: GgmlType,
    /// Byte offset from the start of the file.
    offset: usize,
}

/// An opened GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
    /// All metadata key/value pairs.
    pub metadata: BTreeMap<String, Value>,
    tensors: BTreeMap<String, TensorInfo>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err(format!("truncated at byte {}", self.pos)))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| self.err(format!("implausible length {n} at byte {}", self.pos)))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("a string is not UTF-8"))
    }

    fn value(&mut self, ty: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::Int(i64::from(self.take(1)?[0])),
            1 => Value::Int(i64::from(self.take(1)?[0] as i8)),
            2 => Value::Int(i64::from(u16::from_le_bytes(
                self.take(2)?.try_into().expect("2"),
            ))),
            3 => Value::Int(i64::from(i16::from_le_bytes(
                self.take(2)?.try_into().expect("2"),
            ))),
            4 => Value::Int(i64::from(self.u32()?)),
            5 => Value::Int(i64::from(self.u32()? as i32)),
            6 => Value::Float(f64::from(f32::from_bits(self.u32()?))),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                let item_ty = self.u32()?;
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_ty)?);
                }
                Value::Array(items)
            }
            10 => Value::UInt(self.u64()?),
            11 => Value::Int(self.u64()? as i64),
            12 => Value::Float(f64::from_bits(self.u64()?)),
            other => return Err(self.err(format!("unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Opens and parses the header, metadata and tensor table of `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        // SAFETY: the map is read-only; a checkpoint being rewritten while loaded is outside
        // this crate's contract (as for every memory-mapped weight loader).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(Error::io(path))?;
        let mut c = Cursor {
            bytes: &mmap,
            pos: 0,
            path,
        };
        if c.take(4)? != b"GGUF" {
            return Err(c.err("missing `GGUF` magic; not a GGUF file"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!("unsupported version {version} (supported: 2, 3)")));
        }
        let n_tensors = c.len()?;
        let n_kv = c.len()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty)?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            let mut ne = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                ne.push(c.u64()?);
            }
            let ty = c.u32()?;
            let offset = c.u64()?;
            raw.push((name, ne, ty, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, ne, ty_id, offset) in raw {
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
                c.err(format!(
                    "tensor `{name}` has ggml type {ty_id}, which this reader does not dequantise (supported: {SUPPORTED_TYPES})"
                ))
            })?;
            let shape: Vec<i64> = ne.iter().rev().map(|&d| d as i64).collect();
            let n: usize = ne.iter().map(|&d| d as usize).product();
            if !n.is_multiple_of(ty.block_size()) {
                return Err(c.err(format!(
                    "tensor `{name}` has {n} elements, not a multiple of its block size"
                )));
            }
            let offset = data_start + offset as usize;
            if offset + ty.byte_len(n) > mmap.len() {
                return Err(c.err(format!("tensor `{name}` extends past the end of the file")));
            }
            tensors.insert(name, TensorInfo { shape, ty, offset });
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            metadata,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor table, by GGUF tensor name.
    pub fn tensor_infos(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The raw stored bytes of a tensor (quantised blocks as in the file).
    pub fn raw_bytes(&self, name: &str) -> Option<&[u8]> {
        let info = self.tensors.get(name)?;
        let n: i64 = info.shape.iter().product();
        Some(&self.mmap[info.offset..info.offset + info.ty.byte_len(n as usize)])
    }

    /// A tensor dequantised to f32 on the CPU, in PyTorch shape order.
    pub fn tensor(&self, name: &str) -> Option<tch::Tensor> {
        let info = self.tensors.get(name)?;
        let n: i64 = info.shape.iter().product();
        Some(dequantize(info.ty, self.raw_bytes(name)?, n as usize).reshape(&info.shape))
    }

    /// A metadata value, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| Error::Gguf {
            path: self.path.clone(),
            reason: format!("metadata key `{key}` is missing"),
        })
    }
}
