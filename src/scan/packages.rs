//! The package databases an image carries, parsed from their text: dpkg's `status` (and each
//! file of `status.d/`), apk's `installed`, and `os-release`, which names the distribution and
//! so the OSV ecosystem of what those databases list (`Debian:12`, `Alpine:v3.19`). The
//! other kinds of package ([`PackageKind`]) are read by [`super::rpm`], [`super::gobinary`],
//! [`super::rustaudit`] and [`super::languages`]; their ecosystems and package URLs are named here.
//!
//! Each package keeps its binary name and version and its source package and version (both
//! always filled): advisories of Debian name source packages, those of Alpine origins.

use serde::{Deserialize, Serialize};

/// The packaging system a database belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// Debian and derivatives (`var/lib/dpkg/status`, `status.d/`).
    Dpkg,
    /// Alpine (`lib/apk/db/installed`).
    Apk,
    /// rpm's SQLite database (`var/lib/rpm/rpmdb.sqlite`): Red Hat, Fedora, SUSE and others.
    Rpm,
    /// The modules a Go binary was built from.
    Go,
    /// A Python distribution (`*.dist-info/METADATA`).
    Python,
    /// An npm package (`node_modules/**/package.json`, `package-lock.json`).
    Npm,
    /// A Rust crate (`Cargo.lock`, a binary's cargo-auditable section).
    Cargo,
}

/// One installed package as its database lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The binary package's name (`libssl3`).
    pub name: String,
    /// The binary package's version.
    pub version: String,
    /// The source package (dpkg `Source:`, apk origin); the name when the database has none.
    pub source_name: String,
    /// The source package's version; the binary version when the database gives none.
    pub source_version: String,
    /// The architecture (`amd64`, `x86_64`, `all`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

/// The fields of `os-release` that name a distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `ubuntu`), lower case.
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`), when given (Debian testing has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `PRETTY_NAME`, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

/// Packages of a dpkg status file (or one file of `status.d/`): stanzas separated by blank
/// lines. Only packages whose `Status` says they are installed without error
/// (`install ok installed`, or `hold ok installed` for a held one) count; half-installed,
/// removed-but-configured and stanzas without `Package` or `Version` are left out.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for stanza in stanzas(text) {
        let mut name = None;
        let mut version = None;
        let mut status = None;
        let mut source = None;
        let mut architecture = None;
        for line in stanza {
            // Continuation lines (descriptions, conffiles) start with a blank.
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Status" => status = Some(value),
                "Source" => source = Some(value),
                "Architecture" => architecture = Some(value),
                _ => {}
            }
        }
        let (Some(name), Some(version), Some(status)) = (name, version, status) else {
            continue;
        };
        if name.is_empty() || version.is_empty() || !dpkg_installed(status) {
            continue;
        }
        let (source_name, source_version) = match source.map(parse_dpkg_source) {
            Some((source_name, source_version)) if !source_name.is_empty() => {
                (source_name, source_version.unwrap_or(version))
            }
            _ => (name, version),
        };
        packages.push(Package {
            name: name.to_owned(),
            version: version.to_owned(),
            source_name: source_name.to_owned(),
            source_version: source_version.to_owned(),
            architecture: architecture.filter(|a| !a.is_empty()).map(str::to_owned),
        });
    }
    packages
}

/// `want flag status` of dpkg: installed, and not in error.
fn dpkg_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), ["install" | "hold", "ok", "installed"])
}

/// `openssl (3.0.11-1~deb12u2)` → (`openssl`, `Some("3.0.11-1~deb12u2")`); `zlib` → (`zlib`, None).
fn parse_dpkg_source(source: &str) -> (&str, Option<&str>) {
    match source.split_once('(') {
        Some((name, rest)) => {
            let version = rest.split_once(')').map(|(v, _)| v.trim());
            (name.trim(), version.filter(|v| !v.is_empty()))
        }
        None => (source.trim(), None),
    }
}

/// Packages of apk's installed database: stanzas of `X:value` lines (`P` name, `V` version,
/// `A` architecture, `o` origin, whose version is the package's).
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for stanza in stanzas(text) {
        let mut name = None;
        let mut version = None;
        let mut origin = None;
        let mut architecture = None;
        for line in stanza {
            match line.split_once(':') {
                Some(("P", v)) => name = Some(v.trim()),
                Some(("V", v)) => version = Some(v.trim()),
                Some(("o", v)) => origin = Some(v.trim()),
                Some(("A", v)) => architecture = Some(v.trim()),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        if name.is_empty() || version.is_empty() {
            continue;
        }
        packages.push(Package {
            name: name.to_owned(),
            version: version.to_owned(),
            source_name: origin.filter(|o| !o.is_empty()).unwrap_or(name).to_owned(),
            source_version: version.to_owned(),
            architecture: architecture.filter(|a| !a.is_empty()).map(str::to_owned),
        });
    }
    packages
}

/// The blank-line separated stanzas of a database, each as its lines (CRLF tolerated).
fn stanzas(text: &str) -> impl Iterator<Item = Vec<&str>> {
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    std::iter::from_fn(move || {
        let mut stanza = Vec::new();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                if stanza.is_empty() {
                    continue;
                }
                return Some(stanza);
            }
            stanza.push(line);
        }
        (!stanza.is_empty()).then_some(stanza)
    })
}

/// The distribution named by an `os-release` file (`KEY=value`, values optionally quoted);
/// `None` without an `ID`.
pub fn parse_os_release(text: &str) -> Option<OsRelease> {
    let mut release = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => release.id = value.to_ascii_lowercase(),
            "VERSION_ID" if !value.is_empty() => release.version_id = Some(value),
            "PRETTY_NAME" if !value.is_empty() => release.pretty_name = Some(value),
            _ => {}
        }
    }
    (!release.id.is_empty()).then_some(release)
}

/// A shell-style value without its quotes (and backslash escapes inside double quotes).
fn unquote(value: &str) -> String {
    if let Some(inner) = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
    {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .filter(|_| value.len() >= 2)
    {
        inner.to_owned()
    } else {
        value.to_owned()
    }
}

/// The OSV ecosystem of the packages a `kind` database lists on the distribution `os`:
/// `Debian:12`, `Ubuntu:22.04`, `Alpine:v3.19` (major.minor with a `v`); without a known
/// release, the bare distribution name (`Debian`, `Alpine`). Language packages have their
/// registry's (`Go`, `PyPI`, `npm`, `crates.io`), whatever the distribution. rpm alone does
/// not say whose packages it lists: the distribution's name is OSV's when `os-release` names
/// one OSV knows (`Rocky Linux:9`, `AlmaLinux:9`, `openSUSE`), `rpm` otherwise.
pub fn ecosystem(kind: PackageKind, os: Option<&OsRelease>) -> String {
    let version = os.and_then(|o| o.version_id.as_deref());
    let id = os.map(|o| o.id.as_str());
    match (kind, id, version) {
        (PackageKind::Dpkg, Some("debian"), Some(v)) => format!("Debian:{v}"),
        (PackageKind::Dpkg, Some("ubuntu"), Some(v)) => format!("Ubuntu:{v}"),
        (PackageKind::Dpkg, Some("ubuntu"), None) => "Ubuntu".to_owned(),
        (PackageKind::Dpkg, _, _) => "Debian".to_owned(),
        (PackageKind::Apk, Some("alpine"), Some(v)) => {
            let mut parts = v.split('.');
            match (parts.next(), parts.next()) {
                (Some(major), Some(minor)) => format!("Alpine:v{major}.{minor}"),
                _ => "Alpine".to_owned(),
            }
        }
        (PackageKind::Apk, _, _) => "Alpine".to_owned(),
        (PackageKind::Rpm, id, version) => rpm_ecosystem(id, version),
        (PackageKind::Go, _, _) => "Go".to_owned(),
        (PackageKind::Python, _, _) => "PyPI".to_owned(),
        (PackageKind::Npm, _, _) => "npm".to_owned(),
        (PackageKind::Cargo, _, _) => "crates.io".to_owned(),
    }
}

/// OSV's name for an rpm distribution (`os-release` `ID`), with its major release where OSV
/// writes one.
fn rpm_ecosystem(id: Option<&str>, version: Option<&str>) -> String {
    let major = version
        .and_then(|v| v.split('.').next())
        .filter(|m| !m.is_empty());
    let (name, with_release) = match id {
        Some("rocky") => ("Rocky Linux", true),
        Some("almalinux") => ("AlmaLinux", true),
        Some("mageia") => ("Mageia", true),
        Some("rhel") => ("Red Hat", false),
        Some("opensuse-leap" | "opensuse-tumbleweed" | "opensuse") => ("openSUSE", false),
        Some("sles" | "sled") => ("SUSE", false),
        Some("openEuler" | "openeuler") => ("openEuler", false),
        Some("photon") => ("Photon OS", false),
        Some("azurelinux") => ("Azure Linux", false),
        Some("mariner") => ("CBL-Mariner", false),
        _ => return "rpm".to_owned(),
    };
    match major {
        Some(major) if with_release => format!("{name}:{major}"),
        _ => name.to_owned(),
    }
}

/// A Python distribution's name as PyPI and OSV compare it (PEP 503: lower case, each run of
/// `-`, `_` and `.` one `-`).
pub fn normalise_pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// A package of a language registry (no source package of its own, no architecture).
pub fn registry_package(name: &str, version: &str) -> Package {
    Package {
        name: name.to_owned(),
        version: version.to_owned(),
        source_name: name.to_owned(),
        source_version: version.to_owned(),
        architecture: None,
    }
}

/// Characters a purl component writes percent-encoded.
const PURL_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'/')
    .add(b'=')
    .add(b'?')
    .add(b'@');

/// The package URL of `package`: `pkg:deb/debian/libssl3@3.0.11-1?arch=amd64&distro=debian-12&upstream=openssl`,
/// `pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1`,
/// `pkg:rpm/fedora/bash@5.2.15-3.fc38?arch=x86_64&epoch=1&distro=fedora-38`,
/// `pkg:golang/golang.org/x/net@v0.17.0`, `pkg:pypi/requests@2.31.0`,
/// `pkg:npm/%40babel/core@7.23.0`, `pkg:cargo/serde@1.0.193`.
pub fn purl(kind: PackageKind, package: &Package, os: Option<&OsRelease>) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, PURL_ESCAPED).to_string();
    // Each `/`-separated part of a name encoded on its own (Go module paths, npm scopes).
    let segments = |s: &str| s.split('/').map(enc).collect::<Vec<_>>().join("/");
    let (purl_type, default_namespace) = match kind {
        PackageKind::Dpkg => ("deb", "debian"),
        PackageKind::Apk => ("apk", "alpine"),
        PackageKind::Rpm => return rpm_purl(package, os),
        PackageKind::Go => {
            return format!(
                "pkg:golang/{}@{}",
                segments(&package.name),
                enc(&package.version)
            );
        }
        PackageKind::Python => {
            return format!("pkg:pypi/{}@{}", enc(&package.name), enc(&package.version));
        }
        PackageKind::Npm => {
            return format!(
                "pkg:npm/{}@{}",
                segments(&package.name),
                enc(&package.version)
            );
        }
        PackageKind::Cargo => {
            return format!("pkg:cargo/{}@{}", enc(&package.name), enc(&package.version));
        }
    };
    let namespace = os.map(|o| o.id.as_str()).unwrap_or(default_namespace);
    let mut out = format!(
        "pkg:{purl_type}/{}/{}@{}",
        enc(namespace),
        enc(&package.name),
        enc(&package.version)
    );
    let mut qualifiers = Vec::new();
    if let Some(arch) = &package.architecture {
        qualifiers.push(format!("arch={}", enc(arch)));
    }
    if let Some(distro) = distro_qualifier(os) {
        qualifiers.push(distro);
    }
    // The source package, as the purl types of deb and apk carry it (and syft writes it):
    // `upstream=openssl`, with `@version` when the source's version differs.
    if package.source_name != package.name || package.source_version != package.version {
        let upstream = if package.source_version == package.version {
            package.source_name.clone()
        } else {
            format!("{}@{}", package.source_name, package.source_version)
        };
        qualifiers.push(format!("upstream={}", enc(&upstream)));
    }
    push_qualifiers(&mut out, &qualifiers);
    out
}

/// `distro=debian-12` (or `distro=debian` without a release).
fn distro_qualifier(os: Option<&OsRelease>) -> Option<String> {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, PURL_ESCAPED).to_string();
    let os = os?;
    Some(match &os.version_id {
        Some(v) => format!("distro={}-{}", enc(&os.id), enc(v)),
        None => format!("distro={}", enc(&os.id)),
    })
}

fn push_qualifiers(out: &mut String, qualifiers: &[String]) {
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
}

/// `pkg:rpm/<distribution>/<name>@<version>-<release>?arch=…&epoch=…&distro=…`: the epoch of
/// an `epoch:version-release` goes to its own qualifier, as the purl specification asks; the
/// namespace is left out when no `os-release` names the distribution.
fn rpm_purl(package: &Package, os: Option<&OsRelease>) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, PURL_ESCAPED).to_string();
    let (epoch, version) = match package.version.split_once(':') {
        Some((epoch, version)) => (Some(epoch), version),
        None => (None, package.version.as_str()),
    };
    let mut out = match os {
        Some(os) => format!(
            "pkg:rpm/{}/{}@{}",
            enc(&os.id),
            enc(&package.name),
            enc(version)
        ),
        None => format!("pkg:rpm/{}@{}", enc(&package.name), enc(version)),
    };
    let mut qualifiers = Vec::new();
    if let Some(arch) = &package.architecture {
        qualifiers.push(format!("arch={}", enc(arch)));
    }
    if let Some(epoch) = epoch {
        qualifiers.push(format!("epoch={}", enc(epoch)));
    }
    if let Some(distro) = distro_qualifier(os) {
        qualifiers.push(distro);
    }
    push_qualifiers(&mut out, &qualifiers);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit
 This package is part of the OpenSSL project.
 .
 More text: with a colon.

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: base-files
Status: hold ok installed
Architecture: amd64
Version: 12.4+deb12u5

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0

Package: broken
Status: install reinstreq half-installed
Version: 2.0

Package: noversion
Status: install ok installed
";

    #[test]
    fn dpkg_status_lists_installed_packages_with_their_sources() {
        let packages = parse_dpkg_status(STATUS);
        let rows: Vec<(&str, &str, &str, &str)> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source_name.as_str(),
                    p.source_version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("libssl3", "3.0.11-1~deb12u2", "openssl", "3.0.11-1~deb12u2"),
                ("zlib1g", "1:1.2.13.dfsg-1", "zlib", "1:1.2.13.dfsg-1"),
                ("base-files", "12.4+deb12u5", "base-files", "12.4+deb12u5"),
            ]
        );
        assert_eq!(packages[0].architecture.as_deref(), Some("amd64"));
    }

    #[test]
    fn dpkg_source_version_differs_from_binary_version() {
        let text = "Package: libexpat1\nStatus: install ok installed\nSource: expat (2.5.0-1)\nVersion: 2.5.0-1+b1\n";
        let p = &parse_dpkg_status(text)[0];
        assert_eq!(
            (p.version.as_str(), p.source_version.as_str()),
            ("2.5.0-1+b1", "2.5.0-1")
        );
    }

    #[test]
    fn dpkg_status_tolerates_crlf_and_garbage() {
        let text =
            "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\n\r\n\u{0}\u{1}:::\n\n";
        let packages = parse_dpkg_status(text);
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].version, "1");
        assert!(parse_dpkg_status("").is_empty());
    }

    #[test]
    fn apk_installed_names_origin_as_source() {
        let text = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nT:Crypto library\n\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\n\nP:incomplete\n";
        let packages = parse_apk_installed(text);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].source_name, "openssl");
        assert_eq!(packages[0].source_version, "3.1.4-r5");
        assert_eq!(packages[1].source_name, "musl");
        assert_eq!(packages[1].architecture.as_deref(), Some("x86_64"));
    }

    #[test]
    fn os_release_gives_the_osv_ecosystem() {
        let debian = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .unwrap();
        assert_eq!(debian.version_id.as_deref(), Some("12"));
        assert_eq!(ecosystem(PackageKind::Dpkg, Some(&debian)), "Debian:12");
        let alpine = parse_os_release("ID=alpine\nVERSION_ID=3.19.1\n").unwrap();
        assert_eq!(ecosystem(PackageKind::Apk, Some(&alpine)), "Alpine:v3.19");
        let ubuntu = parse_os_release("ID=ubuntu\nVERSION_ID='22.04'\n").unwrap();
        assert_eq!(ecosystem(PackageKind::Dpkg, Some(&ubuntu)), "Ubuntu:22.04");
        let sid = parse_os_release("ID=debian\n# comment\n").unwrap();
        assert_eq!(ecosystem(PackageKind::Dpkg, Some(&sid)), "Debian");
        assert_eq!(ecosystem(PackageKind::Apk, None), "Alpine");
        assert_eq!(parse_os_release("NAME=nothing\n"), None);
        let rocky = parse_os_release("ID=\"rocky\"\nVERSION_ID=\"9.3\"\n").unwrap();
        assert_eq!(ecosystem(PackageKind::Rpm, Some(&rocky)), "Rocky Linux:9");
        let fedora = parse_os_release("ID=fedora\nVERSION_ID=39\n").unwrap();
        assert_eq!(ecosystem(PackageKind::Rpm, Some(&fedora)), "rpm");
        assert_eq!(ecosystem(PackageKind::Rpm, None), "rpm");
        // Language packages belong to their registry on any distribution.
        assert_eq!(ecosystem(PackageKind::Python, Some(&debian)), "PyPI");
        assert_eq!(ecosystem(PackageKind::Go, Some(&alpine)), "Go");
        assert_eq!(ecosystem(PackageKind::Npm, None), "npm");
        assert_eq!(ecosystem(PackageKind::Cargo, None), "crates.io");
    }

    #[test]
    fn purls_name_type_distro_and_arch() {
        let debian = parse_os_release("ID=debian\nVERSION_ID=\"12\"\n").unwrap();
        let p = &parse_dpkg_status(STATUS)[1];
        assert_eq!(
            purl(PackageKind::Dpkg, p, Some(&debian)),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        );
        // A source package of another version: `upstream=name@version`, `@` escaped.
        let rebuilt = Package {
            source_name: "zlib".into(),
            source_version: "1:1.2.13.dfsg-0".into(),
            ..p.clone()
        };
        assert_eq!(
            purl(PackageKind::Dpkg, &rebuilt, Some(&debian)),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12\
             &upstream=zlib%401:1.2.13.dfsg-0"
        );
        let alpine = parse_os_release("ID=alpine\nVERSION_ID=3.19.1\n").unwrap();
        let musl = Package {
            name: "musl".into(),
            version: "1.2.4-r2".into(),
            source_name: "musl".into(),
            source_version: "1.2.4-r2".into(),
            architecture: Some("x86_64".into()),
        };
        assert_eq!(
            purl(PackageKind::Apk, &musl, Some(&alpine)),
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1"
        );
        let bash = Package {
            architecture: Some("x86_64".into()),
            ..registry_package("bash", "1:5.2.15-3.fc38")
        };
        let fedora = parse_os_release("ID=fedora\nVERSION_ID=38\n").unwrap();
        assert_eq!(
            purl(PackageKind::Rpm, &bash, Some(&fedora)),
            "pkg:rpm/fedora/bash@5.2.15-3.fc38?arch=x86_64&epoch=1&distro=fedora-38"
        );
        assert_eq!(
            purl(PackageKind::Rpm, &bash, None),
            "pkg:rpm/bash@5.2.15-3.fc38?arch=x86_64&epoch=1"
        );
        let net = registry_package("golang.org/x/net", "v0.17.0");
        assert_eq!(
            purl(PackageKind::Go, &net, Some(&fedora)),
            "pkg:golang/golang.org/x/net@v0.17.0"
        );
        let babel = registry_package("@babel/core", "7.23.0");
        assert_eq!(
            purl(PackageKind::Npm, &babel, None),
            "pkg:npm/%40babel/core@7.23.0"
        );
        let requests = registry_package("requests", "2.31.0");
        assert_eq!(
            purl(PackageKind::Python, &requests, None),
            "pkg:pypi/requests@2.31.0"
        );
        let serde = registry_package("serde", "1.0.193");
        assert_eq!(
            purl(PackageKind::Cargo, &serde, None),
            "pkg:cargo/serde@1.0.193"
        );
    }

    #[test]
    fn pypi_names_are_normalised_as_pep_503_says() {
        assert_eq!(normalise_pypi_name("Flask"), "flask");
        assert_eq!(normalise_pypi_name("zope.interface"), "zope-interface");
        assert_eq!(normalise_pypi_name("Foo__Bar-.baz"), "foo-bar-baz");
        assert_eq!(
            normalise_pypi_name(" typing_extensions "),
            "typing-extensions"
        );
    }
}
