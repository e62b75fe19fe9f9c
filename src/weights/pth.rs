//! PyTorch `torch.save` checkpoints (the zip format of PyTorch ≥ 1.6), read without Python.
//!
//! The zip holds `<name>/data.pkl` (a pickle describing the state dict, with tensors pointing at
//! storages by key) and one uncompressed entry `<name>/data/<key>` per storage. Only the pickle
//! opcodes and globals that `torch.save` of a state dict emits are understood; anything else is
//! reported, never executed.

use std::collections::{BTreeMap, HashMap};

use super::{Dtype, FileFormat, RawTensor, TensorFile, WeightsError};

pub(super) fn read(bytes: &[u8]) -> Result<TensorFile, WeightsError> {
    let zip = Zip::parse(bytes)?;
    let pkl_name = zip
        .entries
        .keys()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .cloned()
        .ok_or_else(|| {
            WeightsError::NotWeights(
                "a zip archive without `data.pkl`: not a torch.save checkpoint".into(),
            )
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Some(order) = zip.entries.get(&format!("{prefix}byteorder")) {
        let order = zip.data(order, "byteorder")?;
        if order != b"little" {
            return Err(WeightsError::Corrupt(format!(
                "checkpoint byte order is `{}`; only little-endian is supported",
                String::from_utf8_lossy(order)
            )));
        }
    }
    let pickle = zip.data(&zip.entries[&pkl_name], &pkl_name)?;
    let root = Unpickler::new(pickle).run()?;

    let mut tensors = BTreeMap::new();
    let mut found = Vec::new();
    collect_tensors(&root, String::new(), &mut found);
    if found.is_empty() {
        return Err(WeightsError::UnknownLayout(
            "the checkpoint holds no tensors (is it a state dict?)".into(),
        ));
    }
    for (name, t) in found {
        let entry_name = format!("{prefix}data/{}", t.storage_key);
        let entry = zip.entries.get(&entry_name).ok_or_else(|| {
            WeightsError::Truncated(format!(
                "storage `{entry_name}` of tensor `{name}` is missing from the archive"
            ))
        })?;
        let storage = zip.data(entry, &entry_name)?;
        let raw = gather(&name, t, storage)?;
        tensors.insert(name, raw);
    }
    Ok(TensorFile {
        format: FileFormat::TorchZip,
        tensors,
        metadata: BTreeMap::new(),
    })
}

/// Copy a (possibly strided) view out of its storage into contiguous bytes.
fn gather(name: &str, t: &TensorRef, storage: &[u8]) -> Result<RawTensor, WeightsError> {
    let elem = t
        .dtype
        .size()
        .ok_or_else(|| WeightsError::UnsupportedDtype {
            name: name.to_string(),
            dtype: t.dtype.clone(),
        })?;
    let numel = super::elements(name, &t.size)?;
    let storage_elems = storage.len() / elem;
    if t.stride.len() != t.size.len() {
        return Err(corrupt(format!(
            "tensor `{name}` has {} sizes but {} strides",
            t.size.len(),
            t.stride.len()
        )));
    }
    // The last element it reads; an offset or strides past any storage overflow, read as "past".
    let max_index = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |at, (&s, &st)| {
            at.checked_add(s.saturating_sub(1).checked_mul(st)?)
        })
        .unwrap_or(usize::MAX);
    if numel > 0 && max_index >= storage_elems {
        return Err(WeightsError::Truncated(format!(
            "tensor `{name}` {:?} reads element {max_index} of a storage holding {storage_elems}",
            t.size
        )));
    }
    let contiguous = t
        .size
        .iter()
        .rev()
        .zip(t.stride.iter().rev())
        .try_fold(1usize, |expected, (&s, &st)| {
            (s <= 1 || st == expected).then_some(expected * s)
        })
        .is_some();
    let bytes = if contiguous {
        storage[t.offset * elem..(t.offset + numel) * elem].to_vec()
    } else {
        let mut out = Vec::with_capacity(numel * elem);
        let mut idx = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let at = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            out.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    };
    Ok(RawTensor {
        dtype: t.dtype.clone(),
        shape: t.size.clone(),
        bytes,
    })
}

/// Walk nested dicts (`{"model": {...}}`, `{"teacher": {...}}`) and name tensors by their path.
fn collect_tensors<'a>(v: &'a Value, prefix: String, out: &mut Vec<(String, &'a TensorRef)>) {
    match v {
        Value::Tensor(t) => out.push((prefix, t)),
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                collect_tensors(v, name, out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Zip (stored entries only: torch.save never compresses).

struct ZipEntry {
    method: u16,
    compressed_size: u64,
    local_header: u64,
}

struct Zip<'a> {
    bytes: &'a [u8],
    entries: HashMap<String, ZipEntry>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Zip<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, WeightsError> {
        let truncated = || {
            WeightsError::Truncated(
                "the zip directory at the end of the checkpoint is missing or cut short".into(),
            )
        };
        // End of central directory: 22 bytes plus a comment of up to 64 KiB, at the very end.
        let search_from = bytes.len().saturating_sub(22 + 65_535);
        let eocd = (search_from..bytes.len().saturating_sub(21))
            .rev()
            .find(|&i| le32(bytes, i) == Some(0x0605_4b50))
            .ok_or_else(truncated)?;
        let mut count = le16(bytes, eocd + 10).ok_or_else(truncated)? as u64;
        let mut cd_offset = le32(bytes, eocd + 16).ok_or_else(truncated)? as u64;
        // Zip64: a locator sits just before the classic record.
        if eocd >= 20 && le32(bytes, eocd - 20) == Some(0x0706_4b50) {
            let z64 = le64(bytes, eocd - 12).ok_or_else(truncated)? as usize;
            if le32(bytes, z64) != Some(0x0606_4b50) {
                return Err(truncated());
            }
            count = le64(bytes, z64 + 32).ok_or_else(truncated)?;
            cd_offset = le64(bytes, z64 + 48).ok_or_else(truncated)?;
        }
        let mut entries = HashMap::new();
        let mut at = cd_offset as usize;
        for _ in 0..count {
            if le32(bytes, at) != Some(0x0201_4b50) {
                return Err(truncated());
            }
            let method = le16(bytes, at + 10).ok_or_else(truncated)?;
            let mut compressed_size = le32(bytes, at + 20).ok_or_else(truncated)? as u64;
            let mut uncompressed = le32(bytes, at + 24).ok_or_else(truncated)? as u64;
            let name_len = le16(bytes, at + 28).ok_or_else(truncated)? as usize;
            let extra_len = le16(bytes, at + 30).ok_or_else(truncated)? as usize;
            let comment_len = le16(bytes, at + 32).ok_or_else(truncated)? as usize;
            let mut local_header = le32(bytes, at + 42).ok_or_else(truncated)? as u64;
            let name = bytes
                .get(at + 46..at + 46 + name_len)
                .ok_or_else(truncated)?;
            let name = String::from_utf8_lossy(name).into_owned();
            // Zip64 extended information replaces the fields that are saturated at 0xFFFFFFFF.
            let extra = bytes
                .get(at + 46 + name_len..at + 46 + name_len + extra_len)
                .ok_or_else(truncated)?;
            let mut e = 0;
            while e + 4 <= extra.len() {
                let id = le16(extra, e).unwrap_or(0);
                let len = le16(extra, e + 2).unwrap_or(0) as usize;
                if id == 1 {
                    let mut f = e + 4;
                    for field in [&mut uncompressed, &mut compressed_size, &mut local_header] {
                        if *field == 0xFFFF_FFFF {
                            *field = le64(extra, f).ok_or_else(truncated)?;
                            f += 8;
                        }
                    }
                }
                e += 4 + len;
            }
            entries.insert(
                name,
                ZipEntry {
                    method,
                    compressed_size,
                    local_header,
                },
            );
            at += 46 + name_len + extra_len + comment_len;
        }
        Ok(Zip { bytes, entries })
    }

    fn data(&self, e: &ZipEntry, name: &str) -> Result<&'a [u8], WeightsError> {
        if e.method != 0 {
            return Err(WeightsError::Corrupt(format!(
                "zip entry `{name}` is compressed (method {}); torch.save writes stored entries",
                e.method
            )));
        }
        let at = e.local_header as usize;
        let cut = || WeightsError::Truncated(format!("zip entry `{name}` is cut short"));
        if le32(self.bytes, at) != Some(0x0403_4b50) {
            return Err(cut());
        }
        let name_len = le16(self.bytes, at + 26).ok_or_else(cut)? as usize;
        let extra_len = le16(self.bytes, at + 28).ok_or_else(cut)? as usize;
        let start = at + 30 + name_len + extra_len;
        self.bytes
            .get(start..start + e.compressed_size as usize)
            .ok_or_else(cut)
    }
}

// ---------------------------------------------------------------------------------------------
// Pickle: a small stack machine. Only state-dict shaped data is rebuilt.

#[derive(Debug, Clone)]
struct TensorRef {
    storage_key: String,
    dtype: Dtype,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Value {
    Mark,
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        key: String,
        dtype: Dtype,
    },
    Tensor(TensorRef),
    /// Anything else we carry but never interpret (bools, floats, bytes, metadata objects).
    Opaque,
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u64, Value>,
}

fn corrupt(msg: impl Into<String>) -> WeightsError {
    WeightsError::Corrupt(format!("data.pkl: {}", msg.into()))
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WeightsError> {
        let s = self.data.get(self.pos..self.pos + n).ok_or_else(|| {
            WeightsError::Truncated("data.pkl ends in the middle of an opcode".into())
        })?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WeightsError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String, WeightsError> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| WeightsError::Truncated("data.pkl ends inside a line".into()))?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn pop(&mut self) -> Result<Value, WeightsError> {
        self.stack.pop().ok_or_else(|| corrupt("stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, WeightsError> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| corrupt("missing MARK"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut Value, WeightsError> {
        self.stack
            .last_mut()
            .ok_or_else(|| corrupt("stack underflow"))
    }
    fn push_memo(&mut self, key: u64) -> Result<(), WeightsError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| corrupt(format!("bad memo key {key}")))?;
        self.stack.push(v);
        Ok(())
    }

    fn str_of(&mut self, n: usize) -> Result<Value, WeightsError> {
        Ok(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }

    fn run(mut self) -> Result<Value, WeightsError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Opaque), // NEWTRUE / NEWFALSE
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate().take(8) {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    self.take(8)?; // BINFLOAT
                    self.stack.push(Value::Opaque)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v)
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v)
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v)
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?; // SHORT_BINBYTES
                    self.stack.push(Value::Opaque)
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?; // BINBYTES
                    self.stack.push(Value::Opaque)
                }
                b')' => self.stack.push(Value::Tuple(vec![])),
                b']' => self.stack.push(Value::List(vec![])),
                b'}' => self.stack.push(Value::Dict(vec![])),
                0x8f => self.stack.push(Value::Opaque), // EMPTY_SET
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.stack.push(Value::Dict(pairs))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(corrupt("stack underflow in TUPLEn"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.push_memo(k)?
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.push_memo(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(corrupt("STACK_GLOBAL without strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.stack.push(v)
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = reduce(func, args)?;
                    self.stack.push(v)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only needed for opaque objects.
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Value::Opaque)
                }
                b'b' => {
                    self.pop()?; // BUILD: state of an object we do not need (e.g. OrderedDict._metadata)
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(items) => items.push((k, v)),
                        _ => return Err(corrupt("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Dict(d) => {
                            for c in items.chunks(2) {
                                if let [k, v] = c {
                                    d.push((k.clone(), v.clone()));
                                }
                            }
                        }
                        _ => return Err(corrupt("SETITEMS on a non-dict")),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.push(v)
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.extend(items)
                    }
                }
                0x90 => {
                    self.pop_mark()?; // ADDITEMS into a set we keep opaque
                }
                b'0' => {
                    self.pop()?;
                }
                other => {
                    return Err(corrupt(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

fn storage_dtype(name: &str) -> Dtype {
    match name {
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "DoubleStorage" => Dtype::F64,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::Bool,
        other => Dtype::Other(other.to_string()),
    }
}

/// `('storage', torch.FloatStorage, key, location, numel)` → a storage reference.
fn persistent_load(pid: Value) -> Result<Value, WeightsError> {
    let Value::Tuple(items) = pid else {
        return Err(corrupt("persistent id is not a tuple"));
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global(_, ty), Value::Str(key), ..] if kind == "storage" => {
            Ok(Value::Storage {
                key: key.clone(),
                dtype: storage_dtype(ty),
            })
        }
        _ => Err(corrupt("unrecognised persistent id")),
    }
}

fn as_usizes(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Some(*i as usize),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn reduce(func: Value, args: Value) -> Result<Value, WeightsError> {
    let Value::Global(module, name) = &func else {
        return Ok(Value::Opaque);
    };
    let Value::Tuple(args) = args else {
        return Ok(Value::Opaque);
    };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (
                Some(Value::Storage { key, dtype }),
                Some(Value::Int(offset)),
                Some(size),
                Some(stride),
            ) = (
                args.first(),
                args.get(1),
                args.get(2).and_then(as_usizes),
                args.get(3).and_then(as_usizes),
            )
            else {
                return Err(corrupt("malformed _rebuild_tensor_v2 arguments"));
            };
            if size.len() != stride.len() {
                return Err(corrupt("tensor size and stride differ in length"));
            }
            Ok(Value::Tensor(TensorRef {
                storage_key: key.clone(),
                dtype: dtype.clone(),
                offset: *offset as usize,
                size,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            Ok(args.into_iter().next().unwrap_or(Value::Opaque))
        }
        ("collections", "OrderedDict") => Ok(Value::Dict(vec![])),
        _ => Ok(Value::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_without_directory_is_truncated() {
        let e = TensorFile::from_bytes(b"PK\x03\x04 and nothing else").unwrap_err();
        assert!(matches!(e, WeightsError::Truncated(_)), "{e}");
    }

    #[test]
    fn long1_decodes_negative_numbers() {
        // PROTO 2, LONG1 1 byte 0xff (-1), STOP
        let v = Unpickler::new(&[0x80, 2, 0x8a, 1, 0xff, b'.'])
            .run()
            .unwrap();
        assert!(matches!(v, Value::Int(-1)));
    }
}
