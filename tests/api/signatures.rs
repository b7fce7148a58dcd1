//! Signatures (`/api/v1/trust/policies`, `…/images/{digest}/signatures`, the manifest GET
//! under a trust policy). Every key, certificate and signature is made in the test by Python's
//! `cryptography` (an implementation independent of the registry's): cosign simple-signing
//! payloads and sigstore bundles, notation JWS envelopes with a chain from the test's own CA,
//! for ECDSA P-256 and P-384, RSA (PSS and PKCS#1 v1.5) and Ed25519. Each rejection is shown
//! with its own reason; `enforce` refuses an unsigned image with the reason and serves a
//! signed one; replacing a key revokes trust at once; `audit` serves and counts; a bad
//! policy is refused whole.

use std::collections::HashMap;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
    image_config, json_body, sha256,
};

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const NOTATION: &str = "application/vnd.cncf.notary.signature";
const NOTATION_PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";
const DAY: i64 = 86_400;

/// Makes keys, certificates and signatures with Python's `cryptography`.
const FIXTURES_PY: &str = r##"
import base64, datetime, json, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, ed25519, padding, utils

req = json.load(sys.stdin)
keys = {}
for name, kind in req.get("keys", {}).items():
    if kind == "p256":
        keys[name] = ec.generate_private_key(ec.SECP256R1())
    elif kind == "p384":
        keys[name] = ec.generate_private_key(ec.SECP384R1())
    elif kind == "p521":
        keys[name] = ec.generate_private_key(ec.SECP521R1())
    elif kind.startswith("rsa"):
        bits = int(kind[3:] or 2048)
        keys[name] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif kind == "ed25519":
        keys[name] = ed25519.Ed25519PrivateKey.generate()
    else:
        raise SystemExit("unknown key kind " + kind)

HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
ATTRS = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}

def name_of(pairs):
    return x509.Name([x509.NameAttribute(ATTRS[k], v) for k, v in pairs])

certs = {}
for c in req.get("certs", []):
    key = keys[c["key"]]
    issuer = certs[c["issuer"]] if c.get("issuer") else None
    issuer_key = keys[c["issuer_key"]] if c.get("issuer_key") else keys[c["key"]]
    subject = name_of(c["subject"])
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer.subject if issuer else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(datetime.datetime.fromtimestamp(c["not_before"], datetime.timezone.utc))
         .not_valid_after(datetime.datetime.fromtimestamp(c["not_after"], datetime.timezone.utc))
         .add_extension(x509.BasicConstraints(ca=c["ca"], path_length=None), critical=True))
    if c.get("eku"):
        ekus = {"codeSigning": ExtendedKeyUsageOID.CODE_SIGNING, "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH}
        b = b.add_extension(x509.ExtendedKeyUsage([ekus[e] for e in c["eku"]]), critical=False)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certs[c["name"]] = b.sign(issuer_key, algorithm)

def sign(s):
    key = keys[s["key"]]
    msg = base64.b64decode(s["message"])
    scheme = s["scheme"]
    h = HASHES[s.get("hash", "sha256")]()
    if scheme in ("ecdsa-der", "ecdsa-raw"):
        algo = ec.ECDSA(utils.Prehashed(h)) if s.get("prehashed") else ec.ECDSA(h)
        der = key.sign(msg, algo)
        if scheme == "ecdsa-der":
            return der
        r, t = utils.decode_dss_signature(der)
        n = (key.curve.key_size + 7) // 8
        return r.to_bytes(n, "big") + t.to_bytes(n, "big")
    if scheme == "pss":
        pad = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        algo = utils.Prehashed(h) if s.get("prehashed") else h
        return key.sign(msg, pad, algo)
    if scheme == "pkcs1":
        algo = utils.Prehashed(h) if s.get("prehashed") else h
        return key.sign(msg, padding.PKCS1v15(), algo)
    if scheme == "ed25519":
        return key.sign(msg)
    raise SystemExit("unknown scheme " + scheme)

out = {
    "keys": {n: k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode() for n, k in keys.items()},
    "certs": {n: {"pem": c.public_bytes(serialization.Encoding.PEM).decode(), "der": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()} for n, c in certs.items()},
    "signatures": [base64.b64encode(sign(s)).decode() for s in req.get("sign", [])],
}
json.dump(out, sys.stdout)
"##;

/// The interpreter with `cryptography`: the test venv's (`scripts/install-test-deps.sh`),
/// else `python3`.
pub(crate) fn python() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// What the fixture script is asked to make.
#[derive(Default)]
pub(crate) struct Plan {
    keys: serde_json::Map<String, Value>,
    certs: Vec<Value>,
    sign: Vec<Value>,
}

/// What it made: public keys (PEM), certificates (PEM and base64 DER) and signatures
/// (raw bytes), in the order asked.
pub(crate) struct Made {
    pub(crate) keys: HashMap<String, String>,
    certs: HashMap<String, (String, String)>,
    pub(crate) signatures: Vec<Vec<u8>>,
}

impl Plan {
    fn key(&mut self, name: &str, kind: &str) -> &mut Self {
        self.keys.insert(name.into(), json!(kind));
        self
    }

    /// A certificate `name` for key `key`, issued by certificate `issuer` (its key
    /// `issuer_key`) or self-signed, valid from `not_before` to `not_after`.
    #[allow(clippy::too_many_arguments)]
    fn cert(
        &mut self,
        name: &str,
        key: &str,
        issuer: Option<(&str, &str)>,
        subject: &[(&str, &str)],
        ca: bool,
        eku: &[&str],
        not_before: i64,
        not_after: i64,
    ) -> &mut Self {
        self.certs.push(json!({
            "name": name, "key": key,
            "issuer": issuer.map(|i| i.0), "issuer_key": issuer.map(|i| i.1),
            "subject": subject, "ca": ca, "eku": eku,
            "not_before": not_before, "not_after": not_after,
        }));
        self
    }

    /// Asks for a signature of `message` by `key` under `scheme` (`ecdsa-der`, `ecdsa-raw`,
    /// `pss`, `pkcs1`, `ed25519`) with `hash`; its index in [`Made::signatures`].
    pub(crate) fn sign(
        &mut self,
        key: &str,
        scheme: &str,
        hash: &str,
        message: &[u8],
        prehashed: bool,
    ) -> usize {
        self.sign.push(json!({
            "key": key, "scheme": scheme, "hash": hash,
            "message": STANDARD.encode(message), "prehashed": prehashed,
        }));
        self.sign.len() - 1
    }

    pub(crate) fn make(&self) -> Made {
        use std::io::Write;
        let mut child = std::process::Command::new(python())
            .args(["-c", FIXTURES_PY])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with cryptography: run scripts/install-test-deps.sh");
        let request = json!({ "keys": self.keys, "certs": self.certs, "sign": self.sign });
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(request.to_string().as_bytes())
            .expect("write the fixture request");
        let out = child.wait_with_output().expect("fixture script");
        assert!(
            out.status.success(),
            "fixture script failed (is cryptography installed? scripts/install-test-deps.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made: Value = serde_json::from_slice(&out.stdout).expect("fixture JSON");
        Made {
            keys: made["keys"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            certs: made["certs"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        (
                            v["pem"].as_str().unwrap().to_owned(),
                            v["der"].as_str().unwrap().to_owned(),
                        ),
                    )
                })
                .collect(),
            signatures: made["signatures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| STANDARD.decode(s.as_str().unwrap()).unwrap())
                .collect(),
        }
    }
}

/// An `/api/v1` call; the status and the JSON body.
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s.req(method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// PUTs trust policy `name`, insisting on `expected`.
async fn put_policy(s: &TestServer, name: &str, body: Value, expected: StatusCode) -> Value {
    let (status, body) = call(
        s,
        Method::PUT,
        &format!("/trust/policies/{name}"),
        Some(body),
    )
    .await;
    assert_eq!(status, expected, "{body}");
    body
}

/// The signatures listing of image `digest` of `repo`.
async fn signatures(s: &TestServer, repo: &str, digest: &str) -> Vec<Value> {
    let (status, body) = call(
        s,
        Method::GET,
        &format!("/repositories/{repo}/-/images/{digest}/signatures"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().expect("items").clone()
}

/// The only signature of image `digest` of `repo`.
async fn only_signature(s: &TestServer, repo: &str, digest: &str) -> Value {
    let items = signatures(s, repo, digest).await;
    assert_eq!(items.len(), 1, "{items:?}");
    items[0].clone()
}

/// The status, and the `/v2/` error message, of a manifest GET.
async fn pull(s: &TestServer, repo: &str, reference: &str) -> (StatusCode, String) {
    let resp = s.get(&format!("/v2/{repo}/manifests/{reference}")).await;
    let status = resp.status();
    if status.is_success() {
        return (status, String::new());
    }
    let body = json_body(resp).await;
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    (
        status,
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// cosign's simple-signing payload naming `signed` (a digest, or a tag for the negative case).
pub(crate) fn simple_signing(repo: &str, signed: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": { "docker-reference": format!("registry.example/{repo}") },
            "image": { "docker-manifest-digest": signed },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap()
}

/// Pushes a cosign tag-scheme signature of image `subject` of `repo`: `payload` signed by
/// `signature`, under `sha256-<hex>.sig`. Returns the signature manifest's digest.
pub(crate) async fn push_cosign_tag(
    s: &TestServer,
    repo: &str,
    subject: &str,
    payload: &[u8],
    signature: &[u8],
) -> String {
    let config =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    s.push_blob(repo, config).await;
    s.push_blob(repo, payload).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256(config), "size": config.len() },
        "layers": [{
            "mediaType": SIMPLE_SIGNING,
            "digest": sha256(payload),
            "size": payload.len(),
            "annotations": { "dev.cosignproject.cosign/signature": STANDARD.encode(signature) },
        }],
    }))
    .unwrap();
    let tag = format!("{}.sig", subject.replace(':', "-"));
    s.put_manifest_ok(repo, &tag, OCI_MANIFEST, &manifest).await
}

/// Pushes a referrer of image `subject` of `repo` with `artifact_type` and one layer `blob`
/// of `media_type`. Returns its digest.
pub(crate) async fn push_referrer(
    s: &TestServer,
    repo: &str,
    subject: &str,
    artifact_type: &str,
    media_type: &str,
    blob: &[u8],
) -> String {
    s.push_blob(repo, b"{}").await;
    s.push_blob(repo, blob).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": { "mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2 },
        "layers": [{ "mediaType": media_type, "digest": sha256(blob), "size": blob.len() }],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 100 },
    }))
    .unwrap();
    let digest = sha256(&manifest);
    s.put_manifest_ok(repo, &digest, OCI_MANIFEST, &manifest)
        .await
}

/// A notation JWS to be signed: the protected header (with `alg`, `cty`) and the payload
/// naming `signed`, base64url; the signing input is `protected.payload`.
struct Jws {
    protected: String,
    payload: String,
}

impl Jws {
    fn new(alg: &str, signed: &str) -> Jws {
        Jws::with(
            json!({
                "alg": alg,
                "cty": NOTATION_PAYLOAD,
                "crit": ["io.cncf.notary.signingScheme"],
                "io.cncf.notary.signingScheme": "notary.x509",
                "io.cncf.notary.signingTime": "2026-01-01T00:00:00Z",
            }),
            json!({ "targetArtifact": { "mediaType": OCI_MANIFEST, "digest": signed, "size": 100 } }),
        )
    }

    fn with(protected: Value, payload: Value) -> Jws {
        Jws {
            protected: URL_SAFE_NO_PAD.encode(protected.to_string()),
            payload: URL_SAFE_NO_PAD.encode(payload.to_string()),
        }
    }

    fn signing_input(&self) -> Vec<u8> {
        format!("{}.{}", self.protected, self.payload).into_bytes()
    }

    /// The envelope with `signature` and the chain `x5c` (base64 DER, leaf first).
    fn envelope(&self, signature: &[u8], x5c: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "payload": self.payload,
            "protected": self.protected,
            "header": { "x5c": x5c, "io.cncf.notary.signingAgent": "test" },
            "signature": URL_SAFE_NO_PAD.encode(signature),
        }))
        .unwrap()
    }
}

/// The DSSE pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto statement naming `subject`.
fn statement(subject: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "registry.example/acme/app", "digest": { "sha256": subject.trim_start_matches("sha256:") } }],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .unwrap()
}

/// Keys p256, p384, rsa, ed (trusted), other (not); a CA and code-signing leaves for each
/// trusted key, valid from a day before `now` for a year.
pub(crate) fn base_plan(now: i64) -> Plan {
    let mut plan = Plan::default();
    plan.key("p256", "p256")
        .key("p384", "p384")
        .key("rsa", "rsa")
        .key("ed", "ed25519")
        .key("other", "p256")
        .key("ca", "p256")
        .cert(
            "ca",
            "ca",
            None,
            &[("O", "Berth Test"), ("CN", "Berth Test CA")],
            true,
            &[],
            now - DAY,
            now + 365 * DAY,
        );
    for key in ["p256", "p384", "rsa", "ed"] {
        let cn = format!("builder-{key}");
        plan.cert(
            &format!("leaf-{key}"),
            key,
            Some(("ca", "ca")),
            &[("O", "Berth Test"), ("CN", cn.as_str())],
            false,
            &["codeSigning"],
            now - DAY,
            now + 365 * DAY,
        );
    }
    plan
}

/// The policy body trusting `keys` and the CA, for identities of organisation Berth Test.
fn policy_body(made: &Made, scope: &str, mode: &str, keys: &[&str]) -> Value {
    json!({
        "scope": scope,
        "mode": mode,
        "cosign_keys": keys.iter().map(|k| made.keys[*k].clone()).collect::<Vec<_>>(),
        "notation": {
            "name": "berth-test",
            "registryScopes": ["*"],
            "signatureVerification": { "level": "strict" },
            "trustStores": ["ca:berth-test"],
            "trustedIdentities": ["x509.subject: O=Berth Test"],
        },
        "trust_store": [made.certs["ca"].0.clone()],
    })
}

/// Under an `enforce` policy: cosign tag-scheme signatures by P-256, P-384, RSA (PSS and
/// PKCS#1 v1.5) and Ed25519 keys, sigstore bundles (a message signature, a DSSE envelope) and
/// notation envelopes (ES256, ES384, PS256, EdDSA leaves of the test CA) all verify, name who
/// signed, and make their image pullable; an unsigned image is refused with the reason; the
/// signature manifests and referrers themselves are served.
#[tokio::test]
async fn every_algorithm_verifies_and_enforce_serves_only_signed_images() {
    let s = TestServer::start().await;
    let repo = "acme/app";
    let mut images = HashMap::new();
    for tag in [
        "c-p256",
        "c-p384",
        "c-rsa-pss",
        "c-rsa-pkcs1",
        "c-ed",
        "b-message",
        "b-dsse",
        "n-p256",
        "n-p384",
        "n-rsa",
        "n-ed",
        "unsigned",
    ] {
        let (digest, _) = s.push_image(repo, tag, &[tag.as_bytes()]).await;
        images.insert(tag, digest);
    }
    let mut plan = base_plan(s.clock.now());
    let mut cosign = Vec::new();
    for (tag, key, scheme, hash) in [
        ("c-p256", "p256", "ecdsa-der", "sha256"),
        ("c-p384", "p384", "ecdsa-der", "sha384"),
        ("c-rsa-pss", "rsa", "pss", "sha256"),
        ("c-rsa-pkcs1", "rsa", "pkcs1", "sha256"),
        ("c-ed", "ed", "ed25519", "sha256"),
    ] {
        let payload = simple_signing(repo, &images[tag]);
        let at = plan.sign(key, scheme, hash, &payload, false);
        cosign.push((tag, key, payload, at));
    }
    let message_digest = hex::decode(images["b-message"].trim_start_matches("sha256:")).unwrap();
    let message_at = plan.sign("p256", "ecdsa-der", "sha256", &message_digest, true);
    let dsse_payload = statement(&images["b-dsse"]);
    let dsse_at = plan.sign(
        "ed",
        "ed25519",
        "sha256",
        &pae("application/vnd.in-toto+json", &dsse_payload),
        false,
    );
    let mut notation = Vec::new();
    for (tag, key, alg, scheme, hash) in [
        ("n-p256", "p256", "ES256", "ecdsa-raw", "sha256"),
        ("n-p384", "p384", "ES384", "ecdsa-raw", "sha384"),
        ("n-rsa", "rsa", "PS256", "pss", "sha256"),
        ("n-ed", "ed", "EdDSA", "ed25519", "sha256"),
    ] {
        let jws = Jws::new(alg, &images[tag]);
        let at = plan.sign(key, scheme, hash, &jws.signing_input(), false);
        notation.push((tag, key, jws, at));
    }
    let made = plan.make();

    let policy = put_policy(
        &s,
        "acme",
        policy_body(&made, "acme", "enforce", &["p256", "p384", "rsa", "ed"]),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(policy["mode"], "enforce");
    let fingerprints: Vec<String> = policy["cosign_key_fingerprints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fingerprints.len(), 4);
    let fingerprint = |key: &str| {
        let at = ["p256", "p384", "rsa", "ed"]
            .iter()
            .position(|k| *k == key)
            .unwrap();
        format!("key {}", fingerprints[at])
    };

    // Before any signature, every image is refused with the reason.
    let (status, message) = pull(&s, repo, "c-p256").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains("trust policy acme") && message.contains("it has no signature"),
        "{message}"
    );

    let mut signature_manifests = Vec::new();
    for (tag, key, payload, at) in &cosign {
        let sig = push_cosign_tag(&s, repo, &images[tag], payload, &made.signatures[*at]).await;
        signature_manifests.push(format!("{}.sig", images[tag].replace(':', "-")));
        signature_manifests.push(sig);
        let found = only_signature(&s, repo, &images[tag]).await;
        assert_eq!(found["tool"], "cosign", "{tag}");
        assert_eq!(found["format"], "cosign-tag", "{tag}");
        assert_eq!(found["verified"], true, "{tag}: {found}");
        assert_eq!(found["identity"], fingerprint(key), "{tag}");
        assert_eq!(found["reason"], Value::Null, "{tag}");
        assert_eq!(found["policy"], "acme", "{tag}");
    }
    let bundle = serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": { "publicKey": { "hint": "p256" } },
        "messageSignature": {
            "messageDigest": { "algorithm": "SHA2_256", "digest": STANDARD.encode(&message_digest) },
            "signature": STANDARD.encode(&made.signatures[message_at]),
        },
    }))
    .unwrap();
    signature_manifests
        .push(push_referrer(&s, repo, &images["b-message"], BUNDLE, BUNDLE, &bundle).await);
    let bundle = serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": { "publicKey": { "hint": "ed" } },
        "dsseEnvelope": {
            "payload": STANDARD.encode(&dsse_payload),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{ "sig": STANDARD.encode(&made.signatures[dsse_at]), "keyid": "" }],
        },
    }))
    .unwrap();
    signature_manifests
        .push(push_referrer(&s, repo, &images["b-dsse"], BUNDLE, BUNDLE, &bundle).await);
    for (tag, key) in [("b-message", "p256"), ("b-dsse", "ed")] {
        let found = only_signature(&s, repo, &images[tag]).await;
        assert_eq!(
            (&found["tool"], &found["format"]),
            (&json!("cosign"), &json!("cosign-bundle"))
        );
        assert_eq!(found["verified"], true, "{tag}: {found}");
        assert_eq!(found["identity"], fingerprint(key), "{tag}");
    }
    for (tag, key, jws, at) in &notation {
        let envelope = jws.envelope(
            &made.signatures[*at],
            &[&made.certs[&format!("leaf-{key}")].1],
        );
        signature_manifests.push(
            push_referrer(
                &s,
                repo,
                &images[tag],
                NOTATION,
                "application/jose+json",
                &envelope,
            )
            .await,
        );
        let found = only_signature(&s, repo, &images[tag]).await;
        assert_eq!(
            (&found["tool"], &found["format"]),
            (&json!("notation"), &json!("notation-jws"))
        );
        assert_eq!(found["verified"], true, "{tag}: {found}");
        assert_eq!(
            found["identity"],
            format!("O=Berth Test, CN=builder-{key}"),
            "{tag}"
        );
    }

    // Signed images are served by tag and by digest; the unsigned one is refused.
    for (tag, digest) in &images {
        if *tag == "unsigned" {
            continue;
        }
        assert_eq!(pull(&s, repo, tag).await.0, StatusCode::OK, "{tag}");
        assert_eq!(pull(&s, repo, digest).await.0, StatusCode::OK, "{tag}");
    }
    for reference in ["unsigned", images["unsigned"].as_str()] {
        let (status, message) = pull(&s, repo, reference).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let expected = format!(
            "image {} of {repo} is not signed by a key or identity trust policy acme trusts: \
             it has no signature",
            images["unsigned"]
        );
        assert!(message.ends_with(&expected), "{message}");
    }
    assert!(signatures(&s, repo, &images["unsigned"]).await.is_empty());
    // cosign and notation read the signatures themselves: never held back.
    for reference in &signature_manifests {
        assert_eq!(
            pull(&s, repo, reference).await.0,
            StatusCode::OK,
            "{reference}"
        );
    }
    // An image pushed under a tag that looks like cosign's is still an image: refused.
    let disguised = format!("{}.sig", images["unsigned"].replace(':', "-"));
    let (config, layer) = (image_config("linux", "amd64", None), b"not a signature");
    s.push_blob(repo, &config).await;
    s.push_blob(repo, layer).await;
    let bytes = crate::common::image_manifest(&config, &[layer.as_slice()]);
    s.put_manifest_ok(repo, &disguised, OCI_MANIFEST, &bytes)
        .await;
    let (status, message) = pull(&s, repo, &disguised).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("it has no signature"), "{message}");
    // The issue's spelling without `-/` answers the same.
    let (status, body) = call(
        &s,
        Method::GET,
        &format!(
            "/repositories/{repo}/images/{}/signatures",
            images["n-p256"]
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["items"][0]["identity"],
        "O=Berth Test, CN=builder-p256"
    );
    // A repository outside the scope is not held back.
    let (other, _) = s
        .push_image("elsewhere/app", "v1", &[b"x".as_slice()])
        .await;
    assert_eq!(pull(&s, "elsewhere/app", &other).await.0, StatusCode::OK);
}

/// A notation negative case: the image it is attached to, the signing key, `alg`, the
/// signature scheme and hash, the certificate chain, and the image its payload names.
type NotationCase = (
    usize,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Vec<&'static str>,
    usize,
);

/// Each way a signature fails is stored with its own reason, shown by the signatures
/// listing, and (under `enforce`) in the refusal of the image's pull.
#[tokio::test]
async fn every_rejection_has_its_own_reason() {
    let s = TestServer::start().await;
    let repo = "acme/neg";
    let now = s.clock.now();
    let mut images = Vec::new();
    for i in 0..18 {
        let tag = format!("t{i}");
        images.push(s.push_image(repo, &tag, &[tag.as_bytes()]).await.0);
    }
    let mut plan = base_plan(now);
    let leaf = |plan: &mut Plan,
                name: &str,
                issuer: (&str, &str),
                org: &str,
                eku: &[&str],
                from: i64,
                to: i64| {
        plan.cert(
            name,
            "p256",
            Some(issuer),
            &[("O", org), ("CN", name)],
            false,
            eku,
            from,
            to,
        );
    };
    leaf(
        &mut plan,
        "expired",
        ("ca", "ca"),
        "Berth Test",
        &["codeSigning"],
        now - 10 * DAY,
        now - DAY,
    );
    leaf(
        &mut plan,
        "future",
        ("ca", "ca"),
        "Berth Test",
        &["codeSigning"],
        now + DAY,
        now + 10 * DAY,
    );
    leaf(
        &mut plan,
        "server",
        ("ca", "ca"),
        "Berth Test",
        &["serverAuth"],
        now - DAY,
        now + DAY,
    );
    leaf(
        &mut plan,
        "elsewhere",
        ("ca", "ca"),
        "Elsewhere Inc",
        &["codeSigning"],
        now - DAY,
        now + DAY,
    );
    plan.key("rogue", "p256").cert(
        "rogue-ca",
        "rogue",
        None,
        &[("O", "Berth Test"), ("CN", "Berth Test CA")],
        true,
        &[],
        now - DAY,
        now + DAY,
    );
    leaf(
        &mut plan,
        "rogue-leaf",
        ("rogue-ca", "rogue"),
        "Berth Test",
        &["codeSigning"],
        now - DAY,
        now + DAY,
    );

    // Notation envelopes: (image, signing key, alg, scheme, hash, chain, payload's subject).
    let notation_cases: Vec<NotationCase> = vec![
        (
            0,
            "p256",
            "ES256",
            "ecdsa-raw",
            "sha256",
            vec!["leaf-p256"],
            0,
        ), // tampered below
        (
            3,
            "p256",
            "ES384",
            "ecdsa-raw",
            "sha384",
            vec!["leaf-p256"],
            3,
        ),
        (
            4,
            "p256",
            "ES256",
            "ecdsa-raw",
            "sha256",
            vec!["expired"],
            4,
        ),
        (5, "p256", "ES256", "ecdsa-raw", "sha256", vec!["future"], 5),
        (6, "p256", "ES256", "ecdsa-raw", "sha256", vec!["server"], 6),
        (
            7,
            "p256",
            "ES256",
            "ecdsa-raw",
            "sha256",
            vec!["rogue-leaf", "rogue-ca"],
            7,
        ),
        (
            8,
            "p256",
            "ES256",
            "ecdsa-raw",
            "sha256",
            vec!["elsewhere"],
            8,
        ),
        (
            9,
            "p256",
            "ES256",
            "ecdsa-raw",
            "sha256",
            vec!["leaf-p256"],
            9,
        ), // truncated below
        (
            11,
            "p256",
            "ES256",
            "ecdsa-raw",
            "sha256",
            vec!["leaf-p256"],
            10,
        ), // another image
        (
            12,
            "p256",
            "ES512",
            "ecdsa-raw",
            "sha512",
            vec!["leaf-p256"],
            12,
        ),
    ];
    let mut notation = Vec::new();
    for (image, key, alg, scheme, hash, chain, signed) in notation_cases {
        let jws = Jws::new(alg, &images[signed]);
        let at = plan.sign(key, scheme, hash, &jws.signing_input(), false);
        notation.push((image, jws, at, chain));
    }
    // A content type that is not notation's payload.
    let wrong_cty = Jws::with(
        json!({ "alg": "ES256", "cty": "application/json" }),
        json!({ "targetArtifact": { "digest": images[13], "size": 1 } }),
    );
    let wrong_cty_at = plan.sign(
        "p256",
        "ecdsa-raw",
        "sha256",
        &wrong_cty.signing_input(),
        false,
    );
    // cosign tag-scheme signatures: (image, payload, key).
    let cosign_cases = vec![
        (1, simple_signing(repo, &images[15]), "p256"),
        (2, simple_signing(repo, &images[2]), "other"),
        (
            10,
            simple_signing(repo, &format!("registry.example/{repo}:t10")),
            "p256",
        ),
        (14, simple_signing(repo, &images[14]), "ed"), // truncated below
    ];
    let mut cosign = Vec::new();
    for (image, payload, key) in cosign_cases {
        let scheme = if key == "ed" { "ed25519" } else { "ecdsa-der" };
        let at = plan.sign(key, scheme, "sha256", &payload, false);
        cosign.push((image, payload, at));
    }
    let made = plan.make();
    put_policy(
        &s,
        "neg",
        policy_body(&made, "acme/neg", "enforce", &["p256", "p384", "rsa", "ed"]),
        StatusCode::CREATED,
    )
    .await;

    for (image, jws, at, chain) in &notation {
        let mut signature = made.signatures[*at].clone();
        let mut jws = Jws {
            protected: jws.protected.clone(),
            payload: jws.payload.clone(),
        };
        match image {
            // The payload altered after signing (same image, another size).
            0 => {
                jws.payload = URL_SAFE_NO_PAD.encode(
                    json!({ "targetArtifact": { "mediaType": OCI_MANIFEST, "digest": images[0], "size": 101 } })
                        .to_string(),
                )
            }
            9 => signature.truncate(signature.len() - 1),
            _ => {}
        }
        let x5c: Vec<&str> = chain.iter().map(|c| made.certs[*c].1.as_str()).collect();
        let envelope = jws.envelope(&signature, &x5c);
        push_referrer(
            &s,
            repo,
            &images[*image],
            NOTATION,
            "application/jose+json",
            &envelope,
        )
        .await;
    }
    let envelope = wrong_cty.envelope(
        &made.signatures[wrong_cty_at],
        &[&made.certs["leaf-p256"].1],
    );
    push_referrer(
        &s,
        repo,
        &images[13],
        NOTATION,
        "application/jose+json",
        &envelope,
    )
    .await;
    for (image, payload, at) in &cosign {
        let mut signature = made.signatures[*at].clone();
        if *image == 14 {
            signature.truncate(40);
        }
        push_cosign_tag(&s, repo, &images[*image], payload, &signature).await;
    }
    // A chain longer than the limit (a cyclic chain repeats until it is).
    let long = Jws::new("ES256", &images[16]);
    let mut chain = vec![made.certs["leaf-p256"].1.as_str()];
    chain.extend(std::iter::repeat_n(made.certs["ca"].1.as_str(), 8));
    let envelope = long.envelope(&made.signatures[notation[0].2], &chain);
    push_referrer(
        &s,
        repo,
        &images[16],
        NOTATION,
        "application/jose+json",
        &envelope,
    )
    .await;
    // A signature layer larger than the registry reads.
    let mut huge = simple_signing(repo, &images[17]);
    huge.resize(300 * 1024, b' ');
    push_cosign_tag(&s, repo, &images[17], &huge, &made.signatures[cosign[0].2]).await;

    let expected: [(usize, String); 17] = [
        (0, "does not verify with the signing certificate's key (O=Berth Test, CN=builder-p256): the payload or header was altered".into()),
        (1, format!("the payload signs {}, not the image {} it is attached to", images[15], images[1])),
        (2, "none of the 4 cosign key(s) of trust policy neg verifies the signature".into()),
        (3, "alg ES384 does not match the signing key (ECDSA P-256)".into()),
        (4, "certificate O=Berth Test, CN=expired expired at".into()),
        (5, "certificate O=Berth Test, CN=future is not valid before".into()),
        (6, "the signing certificate O=Berth Test, CN=server lacks the code-signing extended key usage".into()),
        (7, "the chain of O=Berth Test, CN=rogue-leaf does not lead to a certificate of the trust store (untrusted CA)".into()),
        (8, "signer O=Elsewhere Inc, CN=elsewhere is not in the trusted identities".into()),
        (9, "the signature is malformed for the ECDSA P-256 key (truncated or badly encoded)".into()),
        (10, format!("the payload signs \"registry.example/{repo}:t10\", a tag or name rather than a digest")),
        (11, format!("the referrer's subject is {}, but its signature is for another image, {}", images[11], images[10])),
        (12, "unsupported signature algorithm ES512".into()),
        (13, "content type \"application/json\" is not application/vnd.cncf.notary.payload.v1+json".into()),
        (14, "the signature is malformed for every one of the 4 cosign keys".into()),
        (16, "the certificate chain has 9 certificates (between 1 and 8)".into()),
        (17, "could not be read: 307200 bytes, more than the limit of 262144".into()),
    ];
    let mut reasons = std::collections::HashSet::new();
    for (image, reason) in &expected {
        let found = only_signature(&s, repo, &images[*image]).await;
        assert_eq!(found["verified"], false, "t{image}: {found}");
        assert_eq!(found["identity"], Value::Null, "t{image}");
        let shown = found["reason"].as_str().unwrap_or_default().to_owned();
        assert!(
            shown.contains(reason.as_str()),
            "t{image}: {shown:?} lacks {reason:?}"
        );
        reasons.insert(shown);
        // The pull is refused with the same reason.
        let (status, message) = pull(&s, repo, &images[*image]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "t{image}");
        assert!(
            message.contains(&format!(
                "its signature did not verify: {}",
                reasons
                    .iter()
                    .find(|r| r.contains(reason.as_str()))
                    .unwrap()
            )),
            "t{image}: {message}"
        );
    }
    assert_eq!(
        reasons.len(),
        expected.len(),
        "each rejection has its own reason: {reasons:?}"
    );
}

/// The value of series `series` in the server's `/metrics` (0 when absent).
async fn metric(s: &TestServer, series: &str) -> f64 {
    let text = s.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Replacing a policy's key revokes the trust of what the old key signed before the PUT
/// answers, and restoring it restores it; `audit` serves an unverified image and counts it,
/// `off` serves it uncounted; deleting the policy lifts the gate.
#[tokio::test]
async fn switching_the_key_revokes_trust_at_once_and_audit_serves() {
    let s = TestServer::start().await;
    let repo = "team/app";
    let (digest, _) = s
        .push_image(repo, "v1", &[b"signed layer".as_slice()])
        .await;
    let mut plan = base_plan(s.clock.now());
    let payload = simple_signing(repo, &digest);
    let at = plan.sign("p256", "ecdsa-der", "sha256", &payload, false);
    let made = plan.make();
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "enforce", &["p256"]),
        StatusCode::CREATED,
    )
    .await;
    push_cosign_tag(&s, repo, &digest, &payload, &made.signatures[at]).await;
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::OK);

    // Another key: the signature no longer verifies, at once.
    let replaced = put_policy(
        &s,
        "team",
        policy_body(&made, "team", "enforce", &["p384"]),
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["cosign_keys"][0], made.keys["p384"]);
    let found = only_signature(&s, repo, &digest).await;
    assert_eq!(found["verified"], false);
    assert_eq!(
        found["reason"],
        "none of the 1 cosign key(s) of trust policy team verifies the signature"
    );
    let (status, message) = pull(&s, repo, "v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.ends_with(&format!(
            "image {digest} of {repo} is not signed by a key or identity trust policy team trusts: \
         its signature did not verify: none of the 1 cosign key(s) of trust policy team \
         verifies the signature"
        )),
        "{message}"
    );
    assert_eq!(
        metric(&s, "berth_unsigned_pulls_total{mode=\"enforce\"}").await,
        1.0
    );

    // The key back: trusted again.
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "enforce", &["p384", "p256"]),
        StatusCode::OK,
    )
    .await;
    assert_eq!(only_signature(&s, repo, &digest).await["verified"], true);
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::OK);

    // audit: the unverified image is served, and counted.
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "audit", &["p384"]),
        StatusCode::OK,
    )
    .await;
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::OK);
    assert_eq!(
        metric(&s, "berth_unsigned_pulls_total{mode=\"audit\"}").await,
        1.0
    );
    // off: served, not counted; the result is still shown.
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "off", &["p384"]),
        StatusCode::OK,
    )
    .await;
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::OK);
    assert_eq!(
        metric(&s, "berth_unsigned_pulls_total{mode=\"audit\"}").await,
        1.0
    );
    assert_eq!(only_signature(&s, repo, &digest).await["verified"], false);

    // A narrower enforce policy decides for its repository over the namespace's.
    put_policy(
        &s,
        "team-app",
        policy_body(&made, "team/app", "enforce", &["p256"]),
        StatusCode::CREATED,
    )
    .await;
    let found = only_signature(&s, repo, &digest).await;
    assert_eq!(
        (&found["verified"], &found["policy"]),
        (&json!(true), &json!("team-app"))
    );
    let (status, list) = call(&s, Method::GET, "/trust/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team", "team-app"]);

    // Deleting it hands the repository back to the namespace's policy (off).
    let resp = s
        .req(Method::DELETE, "/api/v1/trust/policies/team-app")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _) = call(&s, Method::GET, "/trust/policies/team-app", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(only_signature(&s, repo, &digest).await["policy"], "team");
    let resp = s
        .req(Method::DELETE, "/api/v1/trust/policies/team-app")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A narrower policy in mode off decides for its repository over an enforcing namespace.
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "enforce", &["p384"]),
        StatusCode::OK,
    )
    .await;
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::FORBIDDEN);
    put_policy(
        &s,
        "team-app",
        policy_body(&made, "team/app", "off", &["p384"]),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::OK);
}

/// The tag and image listings show each image's signed status: by whom when verified, why
/// not when not, nothing for an unsigned one; a key switch shows at once.
#[tokio::test]
async fn listings_show_whether_each_tag_and_image_is_signed() {
    let s = TestServer::start().await;
    let repo = "team/app";
    let (signed, _) = s.push_image(repo, "v1", &[b"signed".as_slice()]).await;
    let (unsigned, _) = s.push_image(repo, "v2", &[b"unsigned".as_slice()]).await;
    let mut plan = base_plan(s.clock.now());
    let payload = simple_signing(repo, &signed);
    let at = plan.sign("p256", "ecdsa-der", "sha256", &payload, false);
    let made = plan.make();
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "audit", &["p256"]),
        StatusCode::CREATED,
    )
    .await;
    push_cosign_tag(&s, repo, &signed, &payload, &made.signatures[at]).await;
    let identity = only_signature(&s, repo, &signed).await["identity"].clone();
    assert!(
        identity.as_str().unwrap().starts_with("key sha256:"),
        "{identity}"
    );

    let by_tag = |list: &Value| -> HashMap<String, Value> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["signature"].clone(),
                )
            })
            .collect()
    };
    let by_digest = |list: &Value| -> HashMap<String, Value> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["digest"].as_str().unwrap().to_owned(),
                    i["signature"].clone(),
                )
            })
            .collect()
    };
    let verified = json!({"verified": true, "tool": "cosign", "identity": identity,
                          "reason": null, "signatures": 1});
    let (status, tags) = call(
        &s,
        Method::GET,
        &format!("/repositories/{repo}/-/tags"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tags}");
    let tags = by_tag(&tags);
    assert_eq!(tags["v1"], verified);
    assert_eq!(tags["v2"], Value::Null);
    let sig_tag = format!("{}.sig", signed.replace(':', "-"));
    assert_eq!(tags[&sig_tag], Value::Null);
    let (status, images) = call(
        &s,
        Method::GET,
        &format!("/repositories/{repo}/-/images"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{images}");
    let images = by_digest(&images);
    assert_eq!(images[&signed], verified);
    assert_eq!(images[&unsigned], Value::Null);

    // Another key: shown unverified, with the reason, at once.
    put_policy(
        &s,
        "team",
        policy_body(&made, "team", "audit", &["p384"]),
        StatusCode::OK,
    )
    .await;
    let (_, tags) = call(
        &s,
        Method::GET,
        &format!("/repositories/{repo}/-/tags"),
        None,
    )
    .await;
    assert_eq!(
        by_tag(&tags)["v1"],
        json!({"verified": false, "tool": "cosign", "identity": null,
               "reason": "none of the 1 cosign key(s) of trust policy team verifies the signature",
               "signatures": 1})
    );
}

/// A policy with any part that does not parse is refused with 400 naming it, and nothing is
/// stored (a new one is not created, an existing one is not changed).
#[tokio::test]
async fn bad_policies_are_refused_and_nothing_is_stored() {
    let s = TestServer::start().await;
    let mut plan = base_plan(s.clock.now());
    plan.key("small", "rsa1024").key("p521", "p521");
    let made = plan.make();
    let good = policy_body(&made, "acme", "enforce", &["p256"]);
    let stored = put_policy(&s, "kept", good.clone(), StatusCode::CREATED).await;

    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let truncated_key = made.keys["p256"][..80].to_owned();
    let cases: Vec<(Value, &str)> = vec![
        (
            with("cosign_keys", json!([truncated_key])),
            "cosign_keys[0]: not a PEM public key",
        ),
        (
            with("cosign_keys", json!([made.certs["ca"].0])),
            "cosign_keys[0]: not a PEM public key",
        ),
        (
            with("cosign_keys", json!([made.keys["small"]])),
            "cosign_keys[0]: RSA key of 1024 bits is shorter than the minimum of 2048",
        ),
        (
            with("cosign_keys", json!([made.keys["p256"], made.keys["p521"]])),
            "cosign_keys[1]: unsupported key type EC curve 1.3.132.0.35",
        ),
        (
            with("mode", json!("strict")),
            "mode: \"strict\" is not one of enforce, audit, off",
        ),
        (
            with("scope", json!("Acme/App!")),
            "scope: \"Acme/App!\" is neither",
        ),
        (with("scope", json!("/acme")), "scope: \"/acme\" is neither"),
        (
            with(
                "trust_store",
                json!(["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"]),
            ),
            "trust_store[0]: not a PEM certificate",
        ),
        (
            with("trust_store", json!([])),
            "notation: a notation statement needs trust_store certificates",
        ),
        (
            with(
                "notation",
                json!({ "trustedIdentities": ["email: a@example.com"] }),
            ),
            "notation: trustedIdentities: \"email: a@example.com\" is neither",
        ),
        (
            with("notation", json!({ "trustedIdentities": [] })),
            "notation: trustedIdentities: a non-empty array",
        ),
        (
            with(
                "notation",
                json!({ "signatureVerification": { "level": "skip" }, "trustedIdentities": ["*"] }),
            ),
            "only \"strict\" is supported",
        ),
        (
            with("notation", json!("x509.subject: O=Acme")),
            "notation: a trust-policy statement is a JSON object",
        ),
    ];
    for (body, reason) in cases {
        for name in ["kept", "fresh"] {
            let (status, problem) = call(
                &s,
                Method::PUT,
                &format!("/trust/policies/{name}"),
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {body}: {problem}");
            let message = problem["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(reason), "{message:?} lacks {reason:?}");
        }
    }
    // Unknown fields and a bad name are refused too.
    let (status, problem) = call(
        &s,
        Method::PUT,
        "/trust/policies/fresh",
        Some(with("keys", json!([]))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field `keys`"),
        "{problem}"
    );
    let (status, problem) = call(
        &s,
        Method::PUT,
        "/trust/policies/fresh",
        Some(json!({ "scope": "acme" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing field `mode`"),
        "{problem}"
    );
    let (status, problem) = call(
        &s,
        Method::PUT,
        "/trust/policies/Bad%20Name",
        Some(good.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    // Nothing changed.
    let (status, _) = call(&s, Method::GET, "/trust/policies/fresh", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, kept) = call(&s, Method::GET, "/trust/policies/kept", None).await;
    assert_eq!((status, &kept), (StatusCode::OK, &stored));
    let (_, list) = call(&s, Method::GET, "/trust/policies", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

/// cosign signs a multi-platform image's index: under `enforce` the signed index (signed
/// before the policy existed) and the platform manifests it lists are pullable (a client fetches them by digest next), an
/// unsigned index and its platforms are not.
#[tokio::test]
async fn a_signed_index_makes_its_platforms_pullable() {
    let s = TestServer::start().await;
    let repo = "multi/app";
    let mut indexes = Vec::new();
    for (tag, arch_layer) in [("signed", "s"), ("unsigned", "u")] {
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = image_config("linux", arch, None);
            let layer = format!("{arch_layer}-{arch}");
            let (digest, manifest) = s
                .push_image_with(repo, "", &config, &[layer.as_bytes()])
                .await;
            children.push((digest, manifest.len(), arch));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|(d, n, arch)| json!({
                "mediaType": OCI_MANIFEST, "digest": d, "size": n,
                "platform": { "os": "linux", "architecture": arch },
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        let digest = s.put_manifest_ok(repo, tag, OCI_INDEX, &index).await;
        indexes.push((digest, children));
    }
    let mut plan = base_plan(s.clock.now());
    let payload = simple_signing(repo, &indexes[0].0);
    let at = plan.sign("p256", "ecdsa-der", "sha256", &payload, false);
    let made = plan.make();
    // Signed before any policy covers the repository: stored unverified, verified when the
    // policy arrives.
    push_cosign_tag(&s, repo, &indexes[0].0, &payload, &made.signatures[at]).await;
    let found = only_signature(&s, repo, &indexes[0].0).await;
    assert_eq!(
        (&found["verified"], &found["reason"]),
        (
            &json!(false),
            &json!("no trust policy covers this repository")
        )
    );
    put_policy(
        &s,
        "multi",
        policy_body(&made, "multi", "enforce", &["p256"]),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        only_signature(&s, repo, &indexes[0].0).await["verified"],
        true
    );

    assert_eq!(pull(&s, repo, "signed").await.0, StatusCode::OK);
    for (child, _, arch) in &indexes[0].1 {
        assert_eq!(pull(&s, repo, child).await.0, StatusCode::OK, "{arch}");
    }
    assert_eq!(pull(&s, repo, "unsigned").await.0, StatusCode::FORBIDDEN);
    for (child, _, arch) in &indexes[1].1 {
        let (status, message) = pull(&s, repo, child).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{arch}");
        assert!(message.contains("it has no signature"), "{message}");
    }
}

/// Trust policies are the administrators': a namespace's maintainer may neither write nor
/// read them. An image's signatures are shown to whoever may pull it, and to nobody else.
#[tokio::test]
async fn policies_are_for_administrators_and_signatures_for_pullers() {
    let mut s = start_auth(|_| {}).await;
    for user in ["reader", "maint"] {
        s.create_user(user).await;
    }
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    s.set_role("team", "reader", "reporter").await;
    s.set_role("team", "maint", "maintainer").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, _) = s
        .push_image("team/app", "v1", &[b"team layer".as_slice()])
        .await;
    let made = base_plan(s.clock.now()).make();
    let body = policy_body(&made, "team", "enforce", &["p256"]);

    let maint = password_of("maint");
    for (method, body) in [
        (Method::PUT, Some(body.clone())),
        (Method::GET, None),
        (Method::DELETE, None),
    ] {
        let resp = s
            .api_as(
                Some(("maint", &maint)),
                method.clone(),
                "/trust/policies/team",
                body,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method}");
    }
    let resp = s
        .api_as(
            Some(("maint", &maint)),
            Method::GET,
            "/trust/policies",
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = s
        .api_as(
            None,
            Method::PUT,
            "/trust/policies/team",
            Some(body.clone()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.admin_api(Method::PUT, "/trust/policies/team", Some(body))
        .await;

    let path = format!("/repositories/team/app/-/images/{digest}/signatures");
    let reader = password_of("reader");
    let resp = s
        .api_as(Some(("reader", &reader)), Method::GET, &path, None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["items"], json!([]));
    s.create_user("stranger").await;
    let stranger = password_of("stranger");
    let resp = s
        .api_as(Some(("stranger", &stranger)), Method::GET, &path, None)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // An unknown image and a malformed digest.
    let resp = s
        .api_as(
            Some(("reader", &reader)),
            Method::GET,
            &format!(
                "/repositories/team/app/-/images/sha256:{}/signatures",
                "0".repeat(64)
            ),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = s
        .api_as(
            Some(("reader", &reader)),
            Method::GET,
            "/repositories/team/app/-/images/sha256:xyz/signatures",
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// A notation signature counts while its certificate chain is valid: once the signing
/// certificate expires, the image is shown unverified and refused under `enforce`, without
/// anything being pushed or re-verified.
#[tokio::test]
async fn a_signature_stops_counting_when_its_certificate_expires() {
    let s = TestServer::start().await;
    let repo = "short/app";
    let now = s.clock.now();
    let (digest, _) = s.push_image(repo, "v1", &[b"short-lived".as_slice()]).await;
    let mut plan = base_plan(now);
    plan.cert(
        "short",
        "p256",
        Some(("ca", "ca")),
        &[("O", "Berth Test"), ("CN", "short")],
        false,
        &["codeSigning"],
        now - DAY,
        now + 10 * DAY,
    );
    let jws = Jws::new("ES256", &digest);
    let at = plan.sign("p256", "ecdsa-raw", "sha256", &jws.signing_input(), false);
    let made = plan.make();
    put_policy(
        &s,
        "short",
        policy_body(&made, "short", "enforce", &[]),
        StatusCode::CREATED,
    )
    .await;
    let envelope = jws.envelope(&made.signatures[at], &[&made.certs["short"].1]);
    push_referrer(
        &s,
        repo,
        &digest,
        NOTATION,
        "application/jose+json",
        &envelope,
    )
    .await;
    let found = only_signature(&s, repo, &digest).await;
    assert_eq!(found["verified"], true, "{found}");
    assert_eq!(found["identity"], "O=Berth Test, CN=short");
    let expires_at = found["expires_at"].as_i64().expect("expires_at");
    assert_eq!(expires_at, now + 10 * DAY);
    assert_eq!(pull(&s, repo, "v1").await.0, StatusCode::OK);

    s.clock.advance(10 * DAY + 1);
    let found = only_signature(&s, repo, &digest).await;
    let reason = format!("its signing certificate chain expired at {expires_at} (unix seconds)");
    assert_eq!(
        (&found["verified"], &found["reason"]),
        (&json!(false), &json!(reason))
    );
    let (status, message) = pull(&s, repo, "v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.ends_with(&format!("its signature did not verify: {reason}")),
        "{message}"
    );
}
