//! Client certificates for the admin scope (`tls.client_ca_path`): with API keys on, a
//! client presenting a certificate the configured CA issued reaches `/metrics` and
//! `/stats` without a key, over HTTP/1.1 and HTTP/2; a client without one still needs its
//! key; a certificate from another CA fails the handshake.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use infergate::auth::{Scope, Scopes, keys};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use support::{Gateway, Options, bare_builder, runtime};

const APP_KEY: &str = "ig_app00000000000000000000000000000000000000000000000000000000000";

/// A CA, and a client certificate it issued (PEM certificate + key).
fn ca_and_client(name: &str) -> (String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut client = CertificateParams::new(vec![format!("{name}.client")]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = client.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem() + &key.serialize_pem())
}

fn client_with(identity: Option<&str>, http2: bool) -> reqwest::Client {
    let mut b = bare_builder();
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    if http2 {
        b = b.http2_prior_knowledge();
    } else {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[test]
fn a_certificate_from_the_client_ca_is_an_admin_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, ops) = ca_and_client("ops");
    let (_, stranger) = ca_and_client("stranger");
    let ca_path = dir.path().join("admin-ca.pem");
    let keys_path = dir.path().join("api_keys");
    std::fs::write(&ca_path, ca_pem).unwrap();
    std::fs::write(
        &keys_path,
        keys::line("app", Scopes::of(&[Scope::Predict]), APP_KEY) + "\n",
    )
    .unwrap();
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_AUTH__KEYS_PATH", keys_path.display())
            .env("INFERGATE_TLS__CLIENT_CA_PATH", ca_path.display()),
    );
    runtime().block_on(async {
        for http2 in [false, true] {
            let proto = if http2 { "h2" } else { "h1" };
            let admin = client_with(Some(&ops), http2);
            for path in ["/metrics", "/stats"] {
                let r = admin.get(gw.url(path)).send().await.unwrap();
                assert_eq!(
                    r.status(),
                    200,
                    "{proto} {path} with the client certificate"
                );
            }
            let r = admin
                .post(gw.url("/predict"))
                .json(&serde_json::json!({"features": support::SETOSA}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{proto}: admin implies predict");
            // Without a certificate: the keys decide, as before.
            let plain = client_with(None, http2);
            let r = plain.get(gw.url("/metrics")).send().await.unwrap();
            assert_eq!(r.status(), 401, "{proto}: no certificate, no key");
            let r = plain
                .get(gw.url("/metrics"))
                .bearer_auth(APP_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{proto}: a predict key is no admin");
            assert_eq!(
                plain.get(gw.url("/health")).send().await.unwrap().status(),
                200
            );
            // A certificate the CA did not issue fails the handshake.
            let r = client_with(Some(&stranger), http2)
                .get(gw.url("/health"))
                .send()
                .await;
            assert!(r.is_err(), "{proto}: a stranger's certificate: {r:?}");
        }
        let metrics = client_with(Some(&ops), false)
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("infergate_requests_total"));
    });
    assert!(
        !gw.logs().contains("BEGIN CERTIFICATE"),
        "no certificate is logged"
    );
}
