//! Image classification through the real binary over HTTPS (h1 and h2): the seed's
//! `curl -F file=@photo.jpg` upload and raw `image/*` bodies, answered by the bundled
//! EfficientNet-Lite0; bad uploads answered with documented 4xx JSON errors; distinct
//! uploads batched, identical ones coalesced and cached.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::io::Cursor;

use futures_util::future::join_all;
use md5::{Digest, Md5};
use reqwest::Client;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use support::{Gateway, Options, h1_client, h2_client, runtime};

const CAT: &[u8] = include_bytes!("../fixtures/images/cat.png");
const BIKE: &[u8] = include_bytes!("../fixtures/images/bike.jpg");
const FLOWER: &[u8] = include_bytes!("../fixtures/images/flower.jpg");
/// A corrupt JPEG on which zune-jpeg 0.5.15's AVX2 IDCT unwraps a `None` (found by the
/// `image_upload` fuzz target; `fuzz/corpus/image_upload/regress-zune-jpeg-idct-panic`).
const IDCT_PANIC: &[u8] = include_bytes!("../fixtures/fuzz/zune-jpeg-idct-panic.jpg");
const MODEL: &str = "efficientnet-lite0";
const FORWARDS: &str = "infergate_model_forwards_total{model=\"efficientnet-lite0\"}";

/// Status, `X-Cache` (empty on errors) and JSON body of an answer.
type Answer = (u16, String, Value);

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let ctype = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(ctype, "application/json", "status {status}");
    (status, cache, response.json().await.unwrap())
}

/// `curl -F file=@name`: multipart field `file` with a filename.
async fn upload(gw: &Gateway, client: &Client, bytes: &[u8], query: &str) -> Answer {
    let part = Part::bytes(bytes.to_vec()).file_name("upload");
    let form = Form::new().part("file", part);
    let r = client
        .post(gw.url(&format!("/predict{query}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// The image as the body, with an `image/*` content type.
async fn raw(gw: &Gateway, client: &Client, bytes: &[u8], mime: &str, query: &str) -> Answer {
    let r = client
        .post(gw.url(&format!("/predict{query}")))
        .header("content-type", mime)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    answer(r).await
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn class_ids(body: &Value) -> Vec<u64> {
    body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["class_id"].as_u64().unwrap())
        .collect()
}

/// The seed's fields and ours, each of the right shape.
fn check_shape(body: &Value, bytes: &[u8]) {
    assert_eq!(body["image_hash"], md5_hex(bytes), "{body}");
    assert_eq!(body["model"]["name"], MODEL);
    assert!(body["model"]["version"].is_string());
    assert!(body["prediction_id"].as_str().unwrap().len() == 36);
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 5, "{body}");
    let confidences: Vec<f64> = predictions
        .iter()
        .map(|p| p["confidence"].as_f64().unwrap())
        .collect();
    assert!(confidences.windows(2).all(|w| w[0] >= w[1]), "{body}");
    assert!(confidences.iter().all(|c| (0.0..=1.0).contains(c)));
    assert!(predictions.iter().all(|p| p["label"].as_str().is_some()));
}

#[test]
fn real_photos_are_classified_over_https_multipart_and_raw() {
    let gw = Gateway::start(Options::default());
    runtime().block_on(async {
        for (i, client) in [h1_client(), h2_client()].iter().enumerate() {
            // Multipart as the seed's curl sends it; the first client computes, the second
            // finds every photo in the cache.
            let fresh = if i == 0 { "miss" } else { "hit-l1" };
            let (status, cache, cat) = upload(&gw, client, CAT, "").await;
            assert_eq!((status, cache.as_str()), (200, fresh), "{cat}");
            check_shape(&cat, CAT);
            let top = class_ids(&cat)[0];
            assert!((281..=285).contains(&top), "a cat class: {cat}");
            assert_eq!(cat["cached"], i == 1);

            let (status, _, bike) = raw(&gw, client, BIKE, "image/jpeg", "").await;
            assert_eq!(status, 200, "{bike}");
            check_shape(&bike, BIKE);
            let ids = class_ids(&bike);
            assert!(ids[0] == 671 || ids.contains(&444), "a bicycle: {bike}");

            let (status, _, flower) = upload(&gw, client, FLOWER, &format!("?model={MODEL}")).await;
            assert_eq!(status, 200, "{flower}");
            check_shape(&flower, FLOWER);
            assert_eq!(class_ids(&flower)[0], 985, "daisy: {flower}");
            assert_eq!(flower["predictions"][0]["label"], "daisy");

            // The same bytes, sent the other way, are the same cache entry.
            let (status, cache, again) = raw(&gw, client, CAT, "image/png", "").await;
            assert_eq!((status, cache.as_str()), (200, "hit-l1"));
            assert_eq!(again["predictions"], cat["predictions"]);
            assert_eq!(again["cached"], true);
        }
        // JSON still goes to the tabular model by default.
        let r = h1_client()
            .post(gw.url("/predict"))
            .json(&serde_json::json!({"features": support::SETOSA}))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"]["name"], "iris-mlp");
    });
}

/// A PNG whose header claims `width × height` (its IHDR rewritten, CRC fixed), followed by
/// the original's small data: a decompression bomb's header.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = CAT.to_vec();
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ...; CRC after 13 bytes.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The bike JPEG with its frame header (SOF) rewritten to claim `width × height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpg = BIKE.to_vec();
    let sof = jpg
        .windows(2)
        .position(|w| w[0] == 0xFF && (0xC0..=0xC2).contains(&w[1]))
        .unwrap();
    // FF Cx, length (2), precision (1), height (2), width (2).
    jpg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpg
}

/// A request the table sends: how, and what it must get.
struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    code: &'static str,
}

enum Send {
    Raw(&'static str, Vec<u8>, &'static str),
    Multipart(Vec<(&'static str, Vec<u8>)>),
    Body(&'static str, Vec<u8>, &'static str),
}

fn multipart_body(boundary: &str, parts: &[(&str, &[u8])], terminate: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    if terminate {
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    out
}

/// The cat photo shrunk to 120×80 and encoded as `format`: under every limit.
fn thumbnail(format: image::ImageFormat) -> Vec<u8> {
    let img = image::load_from_memory(CAT).unwrap().thumbnail(120, 80);
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn cases() -> Vec<Case> {
    let mp = "multipart/form-data; boundary=XB";
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    let tiff = b"II*\x00\x08\x00\x00\x00\x00\x00".to_vec();
    let long_name = "n".repeat(100_000);
    let long_name: &'static str = Box::leak(long_name.into_boxed_str());
    vec![
        Case {
            name: "empty raw body",
            send: Send::Raw("image/jpeg", Vec::new(), ""),
            status: 422,
            code: "empty_image",
        },
        Case {
            name: "text as an image",
            send: Send::Raw("image/png", b"hello, I am not a picture".to_vec(), ""),
            status: 422,
            code: "not_an_image",
        },
        Case {
            name: "text file uploaded",
            send: Send::Multipart(vec![("file", b"just some text\n".to_vec())]),
            status: 422,
            code: "not_an_image",
        },
        Case {
            name: "truncated JPEG",
            send: Send::Raw(
                "image/jpeg",
                {
                    let jpg = thumbnail(image::ImageFormat::Jpeg);
                    jpg[..jpg.len() / 3].to_vec()
                },
                "",
            ),
            status: 422,
            code: "invalid_image",
        },
        Case {
            name: "truncated PNG",
            send: Send::Raw(
                "image/png",
                {
                    let png = thumbnail(image::ImageFormat::Png);
                    png[..png.len() / 2].to_vec()
                },
                "",
            ),
            status: 422,
            code: "invalid_image",
        },
        Case {
            name: "PNG bomb (100000×100000 header)",
            send: Send::Raw("image/png", png_claiming(100_000, 100_000), ""),
            status: 413,
            code: "image_too_large",
        },
        Case {
            name: "20000×20000 JPEG header",
            send: Send::Raw("image/jpeg", jpeg_claiming(20_000, 20_000), ""),
            status: 413,
            code: "image_too_large",
        },
        Case {
            name: "GIF",
            send: Send::Multipart(vec![("file", gif)]),
            status: 415,
            code: "unsupported_image_format",
        },
        Case {
            name: "TIFF",
            send: Send::Raw("image/tiff", tiff, ""),
            status: 415,
            code: "unsupported_image_format",
        },
        Case {
            name: "wrong multipart field",
            send: Send::Multipart(vec![("image", CAT.to_vec())]),
            status: 422,
            code: "missing_file",
        },
        Case {
            name: "two files",
            send: Send::Multipart(vec![("file", CAT.to_vec()), ("file", FLOWER.to_vec())]),
            status: 422,
            code: "too_many_files",
        },
        Case {
            name: "multipart without a boundary",
            send: Send::Body("multipart/form-data", CAT.to_vec(), ""),
            status: 400,
            code: "malformed_multipart",
        },
        Case {
            name: "huge field name",
            send: Send::Multipart(vec![(long_name, CAT.to_vec())]),
            status: 422,
            code: "missing_file",
        },
        Case {
            name: "unterminated part",
            send: Send::Body(
                mp,
                {
                    let mut b = multipart_body("XB", &[("file", CAT)], false);
                    b.truncate(b.len() - 2);
                    b
                },
                "",
            ),
            status: 400,
            code: "malformed_multipart",
        },
        Case {
            name: "image under the tabular model",
            send: Send::Raw("image/png", CAT.to_vec(), "?model=iris-mlp"),
            status: 415,
            code: "wrong_input_kind",
        },
        Case {
            name: "tabular JSON under the image model",
            send: Send::Body(
                "application/json",
                br#"{"features":[5.1,3.5,1.4,0.2]}"#.to_vec(),
                "?model=efficientnet-lite0",
            ),
            status: 415,
            code: "wrong_input_kind",
        },
        Case {
            name: "unknown model",
            send: Send::Raw("image/png", CAT.to_vec(), "?model=resnet9000"),
            status: 404,
            code: "model_not_found",
        },
        Case {
            name: "WebP signature, garbage inside",
            send: Send::Raw(
                "image/webp",
                b"RIFF\x20\x00\x00\x00WEBPVP8 garbage garbage".to_vec(),
                "",
            ),
            status: 422,
            code: "invalid_image",
        },
        Case {
            name: "PNG with a corrupt chunk",
            send: Send::Raw(
                "image/png",
                {
                    let mut png = thumbnail(image::ImageFormat::Png);
                    let mid = png.len() / 2;
                    png[mid..mid + 64].fill(0xA5);
                    png
                },
                "",
            ),
            status: 422,
            code: "invalid_image",
        },
        Case {
            name: "over max_pixels (set to 100000 for this gateway)",
            send: Send::Raw("image/png", CAT.to_vec(), ""),
            status: 413,
            code: "image_too_large",
        },
    ]
}

#[test]
fn bad_uploads_get_documented_errors_and_the_server_carries_on() {
    // cat.png is 451×300 = 135 300 pixels: over this gateway's limit. The corrupt uploads
    // and the control upload after each case are 120×80 thumbnails, under it.
    let gw = Gateway::start(Options::default().env("INFERGATE_IMAGE__MAX_PIXELS", 100_000));
    let small = thumbnail(image::ImageFormat::Png);
    runtime().block_on(async {
        let table = cases();
        assert!(table.len() >= 14);
        for client in [h1_client(), h2_client()] {
            for case in &table {
                let request = match &case.send {
                    Send::Raw(mime, bytes, query) | Send::Body(mime, bytes, query) => client
                        .post(gw.url(&format!("/predict{query}")))
                        .header("content-type", *mime)
                        .body(bytes.clone()),
                    Send::Multipart(parts) => {
                        let owned: Vec<(&str, &[u8])> =
                            parts.iter().map(|(n, b)| (*n, b.as_slice())).collect();
                        client
                            .post(gw.url("/predict"))
                            .header("content-type", "multipart/form-data; boundary=XB")
                            .body(multipart_body("XB", &owned, true))
                    }
                };
                let (status, _, body) = answer(request.send().await.unwrap()).await;
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (case.status, Some(case.code)),
                    "{}: {body}",
                    case.name
                );
                let message = body["error"]["message"].as_str().unwrap();
                assert!(!message.is_empty() && message.len() < 400, "{message}");
                // The server is up and the next request is fine.
                let (status, _, ok) = upload(&gw, &client, &small, "").await;
                assert_eq!(status, 200, "after {}: {ok}", case.name);
            }
        }
    });
    assert!(!gw.logs().contains("panicked"), "no panic: {}", gw.logs());
}

/// Regression (fuzz crash `image_upload` / zune-jpeg's AVX2 IDCT): a JPEG that makes the
/// decoder panic is the client's bad input — a 422 over h1 and h2 — and the decode thread
/// carries on.
#[test]
fn a_jpeg_that_panics_the_decoder_gets_422_and_the_server_carries_on() {
    let gw = Gateway::start(Options::default());
    let small = thumbnail(image::ImageFormat::Png);
    runtime().block_on(async {
        for client in [h1_client(), h2_client()] {
            for _ in 0..3 {
                let (status, _, body) = raw(&gw, &client, IDCT_PANIC, "image/jpeg", "").await;
                // Where the AVX2 path runs, the decoder panics; elsewhere it may decode or
                // refuse it, but never fail the server.
                if std::is_x86_feature_detected!("avx2") {
                    assert_eq!(
                        (status, body["error"]["code"].as_str()),
                        (422, Some("invalid_image")),
                        "{body}"
                    );
                } else {
                    assert!(status == 200 || status == 422, "{status}: {body}");
                }
                let (status, _, ok) = upload(&gw, &client, &small, "").await;
                assert_eq!(status, 200, "after the panicking JPEG: {ok}");
            }
        }
    });
    if std::is_x86_feature_detected!("avx2") {
        assert!(
            gw.logs().contains("image decoder panicked"),
            "the panic was caught and logged: {}",
            gw.logs()
        );
    }
}

/// `count` distinct small PNGs cut from the cat photo.
fn distinct_images(count: usize) -> Vec<Vec<u8>> {
    let cat = image::load_from_memory(CAT).unwrap();
    (0..count)
        .map(|i| {
            let (x, y) = ((i as u32 * 13) % 200, (i as u32 * 7) % 100);
            let img = cat.crop_imm(x, y, 200, 150);
            let mut out = Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            out.into_inner()
        })
        .collect()
}

#[test]
fn distinct_uploads_are_batched_and_each_client_gets_its_own_answer() {
    let gw = Gateway::start(
        Options::default()
            .env("INFERGATE_CACHE__ENABLED", false)
            .env("INFERGATE_COMPUTE__THREADS", 1)
            .env("INFERGATE_IMAGE__DECODE_THREADS", 2)
            .env("INFERGATE_IMAGE__MAX_BATCH_SIZE", 8)
            .env("INFERGATE_BATCH__MAX_WAIT_MS", 50),
    );
    let images = distinct_images(16);
    runtime().block_on(async {
        let client = h2_client();
        // Each image alone first: the answer a batch must reproduce.
        let mut alone = Vec::new();
        for img in &images {
            let (status, _, body) = upload(&gw, &client, img, "").await;
            assert_eq!(status, 200, "{body}");
            alone.push(body);
        }
        let clients: Vec<Client> = (0..4).map(|_| h2_client()).collect();
        for _burst in 0..5 {
            let answers = join_all(
                images
                    .iter()
                    .enumerate()
                    .map(|(i, img)| upload(&gw, &clients[i % 4], img, "")),
            )
            .await;
            for ((img, single), (status, cache, body)) in images.iter().zip(&alone).zip(&answers) {
                assert_eq!((*status, cache.as_str()), (200, "miss"), "{body}");
                assert_eq!(body["image_hash"], md5_hex(img), "its own image's answer");
                assert_eq!(class_ids(body), class_ids(single));
                for (a, b) in body["predictions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(single["predictions"].as_array().unwrap())
                {
                    let (a, b) = (
                        a["confidence"].as_f64().unwrap(),
                        b["confidence"].as_f64().unwrap(),
                    );
                    assert!((a - b).abs() < 1e-4, "batched {a} vs alone {b}");
                }
            }
            let singles = gw
                .metric("infergate_batch_size_bucket{model=\"efficientnet-lite0\",le=\"1\"}")
                .await;
            let all = gw
                .metric("infergate_batch_size_count{model=\"efficientnet-lite0\"}")
                .await;
            if all > singles {
                return;
            }
        }
        panic!("no forward pass ever carried more than one image");
    });
}

#[test]
fn identical_uploads_share_one_inference_then_hit_the_cache() {
    let gw = Gateway::start(Options::default().env("INFERGATE_COMPUTE__THREADS", 1));
    runtime().block_on(async {
        let clients: Vec<Client> = (0..4).map(|_| h2_client()).collect();
        let before = gw.metric(FORWARDS).await;
        let answers = join_all((0..24).map(|i| upload(&gw, &clients[i % 4], BIKE, ""))).await;
        assert_eq!(gw.metric(FORWARDS).await - before, 1.0, "one forward pass");
        let first = &answers[0].2;
        for (status, cache, body) in &answers {
            assert_eq!(*status, 200);
            assert!(
                ["miss", "coalesced", "hit-l1"].contains(&cache.as_str()),
                "{cache}"
            );
            assert_eq!(body["predictions"], first["predictions"]);
        }
        assert_eq!(answers.iter().filter(|(_, c, _)| c == "miss").count(), 1);
        let (_, cache, _) = upload(&gw, &clients[0], BIKE, "").await;
        assert_eq!(cache, "hit-l1");
    });
}
