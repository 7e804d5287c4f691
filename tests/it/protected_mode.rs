//! Protected mode end to end. With no key file, the admin routes (`/stats`, `/metrics`,
//! `/console/status`, the repository API) answer loopback clients (127.0.0.1 and ::1) and
//! refuse 403 `protected_mode` to anyone else: a client in a network namespace of its own
//! (a real peer address, over curl's h1 and h2), or a client a trusted proxy names (h1, h2
//! and gRPC). `/predict`, OIP inference, `/health` and `/ready` answer everyone.
//! `auth.protected_mode = false` opens the admin routes with its WARN; `auth.local_networks
//! = ["attached"]` (the Compose profile's) admits this host's networks; with a key file
//! scopes decide wherever the client is.
// Tests: a failed unwrap is a failed test. Waiting on a real child process is wall-clock
// time, not the paused tokio clock.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use crate::support;

use std::net::{IpAddr, Ipv4Addr};

use infergate::auth::keys;
use infergate::auth::{Scope, Scopes};
use infergate::http::grpc::proto;
use prost::Message as _;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::netns::NetNs;
use support::{Gateway, Options, SETOSA, bare_builder, grpc_frame, runtime};

const MODEL: &str = "iris-mlp";
const OPS: &str = "ig_ops_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A gateway without keys on every address of this machine (`[::]`, both families).
fn options() -> Options {
    Options {
        listen: "[::]:0".to_owned(),
        suite_key: false,
        ..Options::default()
    }
    .tabular_only()
    .env("INFERGATE_LOG__LEVEL", "infergate=info")
}

/// An admin route and the request that asks it.
struct Admin {
    method: Method,
    path: &'static str,
    /// Its answer from this machine.
    status: u16,
}

/// Every admin route the route table has, and what each answers from loopback: the
/// repository API's load of a model the gateway has no repository for is its own 404.
const ADMIN: [Admin; 5] = [
    Admin {
        method: Method::GET,
        path: "/stats",
        status: 200,
    },
    Admin {
        method: Method::GET,
        path: "/metrics",
        status: 200,
    },
    Admin {
        method: Method::GET,
        path: "/console/status",
        status: 200,
    },
    Admin {
        method: Method::POST,
        path: "/v2/repository/index",
        status: 200,
    },
    Admin {
        method: Method::POST,
        path: "/v2/repository/models/nope/load",
        status: 404,
    },
];

/// The open routes and their bodies, each answered 200 from anywhere.
fn open_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let infer = json!({
        "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": SETOSA}],
    });
    vec![
        (Method::GET, "/health", None),
        (Method::GET, "/ready", None),
        (Method::GET, "/openapi.json", None),
        (
            Method::POST,
            "/predict",
            Some(json!({ "features": SETOSA })),
        ),
        (Method::GET, "/v2/health/ready", None),
        (Method::GET, "/v2/models/iris-mlp", None),
        (Method::POST, "/v2/models/iris-mlp/infer", Some(infer)),
    ]
}

fn clients() -> [(&'static str, Client); 2] {
    [
        ("h1", bare_builder().http1_only().build().unwrap()),
        (
            "h2",
            bare_builder().http2_prior_knowledge().build().unwrap(),
        ),
    ]
}

/// The message of a refusal in either error shape: ours (`{"error": {"code", "message"}}`)
/// or the OIP's (`{"error": "code: message"}`), as `code: message`.
fn refusal(v: &Value) -> String {
    match &v["error"] {
        Value::String(s) => s.clone(),
        e => format!(
            "{}: {}",
            e["code"].as_str().unwrap(),
            e["message"].as_str().unwrap()
        ),
    }
}

/// A refusal is protected mode's, and says how to open the route.
fn assert_protected(what: &str, status: u16, body: &Value) {
    assert_eq!(status, 403, "{what}: {body}");
    let text = refusal(body);
    assert!(text.starts_with("protected_mode: "), "{what}: {text}");
    assert!(
        text.contains("infergate hash-key") && text.contains("auth.protected_mode = false"),
        "{what}: the message says how to open it: {text}"
    );
}

async fn send(
    c: &Client,
    method: Method,
    url: String,
    body: Option<&Value>,
    forwarded_for: Option<&str>,
) -> (u16, Value) {
    let mut req = c.request(method, url);
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(addr) = forwarded_for {
        req = req.header("x-forwarded-for", addr);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A unary gRPC call of `method` with `message`, as a client behind a proxy that names
/// `forwarded_for`: the HTTP status, the `grpc-status` of a trailers-only answer (`None`:
/// OK, in the trailers), and the body.
async fn grpc(
    c: &Client,
    base: &str,
    method: &str,
    message: &impl prost::Message,
    forwarded_for: &str,
) -> (u16, Option<String>, bytes::Bytes) {
    let r = c
        .post(format!("{base}/inference.GRPCInferenceService/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-forwarded-for", forwarded_for)
        .body(grpc_frame(message))
        .send()
        .await
        .unwrap();
    let status = r
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), status, r.bytes().await.unwrap())
}

#[test]
fn loopback_reaches_the_admin_routes_and_a_client_a_proxy_names_does_not() {
    let gw = Gateway::start(options().env(
        "INFERGATE_RATE_LIMIT__TRUSTED_PROXIES",
        r#"["127.0.0.1", "::1"]"#,
    ));
    let port = gw.addr.port();
    let stranger = "198.51.100.7";
    runtime().block_on(async {
        for base in [
            format!("https://127.0.0.1:{port}"),
            format!("https://[::1]:{port}"),
        ] {
            for (proto, c) in clients() {
                for route in &ADMIN {
                    let url = format!("{base}{}", route.path);
                    let what = format!("{proto} {} {url}", route.method);
                    // From this machine, as today.
                    let (status, body) =
                        send(&c, route.method.clone(), url.clone(), None, None).await;
                    assert_eq!(status, route.status, "{what}: {body}");
                    // A proxy on this machine naming a client on this machine: admitted.
                    let (status, _) = send(
                        &c,
                        route.method.clone(),
                        url.clone(),
                        None,
                        Some("127.0.0.1"),
                    )
                    .await;
                    assert_eq!(status, route.status, "{what} for 127.0.0.1");
                    // Naming a client elsewhere: refused, however the client got there.
                    let (status, body) =
                        send(&c, route.method.clone(), url, None, Some(stranger)).await;
                    assert_protected(&what, status, &body);
                }
                for (method, path, body) in open_routes() {
                    let what = format!("{proto} {method} {base}{path}");
                    let url = format!("{base}{path}");
                    let (status, answer) =
                        send(&c, method, url, body.as_ref(), Some(stranger)).await;
                    assert_eq!(status, 200, "{what}: {answer}");
                }
            }
            // gRPC has no admin method: inference and health answer the stranger.
            let h2 = &clients()[1].1;
            let request = proto::ModelInferRequest {
                model_name: MODEL.into(),
                inputs: vec![proto::model_infer_request::InferInputTensor {
                    name: "features".into(),
                    datatype: "FP64".into(),
                    shape: vec![1, 4],
                    contents: Some(proto::InferTensorContents {
                        fp64_contents: SETOSA.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let (http, status, body) = grpc(h2, &base, "ModelInfer", &request, stranger).await;
            assert_eq!(
                (http, status.as_deref()),
                (200, None),
                "gRPC ModelInfer over {base}"
            );
            let answer = proto::ModelInferResponse::decode(&body[5..]).unwrap();
            assert_eq!(answer.model_name, MODEL);
            assert!(!answer.outputs.is_empty(), "{answer:?}");
            let live = proto::ServerLiveRequest {};
            let (http, status, _) = grpc(h2, &base, "ServerLive", &live, stranger).await;
            assert_eq!(
                (http, status.as_deref()),
                (200, None),
                "gRPC ServerLive over {base}"
            );
        }
        // Two addresses x two protocols x five routes refused.
        assert_eq!(
            gw.metric("infergate_auth_refused_total{reason=\"protected\"}")
                .await,
            20.0
        );
    });
    // One WARN at start, naming who reaches what.
    let warnings: Vec<String> = gw
        .logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("no API key file"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", gw.logs());
    let warn: Value = serde_json::from_str(&warnings[0]).unwrap();
    assert_eq!(
        warn["admin_only_from_here"], "/stats /metrics /console/status /v2/repository",
        "{warn}"
    );
    let open = warn["open_to_anyone"].as_str().unwrap();
    assert!(
        open.contains("/predict") && open.contains("/v2/models/{model}/infer"),
        "{open}"
    );
}

/// curl inside a network namespace, asking a gateway on this machine over one protocol.
struct Curl<'a> {
    ns: &'a NetNs,
    /// The gateway's port, on the namespace link's host end.
    port: u16,
    /// `h1` or `h2`.
    proto: &'a str,
}

impl Curl<'_> {
    /// What `method path` (with a JSON `body`, and `key` as a bearer) gets: the status, the
    /// body, and the HTTP version curl spoke.
    fn call(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value, String) {
        let mut cmd = self.ns.command("curl");
        cmd.args(["-sk", "--max-time", "20", "-X", method.as_str()])
            .arg(if self.proto == "h2" {
                "--http2"
            } else {
                "--http1.1"
            })
            .args(["-w", "\n%{http_code} %{http_version}"]);
        if let Some(body) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary"])
                .arg(body.to_string());
        }
        if let Some(key) = key {
            cmd.args(["-H", &format!("authorization: Bearer {key}")]);
        }
        cmd.arg(format!("https://{}:{}{path}", self.ns.host, self.port));
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (answer, last) = text.rsplit_once('\n').unwrap_or(("", &text));
        let (code, version) = last.split_once(' ').unwrap_or((last, ""));
        let status = code.parse().unwrap_or_else(|_| {
            panic!(
                "curl {method} {path}: {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (
            status,
            serde_json::from_str(answer).unwrap_or(Value::Null),
            version.to_owned(),
        )
    }
}

#[test]
fn a_client_on_another_network_is_refused_the_admin_routes_only() {
    let ns = NetNs::create();
    let gw = Gateway::start(options());
    let port = gw.addr.port();
    for proto in ["h1", "h2"] {
        let version = if proto == "h2" { "2" } else { "1.1" };
        let curl = Curl {
            ns: &ns,
            port,
            proto,
        };
        for route in &ADMIN {
            let (status, body, spoken) = curl.call(&route.method, route.path, None, None);
            assert_eq!(spoken, version, "{proto} {}", route.path);
            assert_protected(
                &format!("{proto} {} from {}", route.path, ns.inside),
                status,
                &body,
            );
        }
        for (method, path, body) in open_routes() {
            let (status, answer, _) = curl.call(&method, path, body.as_ref(), None);
            assert_eq!(
                status, 200,
                "{proto} {method} {path} from {}: {answer}",
                ns.inside
            );
        }
    }
    // The same gateway, from this machine, as today.
    runtime().block_on(async {
        for (proto, c) in clients() {
            for route in &ADMIN {
                let url = format!("https://127.0.0.1:{port}{}", route.path);
                let (status, body) = send(&c, route.method.clone(), url, None, None).await;
                assert_eq!(status, route.status, "{proto} {}: {body}", route.path);
            }
        }
    });
}

#[test]
fn open_knowingly_local_networks_and_keys() {
    let ns = NetNs::create();
    let stats = |gw: &Gateway, key: Option<&str>| {
        let curl = Curl {
            ns: &ns,
            port: gw.addr.port(),
            proto: "h2",
        };
        let (status, body, _) = curl.call(&Method::GET, "/stats", None, key);
        (status, body)
    };

    // auth.protected_mode = false: open to the stranger, with the WARN naming the routes.
    let open = Gateway::start(options().env("INFERGATE_AUTH__PROTECTED_MODE", false));
    assert_eq!(stats(&open, None).0, 200);
    let logs = open.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("auth.protected_mode = false"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", open.logs());
    assert!(
        warnings[0].contains("/stats /metrics /console/status /v2/repository"),
        "{}",
        warnings[0]
    );
    drop(open);

    // "attached": the namespace's link is a network this host has an interface on.
    let attached =
        Gateway::start(options().env("INFERGATE_AUTH__LOCAL_NETWORKS", r#"["attached"]"#));
    assert_eq!(stats(&attached, None).0, 200);
    drop(attached);
    // A block that is not it: refused.
    let elsewhere =
        Gateway::start(options().env("INFERGATE_AUTH__LOCAL_NETWORKS", r#"["192.0.2.0/24"]"#));
    let (status, body) = stats(&elsewhere, None);
    assert_protected("/stats with another local network", status, &body);
    drop(elsewhere);

    // A key file: scopes decide, wherever the client is; protected mode has no say.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    std::fs::write(
        &file,
        keys::line("ops", Scopes::of(&[Scope::Admin]), OPS) + "\n",
    )
    .unwrap();
    let keyed = Gateway::start(options().env("INFERGATE_AUTH__KEYS_PATH", file.display()));
    let (status, body) = stats(&keyed, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    assert_eq!(stats(&keyed, Some(OPS)).0, 200);
    let here = IpAddr::from(Ipv4Addr::LOCALHOST);
    runtime().block_on(async {
        let c = &clients()[0].1;
        let url = format!("https://{here}:{}/stats", keyed.addr.port());
        let (status, _) = send(c, Method::GET, url, None, None).await;
        assert_eq!(status, 401, "loopback needs the key too");
    });
}
