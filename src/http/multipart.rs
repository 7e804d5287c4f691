//! `multipart/form-data` uploads, as `curl -F file=@photo.jpg` sends them: the image is the
//! field named `file`; an optional `model` field picks the model. Parsing is `multer`'s, over
//! a body already read under the size and time limits.

use std::convert::Infallible;

use bytes::Bytes;

use crate::http::error::ApiError;

/// The field that carries the image.
pub const FILE_FIELD: &str = "file";
/// The optional field that names the model.
pub const MODEL_FIELD: &str = "model";
/// Longest model name accepted in the `model` field.
const MAX_MODEL_NAME: usize = 256;
/// Longest field name quoted back in an error message.
const MAX_QUOTED_NAME: usize = 40;

/// What a multipart upload carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The bytes of field `file`.
    pub file: Bytes,
    /// The `model` field, when present.
    pub model: Option<String>,
}

/// Extracts the `file` field (exactly one) and the optional `model` field from `body`.
/// Other fields are read past and ignored.
pub async fn upload(body: Bytes, boundary: &str) -> Result<Upload, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut file = None;
    let mut model = None;
    let mut others: Vec<String> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        match field.name() {
            Some(FILE_FIELD) => {
                if file.is_some() {
                    return Err(ApiError::InvalidInput {
                        code: "too_many_files",
                        message: format!(
                            "the upload has more than one `{FILE_FIELD}` field; send one image \
                             per request"
                        ),
                    });
                }
                file = Some(field.bytes().await.map_err(malformed)?);
            }
            Some(MODEL_FIELD) => {
                let name = field.text().await.map_err(malformed)?;
                if name.len() > MAX_MODEL_NAME {
                    return Err(ApiError::InvalidInput {
                        code: "invalid_model_name",
                        message: format!(
                            "the `{MODEL_FIELD}` field is longer than {MAX_MODEL_NAME} bytes"
                        ),
                    });
                }
                model = Some(name);
            }
            other => {
                others.push(quoted(other.unwrap_or("")));
                // Read past it so the parser reaches the next part.
                field.bytes().await.map_err(malformed)?;
            }
        }
    }
    let Some(file) = file else {
        let seen = if others.is_empty() {
            "none".to_owned()
        } else {
            others.join(", ")
        };
        return Err(ApiError::InvalidInput {
            code: "missing_file",
            message: format!(
                "the upload has no `{FILE_FIELD}` field (fields seen: {seen}); send the image \
                 as `{FILE_FIELD}`, e.g. curl -F {FILE_FIELD}=@photo.jpg"
            ),
        });
    };
    Ok(Upload { file, model })
}

fn malformed(e: multer::Error) -> ApiError {
    ApiError::MalformedMultipart(format!("the multipart body is malformed: {e}"))
}

/// A field name fit to quote back: short, and without control characters.
fn quoted(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED_NAME)
        .collect();
    if name.chars().count() > MAX_QUOTED_NAME {
        clean.push('…');
    }
    format!("{clean:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &[u8])]) -> Bytes {
        let mut out = Vec::new();
        for (name, data) in parts {
            out.extend_from_slice(b"--XB\r\n");
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"x.jpg\"\r\n\r\n"
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XB--\r\n");
        Bytes::from(out)
    }

    fn code(result: Result<Upload, ApiError>) -> &'static str {
        result.err().map_or("ok", |e| e.code())
    }

    #[tokio::test]
    async fn the_file_field_and_the_model_field_are_taken() {
        let up = upload(
            body(&[
                ("note", b"hi"),
                ("file", b"\xff\xd8\xff"),
                ("model", b"net"),
            ]),
            "XB",
        )
        .await
        .unwrap();
        assert_eq!(&up.file[..], b"\xff\xd8\xff");
        assert_eq!(up.model.as_deref(), Some("net"));
    }

    #[tokio::test]
    async fn bad_uploads_name_what_is_expected() {
        assert_eq!(
            code(upload(body(&[("image", b"x")]), "XB").await),
            "missing_file"
        );
        assert_eq!(
            code(upload(body(&[("file", b"a"), ("file", b"b")]), "XB").await),
            "too_many_files"
        );
        assert_eq!(
            code(
                upload(
                    Bytes::from_static(
                        b"--XB\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"
                    ),
                    "XB"
                )
                .await
            ),
            "malformed_multipart"
        );
        assert_eq!(
            code(upload(Bytes::new(), "XB").await),
            "malformed_multipart"
        );
        let long = "n".repeat(100_000);
        let err = upload(body(&[(&long, b"x")]), "XB").await.unwrap_err();
        assert_eq!(err.code(), "missing_file");
        assert!(err.to_string().len() < 400, "{err}");
    }
}
