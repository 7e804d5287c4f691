//! The Open Inference Protocol's tensors on the wire: the infer request (JSON, or JSON
//! followed by binary tensor data, the binary tensor data extension) decoded into rows the
//! predictor takes, and the answer's output tensors encoded back (JSON `data`, or binary
//! after the JSON header).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::http::error::ApiError;

/// The header naming the JSON part's length in a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// `$inference_request`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}))]
pub struct InferRequest {
    /// Echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// `binary_data_output: true` asks every output as binary data (the binary tensor
    /// data extension).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The model's one input: `features` (`[N, F]` numbers) or `image` (`[N]` encoded
    /// images as BYTES).
    #[schema(min_items = 1, max_items = 1)]
    pub inputs: Vec<RequestInput>,
    /// The outputs wanted; none named: every output, as JSON.
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// `$request_input`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInput {
    /// `features` or `image`, as the model's metadata says.
    pub name: String,
    /// Its shape; the data holds exactly as many elements.
    pub shape: Vec<i64>,
    /// Any numeric datatype (read as FP32), or BYTES.
    #[schema(value_type = Datatype)]
    pub datatype: String,
    /// `binary_data_size`: the input's bytes follow the JSON (binary tensor data).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The elements, row major, flat or nested; absent when `binary_data_size` is given.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub data: Option<Value>,
}

/// `$request_output`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestOutput {
    /// `probabilities`, the one output.
    pub name: String,
    /// `classification: k` (the top k classes as `"p:id:label"` strings),
    /// `binary_data: bool`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

/// A parsed infer body: the JSON request and the binary data that followed it.
pub struct InferBody {
    pub request: InferRequest,
    /// Bytes after the JSON header (empty without the binary extension).
    binary: Bytes,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::InvalidInput {
        code: "invalid_tensor",
        message: message.into(),
    }
}

/// Splits and parses an infer body; `header_len` is `Inference-Header-Content-Length`.
pub fn parse(body: Bytes, header_len: Option<&str>) -> Result<InferBody, ApiError> {
    let (json, binary) = match header_len {
        None => (body, Bytes::new()),
        Some(len) => {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| bad(format!("{HEADER_LENGTH} must be a byte count, not {len:?}")))?;
            if len > body.len() {
                return Err(bad(format!(
                    "{HEADER_LENGTH} is {len}, but the body has only {} bytes",
                    body.len()
                )));
            }
            let mut json = body;
            let binary = json.split_off(len);
            (json, binary)
        }
    };
    let request: InferRequest = serde_json::from_slice(&json)
        .map_err(|e| ApiError::MalformedJson(format!("the infer request: {e}")))?;
    Ok(InferBody { request, binary })
}

/// One input's values, after its datatype and shape were checked.
#[derive(Debug, PartialEq)]
pub enum Values {
    /// Numbers of any numeric datatype, as `f32`, row major.
    Numbers(Vec<f32>),
    /// `BYTES` elements.
    Bytes(Vec<Bytes>),
}

/// A checked input: its shape and values (the element count matches the shape).
#[derive(Debug)]
pub struct Tensor {
    pub name: String,
    /// The datatype it was sent as (every numeric one is read as FP32 values).
    pub datatype: Datatype,
    pub shape: Vec<usize>,
    pub values: Values,
}

impl Tensor {
    /// The input `name` of `datatype` and `shape` holding `values`, once the shape has no
    /// negative dimension and holds exactly as many elements as there are values.
    pub fn new(
        name: &str,
        datatype: Datatype,
        shape: &[i64],
        values: Values,
    ) -> Result<Self, ApiError> {
        let dims = shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                bad(format!(
                    "input {name:?}: shape {shape:?} has a negative dimension"
                ))
            })?;
        let count = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| bad(format!("input {name:?}: shape too large")))?;
        let got = match &values {
            Values::Numbers(v) => v.len(),
            Values::Bytes(v) => v.len(),
        };
        if got != count {
            return Err(bad(format!(
                "input {name:?}: shape {shape:?} holds {count} elements, the data has {got}"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            datatype,
            shape: dims,
            values,
        })
    }
}

impl InferBody {
    /// Every input's values, from JSON `data` or from the binary part (in input order, each
    /// `binary_data_size` long); the whole binary part must be used.
    pub fn tensors(&self) -> Result<Vec<Tensor>, ApiError> {
        let mut offset = 0usize;
        let mut out = Vec::with_capacity(self.request.inputs.len());
        for input in &self.request.inputs {
            let datatype = Datatype::named(&input.name, &input.datatype)?;
            let binary_size = input
                .parameters
                .as_ref()
                .and_then(|p| p.get("binary_data_size"));
            let values = match (binary_size, &input.data) {
                (Some(size), _) => {
                    let size = size
                        .as_u64()
                        .and_then(|s| usize::try_from(s).ok())
                        .ok_or_else(|| {
                            bad(format!(
                                "input {:?}: binary_data_size must be a byte count",
                                input.name
                            ))
                        })?;
                    let end = offset
                        .checked_add(size)
                        .filter(|&end| end <= self.binary.len())
                        .ok_or_else(|| {
                            bad(format!(
                                "input {:?}: binary_data_size {size} runs past the body's {} binary bytes",
                                input.name,
                                self.binary.len()
                            ))
                        })?;
                    let bytes = self.binary.slice(offset..end);
                    offset = end;
                    datatype.read_binary(&input.name, bytes)?
                }
                (None, Some(data)) => datatype.read_json(&input.name, data)?,
                (None, None) => {
                    return Err(bad(format!(
                        "input {:?} has neither data nor binary_data_size",
                        input.name
                    )));
                }
            };
            out.push(Tensor::new(&input.name, datatype, &input.shape, values)?);
        }
        if offset != self.binary.len() {
            return Err(bad(format!(
                "{} bytes of binary data follow the inputs' binary_data_size",
                self.binary.len() - offset
            )));
        }
        Ok(out)
    }

    /// Whether outputs without their own `binary_data` go as binary
    /// (`parameters.binary_data_output`).
    pub fn binary_by_default(&self) -> bool {
        self.request
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_output"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// The protocol's tensor datatypes; every numeric one is read as FP32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = TensorDatatype)]
pub enum Datatype {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    U8,
    #[serde(rename = "UINT16")]
    U16,
    #[serde(rename = "UINT32")]
    U32,
    #[serde(rename = "UINT64")]
    U64,
    #[serde(rename = "INT8")]
    I8,
    #[serde(rename = "INT16")]
    I16,
    #[serde(rename = "INT32")]
    I32,
    #[serde(rename = "INT64")]
    I64,
    #[serde(rename = "FP16")]
    F16,
    #[serde(rename = "FP32")]
    F32,
    #[serde(rename = "FP64")]
    F64,
    /// Strings or encoded files.
    #[serde(rename = "BYTES")]
    Bytes,
}

impl Datatype {
    /// Every datatype.
    pub const ALL: [Self; 13] = [
        Self::Bool,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F16,
        Self::F32,
        Self::F64,
        Self::Bytes,
    ];

    /// The datatype of input `input`, named `name`; a clear error for a name the protocol
    /// does not have.
    pub fn named(input: &str, name: &str) -> Result<Self, ApiError> {
        Self::of(name).ok_or_else(|| bad(format!("input {input:?}: unknown datatype {name:?}")))
    }

    /// The datatype a name (`FP32`, …) stands for.
    pub fn of(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The protocol's name for it (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "UINT8",
            Self::U16 => "UINT16",
            Self::U32 => "UINT32",
            Self::U64 => "UINT64",
            Self::I8 => "INT8",
            Self::I16 => "INT16",
            Self::I32 => "INT32",
            Self::I64 => "INT64",
            Self::F16 => "FP16",
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    fn width(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 | Self::F16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
            Self::Bytes => 0,
        }
    }

    /// Values from little-endian binary data (`BYTES`: each a 4-byte length, then it).
    pub fn read_binary(self, name: &str, bytes: Bytes) -> Result<Values, ApiError> {
        if self == Self::Bytes {
            return split_bytes(name, &bytes).map(Values::Bytes);
        }
        let width = self.width();
        if !bytes.len().is_multiple_of(width) {
            return Err(bad(format!(
                "input {name:?}: {} binary bytes are not a whole number of {width}-byte elements",
                bytes.len()
            )));
        }
        let numbers = bytes.chunks_exact(width).map(|c| self.read_le(c)).collect();
        Ok(Values::Numbers(numbers))
    }

    /// One little-endian element as `f32` (`chunk` is `width()` long).
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    fn read_le(self, c: &[u8]) -> f32 {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        let [b0, b1, b2, b3, ..] = b;
        match self {
            Self::Bool | Self::U8 => f32::from(b0),
            Self::I8 => f32::from(b0 as i8),
            Self::U16 => f32::from(u16::from_le_bytes([b0, b1])),
            Self::I16 => f32::from(i16::from_le_bytes([b0, b1])),
            Self::F16 => half::f16::from_le_bytes([b0, b1]).to_f32(),
            Self::U32 => u32::from_le_bytes([b0, b1, b2, b3]) as f32,
            Self::I32 => i32::from_le_bytes([b0, b1, b2, b3]) as f32,
            Self::F32 => f32::from_le_bytes([b0, b1, b2, b3]),
            Self::U64 => u64::from_le_bytes(b) as f32,
            Self::I64 => i64::from_le_bytes(b) as f32,
            Self::F64 => f64::from_le_bytes(b) as f32,
            Self::Bytes => f32::NAN,
        }
    }

    fn read_json(self, name: &str, data: &Value) -> Result<Values, ApiError> {
        let mut flat = Vec::new();
        flatten(data, &mut flat);
        if self == Self::Bytes {
            return flat
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(Bytes::from(s.clone().into_bytes())),
                    other => Err(bad(format!(
                        "input {name:?}: a BYTES element must be a string, not {other}"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Values::Bytes);
        }
        flat.into_iter()
            .map(|v| match v {
                Value::Bool(b) if self == Self::Bool => Ok(f32::from(u8::from(*b))),
                #[allow(clippy::cast_possible_truncation)]
                Value::Number(n) if self != Self::Bool => n
                    .as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| bad(format!("input {name:?}: {n} is not a usable number"))),
                other => Err(bad(format!(
                    "input {name:?}: {other} is not a {self:?} element"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Values::Numbers)
    }
}

/// Nested arrays in row-major order, as the protocol allows `data` to be either flat or
/// shaped.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// `BYTES` binary data: each element a 4-byte little-endian length, then its bytes.
fn split_bytes(name: &str, bytes: &Bytes) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let len = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| {
                bad(format!(
                    "input {name:?}: a BYTES element's length is cut short"
                ))
            })?;
        let start = at + 4;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "input {name:?}: a BYTES element runs past its data"
                ))
            })?;
        out.push(bytes.slice(start..end));
        at = end;
    }
    Ok(out)
}

/// One output of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseOutput {
    /// `probabilities`.
    pub name: String,
    /// FP32 (probabilities) or BYTES (the classification extension's strings).
    #[schema(value_type = Datatype)]
    pub datatype: &'static str,
    /// `[N, classes]`, or `[N, k]` with the classification extension.
    pub shape: Vec<usize>,
    /// `binary_data_size` when the output follows the JSON as binary data.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub parameters: Option<Map<String, Value>>,
    /// The elements, row major, flat: numbers, or `"probability:class_id:label"` strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Value>)]
    pub data: Option<Value>,
}

/// An output's values before they are put on the wire.
pub enum OutputData {
    F32(Vec<f32>),
    Strings(Vec<String>),
}

impl OutputData {
    /// The protocol's name for the values' datatype.
    pub fn datatype(&self) -> &'static str {
        match self {
            Self::F32(_) => "FP32",
            Self::Strings(_) => "BYTES",
        }
    }

    fn json(&self) -> Value {
        match self {
            Self::F32(v) => Value::from(v.iter().map(|&f| f64::from(f)).collect::<Vec<_>>()),
            Self::Strings(v) => Value::from(v.clone()),
        }
    }

    /// The values as binary data (gRPC's `raw_output_contents`).
    pub fn raw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_binary(&mut out);
        out
    }

    fn append_binary(&self, out: &mut Vec<u8>) {
        match self {
            Self::F32(v) => v
                .iter()
                .for_each(|f| out.extend_from_slice(&f.to_le_bytes())),
            Self::Strings(v) => v.iter().for_each(|s| {
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }),
        }
    }
}

/// `$inference_response`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse<'a> {
    /// The model that answered.
    pub model_name: &'a str,
    /// Its version.
    pub model_version: &'a str,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub id: Option<&'a str>,
    /// The output asked for.
    pub outputs: Vec<ResponseOutput>,
}

/// An encoded answer: the bytes, and the JSON header's length when binary data follows.
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

/// One output ready to encode: name, shape, values, and whether it goes as binary.
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: OutputData,
    pub binary: bool,
}

/// Encodes the answer: outputs as JSON `data`, or (those asked as binary) after the JSON.
pub fn encode(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[Output],
) -> Encoded {
    let mut binary = Vec::new();
    let wire = outputs
        .iter()
        .map(|o| {
            let (parameters, data) = if o.binary {
                let before = binary.len();
                o.data.append_binary(&mut binary);
                let mut p = Map::new();
                p.insert(
                    "binary_data_size".into(),
                    Value::from(binary.len() - before),
                );
                (Some(p), None)
            } else {
                (None, Some(o.data.json()))
            };
            ResponseOutput {
                name: o.name.clone(),
                datatype: o.data.datatype(),
                shape: o.shape.clone(),
                parameters,
                data,
            }
        })
        .collect();
    let response = InferResponse {
        model_name,
        model_version,
        id,
        outputs: wire,
    };
    let mut body = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
    if outputs.iter().any(|o| o.binary) {
        let header_len = body.len();
        body.extend_from_slice(&binary);
        Encoded {
            body,
            header_len: Some(header_len),
        }
    } else {
        Encoded {
            body,
            header_len: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatypes_are_named_as_they_serialize() {
        for d in Datatype::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
            assert_eq!(Datatype::of(d.as_str()), Some(d));
        }
        assert_eq!(Datatype::of("FP8"), None);
    }

    fn body(json: &str) -> InferBody {
        parse(Bytes::from(json.to_owned()), None).unwrap()
    }

    #[test]
    fn json_data_flat_or_nested_reads_as_rows() {
        let b = body(
            r#"{"inputs":[{"name":"features","shape":[2,2],"datatype":"FP64","data":[[1,2],[3,4.5]]}]}"#,
        );
        let t = b.tensors().unwrap();
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(t[0].values, Values::Numbers(vec![1.0, 2.0, 3.0, 4.5]));
        let b =
            body(r#"{"inputs":[{"name":"features","shape":[3],"datatype":"INT64","data":[1,2]}]}"#);
        let err = b.tensors().unwrap_err().to_string();
        assert!(err.contains("holds 3 elements, the data has 2"), "{err}");
    }

    #[test]
    fn binary_data_follows_the_header_in_input_order() {
        let json = r#"{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"b","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]}"#;
        let mut raw = json.as_bytes().to_vec();
        raw.extend_from_slice(&1.5f32.to_le_bytes());
        raw.extend_from_slice(&(-2.0f32).to_le_bytes());
        raw.extend_from_slice(&3u32.to_le_bytes());
        raw.extend_from_slice(b"abc");
        raw.extend_from_slice(&0u32.to_le_bytes());
        let b = parse(Bytes::from(raw.clone()), Some(&json.len().to_string())).unwrap();
        let t = b.tensors().unwrap();
        assert_eq!(t[0].values, Values::Numbers(vec![1.5, -2.0]));
        assert_eq!(
            t[1].values,
            Values::Bytes(vec![Bytes::from_static(b"abc"), Bytes::new()])
        );
        // One byte too many, or a header length past the end: refused, never read past.
        raw.push(0);
        let b = parse(Bytes::from(raw.clone()), Some(&json.len().to_string())).unwrap();
        assert!(b.tensors().is_err());
        assert!(parse(Bytes::from(raw), Some("99999")).is_err());
    }

    #[test]
    fn every_numeric_datatype_reads_little_endian() {
        let cases: [(&str, Vec<u8>, f32); 6] = [
            ("INT8", vec![0xff], -1.0),
            ("UINT16", 513u16.to_le_bytes().to_vec(), 513.0),
            ("INT32", (-7i32).to_le_bytes().to_vec(), -7.0),
            ("FP16", half::f16::from_f32(0.5).to_le_bytes().to_vec(), 0.5),
            ("FP64", 2.25f64.to_le_bytes().to_vec(), 2.25),
            ("BOOL", vec![1], 1.0),
        ];
        for (dt, bytes, want) in cases {
            let got = Datatype::of(dt)
                .unwrap()
                .read_binary("x", Bytes::from(bytes))
                .unwrap();
            assert_eq!(got, Values::Numbers(vec![want]), "{dt}");
        }
    }

    #[test]
    fn binary_outputs_go_after_the_json_and_say_their_size() {
        let outputs = [
            Output {
                name: "probabilities".into(),
                shape: vec![1, 2],
                data: OutputData::F32(vec![0.25, 0.75]),
                binary: true,
            },
            Output {
                name: "probabilities".into(),
                shape: vec![1, 1],
                data: OutputData::Strings(vec!["0.750000:1:b".into()]),
                binary: false,
            },
        ];
        let e = encode("m", "1", Some("x"), &outputs);
        let header_len = e.header_len.unwrap();
        let header: Value = serde_json::from_slice(&e.body[..header_len]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["outputs"][1]["data"][0], "0.750000:1:b");
        assert_eq!(header["id"], "x");
        assert_eq!(&e.body[header_len..header_len + 4], &0.25f32.to_le_bytes());
        assert_eq!(e.body.len(), header_len + 8);
    }
}
