//! An image's inventory as a software bill of materials: CycloneDX 1.5 JSON and SPDX 2.3
//! JSON, built from the packages a scan stored (no blob is read). Each package keeps its
//! package URL, and Berth's own facts (the layer that introduced it, the platform of the
//! index's child it was found in, its source package) go where each format keeps them:
//! CycloneDX `properties`, SPDX `sourceInfo` and `comment`.

use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

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
