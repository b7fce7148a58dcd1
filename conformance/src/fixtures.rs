//! Content the checks push: unique random blobs, digests and OCI manifests.
//!
//! Every blob is derived from a fresh UUID so that no two runs (and no two checks) share
//! content by accident; a check that needs shared content says so explicitly.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256, Sha512};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The `Accept` value sent on every manifest request (pull section: "The client SHOULD include
/// an `Accept` header indicating which manifest content types it supports").
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The empty JSON object blob (`{}`) that OCI 1.1 artifacts use as their config.
pub const EMPTY_JSON: &[u8] = b"{}";

/// `len` bytes of unpredictable content (SHA-256 in counter mode over a random seed).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let seed = uuid::Uuid::new_v4();
    let mut out = Vec::with_capacity(len + 32);
    let mut counter: u64 = 0;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// A short random lowercase-hex id, valid inside repository names and tags.
pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

pub fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{:x}", Sha512::digest(bytes))
}

/// A digest of content that was never pushed anywhere.
pub fn unknown_digest() -> String {
    sha256(&random_bytes(48))
}

/// An OCI content descriptor (image-spec descriptor.md), reduced to what the checks use.
#[derive(Clone, Debug)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: usize,
}

impl Desc {
    pub fn of(media_type: &str, bytes: &[u8]) -> Desc {
        Desc {
            media_type: media_type.to_string(),
            digest: sha256(bytes),
            size: bytes.len(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// Optional parts of an image manifest: OCI 1.1 artifact fields and annotations.
#[derive(Default)]
pub struct Extra<'a> {
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Desc>,
    pub annotations: Option<Map<String, Value>>,
}

/// Serialises an OCI image manifest. The returned bytes are exactly what gets pushed, so
/// their digest is the manifest digest.
pub fn manifest_bytes(config: &Desc, layers: &[Desc], extra: Extra<'_>) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(OCI_MANIFEST));
    if let Some(t) = extra.artifact_type {
        m.insert("artifactType".into(), json!(t));
    }
    m.insert("config".into(), config.to_json());
    m.insert(
        "layers".into(),
        Value::Array(layers.iter().map(Desc::to_json).collect()),
    );
    if let Some(s) = extra.subject {
        m.insert("subject".into(), s.to_json());
    }
    if let Some(a) = extra.annotations {
        m.insert("annotations".into(), Value::Object(a));
    }
    serde_json::to_vec_pretty(&Value::Object(m)).expect("a JSON map always serialises")
}

/// Serialises an OCI image index over the given manifests.
pub fn index_bytes(manifests: &[Desc]) -> Vec<u8> {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests.iter().map(Desc::to_json).collect::<Vec<_>>(),
    });
    serde_json::to_vec_pretty(&v).expect("a JSON value always serialises")
}

/// A small but complete image: one config blob, one layer blob and the manifest over them.
pub struct Image {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

impl Image {
    /// A fresh image whose layer has `layer_len` random bytes. `label` ends up in the config
    /// so that images built for different purposes never share a digest.
    pub fn new(label: &str, layer_len: usize) -> Image {
        let layer = random_bytes(layer_len);
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "org.berth.conformance": label, "nonce": short_id() } },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        }))
        .expect("a JSON value always serialises");
        let manifest = manifest_bytes(
            &Desc::of(OCI_CONFIG, &config),
            &[Desc::of(OCI_LAYER, &layer)],
            Extra::default(),
        );
        let digest = sha256(&manifest);
        Image {
            config,
            layer,
            manifest,
            digest,
        }
    }

    pub fn desc(&self) -> Desc {
        Desc::of(OCI_MANIFEST, &self.manifest)
    }
}
