//! Software bills of materials, both ways. Out: an image's inventory as CycloneDX 1.5 JSON
//! or SPDX 2.3 JSON, built from the packages a scan stored (no blob is read); each package
//! keeps its package URL, and Berth's own facts (the layer that introduced it, the platform
//! of the index's child it was found in, its source package) go where each format keeps
//! them: CycloneDX `properties`, SPDX `sourceInfo` and `comment`. In: the packages an SBOM
//! pushed beside an image lists ([`read`]: CycloneDX or SPDX JSON, bare or as the predicate
//! of an in-toto statement), by their package URLs, so that an image without package
//! databases (distroless, scratch) is still matched against advisories.

use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::packages::{OsRelease, PackageKind, ecosystem};

/// The media types (artifact or layer) of the SBOMs [`read`] takes.
pub fn is_sbom_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.cyclonedx")
        || media_type.starts_with("application/spdx")
        || media_type == "application/vnd.in-toto+json"
}

/// Whether an in-toto predicate type names an SBOM (SPDX or CycloneDX), as BuildKit's
/// attestation layers are annotated (`in-toto.io/predicate-type`).
pub fn is_sbom_predicate(predicate_type: &str) -> bool {
    predicate_type.starts_with("https://spdx.dev/Document")
        || predicate_type.starts_with("https://cyclonedx.org/bom")
}

/// One package an SBOM lists, as the inventory stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its OSV ecosystem (`Debian:12`, `PyPI`).
    pub ecosystem: String,
    /// The package's name (for npm and Go with their scope or module path).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The source package and its version (Debian's `upstream` qualifier), else the package.
    pub source_name: String,
    /// The source package's version.
    pub source_version: String,
    /// The package URL, as the SBOM gives it.
    pub purl: String,
}

/// The packages SBOM `bytes` lists by package URL: CycloneDX JSON (nested components too)
/// or SPDX JSON (`externalRefs` of type `purl`), bare or as an in-toto statement's
/// `predicate`. Packages of a type advisories do not cover are left out. `Err` when the
/// bytes are neither.
pub fn read(bytes: &[u8]) -> Result<Vec<Listed>, String> {
    let mut document: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("SBOM: not JSON: {e}"))?;
    if let Some(predicate) = document.get_mut("predicate") {
        document = predicate.take();
    }
    let mut purls = Vec::new();
    if document.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX") {
        collect_cyclonedx(&document, &mut purls);
    } else if document
        .get("spdxVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("SPDX-"))
    {
        for package in document["packages"].as_array().into_iter().flatten() {
            let refs = package["externalRefs"].as_array().into_iter().flatten();
            if let Some(purl) = refs
                .filter(|r| r["referenceType"] == "purl")
                .find_map(|r| r["referenceLocator"].as_str())
            {
                purls.push(purl.to_owned());
            }
        }
    } else {
        return Err("SBOM: neither CycloneDX (bomFormat) nor SPDX (spdxVersion) JSON".into());
    }
    let mut listed: Vec<Listed> = purls.iter().filter_map(|p| of_purl(p)).collect();
    listed.sort_by(|a, b| {
        (&a.ecosystem, &a.name, &a.version).cmp(&(&b.ecosystem, &b.name, &b.version))
    });
    listed.dedup_by(|a, b| {
        (&a.ecosystem, &a.name, &a.version) == (&b.ecosystem, &b.name, &b.version)
    });
    Ok(listed)
}

fn collect_cyclonedx(node: &Value, purls: &mut Vec<String>) {
    for component in node["components"].as_array().into_iter().flatten() {
        if let Some(purl) = component["purl"].as_str() {
            purls.push(purl.to_owned());
        }
        collect_cyclonedx(component, purls);
    }
}

/// A package URL's parts: `pkg:type/namespace/name@version?qualifiers#subpath`, decoded.
struct Purl {
    kind: String,
    namespace: Option<String>,
    name: String,
    version: String,
    qualifiers: Vec<(String, String)>,
}

impl Purl {
    fn parse(text: &str) -> Option<Purl> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        };
        let rest = text.strip_prefix("pkg:")?;
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, qualifiers) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let (path, version) = rest.rsplit_once('@')?;
        let (kind, path) = path.split_once('/')?;
        let (namespace, name) = match path.rsplit_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, path),
        };
        let namespace = match namespace {
            Some(ns) => Some(
                ns.split('/')
                    .map(decode)
                    .collect::<Option<Vec<_>>>()?
                    .join("/"),
            ),
            None => None,
        };
        let qualifiers = qualifiers
            .split('&')
            .filter(|q| !q.is_empty())
            .filter_map(|q| {
                let (k, v) = q.split_once('=')?;
                Some((k.to_ascii_lowercase(), decode(v)?))
            })
            .collect();
        Some(Purl {
            kind: kind.to_ascii_lowercase(),
            namespace,
            name: decode(name)?,
            version: decode(version)?,
            qualifiers,
        })
    }

    fn qualifier(&self, key: &str) -> Option<&str> {
        self.qualifiers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `distro=debian-12` as the release it names.
    fn distro(&self) -> Option<OsRelease> {
        let distro = self.qualifier("distro")?;
        let (id, version) = match distro.split_once('-') {
            Some((id, version)) => (id, Some(version.to_owned())),
            None => (distro, None),
        };
        Some(OsRelease {
            id: id.to_ascii_lowercase(),
            version_id: version,
            pretty_name: None,
        })
    }
}

/// The inventory's row for package URL `text`; `None` for a type advisories do not cover.
fn of_purl(text: &str) -> Option<Listed> {
    let purl = Purl::parse(text)?;
    let kind = match purl.kind.as_str() {
        "deb" => PackageKind::Dpkg,
        "apk" => PackageKind::Apk,
        "rpm" => PackageKind::Rpm,
        "golang" => PackageKind::Go,
        "pypi" => PackageKind::Python,
        "npm" => PackageKind::Npm,
        "cargo" => PackageKind::Cargo,
        _ => return None,
    };
    let name = match (&purl.namespace, kind) {
        (Some(ns), PackageKind::Go | PackageKind::Npm) => format!("{ns}/{}", purl.name),
        _ => purl.name.clone(),
    };
    let version = match (kind, purl.qualifier("epoch")) {
        (PackageKind::Rpm, Some(epoch)) => format!("{epoch}:{}", purl.version),
        _ => purl.version.clone(),
    };
    let os = purl.distro().or_else(|| {
        purl.namespace.as_ref().map(|ns| OsRelease {
            id: ns.to_ascii_lowercase(),
            version_id: None,
            pretty_name: None,
        })
    });
    // Debian's source package: `upstream=glibc`, or `upstream=openssl@3.0.11-1` when its
    // version differs from the binary's.
    let (source_name, source_version) = match purl.qualifier("upstream") {
        Some(upstream) if matches!(kind, PackageKind::Dpkg | PackageKind::Apk) => {
            match upstream.split_once('@') {
                Some((source, v)) => (source.to_owned(), v.to_owned()),
                None => (upstream.to_owned(), version.clone()),
            }
        }
        _ => (name.clone(), version.clone()),
    };
    Some(Listed {
        ecosystem: ecosystem(kind, os.as_ref()),
        name,
        version,
        source_name,
        source_version,
        purl: text.to_owned(),
    })
}

/// The SBOM formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CycloneDX 1.5, JSON.
    CycloneDx,
    /// SPDX 2.3, JSON.
    Spdx,
}

impl Format {
    /// `cyclonedx` or `spdx`, as the `format` parameter names them.
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "cyclonedx" => Some(Format::CycloneDx),
            "spdx" => Some(Format::Spdx),
            _ => None,
        }
    }

    /// The media type of a document of this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::CycloneDx => "application/vnd.cyclonedx+json; version=1.5",
            Format::Spdx => "application/spdx+json",
        }
    }

    /// The file name suffix of a document of this format.
    pub fn suffix(self) -> &'static str {
        match self {
            Format::CycloneDx => "cdx.json",
            Format::Spdx => "spdx.json",
        }
    }
}

/// The image an SBOM describes.
pub struct Subject<'a> {
    /// Its repository.
    pub repository: &'a str,
    /// Its manifest digest.
    pub digest: &'a str,
}

/// One package of the inventory.
pub struct Component<'a> {
    /// The binary package's name.
    pub name: &'a str,
    /// Its version.
    pub version: &'a str,
    /// Its package URL.
    pub purl: &'a str,
    /// The OSV ecosystem (`Debian:12`).
    pub ecosystem: &'a str,
    /// `source@version`: the source package advisories name.
    pub source: String,
    /// The layer that introduced it.
    pub layer: &'a str,
    /// `os/arch[/variant]` of the index's child it was found in, for an index.
    pub platform: Option<String>,
}

/// The document, made at `now` (unix seconds) by `tool` (`berth 0.1.0`), named `serial` (a
/// UUID, unique per document).
pub fn document(
    format: Format,
    subject: &Subject<'_>,
    components: &[Component<'_>],
    now: i64,
    tool_version: &str,
    serial: &str,
) -> Value {
    let created = OffsetDateTime::from_unix_timestamp(now)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default();
    match format {
        Format::CycloneDx => cyclonedx(subject, components, &created, tool_version, serial),
        Format::Spdx => spdx(subject, components, &created, tool_version, serial),
    }
}

fn cyclonedx(
    subject: &Subject<'_>,
    components: &[Component<'_>],
    created: &str,
    tool_version: &str,
    serial: &str,
) -> Value {
    let components: Vec<Value> = components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut properties = vec![
                json!({"name": "berth:ecosystem", "value": c.ecosystem}),
                json!({"name": "berth:source", "value": c.source}),
                json!({"name": "berth:layer", "value": c.layer}),
            ];
            if let Some(platform) = &c.platform {
                properties.push(json!({"name": "berth:platform", "value": platform}));
            }
            json!({
                "type": "library",
                "bom-ref": format!("package-{i}"),
                "name": c.name,
                "version": c.version,
                "purl": c.purl,
                "properties": properties,
            })
        })
        .collect();
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [
                {"type": "application", "name": "berth", "version": tool_version}
            ]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": subject.repository,
                "version": subject.digest,
            },
        },
        "components": components,
    })
}

fn spdx(
    subject: &Subject<'_>,
    components: &[Component<'_>],
    created: &str,
    tool_version: &str,
    serial: &str,
) -> Value {
    const IMAGE: &str = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": IMAGE,
        "name": subject.repository,
        "versionInfo": subject.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE,
    })];
    for (i, c) in components.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        let mut package = json!({
            "SPDXID": id,
            "name": c.name,
            "versionInfo": c.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("introduced by layer {}", c.layer),
            "comment": format!("ecosystem {}, source package {}", c.ecosystem, c.source),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": c.purl,
            }],
        });
        if let Some(platform) = &c.platform {
            package["comment"] = json!(format!(
                "ecosystem {}, source package {}, platform {platform}",
                c.ecosystem, c.source
            ));
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": IMAGE,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    // SPDX wants a namespace URI unique to the document; the name and digest say what it
    // is, the serial makes it unique. The `.invalid` host is reserved: it resolves nowhere.
    let hex = subject
        .digest
        .split_once(':')
        .map_or(subject.digest, |(_, h)| h);
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", subject.repository, subject.digest),
        "documentNamespace": format!(
            "https://berth.invalid/spdx/{}/{hex}/{serial}",
            subject.repository
        ),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: berth-{tool_version}")],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(i: usize) -> Component<'static> {
        Component {
            name: ["libc6", "zlib1g"][i],
            version: ["2.36-9", "1:1.2.13.dfsg-1"][i],
            purl: [
                "pkg:deb/debian/libc6@2.36-9",
                "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1",
            ][i],
            ecosystem: "Debian:12",
            source: ["glibc@2.36-9", "zlib@1:1.2.13.dfsg-1"][i].to_owned(),
            layer: "sha256:aa",
            platform: (i == 1).then(|| "linux/arm64/v8".to_owned()),
        }
    }

    #[test]
    fn what_an_exported_document_lists_reads_back() {
        let subject = Subject {
            repository: "team/app",
            digest: "sha256:0123",
        };
        let components = [
            Component {
                purl: "pkg:deb/debian/libssl3@3.0.11-1?arch=amd64&upstream=openssl%403.0.11-1&distro=debian-12",
                ..component(0)
            },
            Component {
                name: "@babel/core",
                version: "7.23.0",
                purl: "pkg:npm/%40babel/core@7.23.0",
                ..component(1)
            },
        ];
        for format in [Format::CycloneDx, Format::Spdx] {
            let doc = document(format, &subject, &components, 0, "1", "u");
            let listed = read(doc.to_string().as_bytes()).unwrap();
            let shown: Vec<String> = listed
                .iter()
                .map(|l| {
                    format!(
                        "{} {}={} {}={}",
                        l.ecosystem, l.name, l.version, l.source_name, l.source_version
                    )
                })
                .collect();
            assert_eq!(
                shown,
                [
                    "Debian:12 libssl3=3.0.11-1 openssl=3.0.11-1",
                    "npm @babel/core=7.23.0 @babel/core=7.23.0"
                ],
                "{format:?}"
            );
        }
        // The same document as an in-toto statement's predicate.
        let doc = document(Format::Spdx, &subject, &components, 0, "1", "u");
        let statement = json!({"_type": "https://in-toto.io/Statement/v0.1",
                               "predicateType": "https://spdx.dev/Document", "predicate": doc});
        assert_eq!(read(statement.to_string().as_bytes()).unwrap().len(), 2);
        assert!(
            read(b"{\"hello\": 1}")
                .unwrap_err()
                .contains("neither CycloneDX")
        );
        assert!(read(b"not json").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn both_formats_list_every_package_with_its_purl() {
        let subject = Subject {
            repository: "team/app",
            digest: "sha256:0123",
        };
        let components = [component(0), component(1)];
        let cdx = document(
            Format::CycloneDx,
            &subject,
            &components,
            86400,
            "1.0",
            "u-1",
        );
        assert_eq!(cdx["metadata"]["timestamp"], "1970-01-02T00:00:00Z");
        assert_eq!(cdx["serialNumber"], "urn:uuid:u-1");
        assert_eq!(cdx["components"][1]["purl"], components[1].purl);
        assert_eq!(
            cdx["components"][1]["properties"][3]["value"],
            "linux/arm64/v8"
        );
        let spdx = document(Format::Spdx, &subject, &components, 86400, "1.0", "u-1");
        assert_eq!(spdx["packages"].as_array().unwrap().len(), 3);
        assert_eq!(
            spdx["packages"][2]["externalRefs"][0]["referenceLocator"],
            components[1].purl
        );
        assert_eq!(
            spdx["documentNamespace"],
            "https://berth.invalid/spdx/team/app/0123/u-1"
        );
        assert_eq!(
            spdx["relationships"][2]["relatedSpdxElement"],
            "SPDXRef-Package-1"
        );
        assert_eq!(Format::parse("spdx"), Some(Format::Spdx));
        assert_eq!(Format::parse("SPDX"), None);
    }
}
