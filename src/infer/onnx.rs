//! The user's own models, as ONNX files, run by tract (pure Rust: no native library, no
//! `protoc`).
//!
//! Loading (on the repository's thread): decode the protobuf, rewrite the `ai.onnx.ml`
//! nodes tract lacks where that is exact ([`rewrite`]), name the first operator still
//! unsupported, read the signature ([`graph`]) and decide the kind, then fix the input
//! with a symbolic batch dimension, optimise and make runnable. Running (on the compute
//! threads, through the batcher): a batch of N rows is one run. A panic inside tract is
//! caught: while loading, here (that version fails); while running, by the compute thread
//! as for every model (`infer/worker.rs`: that request fails). The process lives.
//!
//! Served: tabular classifiers (one `[N, F]` numeric input; probabilities or logits out,
//! labels from the classifier's attributes or the sidecar manifest), tabular regressors
//! (one value per row; [`ops`] adds the `ai.onnx.ml` regressor tract lacks), image
//! classifiers (one `[N, 3, H, W]` input, on the image path) and tensor models (any other
//! signature: every input's row and every output's row side by side in one batch row,
//! over the Open Inference Protocol only).

pub mod declared;
pub mod graph;
pub mod ops;
pub mod rewrite;
pub mod sidecar;
pub mod trees;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tract_onnx::pb::{GraphProto, ModelProto};
use tract_onnx::prelude::{
    Datum, DatumType, Framework as _, InferenceFact, InferenceModelExt as _, IntoRunnable as _,
    TDim, Tensor, ToDim as _, TypedRunnableModel, tvec,
};

use crate::infer::manifest::{
    Compute, InputSpec, ModelInfo, NumericType, OwnNames, Preprocess, Task, TensorSpec, Tensors,
};
use crate::infer::model::{Batch, Model, ModelError, Outputs};
use declared::Declared;
use graph::{Elem, Signature, Value};
use sidecar::{Kind, OutputMeaning, Sidecar};

/// Lets one ONNX forward pass use `threads` threads (`compute.intra_op_threads`) for its
/// matrix products, on rayon's global pool: the pool candle's kernels use, sized to the
/// same number by `RAYON_NUM_THREADS`, so the two engines never hold two pools. With 1,
/// tract runs on the calling compute thread alone, without rayon's hand-offs.
pub fn share_intra_op_threads(threads: usize) {
    use tract_linalg::multithread::{Executor, set_default_executor};
    set_default_executor(if threads > 1 {
        Executor::RayonGlobal
    } else {
        Executor::SingleThread
    });
}

/// The file name of an ONNX model in a version directory.
pub const MODEL_FILE: &str = "model.onnx";

/// Why an ONNX file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX model.
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// A node uses an operator nothing here runs.
    #[error("unsupported operator {0}")]
    Unsupported(String),
    /// A node's attributes do not make sense.
    #[error("node {node:?} ({op}): {why}")]
    BadNode {
        node: String,
        op: String,
        why: String,
    },
    /// A constant tensor does not hold what it declares, or lives in another file.
    #[error("{0}")]
    Constant(String),
    /// A tree ensemble is not a well-formed forest (ids out of range, a cycle).
    #[error("{0}")]
    Tree(String),
    /// The graph's inputs or outputs do not fit any kind served.
    #[error("{0}")]
    Signature(String),
    /// The sidecar manifest contradicts the graph.
    #[error("manifest.json: {0}")]
    Sidecar(String),
    /// The declared signature (a Triton `config.pbtxt`) contradicts the graph.
    #[error("config.pbtxt: {0}")]
    Declared(String),
    /// tract refused the graph.
    #[error("tract: {0}")]
    Engine(String),
    /// tract panicked.
    #[error("tract panicked: {0}")]
    Panicked(String),
}

/// An ONNX model (a tabular classifier or regressor, an image classifier, or a tensor
/// model), ready to run batches.
pub struct OnnxModel {
    info: ModelInfo,
    plan: Arc<TypedRunnableModel>,
    /// Each input's type and one row's dimensions (after the batch's), in the graph's
    /// order: `[F]`, `[3, H, W]`, or a tensor model's own.
    inputs: Vec<(Elem, Vec<usize>)>,
    /// Each output's values in one row, in the graph's order (several for a tensor model).
    output_widths: Vec<usize>,
    meaning: OutputMeaning,
    /// An image network: its plan is for a batch of one image, and a batch runs one image
    /// a pass (see the load).
    one_image_a_pass: bool,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("name", &self.info.name)
            .field("inputs", &self.inputs)
            .field("classes", &self.info.labels.len())
            .finish_non_exhaustive()
    }
}

/// What a load needs besides the file: the sidecar manifest (default when there is none),
/// the labels of its `labels_file`, and a declared signature (a Triton `config.pbtxt`), read
/// by the caller.
#[derive(Debug, Clone, Default)]
pub struct LoadInputs {
    pub sidecar: Sidecar,
    pub labels_file: Option<Vec<String>>,
    pub declared: Option<Declared>,
}

impl OnnxModel {
    /// Loads `bytes` as a model called `name` at `version`. A panic inside tract is an
    /// error here.
    pub fn load(
        bytes: &[u8],
        name: &str,
        version: &str,
        inputs: &LoadInputs,
    ) -> Result<Self, OnnxError> {
        catch_unwind(AssertUnwindSafe(|| {
            Self::load_unguarded(bytes, name, version, inputs)
        }))
        .unwrap_or_else(|panic| Err(OnnxError::Panicked(crate::panic_message::of(&*panic))))
    }

    fn load_unguarded(
        bytes: &[u8],
        name: &str,
        version: &str,
        inputs: &LoadInputs,
    ) -> Result<Self, OnnxError> {
        let mut onnx = tract_onnx::onnx();
        ops::register(&mut onnx.op_register);
        let mut proto: ModelProto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| OnnxError::NotOnnx(e.to_string()))?;
        let graph = proto.graph.as_mut().filter(|g| !g.output.is_empty());
        let graph = graph.ok_or_else(|| OnnxError::NotOnnx("no graph with outputs".into()))?;
        graph::check_constants(graph).map_err(OnnxError::Constant)?;
        // Against the graph as exported, before the rewrites: what its configuration names.
        if let Some(declared) = &inputs.declared {
            declared
                .check(&graph::signature(graph))
                .map_err(OnnxError::Declared)?;
        }
        // Before the rewrites and the trees' check, which replace the Imputers and add
        // missing-value sides.
        let graph_takes_missing = graph::takes_missing(graph);
        trees::check(graph).map_err(OnnxError::Tree)?;
        // Before the rewrites, which replace string labels by indices.
        let own_labels = graph::class_labels(graph);
        rewrite::apply(graph)?;
        if let Some(op) = graph::first_unsupported(graph, |op| onnx.op_register.0.contains_key(op))
        {
            return Err(OnnxError::Unsupported(op));
        }
        let kind = inputs.sidecar.kind.unwrap_or_else(|| {
            match (
                guess_kind(&graph::signature(graph).inputs),
                &inputs.declared,
            ) {
                // Triton serves a vision network its tensors as they are (pixels in, raw
                // outputs out), and its clients send them so: a Triton repository's image
                // network is a tensor model unless its manifest says image.
                (Kind::Image, Some(_)) => Kind::Tensor,
                (kind, _) => kind,
            }
        });
        if kind == Kind::Tensor {
            return Self::load_tensors(&onnx, &mut proto, name, version, inputs);
        }
        let task = inputs.sidecar.task.unwrap_or(
            if own_labels.is_none() && graph::has_ml_regressor(graph) {
                Task::Regression
            } else {
                Task::Classification
            },
        );
        let declared = inputs.declared.as_ref();
        let mut plan = Plan::decide(graph, inputs, kind, own_labels.is_some(), task)?;
        if let Some(max) = declared.map(|d| d.max_batch_size).filter(|&m| m > 0) {
            plan.max_batch = plan.max_batch.min(max);
        }
        let labels = match task {
            Task::Classification => labels(own_labels, inputs)?,
            Task::Regression => value_name(inputs)?,
        };
        plan.check_output_width(labels.len())?;
        let labels_len = labels.len();
        graph.output.retain(|o| o.name == plan.output);
        let model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        let batch = model.symbols.sym("N");
        let mut dims = tvec!(batch.to_dim());
        dims.extend(plan.row.iter().map(|d| d.to_dim()));
        let fact = InferenceFact::dt_shape(plan.input.datum()?, dims);
        let typed = model
            .with_input_fact(0, fact)
            .and_then(|m| m.with_output_fact(0, InferenceFact::default()))
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        // An image network runs on a plan for one image, one image a pass. tract optimises a
        // graph whose batch is a symbol into kernels 3 to 10 times slower on depthwise
        // convolutions, and a plan for 8 images took longer per image than the plan for one
        // on every network measured (1.2 to 2.2 times, dense or depthwise; ViT within 2 %:
        // BENCHMARKS.md, ONNX on tract). So the batcher gives such a model batches of one
        // (`max_batch` 1), which the compute threads run side by side, and a larger batch
        // handed to `forward` runs image by image.
        let one_image_a_pass = plan.preprocess.is_some();
        let typed = if one_image_a_pass {
            plan.max_batch = 1;
            typed.set_symbols(&HashMap::from([(batch, TDim::Val(1))]))
        } else {
            Ok(typed)
        };
        let runnable = typed
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        let input = match plan.preprocess {
            Some(preprocess) => InputSpec::Image(preprocess),
            None => InputSpec::Features {
                names: feature_names(&inputs.sidecar, plan.row.iter().product())?,
            },
        };
        Ok(Self {
            info: ModelInfo {
                name: name.into(),
                version: version.into(),
                labels,
                task,
                input,
                takes_missing: graph_takes_missing,
                own_names: declared.and_then(|d| {
                    let input = d.inputs.first()?;
                    Some(OwnNames {
                        input: input.name.clone(),
                        input_type: input.elem.numeric()?,
                        output: plan.output.clone(),
                    })
                }),
                max_batch: plan.max_batch,
                revision: 0,
                compute: Compute::CPU,
            },
            plan: runnable,
            output_widths: vec![labels_len],
            inputs: vec![(plan.input, plan.row)],
            meaning: plan.meaning,
            one_image_a_pass,
        })
    }
}

impl OnnxModel {
    /// Loads a tensor model: every numeric input and output by name, each `[N, ..fixed
    /// dims]`; served over the Open Inference Protocol only, its outputs' values as they are.
    fn load_tensors(
        onnx: &tract_onnx::Onnx,
        proto: &mut ModelProto,
        name: &str,
        version: &str,
        load: &LoadInputs,
    ) -> Result<Self, OnnxError> {
        if load.sidecar.task == Some(Task::Classification) {
            return Err(OnnxError::Sidecar(
                "a tensor model answers its outputs' values, not classes: leave task out".into(),
            ));
        }
        let graph = proto
            .graph
            .as_mut()
            .ok_or_else(|| OnnxError::NotOnnx("no graph".into()))?;
        let Signature { inputs, outputs } = graph::signature(graph);
        if inputs.is_empty() {
            return Err(OnnxError::Signature("the graph takes no input".into()));
        }
        let spec = |v: &Value| -> Result<(TensorSpec, Elem, Option<u64>), OnnxError> {
            let (elem, numeric) =
                v.elem
                    .and_then(|e| Some((e, e.numeric()?)))
                    .ok_or_else(|| {
                        OnnxError::Signature(format!(
                            "{:?} is {}: a tensor model's values are numbers",
                            v.name,
                            v.elem.map_or("not a tensor".into(), Elem::onnx_name)
                        ))
                    })?;
            let fixed =
                |d: &Option<u64>| d.and_then(|d| usize::try_from(d).ok()).filter(|&d| d > 0);
            let (batch, dims) = match v.dims.as_deref() {
                Some([batch, rest @ ..]) => {
                    (*batch, rest.iter().map(fixed).collect::<Option<Vec<_>>>())
                }
                _ => (None, None),
            };
            let dims = dims.ok_or_else(|| {
                OnnxError::Signature(format!(
                    "{:?} is not [N, ..fixed dims]: {}",
                    v.name,
                    describe(std::slice::from_ref(v))
                ))
            })?;
            Ok((
                TensorSpec {
                    name: v.name.clone(),
                    elem: numeric,
                    dims,
                },
                elem,
                batch,
            ))
        };
        let described = describe(&inputs);
        let inputs = inputs.iter().map(spec).collect::<Result<Vec<_>, _>>()?;
        // Labels and the like (strings, a ZipMap's maps) are left out.
        let numeric: Vec<_> = outputs
            .iter()
            .filter(|o| o.elem.is_some_and(Elem::is_numeric))
            .map(spec)
            .collect::<Result<_, _>>()?;
        if numeric.is_empty() {
            return Err(OnnxError::Signature(format!(
                "a tensor model (inputs {described}) answers numbers; no output holds them ({})",
                describe(&outputs)
            )));
        }
        let outputs = numeric;
        graph
            .output
            .retain(|o| outputs.iter().any(|(t, _, _)| t.name == o.name));
        let mut max_batch = inputs
            .iter()
            .filter_map(|(_, _, b)| b.and_then(|b| usize::try_from(b).ok()))
            .min()
            .unwrap_or(usize::MAX);
        if let Some(max) = load
            .declared
            .as_ref()
            .map(|d| d.max_batch_size)
            .filter(|&m| m > 0)
        {
            max_batch = max_batch.min(max);
        }
        let mut model = onnx
            .model_for_proto_model(proto)
            .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        let batch = model.symbols.sym("N");
        for (i, (t, elem, _)) in inputs.iter().enumerate() {
            let mut dims = tvec!(batch.to_dim());
            dims.extend(t.dims.iter().map(|d| d.to_dim()));
            model = model
                .with_input_fact(i, InferenceFact::dt_shape(elem.datum()?, dims))
                .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        }
        for i in 0..outputs.len() {
            model = model
                .with_output_fact(i, InferenceFact::default())
                .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        }
        let runnable = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| OnnxError::Engine(format!("{e:#}")))?;
        let tensors = Tensors {
            inputs: inputs.iter().map(|(t, _, _)| t.clone()).collect(),
            outputs: outputs.iter().map(|(t, _, _)| t.clone()).collect(),
        };
        Ok(Self {
            info: ModelInfo {
                name: name.into(),
                version: version.into(),
                labels: tensors.outputs.iter().map(|o| o.name.clone()).collect(),
                // Values as they are, compared by their difference in a shadow.
                task: Task::Regression,
                input: InputSpec::Tensors(Arc::new(tensors.clone())),
                takes_missing: false,
                own_names: None,
                max_batch,
                revision: 0,
                compute: Compute::CPU,
            },
            plan: runnable,
            inputs: inputs
                .iter()
                .map(|(t, e, _)| (*e, t.dims.clone()))
                .collect(),
            output_widths: tensors.outputs.iter().map(TensorSpec::width).collect(),
            meaning: OutputMeaning::Probabilities,
            one_image_a_pass: false,
        })
    }
}

impl Model for OnnxModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        let features = self.info.row_len();
        if batch.features != features {
            return Err(ModelError::Shape {
                expected: features,
                got: batch.features,
            });
        }
        if self.one_image_a_pass && batch.rows > 1 {
            return self.image_by_image(batch);
        }
        let rows = batch.rows;
        let inputs = match self.inputs.as_slice() {
            [(elem, row)] => tvec!(input_tensor(*elem, row, rows, &batch.data)),
            // A tensor model's row holds every input's row: each input gathered apart.
            several => {
                let mut offset = 0;
                several
                    .iter()
                    .map(|(elem, row)| {
                        let width: usize = row.iter().product();
                        let data: Vec<f32> = batch
                            .data
                            .chunks(features)
                            .flat_map(|r| &r[offset..offset + width])
                            .copied()
                            .collect();
                        offset += width;
                        input_tensor(*elem, row, batch.rows, &data)
                    })
                    .collect()
            }
        };
        let inputs = inputs
            .into_iter()
            .map(|t| t.map(Into::into))
            .collect::<Result<_, _>>()
            .map_err(engine)?;
        let outputs = self.plan.run(inputs).map_err(|e| match e
            .downcast_ref::<ops::one_hot_encoder::UnseenCategory>()
        {
            Some(unseen) => ModelError::UnseenCategory(unseen.to_string()),
            None => engine(e),
        })?;
        if outputs.len() != self.output_widths.len() {
            return Err(ModelError::Engine(format!(
                "the graph gave {} outputs, not {}",
                outputs.len(),
                self.output_widths.len()
            )));
        }
        let mut columns = Vec::with_capacity(outputs.len());
        for (out, &width) in outputs.iter().zip(&self.output_widths) {
            let out = out.cast_to::<f32>().map_err(engine)?;
            let view = out.to_plain_array_view::<f32>().map_err(engine)?;
            let values: Vec<f32> = view.iter().copied().collect();
            if values.len() != rows * width {
                return Err(ModelError::Engine(format!(
                    "the graph gave {} values for {rows} rows of {width} (shape {:?})",
                    values.len(),
                    out.shape()
                )));
            }
            columns.push(values);
        }
        let classes: usize = self.output_widths.iter().sum();
        let mut probs = match columns.pop() {
            Some(only) if columns.is_empty() => only,
            last => {
                // Row by row, every output's part in order.
                columns.extend(last);
                let mut probs = Vec::with_capacity(batch.rows * classes);
                for r in 0..batch.rows {
                    for (values, &width) in columns.iter().zip(&self.output_widths) {
                        probs.extend_from_slice(&values[r * width..(r + 1) * width]);
                    }
                }
                probs
            }
        };
        // A non-finite value is left for the request path, which answers that row (and
        // only that one) 422 `non_finite_output`.
        if self.meaning == OutputMeaning::Logits {
            probs.chunks_mut(classes).for_each(softmax);
        }
        Ok(Outputs {
            rows: batch.rows,
            classes,
            probs,
        })
    }
}

impl OnnxModel {
    /// Runs a batch of images one image a pass, on the plan for one; the answers in order.
    fn image_by_image(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        let mut probs = Vec::with_capacity(batch.rows * self.info.labels.len());
        let mut classes = 0;
        for image in batch.data.chunks(batch.features) {
            let one = self.forward(&Batch {
                rows: 1,
                features: batch.features,
                data: image.to_vec(),
            })?;
            classes = one.classes;
            probs.extend(one.probs);
        }
        Ok(Outputs {
            rows: batch.rows,
            classes,
            probs,
        })
    }
}

/// How a graph is served: which input type and row shape, which output, and for an image
/// model its preprocessing.
struct Plan {
    input: Elem,
    /// One row's dimensions, all fixed: `[F]` for a tabular model, `[3, H, W]` for an image.
    row: Vec<usize>,
    /// `Some` for an image model.
    preprocess: Option<Preprocess>,
    output: String,
    /// The output's width where the graph fixes it.
    output_width: Option<u64>,
    meaning: OutputMeaning,
    max_batch: usize,
}

impl Plan {
    /// Decides from the signature how the graph is served as a tabular or image model (the
    /// `kind` the sidecar gives or the signature suggests) of `task`, or says why it is not.
    fn decide(
        graph: &GraphProto,
        load: &LoadInputs,
        kind: Kind,
        from_ml_classifier: bool,
        task: Task,
    ) -> Result<Self, OnnxError> {
        let sidecar = &load.sidecar;
        let Signature { inputs, outputs } = graph::signature(graph);
        let [input] = inputs.as_slice() else {
            return Err(OnnxError::Signature(format!(
                "a {kind:?} model takes one input; this graph takes {} (leave kind out to \
                 serve it as a tensor model)",
                describe(&inputs)
            )));
        };
        let elem = input.elem.filter(|e| e.is_numeric()).ok_or_else(|| {
            OnnxError::Signature(format!(
                "the input must be numeric; {:?} is {}",
                input.name,
                input.elem.map_or("not a tensor".into(), Elem::onnx_name)
            ))
        })?;
        let dims = input.dims.as_deref().unwrap_or_default();
        let max_batch = dims
            .first()
            .copied()
            .flatten()
            .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
        let (row, preprocess) = match kind {
            Kind::Tabular => (tabular_row(dims, &inputs)?, None),
            Kind::Image => {
                if task == Task::Regression {
                    return Err(OnnxError::Signature(
                        "image models are served as classifiers, not regressions".into(),
                    ));
                }
                let (row, preprocess) = image_row(dims, sidecar, &inputs)?;
                (row, Some(preprocess))
            }
            // Loaded apart (`load_tensors`).
            Kind::Tensor => {
                return Err(OnnxError::Signature(
                    "a tensor model is not a tabular or image one".into(),
                ));
            }
        };
        // Labels (int64, string) are recomputed from the scores: the one float output
        // left is what the model answers with, or the one declared.
        let declared = load.declared.as_ref().and_then(Declared::served_output);
        let output = outputs
            .iter()
            .find(|o| match declared {
                Some(d) => o.name == d.name,
                None => !matches!(o.elem, Some(Elem::I64 | Elem::I32 | Elem::String)),
            })
            .ok_or_else(|| {
                OnnxError::Signature(format!("no output holds scores: {}", describe(&outputs)))
            })?;
        let output_width = output
            .dims
            .as_ref()
            .and_then(|d| d.get(1).copied().flatten());
        let meaning = match task {
            // A regression's value is used as it is.
            Task::Regression => {
                if let Some(width) = output_width
                    && width != 1
                {
                    return Err(OnnxError::Signature(format!(
                        "a regression with {width} values per row is not served (one is): {}",
                        describe(&outputs)
                    )));
                }
                OutputMeaning::Probabilities
            }
            Task::Classification => sidecar.outputs.unwrap_or(if from_ml_classifier {
                OutputMeaning::Probabilities
            } else {
                OutputMeaning::Logits
            }),
        };
        Ok(Self {
            input: elem,
            row,
            preprocess,
            output: output.name.clone(),
            output_width,
            meaning,
            max_batch,
        })
    }

    /// Refuses labels that do not match the output's width, where the graph fixes it.
    fn check_output_width(&self, labels: usize) -> Result<(), OnnxError> {
        match self.output_width {
            Some(width) if width != labels as u64 => Err(OnnxError::Sidecar(format!(
                "{labels} labels for an output {:?} of {width} values a row",
                self.output
            ))),
            _ => Ok(()),
        }
    }
}

/// A tabular input's row: `[F]`, the feature count fixed.
fn tabular_row(dims: &[Option<u64>], inputs: &[Value]) -> Result<Vec<usize>, OnnxError> {
    match dims {
        [_, Some(features)] if *features > 0 => {
            Ok(vec![usize::try_from(*features).map_err(|_| {
                OnnxError::Signature(format!("{features} features is too many"))
            })?])
        }
        _ => Err(OnnxError::Signature(format!(
            "a tabular input is [N, features] with the feature count fixed; {}",
            describe(inputs)
        ))),
    }
}

/// An image input's row, `[3, H, W]`, and its preprocessing: the sidecar's, else
/// torchvision's ImageNet preprocessing at the graph's size. A side the graph leaves
/// symbolic is the sidecar's crop.
fn image_row(
    dims: &[Option<u64>],
    sidecar: &Sidecar,
    inputs: &[Value],
) -> Result<(Vec<usize>, Preprocess), OnnxError> {
    let [_, channels, h, w] = dims else {
        return Err(OnnxError::Signature(format!(
            "an image input is [N, 3, H, W]; {}",
            describe(inputs)
        )));
    };
    if channels.is_some_and(|c| c != 3) {
        return Err(OnnxError::Signature(format!(
            "an image input has 3 channels (RGB); {}",
            describe(inputs)
        )));
    }
    let preprocess = match (sidecar.preprocess, h, w) {
        (Some(p), _, _) => p,
        (None, Some(h), Some(w)) => {
            let side = |n: &u64| {
                u32::try_from(*n)
                    .map_err(|_| OnnxError::Signature(format!("{n} pixels is too many")))
            };
            Preprocess::imagenet([side(h)?, side(w)?])
        }
        _ => {
            return Err(OnnxError::Sidecar(format!(
                "the graph leaves the image size open ({}): give preprocess with its crop",
                describe(inputs)
            )));
        }
    };
    if let Some(problem) = preprocess.problem() {
        return Err(OnnxError::Sidecar(format!("preprocess: {problem}")));
    }
    let [crop_h, crop_w] = preprocess.crop;
    for (side, graph, crop) in [("height", h, crop_h), ("width", w, crop_w)] {
        if let Some(graph) = graph
            && *graph != u64::from(crop)
        {
            return Err(OnnxError::Sidecar(format!(
                "preprocess crops to {crop_h}x{crop_w}, the graph takes {side} {graph}"
            )));
        }
    }
    Ok((vec![3, crop_h as usize, crop_w as usize], preprocess))
}

/// The feature names: the sidecar's (as many as the graph takes), else `x0`, `x1`, ….
fn feature_names(sidecar: &Sidecar, features: usize) -> Result<Vec<String>, OnnxError> {
    match &sidecar.feature_names {
        Some(names) if names.len() != features => Err(OnnxError::Sidecar(format!(
            "feature_names lists {} names, the graph takes {features} features",
            names.len()
        ))),
        Some(names) => Ok(names.clone()),
        None => Ok((0..features).map(|i| format!("x{i}")).collect()),
    }
}

/// The class labels: the sidecar's, its labels file's, the declared output's label file's,
/// or the classifier's own.
fn labels(own: Option<Vec<String>>, inputs: &LoadInputs) -> Result<Vec<String>, OnnxError> {
    let labels = inputs
        .sidecar
        .labels
        .clone()
        .or_else(|| inputs.labels_file.clone())
        .or_else(|| inputs.declared.as_ref().and_then(|d| d.labels.clone()))
        .or(own)
        .ok_or_else(|| {
            OnnxError::Sidecar(
                "the graph has no ai.onnx.ml classifier to take labels from: give labels \
                 or labels_file (or a label_filename in config.pbtxt)"
                    .into(),
            )
        })?;
    if labels.is_empty() {
        return Err(OnnxError::Sidecar("labels must not be empty".into()));
    }
    Ok(labels)
}

/// A regression's value's name: the sidecar's one label, else `prediction`.
fn value_name(inputs: &LoadInputs) -> Result<Vec<String>, OnnxError> {
    match inputs.sidecar.labels.as_deref() {
        None => Ok(vec!["prediction".into()]),
        Some([one]) => Ok(vec![one.clone()]),
        Some(other) => Err(OnnxError::Sidecar(format!(
            "a regression's labels name its one value; {} given",
            other.len()
        ))),
    }
}

/// The kind a signature suggests: one `[N, 3, H, W]` input is an image, one `[N, F]` input
/// is tabular, anything else is a tensor model.
fn guess_kind(inputs: &[Value]) -> Kind {
    match inputs {
        [one] => match one.dims.as_deref() {
            Some([_, Some(3), _, _]) => Kind::Image,
            Some([_, _]) => Kind::Tabular,
            _ => Kind::Tensor,
        },
        _ => Kind::Tensor,
    }
}

/// `name: type [dims]` for each value, for messages.
fn describe(values: &[Value]) -> String {
    let one = |v: &Value| {
        let elem = v.elem.map_or("non-tensor".into(), Elem::onnx_name);
        let dims = v.dims.as_ref().map_or("?".into(), |dims| {
            let dims: Vec<String> = dims
                .iter()
                .map(|d| d.map_or("N".into(), |n| n.to_string()))
                .collect();
            format!("[{}]", dims.join(", "))
        });
        format!("{:?}: {elem} {dims}", v.name)
    };
    if values.is_empty() {
        return "none".into();
    }
    values.iter().map(one).collect::<Vec<_>>().join("; ")
}

impl Elem {
    /// The numeric type it is, if it is one.
    fn numeric(self) -> Option<NumericType> {
        Some(match self {
            Self::F32 => NumericType::F32,
            Self::F64 => NumericType::F64,
            Self::I32 => NumericType::I32,
            Self::I64 => NumericType::I64,
            Self::String | Self::Other(_) => return None,
        })
    }

    /// tract's type for it.
    fn datum(self) -> Result<DatumType, OnnxError> {
        Ok(match self {
            Self::F32 => f32::datum_type(),
            Self::F64 => f64::datum_type(),
            Self::I32 => i32::datum_type(),
            Self::I64 => i64::datum_type(),
            other => {
                return Err(OnnxError::Signature(format!(
                    "inputs of {} are not served",
                    other.onnx_name()
                )));
            }
        })
    }
}

/// `rows` rows of `data` as a `[rows, ..row]` tensor of the graph's input type. JSON
/// numbers for an integer input must be whole.
fn input_tensor(elem: Elem, row: &[usize], rows: usize, data: &[f32]) -> Result<Tensor, String> {
    let shape: Vec<usize> = std::iter::once(rows).chain(row.iter().copied()).collect();
    let floats = Tensor::from_shape(&shape, data).map_err(|e| e.to_string())?;
    let cast_to = match elem {
        Elem::F32 => return Ok(floats),
        Elem::F64 => f64::datum_type(),
        Elem::I32 | Elem::I64 => {
            if let Some(v) = data.iter().find(|v| v.fract() != 0.0) {
                return Err(format!("the model takes whole numbers, not {v}"));
            }
            elem.datum().map_err(|e| e.to_string())?
        }
        other => return Err(format!("inputs of {} are not served", other.onnx_name())),
    };
    floats
        .cast_to_dt(cast_to)
        .map(|t| t.into_owned())
        .map_err(|e| e.to_string())
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// An engine error with its causes (tract's own error says which node, its cause why).
fn engine(e: impl std::fmt::Display) -> ModelError {
    ModelError::Engine(format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGREG: &[u8] =
        include_bytes!("../../tests/fixtures/onnx/sklearn-iris-logreg/model.onnx");
    const FOREST: &[u8] =
        include_bytes!("../../tests/fixtures/onnx/sklearn-iris-forest/model.onnx");

    fn load(bytes: &[u8], sidecar: Sidecar) -> Result<OnnxModel, OnnxError> {
        let inputs = LoadInputs {
            sidecar,
            labels_file: None,
            declared: None,
        };
        OnnxModel::load(bytes, "m", "1", &inputs)
    }

    fn batch(rows: &[[f32; 4]]) -> Batch {
        Batch {
            rows: rows.len(),
            features: 4,
            data: rows.iter().flatten().copied().collect(),
        }
    }

    const SETOSA: [f32; 4] = [5.1, 3.5, 1.4, 0.2];
    const VIRGINICA: [f32; 4] = [6.9, 3.1, 5.4, 2.1];

    #[test]
    fn a_scikit_learn_pipeline_loads_with_its_labels_and_answers_a_batch() {
        let model = load(LOGREG, Sidecar::default()).unwrap();
        let info = model.info();
        assert_eq!(info.labels, ["setosa", "versicolor", "virginica"]);
        assert_eq!(info.row_len(), 4);
        assert_eq!(info.max_batch, usize::MAX);
        let out = model.forward(&batch(&[SETOSA, VIRGINICA])).unwrap();
        assert_eq!((out.rows, out.classes), (2, 3));
        let best = |row: &[f32]| (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(best(out.row(0)), 0);
        assert_eq!(best(out.row(1)), 2);
        for r in 0..2 {
            let sum: f32 = out.row(r).iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{:?}", out.row(r));
        }
    }

    #[test]
    fn a_forest_with_integer_labels_loads_them_as_text() {
        let model = load(FOREST, Sidecar::default()).unwrap();
        assert_eq!(model.info().labels, ["0", "1", "2"]);
        let out = model.forward(&batch(&[SETOSA])).unwrap();
        assert!(out.row(0)[0] > 0.9, "{:?}", out.row(0));
    }

    #[test]
    fn a_batch_of_the_wrong_width_is_refused_before_the_engine() {
        let model = load(LOGREG, Sidecar::default()).unwrap();
        let narrow = Batch {
            rows: 1,
            features: 3,
            data: vec![1.0, 2.0, 3.0],
        };
        assert!(matches!(
            model.forward(&narrow),
            Err(ModelError::Shape {
                expected: 4,
                got: 3
            })
        ));
    }

    #[test]
    fn the_sidecar_overrides_labels_and_names_and_is_checked_against_the_graph() {
        let sidecar = Sidecar {
            labels: Some(vec!["a".into(), "b".into(), "c".into()]),
            feature_names: Some(vec!["sl".into(), "sw".into(), "pl".into(), "pw".into()]),
            ..Sidecar::default()
        };
        let model = load(LOGREG, sidecar).unwrap();
        assert_eq!(model.info().labels, ["a", "b", "c"]);
        let too_few = Sidecar {
            feature_names: Some(vec!["one".into()]),
            ..Sidecar::default()
        };
        let err = load(LOGREG, too_few).unwrap_err().to_string();
        assert!(err.contains("feature_names"), "{err}");
        let image = Sidecar {
            kind: Some(Kind::Image),
            ..Sidecar::default()
        };
        let err = load(LOGREG, image).unwrap_err().to_string();
        assert!(err.contains("an image input is [N, 3, H, W]"), "{err}");
    }

    #[test]
    fn bytes_that_are_not_onnx_are_named_so() {
        for bytes in [&b""[..], b"not a model", &FOREST[..FOREST.len() / 3]] {
            let err = load(bytes, Sidecar::default()).unwrap_err();
            assert!(matches!(err, OnnxError::NotOnnx(_)), "{err}");
        }
    }

    #[test]
    fn a_pipeline_imputes_missing_values_and_refuses_an_unseen_category() {
        let bytes =
            include_bytes!("../../tests/fixtures/onnx/sklearn-diabetes-pipeline/model.onnx");
        let model = load(bytes, Sidecar::default()).unwrap();
        assert!(model.info().takes_missing);
        assert!(
            !load(LOGREG, Sidecar::default())
                .unwrap()
                .info()
                .takes_missing
        );
        // Every value missing: the imputers fill them all.
        let out = model.forward(&Batch::warm_up(model.info())).unwrap();
        assert!(out.row(0).iter().all(|p| p.is_finite()), "{:?}", out.row(0));
        // Age in decades 9: a code the one-hot encoder (zeros=0) was not fitted on.
        let mut row = vec![f32::NAN; 10];
        row[0] = 9.0;
        let unseen = Batch {
            rows: 1,
            features: 10,
            data: row,
        };
        let err = model.forward(&unseen).unwrap_err();
        assert!(err.is_input_refusal(), "{err}");
        assert!(err.to_string().contains("the value 9 is not one"), "{err}");
    }

    const TINY_CNN: &[u8] = include_bytes!("../../tests/fixtures/onnx/torch-tiny-cnn/model.onnx");

    fn tiny_cnn_sidecar() -> Sidecar {
        Sidecar::parse(include_bytes!(
            "../../tests/fixtures/onnx/torch-tiny-cnn/manifest.json"
        ))
        .unwrap()
    }

    #[test]
    fn a_pytorch_image_network_loads_as_an_image_model_and_answers_a_batch() {
        let sidecar = tiny_cnn_sidecar();
        let model = load(TINY_CNN, sidecar.clone()).unwrap();
        let info = model.info();
        assert_eq!(info.input, InputSpec::Image(sidecar.preprocess.unwrap()));
        assert_eq!(info.row_len(), 3 * 32 * 32);
        assert_eq!(info.labels, ["red", "green", "blue", "gray"]);
        let mut data = vec![0.0; 3 * 32 * 32];
        data.extend((0..3 * 32 * 32).map(|i| (i % 7) as f32 - 3.0));
        let out = model
            .forward(&Batch {
                rows: 2,
                features: 3 * 32 * 32,
                data,
            })
            .unwrap();
        assert_eq!((out.rows, out.classes), (2, 4));
        for r in 0..2 {
            let sum: f32 = out.row(r).iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{:?}", out.row(r));
        }
        assert_ne!(out.row(0), out.row(1));
    }

    #[test]
    fn an_image_network_takes_batches_of_one_and_runs_a_larger_batch_image_by_image() {
        let model = load(TINY_CNN, tiny_cnn_sidecar()).unwrap();
        assert_eq!(
            model.info().max_batch,
            1,
            "the batcher gives it one image a batch"
        );
        let width = 3 * 32 * 32;
        let image = |k: usize| -> Vec<f32> {
            (0..width)
                .map(|i| ((i * (k + 3)) % 17) as f32 / 8.0 - 1.0)
                .collect()
        };
        let alone: Vec<Vec<f32>> = (0..9)
            .map(|k| {
                let one = Batch {
                    rows: 1,
                    features: width,
                    data: image(k),
                };
                model.forward(&one).unwrap().row(0).to_vec()
            })
            .collect();
        for rows in [3, 8, 9] {
            let batch = Batch {
                rows,
                features: width,
                data: (0..rows).flat_map(image).collect(),
            };
            let out = model.forward(&batch).unwrap();
            assert_eq!((out.rows, out.probs.len()), (rows, rows * 4));
            for (k, want) in alone.iter().take(rows).enumerate() {
                for (a, b) in out.row(k).iter().zip(want) {
                    assert!((a - b).abs() < 1e-5, "{rows} rows, row {k}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn an_image_network_takes_imagenet_preprocessing_at_its_size_unless_told() {
        let labels_only = Sidecar {
            labels: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
            ..Sidecar::default()
        };
        let model = load(TINY_CNN, labels_only.clone()).unwrap();
        let default = Preprocess::imagenet([32, 32]);
        assert_eq!(model.info().input, InputSpec::Image(default));
        assert_eq!(default.resize_shorter, 36);
        assert_eq!(Preprocess::imagenet([224, 224]).resize_shorter, 256);
        // A network has no labels of its own.
        let err = load(TINY_CNN, Sidecar::default()).unwrap_err().to_string();
        assert!(err.contains("give labels or labels_file"), "{err}");
        // Labels for another number of classes.
        let three = Sidecar {
            labels: Some(vec!["a".into(), "b".into(), "c".into()]),
            ..Sidecar::default()
        };
        let err = load(TINY_CNN, three).unwrap_err().to_string();
        assert!(
            err.contains("3 labels for an output \"logits\" of 4"),
            "{err}"
        );
        // A crop the graph does not take.
        let wrong_crop = Sidecar {
            preprocess: Some(Preprocess::imagenet([224, 224])),
            ..labels_only.clone()
        };
        let err = load(TINY_CNN, wrong_crop).unwrap_err().to_string();
        assert!(
            err.contains("crops to 224x224, the graph takes height 32"),
            "{err}"
        );
        // Nor does a network become a regression or a tabular model.
        let regression = Sidecar {
            task: Some(Task::Regression),
            ..labels_only.clone()
        };
        let err = load(TINY_CNN, regression).unwrap_err().to_string();
        assert!(err.contains("served as classifiers"), "{err}");
        let tabular = Sidecar {
            kind: Some(Kind::Tabular),
            ..labels_only
        };
        let err = load(TINY_CNN, tabular).unwrap_err().to_string();
        assert!(err.contains("a tabular input is [N, features]"), "{err}");
    }

    #[test]
    fn a_graph_of_several_inputs_is_a_tensor_model_whose_rows_hold_every_input_and_output() {
        let bytes = include_bytes!("../../tests/fixtures/onnx/torch-two-tower/model.onnx");
        let model = load(bytes, Sidecar::default()).unwrap();
        let info = model.info();
        let InputSpec::Tensors(tensors) = &info.input else {
            panic!("{:?}", info.input);
        };
        let names = |t: &[TensorSpec]| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&tensors.inputs), ["user", "items"]);
        assert_eq!(tensors.inputs[1].elem, NumericType::I64);
        assert_eq!(names(&tensors.outputs), ["score", "embedding"]);
        assert_eq!((info.row_len(), info.output_len()), (8 + 3, 1 + 16));
        // Two rows: a user's 8 features, then 3 item ids.
        let row = |seed: f32| {
            let mut row: Vec<f32> = (0..8).map(|i| (i as f32 * seed).sin()).collect();
            row.extend([1.0, 7.0, seed]);
            row
        };
        let data = [row(1.0), row(2.0)].concat();
        let batch = Batch {
            rows: 2,
            features: 11,
            data,
        };
        let out = model.forward(&batch).unwrap();
        assert_eq!((out.rows, out.classes), (2, 17));
        assert_ne!(out.row(0), out.row(1));
        // Each row alone gives its row of the batch: the inputs were split per row.
        for r in 0..2 {
            let one = Batch {
                rows: 1,
                features: 11,
                data: batch.data[r * 11..(r + 1) * 11].to_vec(),
            };
            let alone = model.forward(&one).unwrap();
            for (a, b) in alone.row(0).iter().zip(out.row(r)) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{:?} vs {:?}",
                    alone.row(0),
                    out.row(r)
                );
            }
        }
        // An item id must be whole.
        let mut fractional = batch.data[..11].to_vec();
        fractional[9] = 1.5;
        let err = model
            .forward(&Batch {
                rows: 1,
                features: 11,
                data: fractional,
            })
            .unwrap_err();
        assert!(err.to_string().contains("whole numbers"), "{err}");
        // Nor is it a classifier.
        let classes = Sidecar {
            task: Some(Task::Classification),
            ..Sidecar::default()
        };
        let err = load(bytes, classes).unwrap_err().to_string();
        assert!(err.contains("answers its outputs' values"), "{err}");
    }

    #[test]
    fn a_normalisation_axis_outside_its_inputs_rank_is_refused_not_looped_on() {
        use prost::Message;
        let bytes = include_bytes!("../../tests/fixtures/onnx/torch-two-tower/model.onnx");
        // The two-tower's LayerNormalization works on a rank-2 tensor.
        let with_axis = |axis: i64| {
            let mut proto = ModelProto::decode(&bytes[..]).unwrap();
            let graph = proto.graph.as_mut().unwrap();
            let node = graph
                .node
                .iter_mut()
                .find(|n| n.op_type == "LayerNormalization")
                .unwrap();
            match node.attribute.iter_mut().find(|a| a.name == "axis") {
                Some(attr) => attr.i = axis,
                None => node.attribute.push(tract_onnx::pb::AttributeProto {
                    name: "axis".into(),
                    r#type: 2,
                    i: axis,
                    ..Default::default()
                }),
            }
            proto.encode_to_vec()
        };
        for axis in [-1, 1] {
            load(&with_axis(axis), Sidecar::default()).unwrap();
        }
        for axis in [-3, 2, i64::MIN, i64::MAX] {
            let err = load(&with_axis(axis), Sidecar::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("axis {axis} is outside [-2, 2)")),
                "{axis}: {err}"
            );
        }
        // The fuzzer's find: axis -5, whose load used to never end.
        let found =
            include_bytes!("../../fuzz/corpus/onnx_model/regress-layernorm-axis-below-rank");
        let err = load(found, Sidecar::default()).unwrap_err().to_string();
        assert!(err.contains("axis -5 is outside"), "{err}");
    }

    #[test]
    fn a_triton_repositorys_image_network_takes_its_pixels_as_a_tensor_model() {
        use declared::DeclaredTensor;
        let tensor = |name: &str, dims: &[i64]| DeclaredTensor {
            name: name.into(),
            elem: Elem::F32,
            dims: dims.to_vec(),
            reshape: None,
        };
        let declared = Declared {
            max_batch_size: 8,
            inputs: vec![tensor("input", &[3, 32, 32])],
            outputs: vec![tensor("logits", &[4])],
            labels: None,
        };
        let inputs = LoadInputs {
            declared: Some(declared),
            ..LoadInputs::default()
        };
        let model = OnnxModel::load(TINY_CNN, "m", "1", &inputs).unwrap();
        assert_eq!(
            model.info().kind(),
            crate::infer::manifest::InputKind::Tensors
        );
        assert_eq!(model.info().max_batch, 8);
        assert_eq!(model.info().output_len(), 4);
        // Its manifest may still ask for the image path.
        let inputs = LoadInputs {
            sidecar: tiny_cnn_sidecar(),
            ..inputs
        };
        let model = OnnxModel::load(TINY_CNN, "m", "1", &inputs).unwrap();
        assert_eq!(
            model.info().kind(),
            crate::infer::manifest::InputKind::Image
        );
    }

    #[test]
    fn logits_become_probabilities_by_softmax() {
        let mut row = [1.0f32, 2.0, 3.0];
        softmax(&mut row);
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0]);
    }
}
