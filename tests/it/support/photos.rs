//! The fixture photos (`tests/fixtures/images/`) classified by a gateway, for suites that
//! compare two gateways' answers: the cuda build's against the CPU build's, one precision's
//! against f32's.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{self, Gateway};

/// Every photo in `tests/fixtures/images/` (README.md aside), by name.
pub fn all() -> Vec<(String, PathBuf)> {
    let dir = support::repo().join("tests/fixtures/images");
    let mut photos: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("the fixture photos")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    photos.sort();
    assert!(photos.len() >= 10, "the fixture photos: {photos:?}");
    photos
}

/// `gw`'s top-5 for every photo, over HTTP/1.1 and again over HTTP/2 (which must agree):
/// `(photo, [(class id, confidence)])`.
pub async fn top5(gw: &Gateway) -> Vec<(String, Vec<(u64, f64)>)> {
    let mut answers = Vec::new();
    for (name, path) in all() {
        let mut seen = Vec::new();
        for client in [support::h1_client(), support::h2_client()] {
            let body = gw.upload_file(&client, &path).await;
            seen.push(ranked(&body, &name));
        }
        assert_eq!(seen[0], seen[1], "{name}: h1 and h2 answers differ");
        answers.push((name, seen.swap_remove(0)));
    }
    answers
}

fn ranked(body: &Value, name: &str) -> Vec<(u64, f64)> {
    let predictions = body["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no predictions: {body}"));
    assert_eq!(predictions.len(), 5, "{name}: {body}");
    predictions
        .iter()
        .map(|p| {
            (
                p["class_id"].as_u64().expect("class_id"),
                p["confidence"].as_f64().expect("confidence"),
            )
        })
        .collect()
}
