//! Manifest media types and parsing: what a pushed manifest references, and what the registry
//! must record about it. Parsing uses the `oci-spec` schemas; the stored bytes are always the
//! client's own, so unknown fields survive byte-exact.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::Digest;

/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The Docker image manifest (schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The OCI image config media type.
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The Docker image config media type.
pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The manifest kinds the registry stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    /// [`OCI_MANIFEST`].
    OciManifest,
    /// [`OCI_INDEX`].
    OciIndex,
    /// [`DOCKER_MANIFEST`].
    DockerManifest,
    /// [`DOCKER_MANIFEST_LIST`].
    DockerManifestList,
}

impl MediaType {
    /// The kind `s` names (parameters ignored); `None` for a type the registry does not store.
    pub fn parse(s: &str) -> Option<MediaType> {
        // Parameters such as `; charset=utf-8` are not part of the type.
        let essence = s.split(';').next().unwrap_or("").trim();
        Some(match essence {
            OCI_MANIFEST => MediaType::OciManifest,
            OCI_INDEX => MediaType::OciIndex,
            DOCKER_MANIFEST => MediaType::DockerManifest,
            DOCKER_MANIFEST_LIST => MediaType::DockerManifestList,
            _ => return None,
        })
    }

    /// The media type string.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::OciManifest => OCI_MANIFEST,
            MediaType::OciIndex => OCI_INDEX,
            MediaType::DockerManifest => DOCKER_MANIFEST,
            MediaType::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    /// An index (or manifest list): its children are manifests.
    pub fn is_index(self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }
}

/// A descriptor the manifest points at, reduced to what the registry checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The content's digest.
    pub digest: Digest,
    /// The size the descriptor declares.
    pub size: u64,
    /// Foreign and non-distributable layers live elsewhere; the registry need not hold them.
    pub external: bool,
}

/// What the registry records about a valid manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Its kind.
    pub media_type: MediaType,
    /// `artifactType`, or for an image manifest without it the config media type
    /// (spec.md, "Listing Referrers").
    pub artifact_type: Option<String>,
    /// The manifest it refers to (`subject`), if any.
    pub subject: Option<Digest>,
    /// The config blob of an image manifest.
    pub config: Option<Target>,
    /// The config's media type.
    pub config_media_type: Option<String>,
    /// Layers of an image manifest.
    pub layers: Vec<Target>,
    /// Child manifests of an index.
    pub children: Vec<Target>,
    /// Its annotations, if any.
    pub annotations: Option<HashMap<String, String>>,
}

/// Why a pushed manifest is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// A media type the registry does not store.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// Neither the body nor the header names a media type.
    #[error("manifest has no media type: set mediaType in the body or the Content-Type header")]
    MissingMediaType,
    /// The header and the body name different media types.
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch {
        /// The `Content-Type` header.
        header: String,
        /// The body's `mediaType`.
        body: String,
    },
    /// The body does not parse as the schema of its media type.
    #[error("manifest is not valid JSON for {0}: {1}")]
    Malformed(&'static str, String),
    /// A `schemaVersion` other than 2.
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    /// A descriptor whose digest is not one the registry accepts.
    #[error("descriptor digest {0:?} is not a supported digest")]
    BadDescriptorDigest(String),
}

impl Manifest {
    /// Parses `bytes` pushed with the `Content-Type` header `content_type`.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Malformed("a manifest", e.to_string()))?;
        let header = content_type.filter(|h| MediaType::parse(h).is_some());
        let declared = match (&probe.media_type, header) {
            (Some(body), Some(header)) if MediaType::parse(header) != MediaType::parse(body) => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: header.to_owned(),
                    body: body.clone(),
                });
            }
            (Some(body), _) => body.as_str(),
            (None, Some(header)) => header,
            (None, None) => match content_type {
                Some(other) if !other.is_empty() => {
                    return Err(ManifestError::UnsupportedMediaType(other.to_owned()));
                }
                _ => return Err(ManifestError::MissingMediaType),
            },
        };
        let media_type = MediaType::parse(declared)
            .ok_or_else(|| ManifestError::UnsupportedMediaType(declared.to_owned()))?;
        if media_type.is_index() {
            parse_index(bytes, media_type)
        } else {
            parse_image(bytes, media_type)
        }
    }

    /// Every blob the registry must hold for this manifest to be complete.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Target> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.external))
    }
}

fn parse_image(bytes: &[u8], media_type: MediaType) -> Result<Manifest, ManifestError> {
    let m: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Malformed("an image manifest", e.to_string()))?;
    if m.schema_version() != 2 {
        return Err(ManifestError::SchemaVersion);
    }
    let config_media_type = m.config().media_type().to_string();
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| config_media_type.clone());
    Ok(Manifest {
        media_type,
        artifact_type: Some(artifact_type),
        subject: m.subject().as_ref().map(digest_of).transpose()?,
        config: Some(target(m.config())?),
        config_media_type: Some(config_media_type),
        layers: m.layers().iter().map(target).collect::<Result<_, _>>()?,
        children: Vec::new(),
        annotations: m.annotations().clone(),
    })
}

fn parse_index(bytes: &[u8], media_type: MediaType) -> Result<Manifest, ManifestError> {
    let ix: ImageIndex = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Malformed("an image index", e.to_string()))?;
    if ix.schema_version() != 2 {
        return Err(ManifestError::SchemaVersion);
    }
    Ok(Manifest {
        media_type,
        artifact_type: ix.artifact_type().as_ref().map(|t| t.to_string()),
        subject: ix.subject().as_ref().map(digest_of).transpose()?,
        config: None,
        config_media_type: None,
        layers: Vec::new(),
        children: ix
            .manifests()
            .iter()
            .map(target)
            .collect::<Result<_, _>>()?,
        annotations: ix.annotations().clone(),
    })
}

fn digest_of(d: &Descriptor) -> Result<Digest, ManifestError> {
    let s = d.digest().to_string();
    s.parse().map_err(|_| ManifestError::BadDescriptorDigest(s))
}

fn target(d: &Descriptor) -> Result<Target, ManifestError> {
    let media_type = d.media_type().to_string();
    Ok(Target {
        digest: digest_of(d)?,
        size: d.size(),
        external: media_type.contains("nondistributable") || media_type.contains(".foreign."),
    })
}

/// The platform an image config declares, read leniently: a config that is not an image
/// config (artifacts, raw blobs) simply has none.
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: Option<String>,
    /// CPU architecture (`amd64`).
    pub architecture: Option<String>,
    /// Architecture variant (`v8`).
    pub variant: Option<String>,
}

impl Platform {
    /// The platform config `bytes` of `media_type` declare; none when it is no image config.
    pub fn from_config(media_type: &str, bytes: &[u8]) -> Platform {
        if !Platform::is_image_config(media_type) {
            return Platform::default();
        }
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// Whether `media_type` is an image config (OCI or Docker).
    pub fn is_image_config(media_type: &str) -> bool {
        media_type == OCI_IMAGE_CONFIG || media_type == DOCKER_IMAGE_CONFIG
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    const LAYER: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2{extra},"config":{{"mediaType":"{OCI_IMAGE_CONFIG}","digest":"{CFG}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{LAYER}","size":3}}]}}"#
        )
    }

    #[test]
    fn media_type_from_header_when_body_has_none() {
        let m = Manifest::parse(image("").as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, MediaType::OciManifest);
        assert_eq!(m.artifact_type.as_deref(), Some(OCI_IMAGE_CONFIG));
        assert_eq!(m.required_blobs().count(), 2);
    }

    #[test]
    fn mismatched_or_missing_types_are_refused() {
        let body = image(&format!(r#","mediaType":"{OCI_MANIFEST}""#));
        assert!(matches!(
            Manifest::parse(body.as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert_eq!(
            Manifest::parse(image("").as_bytes(), None).unwrap_err(),
            ManifestError::MissingMediaType
        );
        assert!(Manifest::parse(b"{", Some(OCI_MANIFEST)).is_err());
        assert!(Manifest::parse(b"[]", Some(OCI_MANIFEST)).is_err());
    }

    #[test]
    fn index_children_and_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{CFG}","size":9}},"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{LAYER}","size":7,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert!(m.media_type.is_index());
        assert_eq!(m.children[0].digest.to_string(), LAYER);
        assert_eq!(m.subject.unwrap().to_string(), CFG);
    }

    #[test]
    fn platform_from_image_config_only() {
        let cfg = br#"{"architecture":"arm","os":"linux","variant":"v7","rootfs":{}}"#;
        let p = Platform::from_config(OCI_IMAGE_CONFIG, cfg);
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(
            Platform::from_config("application/x", cfg),
            Platform::default()
        );
    }
}
