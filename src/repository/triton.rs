//! A Triton model repository as it is: a model directory with a `config.pbtxt` (Triton's
//! model configuration, protobuf text format) beside its version directories, each holding
//! `model.onnx` (or the configuration's `default_model_filename`).
//!
//! The text is parsed against `proto/model_config.proto` (every field Triton's
//! configuration may carry) by prost-reflect, then read as its prost types. What is served
//! from it: `name` (the directory's, as Triton requires), `platform`/`backend` (ONNX only),
//! `max_batch_size`, each input's and output's `name`, `data_type`, `dims` and `reshape`
//! (checked against the graph at load: `infer/onnx/declared.rs`), an output's
//! `label_filename` (class labels, one per line, in the model directory) and
//! `default_model_filename`. Scheduling that changes what a request means (sequence
//! batching, ensembles, batch inputs and outputs) refuses the model; the rest (instance
//! groups, dynamic batching, optimisation, warm-up, version policy) is Triton's own business
//! and is left alone: infergate batches, warms up and picks versions its own way.

use std::path::Path;

use prost_reflect::{DescriptorPool, DynamicMessage};
use xxhash_rust::xxh3::Xxh3;

use crate::infer::onnx::declared::{Declared, DeclaredTensor};
use crate::infer::onnx::graph::Elem;

/// Triton's model configuration, as prost types generated from proto/model_config.proto.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::nursery
)]
pub mod schema {
    include!(concat!(env!("OUT_DIR"), "/infergate.triton.rs"));
}

use schema::{DataType, ModelConfig, model_config::SchedulingChoice};

/// The configuration's file name in a model directory.
pub const CONFIG_FILE: &str = "config.pbtxt";

/// The descriptor set of proto/model_config.proto, compiled by build.rs.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_config.bin"));

/// What a model directory's configuration says: the signature to check the graph against
/// and the file each version holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonModel {
    pub declared: Declared,
    /// The model file's name in each version directory.
    pub model_file: String,
}

/// Parses `config.pbtxt` text.
pub fn parse(text: &str) -> Result<ModelConfig, String> {
    let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
    let descriptor = pool
        .get_message_by_name("infergate.triton.ModelConfig")
        .ok_or("the model configuration's schema lacks ModelConfig")?;
    let text = with_list_colons(text);
    let message =
        DynamicMessage::parse_text_format(descriptor, &text).map_err(|e| e.to_string())?;
    message.transcode_to().map_err(|e| e.to_string())
}

/// `text` with a `:` between a field name and the `[` of its list where it has none.
///
/// The text format lets a message field's list go without one (`input [ { ... } ]`, as
/// every Triton configuration writes it), and protobuf's own parsers take it; prost-reflect
/// (0.16) wants the colon, which the format allows everywhere. Strings and `#` comments are
/// passed over; a `[` is a list where it follows a field name, an identifier that does not
/// itself follow a `:` (that would be an enum value).
fn with_list_colons(text: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+');
    let mut out = String::with_capacity(text.len() + 16);
    // The last two tokens' kinds: 'w' for a word (a name, a number, a string), else the
    // symbol itself.
    let (mut last, mut before_last) = (None::<char>, None::<char>);
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '[' && last == Some('w') && before_last != Some(':') {
            out.push(':');
        }
        out.push(c);
        match c {
            '#' => {
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' {
                        out.extend(chars.next());
                    } else if s == c {
                        break;
                    }
                }
                // A string is a value: what follows it is never a list of its own.
                (before_last, last) = (last, Some('"'));
            }
            c if word(c) => {
                if !in_word {
                    (before_last, last) = (last, Some('w'));
                }
            }
            c if c.is_whitespace() => {}
            c => (before_last, last) = (last, Some(c)),
        }
        in_word = word(c);
    }
    out
}

/// Reads `<model_dir>/config.pbtxt` (and its label file) for the model `name`, adding the
/// files to `digest`. The error names the file and what is wrong.
pub fn read(model_dir: &Path, name: &str, digest: &mut Xxh3) -> Result<TritonModel, String> {
    let bytes =
        std::fs::read(model_dir.join(CONFIG_FILE)).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
    digest.update(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| format!("{CONFIG_FILE}: not UTF-8 text"))?;
    let config = parse(&text).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
    let mut model = served(&config, name).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
    if let Some(file) = config
        .output
        .iter()
        .map(|o| o.label_filename.as_str())
        .find(|f| !f.is_empty())
    {
        let file = plain_file(file, "label_filename").map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
        let labels = std::fs::read(model_dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        digest.update(&labels);
        let labels = String::from_utf8(labels).map_err(|_| format!("{file}: not UTF-8 text"))?;
        model.declared.labels = Some(
            labels
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    Ok(model)
}

/// What of `config` is served for the model `name`, or why it cannot be.
fn served(config: &ModelConfig, name: &str) -> Result<TritonModel, String> {
    if !config.name.is_empty() && config.name != name {
        return Err(format!(
            "name {:?} is not the directory's, {name:?} (Triton requires them equal)",
            config.name
        ));
    }
    let onnx = |s: &str, want: &str| s.is_empty() || s == want;
    if !onnx(&config.platform, "onnxruntime_onnx") || !onnx(&config.backend, "onnxruntime") {
        return Err(format!(
            "platform {:?}, backend {:?}: only ONNX models are served (onnxruntime_onnx, \
             onnxruntime)",
            config.platform, config.backend
        ));
    }
    match &config.scheduling_choice {
        Some(SchedulingChoice::SequenceBatching(_)) => {
            return Err("sequence_batching (stateful models) is not served".into());
        }
        Some(SchedulingChoice::EnsembleScheduling(_)) => {
            return Err("ensemble_scheduling is not served".into());
        }
        Some(SchedulingChoice::DynamicBatching(_)) | None => {}
    }
    if !config.batch_input.is_empty() || !config.batch_output.is_empty() {
        return Err("batch_input and batch_output are not served".into());
    }
    let max_batch_size = usize::try_from(config.max_batch_size)
        .map_err(|_| format!("max_batch_size {} is negative", config.max_batch_size))?;
    let tensor = |name: &str, data_type: i32, dims: &[i64], reshape: Option<&[i64]>| {
        if name.is_empty() {
            return Err("a tensor without a name".to_owned());
        }
        if let Some(d) = dims.iter().find(|&&d| d < -1 || d == 0) {
            return Err(format!("{name:?}: dimension {d} (a size, or -1 for any)"));
        }
        Ok(DeclaredTensor {
            name: name.to_owned(),
            elem: elem(data_type).ok_or_else(|| format!("{name:?}: no data_type"))?,
            dims: dims.to_vec(),
            reshape: reshape.map(<[i64]>::to_vec),
        })
    };
    let inputs = config
        .input
        .iter()
        .map(|i| {
            tensor(
                &i.name,
                i.data_type,
                &i.dims,
                i.reshape.as_ref().map(|r| &r.shape[..]),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = config
        .output
        .iter()
        .map(|o| {
            tensor(
                &o.name,
                o.data_type,
                &o.dims,
                o.reshape.as_ref().map(|r| &r.shape[..]),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let model_file = match config.default_model_filename.as_str() {
        "" => crate::infer::onnx::MODEL_FILE,
        file => plain_file(file, "default_model_filename")?,
    };
    Ok(TritonModel {
        declared: Declared {
            max_batch_size,
            inputs,
            outputs,
            labels: None,
        },
        model_file: model_file.to_owned(),
    })
}

/// `file` when it names a file in the directory itself.
fn plain_file<'a>(file: &'a str, field: &str) -> Result<&'a str, String> {
    if file.is_empty() || file.contains('/') || file.starts_with('.') {
        return Err(format!(
            "{field} {file:?} must be a file in the model directory"
        ));
    }
    Ok(file)
}

/// The ONNX element type of a Triton data type (`None` for `TYPE_INVALID`).
fn elem(data_type: i32) -> Option<Elem> {
    // TensorProto.DataType's numbers.
    let onnx = match DataType::try_from(data_type).ok()? {
        DataType::TypeInvalid => return None,
        DataType::TypeBool => 9,
        DataType::TypeUint8 => 2,
        DataType::TypeUint16 => 4,
        DataType::TypeUint32 => 12,
        DataType::TypeUint64 => 13,
        DataType::TypeInt8 => 3,
        DataType::TypeInt16 => 5,
        DataType::TypeInt32 => 6,
        DataType::TypeInt64 => 7,
        DataType::TypeFp16 => 10,
        DataType::TypeFp32 => 1,
        DataType::TypeFp64 => 11,
        DataType::TypeString => 8,
        DataType::TypeBf16 => 16,
    };
    Some(Elem::from_onnx(onnx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration of Triton's documentation's example, for an ONNX classifier.
    const DOCUMENTED: &str = r#"
name: "iris"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "float_input"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 3 ]
    label_filename: "labels.txt"
  },
  {
    name: "label"
    data_type: TYPE_INT64
    dims: [ 1 ]
  }
]
instance_group [ { count: 2, kind: KIND_CPU } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
version_policy: { latest { num_versions: 2 } }
# a comment
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"#;

    #[test]
    fn the_documented_configuration_parses_with_what_is_served() {
        let config = parse(DOCUMENTED).unwrap();
        let model = served(&config, "iris").unwrap();
        assert_eq!(model.model_file, "model.onnx");
        let d = &model.declared;
        assert_eq!(d.max_batch_size, 8);
        assert_eq!(d.inputs.len(), 1);
        assert_eq!(d.inputs[0].name, "float_input");
        assert_eq!(d.inputs[0].elem, Elem::F32);
        assert_eq!(d.inputs[0].dims, [4]);
        assert_eq!(d.outputs[1].elem, Elem::I64);
        assert_eq!(config.output[0].label_filename, "labels.txt");
    }

    #[test]
    fn a_list_of_messages_gets_its_colon_and_nothing_else_changes() {
        let cases = [
            ("input [ { dims: [ 4 ] } ]", "input :[ { dims: [ 4 ] } ]"),
            ("input[{}]", "input:[{}]"),
            ("output\n  [ ]", "output\n  :[ ]"),
            ("kind: KIND_CPU\n", "kind: KIND_CPU\n"),
            ("dims: [ -1, 3 ]", "dims: [ -1, 3 ]"),
            (
                "name: \"a [b\" # c [d\nx [ ]",
                "name: \"a [b\" # c [d\nx :[ ]",
            ),
            ("name: 'it\\'s [' y [ ]", "name: 'it\\'s [' y :[ ]"),
        ];
        for (text, want) in cases {
            assert_eq!(with_list_colons(text), want, "{text}");
        }
    }

    #[test]
    fn bad_configurations_are_refused_saying_why() {
        let cases = [
            ("name: \"iris\" max_batch_size: 1 nonsense: 3", "nonsense"),
            (
                "max_batch_size: \"eight\"",
                "expected an integer, but found '\"eight\"'",
            ),
            ("name: \"other\"", "is not the directory's"),
            ("platform: \"tensorrt_plan\"", "only ONNX models"),
            ("backend: \"python\"", "only ONNX models"),
            ("max_batch_size: -1", "negative"),
            ("sequence_batching { }", "sequence_batching"),
            ("ensemble_scheduling { }", "ensemble_scheduling"),
            ("input [ { name: \"x\" dims: [ 4 ] } ]", "no data_type"),
            (
                "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 0 ] } ]",
                "dimension 0",
            ),
            (
                "default_model_filename: \"../model.onnx\"",
                "must be a file",
            ),
            (
                "input [ { name: \"x\" data_type: TYPE_FP42 } ]",
                "TYPE_FP42",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).and_then(|c| served(&c, "iris").map(|_| ()));
            let err = err.unwrap_err();
            assert!(err.contains(want), "{text}: {err} (wanted {want})");
        }
    }

    #[test]
    fn the_label_file_and_the_model_file_are_read_from_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), DOCUMENTED).unwrap();
        let err = read(dir.path(), "iris", &mut Xxh3::new()).unwrap_err();
        assert!(err.starts_with("labels.txt: "), "{err}");
        std::fs::write(
            dir.path().join("labels.txt"),
            "setosa\nversicolor\nvirginica\n",
        )
        .unwrap();
        let model = read(dir.path(), "iris", &mut Xxh3::new()).unwrap();
        assert_eq!(
            model.declared.labels.as_deref(),
            Some(&["setosa", "versicolor", "virginica"].map(String::from)[..])
        );
        let err = read(dir.path(), "other", &mut Xxh3::new()).unwrap_err();
        assert!(err.starts_with("config.pbtxt: name"), "{err}");
    }
}
