//! TLS served by Berth itself (rustls): a CA made by the test signs the server's certificate;
//! a client trusting that CA pushes and pulls, URLs the server builds are `https`, and a
//! client that does not trust it, or speaks plain HTTP, gets nothing.

use reqwest::{Certificate, Client, StatusCode};

use crate::common::{TestServer, auth::ADMIN, auth::ADMIN_PASSWORD, header, sha256};

/// A CA and a certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Berth test CA");
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_with_a_test_ca() {
    let (ca, cert, key) = test_pki();
    let pki = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (pki.path().join("cert.pem"), pki.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let s = TestServer::start_with(|cfg| {
        cfg.tls_cert = Some(cert_path);
        cfg.tls_key = Some(key_path);
        cfg.auth.enabled = true;
        cfg.auth.admin_password = Some(ADMIN_PASSWORD.into());
    })
    .await;
    let https = s.base.replace("http://", "https://");
    let trusting = Client::builder()
        .use_rustls_tls()
        .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();

    // The challenge announces an https realm.
    let r = trusting.get(format!("{https}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate").unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{https}/token\"")),
        "{challenge}"
    );

    // Push a blob in a session: the Location is https, and the bytes come back.
    let bytes = b"over tls".to_vec();
    let r = trusting
        .post(format!("{https}/v2/admin/tls/blobs/uploads/"))
        .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap();
    assert!(location.starts_with(&https), "{location}");
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = trusting
        .put(format!("{location}{sep}digest={}", sha256(&bytes)))
        .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = trusting
        .get(format!("{https}/v2/admin/tls/blobs/{}", sha256(&bytes)))
        .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), bytes);

    // Not trusted, or not TLS: no answer from the registry.
    let untrusting = Client::builder().use_rustls_tls().build().unwrap();
    let err = untrusting
        .get(format!("{https}/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert!(
        Client::new()
            .get(format!("{}/v2/", s.base))
            .send()
            .await
            .is_err()
    );
}
