//! Schemas of request bodies that are read by other means than a `Deserialize` type (an
//! upload, an image, binary tensor data, an ignored object), for the OpenAPI document
//! only: the handlers read these bodies as bytes.

use serde::Serialize;
use utoipa::ToSchema;

/// The optional body of a repository load or unload: any object, ignored.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct RepositoryModelRequest(pub serde_json::Map<String, serde_json::Value>);

/// `POST /predict` as `multipart/form-data`: the image in `file`, optionally `model`.
#[derive(Serialize, ToSchema)]
pub struct PredictUpload {
    /// The image file: JPEG, PNG or WebP.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Picks a model by name (before the query's `model`).
    // The example is the bundled image model: Swagger UI fills each field of its form
    // with the example, and "string" would name no model.
    #[schema(value_type = String, required = false, example = "efficientnet-lite0")]
    pub model: Option<String>,
}

/// Bytes as they are: an image body, or a binary tensor data body.
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryBody(pub Vec<u8>);
