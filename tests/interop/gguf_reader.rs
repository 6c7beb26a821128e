//! A GGUF reader written from the format's spec (ggml `docs/gguf.md`) and ggml's
//! `dequantize_row_tq{1,2}_0`, independent of Tritter's writer.

use std::collections::BTreeMap;

/// A metadata value as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(v) => *v,
            other => panic!("not an integer: {other:?}"),
        }
    }
    pub fn float(&self) -> f64 {
        match self {
            Value::Float(v) => *v,
            other => panic!("not a float: {other:?}"),
        }
    }
    pub fn str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }
    pub fn array(&self) -> &[Value] {
        match self {
            Value::Array(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
}

pub struct TensorInfo {
    /// GGUF order: contiguous dimension first.
    pub dims: Vec<u64>,
    pub ty: u32,
    pub offset: u64,
}

pub struct Gguf {
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    /// The tensor names in file order.
    pub order: Vec<String>,
    data_start: usize,
    bytes: Vec<u8>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).expect("GGUF strings are UTF-8")
    }
    fn value(&mut self, ty: u32) -> Value {
        match ty {
            0 => Value::Int(self.take(1)[0] as i64),
            1 => Value::Int(self.take(1)[0] as i8 as i64),
            2 => Value::Int(u16::from_le_bytes(self.take(2).try_into().unwrap()) as i64),
            3 => Value::Int(i16::from_le_bytes(self.take(2).try_into().unwrap()) as i64),
            4 => Value::Int(self.u32() as i64),
            5 => Value::Int(self.u32() as i32 as i64),
            6 => Value::Float(f32::from_le_bytes(self.take(4).try_into().unwrap()) as f64),
            7 => Value::Bool(match self.take(1)[0] {
                0 => false,
                1 => true,
                b => panic!("bool byte {b}"),
            }),
            8 => Value::Str(self.string()),
            9 => {
                let (elem, n) = (self.u32(), self.u64());
                Value::Array((0..n).map(|_| self.value(elem)).collect())
            }
            10 => Value::Int(self.u64() as i64),
            11 => Value::Int(self.u64() as i64),
            12 => Value::Float(f64::from_le_bytes(self.take(8).try_into().unwrap())),
            other => panic!("unknown GGUF value type {other}"),
        }
    }
}

/// (values, bytes) per block of the ggml types the tests meet.
pub fn block(ty: u32) -> (usize, usize) {
    match ty {
        0 => (1, 4),
        1 | 30 => (1, 2),
        34 => (256, 54),
        35 => (256, 66),
        other => panic!("unexpected ggml type {other}"),
    }
}

impl Gguf {
    pub fn read(path: &std::path::Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let mut c = Cursor { bytes: &bytes, at: 0 };
        assert_eq!(c.take(4), b"GGUF", "magic");
        assert_eq!(c.u32(), 3, "version");
        let (n_tensors, n_kv) = (c.u64(), c.u64());
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string();
            let ty = c.u32();
            assert!(metadata.insert(key.clone(), c.value(ty)).is_none(), "duplicate key {key}");
        }
        let mut tensors = BTreeMap::new();
        let mut order = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string();
            let n_dims = c.u32();
            let dims = (0..n_dims).map(|_| c.u64()).collect();
            let (ty, offset) = (c.u32(), c.u64());
            order.push(name.clone());
            assert!(tensors.insert(name.clone(), TensorInfo { dims, ty, offset }).is_none(), "duplicate {name}");
        }
        let alignment = metadata.get("general.alignment").map_or(32, |v: &Value| v.int() as usize);
        let data_start = c.at.next_multiple_of(alignment);
        for (name, info) in &tensors {
            assert_eq!(info.offset as usize % alignment, 0, "{name}: offset not aligned");
        }
        Gguf { metadata, tensors, order, data_start, bytes }
    }

    pub fn get(&self, key: &str) -> &Value {
        self.metadata.get(key).unwrap_or_else(|| panic!("metadata key `{key}` is missing"))
    }

    /// The bytes of tensor `name`, checked to lie inside the file.
    pub fn data(&self, name: &str) -> &[u8] {
        let info = &self.tensors[name];
        let (values, bytes) = block(info.ty);
        let count: u64 = info.dims.iter().product();
        assert_eq!(info.dims[0] as usize % values, 0, "{name}: rows are not whole blocks");
        let len = count as usize / values * bytes;
        let start = self.data_start + info.offset as usize;
        assert!(start + len <= self.bytes.len(), "{name}: data runs past the end of the file");
        &self.bytes[start..start + len]
    }

    /// Tensor `name` as f32 (F32, F16 or BF16).
    pub fn floats(&self, name: &str) -> Vec<f32> {
        let data = self.data(name);
        match self.tensors[name].ty {
            0 => data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            1 => data.chunks(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            30 => data.chunks(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => panic!("{name}: type {other} is not a float type"),
        }
    }

    /// A TQ1_0 or TQ2_0 tensor as its ternary values and each block's scale `d`.
    pub fn ternary(&self, name: &str) -> (Vec<i8>, Vec<half::f16>) {
        let ty = self.tensors[name].ty;
        let (mut values, mut scales) = (Vec::new(), Vec::new());
        for block in self.data(name).chunks(block(ty).1) {
            let (qs, d) = block.split_at(block.len() - 2);
            scales.push(half::f16::from_le_bytes([d[0], d[1]]));
            match ty {
                35 => decode_tq2_0(qs, &mut values),
                34 => decode_tq1_0(qs, &mut values),
                other => panic!("{name}: type {other} is not ternary"),
            }
        }
        (values, scales)
    }
}

/// ggml's `dequantize_row_tq2_0` without the scale.
fn decode_tq2_0(qs: &[u8], out: &mut Vec<i8>) {
    for j in (0..qs.len()).step_by(32) {
        for l in 0..4 {
            for m in 0..32 {
                out.push(((qs[j + m] >> (l * 2)) & 3) as i8 - 1);
            }
        }
    }
}

/// ggml's `dequantize_row_tq1_0` without the scale.
fn decode_tq1_0(bytes: &[u8], out: &mut Vec<i8>) {
    let (qs, qh) = bytes.split_at(48);
    let pow3 = [1u8, 3, 9, 27, 81, 243];
    let trit = |byte: u8, n: usize| ((byte.wrapping_mul(pow3[n]) as u16 * 3) >> 8) as i8 - 1;
    for n in 0..5 {
        out.extend((0..32).map(|m| trit(qs[m], n)));
    }
    for n in 0..5 {
        out.extend((0..16).map(|m| trit(qs[32 + m], n)));
    }
    for n in 0..4 {
        out.extend((0..4).map(|j| trit(qh[j], n)));
    }
}
