//! Packages of language registries that an image says it contains: Python distributions
//! (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO` or an `*.egg-info` file, all in the same
//! format), npm packages (`node_modules/**/package.json` and
//! `package-lock.json`) and Rust crates (`Cargo.lock`).
//!
//! Each reader takes the file's bytes (already capped by the layer reader) and returns its
//! packages, or why the file says nothing usable; a malformed file never panics.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::packages::{Package, normalise_pypi_name, registry_package};

/// The most of a `METADATA` file read: its headers come first, the long description after
/// them can be large and is not needed.
pub const MAX_METADATA_HEAD_BYTES: u64 = 256 << 10;

/// Which language file, if any, lives at `path` (normalised, without a leading `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanguageFile {
    /// `…/<name>-<version>.dist-info/METADATA`, `…/<name>.egg-info/PKG-INFO`, or an
    /// `<name>.egg-info` file in `site-packages` or `dist-packages`.
    PythonMetadata,
    /// `…/node_modules/<name>/package.json` or `…/node_modules/@<scope>/<name>/package.json`.
    NpmPackageJson,
    /// `…/package-lock.json` (outside `node_modules`).
    NpmLock,
    /// `…/Cargo.lock`.
    CargoLock,
}

impl LanguageFile {
    /// The role of the file at `path`.
    pub fn of(path: &str) -> Option<LanguageFile> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = dir.rsplit('/').next().unwrap_or_default();
        match name {
            "METADATA" if parent.ends_with(".dist-info") && parent.len() > ".dist-info".len() => {
                Some(LanguageFile::PythonMetadata)
            }
            "PKG-INFO" if parent.ends_with(".egg-info") && parent.len() > ".egg-info".len() => {
                Some(LanguageFile::PythonMetadata)
            }
            // setuptools (and Debian's python3-* packages) may write the egg-info as one file.
            _ if name.ends_with(".egg-info")
                && name.len() > ".egg-info".len()
                && matches!(parent, "site-packages" | "dist-packages") =>
            {
                Some(LanguageFile::PythonMetadata)
            }
            "package.json" if is_installed_npm_package(dir) => Some(LanguageFile::NpmPackageJson),
            "package-lock.json" if !dir.split('/').any(|c| c == "node_modules") => {
                Some(LanguageFile::NpmLock)
            }
            "Cargo.lock" => Some(LanguageFile::CargoLock),
            _ => None,
        }
    }
}

/// Whether `dir` is a package's own directory right under a `node_modules` (not a fixture or
/// example deeper inside one).
fn is_installed_npm_package(dir: &str) -> bool {
    let parts: Vec<&str> = dir.split('/').collect();
    match parts.as_slice() {
        [.., "node_modules", scope, _] if scope.starts_with('@') => true,
        [.., "node_modules", name] => !name.starts_with('@') && !name.starts_with('.'),
        _ => false,
    }
}

/// The distribution a `METADATA` file describes (`Name`, `Version` of its headers, which end
/// at the first blank line), with its name normalised as PyPI compares names.
pub fn parse_python_metadata(text: &str) -> Result<Vec<Package>, String> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some(("Name", v)) if name.is_none() => name = Some(v.trim()),
            Some(("Version", v)) if version.is_none() => version = Some(v.trim()),
            _ => {}
        }
    }
    match (name, version) {
        (Some(name), Some(version)) if !name.is_empty() && !version.is_empty() => {
            Ok(vec![registry_package(&normalise_pypi_name(name), version)])
        }
        _ => Err("no Name and Version headers".to_owned()),
    }
}

#[derive(Deserialize)]
struct PackageJson {
    name: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

/// The package an installed `package.json` describes.
pub fn parse_npm_package_json(bytes: &[u8]) -> Result<Vec<Package>, String> {
    let manifest: PackageJson =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON package manifest: {e}"))?;
    match (manifest.name, manifest.version) {
        (Some(serde_json::Value::String(name)), Some(serde_json::Value::String(version)))
            if !name.is_empty() && !version.is_empty() =>
        {
            Ok(vec![registry_package(&name, &version)])
        }
        _ => Err("no name and version".to_owned()),
    }
}

#[derive(Deserialize)]
struct PackageLock {
    /// lockfileVersion 2 and 3: every installed package by its `node_modules/…` path.
    #[serde(default)]
    packages: Option<serde_json::Map<String, serde_json::Value>>,
    /// lockfileVersion 1: a tree of `dependencies`.
    #[serde(default)]
    dependencies: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The packages a `package-lock.json` installs (the project itself, linked workspace
/// packages and entries without a version left out), each name and version once.
pub fn parse_npm_lock(bytes: &[u8]) -> Result<Vec<Package>, String> {
    let lock: PackageLock =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON lockfile: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |name: &str, version: &str| {
        if !name.is_empty()
            && !version.is_empty()
            && seen.insert((name.to_owned(), version.to_owned()))
        {
            out.push(registry_package(name, version));
        }
    };
    if let Some(packages) = &lock.packages {
        for (path, entry) in packages {
            let Some(installed_as) = path.rsplit_once("node_modules/").map(|(_, n)| n) else {
                continue; // "" is the project itself
            };
            if entry.get("link").and_then(|l| l.as_bool()) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or(installed_as);
            if let Some(version) = entry.get("version").and_then(|v| v.as_str()) {
                push(name, version);
            }
        }
    } else if let Some(dependencies) = &lock.dependencies {
        // Nested trees are walked with an explicit stack (the JSON parser already bounds
        // their depth).
        let mut stack = vec![dependencies];
        while let Some(level) = stack.pop() {
            for (name, entry) in level {
                if let Some(version) = entry.get("version").and_then(|v| v.as_str())
                    && !version.starts_with("file:")
                {
                    push(name, version);
                }
                if let Some(nested) = entry.get("dependencies").and_then(|d| d.as_object()) {
                    stack.push(nested);
                }
            }
        }
    } else {
        return Err("neither packages nor dependencies".to_owned());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<CargoLockPackage>,
}

#[derive(Deserialize)]
struct CargoLockPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// The crates a `Cargo.lock` pins from a registry (those with a `registry+` or `sparse+`
/// source); the workspace's own crates and path or git dependencies are not crates.io's.
pub fn parse_cargo_lock(text: &str) -> Result<Vec<Package>, String> {
    let lock: CargoLock = toml::from_str(text).map_err(|e| format!("not a Cargo.lock: {e}"))?;
    Ok(lock
        .package
        .iter()
        .filter(|p| {
            p.source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
        })
        .map(|p| registry_package(&p.name, &p.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(packages: &[Package]) -> Vec<String> {
        packages
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect()
    }

    #[test]
    fn files_are_recognised_by_path() {
        let of = LanguageFile::of;
        assert_eq!(
            of("usr/lib/python3/dist-packages/Flask-3.0.0.dist-info/METADATA"),
            Some(LanguageFile::PythonMetadata)
        );
        assert_eq!(of("x/.dist-info/METADATA"), None);
        assert_eq!(
            of("usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO"),
            Some(LanguageFile::PythonMetadata)
        );
        assert_eq!(
            of("usr/lib/python3/dist-packages/chardet-5.1.0.egg-info"),
            Some(LanguageFile::PythonMetadata)
        );
        assert_eq!(of("home/me/notes.egg-info"), None);
        assert_eq!(of("x/foo.egg-info/METADATA"), None);
        assert_eq!(
            of("app/node_modules/lodash/package.json"),
            Some(LanguageFile::NpmPackageJson)
        );
        assert_eq!(
            of("app/node_modules/@babel/core/package.json"),
            Some(LanguageFile::NpmPackageJson)
        );
        assert_eq!(
            of("app/node_modules/a/node_modules/b/package.json"),
            Some(LanguageFile::NpmPackageJson)
        );
        assert_eq!(of("app/node_modules/lodash/test/package.json"), None);
        assert_eq!(of("app/node_modules/@babel/package.json"), None);
        assert_eq!(of("app/node_modules/.bin/package.json"), None);
        assert_eq!(of("app/package.json"), None);
        assert_eq!(of("app/package-lock.json"), Some(LanguageFile::NpmLock));
        assert_eq!(of("app/node_modules/.package-lock.json"), None);
        assert_eq!(of("app/node_modules/x/package-lock.json"), None);
        assert_eq!(of("src/app/Cargo.lock"), Some(LanguageFile::CargoLock));
        assert_eq!(of("Cargo.lock"), Some(LanguageFile::CargoLock));
    }

    #[test]
    fn python_metadata_gives_the_normalised_name() {
        let text = "Metadata-Version: 2.1\r\nName: Typing_Extensions\r\nVersion: 4.9.0\r\nSummary: x\r\n\r\nName: not-a-header\nLong description…";
        assert_eq!(
            rows(&parse_python_metadata(text).unwrap()),
            ["typing-extensions@4.9.0"]
        );
        assert!(parse_python_metadata("Name: x\n\nVersion: 1\n").is_err());
        assert!(parse_python_metadata("").is_err());
        assert!(parse_python_metadata("\u{0}\u{1}garbage:::\n").is_err());
    }

    #[test]
    fn python_metadata_of_millions_of_lines_is_read_in_one_pass() {
        let text = format!(
            "Name: big\nVersion: 1.0\n\n{}",
            "a long description line\n".repeat(1_000_000)
        );
        assert_eq!(rows(&parse_python_metadata(&text).unwrap()), ["big@1.0"]);
        let headers = "X-Header: y\n".repeat(1_000_000);
        assert!(parse_python_metadata(&headers).is_err());
    }

    #[test]
    fn package_json_gives_name_and_version() {
        let json = br#"{"name": "@babel/core", "version": "7.23.0", "dependencies": {}}"#;
        assert_eq!(
            rows(&parse_npm_package_json(json).unwrap()),
            ["@babel/core@7.23.0"]
        );
        let err = parse_npm_package_json(b"{not json").unwrap_err();
        assert!(err.contains("not a JSON"), "{err}");
        assert!(parse_npm_package_json(br#"{"name": "x"}"#).is_err());
        assert!(parse_npm_package_json(br#"{"name": 1, "version": []}"#).is_err());
        assert!(parse_npm_package_json(br#"[1,2]"#).is_err());
        // Nesting deeper than the parser allows is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_npm_package_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn package_lock_v3_lists_installed_packages_once() {
        let json = br#"{
          "name": "app", "lockfileVersion": 3,
          "packages": {
            "": {"name": "app", "version": "1.0.0"},
            "node_modules/lodash": {"version": "4.17.21"},
            "node_modules/@babel/core": {"version": "7.23.0"},
            "node_modules/a/node_modules/lodash": {"version": "4.17.20"},
            "node_modules/b/node_modules/lodash": {"version": "4.17.20"},
            "node_modules/alias": {"name": "real-name", "version": "2.0.0"},
            "node_modules/ws-pkg": {"resolved": "packages/ws-pkg", "link": true},
            "packages/ws-pkg": {"version": "0.1.0"}
          }
        }"#;
        assert_eq!(
            rows(&parse_npm_lock(json).unwrap()),
            [
                "@babel/core@7.23.0",
                "lodash@4.17.20",
                "real-name@2.0.0",
                "lodash@4.17.21"
            ]
        );
    }

    #[test]
    fn package_lock_v1_walks_nested_dependencies() {
        let json = br#"{"lockfileVersion": 1, "dependencies": {
            "a": {"version": "1.0.0", "dependencies": {"b": {"version": "2.0.0"}}},
            "local": {"version": "file:../local"}
        }}"#;
        let mut got = rows(&parse_npm_lock(json).unwrap());
        got.sort();
        assert_eq!(got, ["a@1.0.0", "b@2.0.0"]);
        assert!(parse_npm_lock(b"{}").is_err());
        assert!(parse_npm_lock(b"garbage").is_err());
    }

    #[test]
    fn cargo_lock_lists_registry_crates() {
        let text = r#"
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.193"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abc"

[[package]]
name = "tokio"
version = "1.35.0"
source = "sparse+https://index.crates.io/"

[[package]]
name = "forked"
version = "0.2.0"
source = "git+https://example.com/forked#abc"
"#;
        assert_eq!(
            rows(&parse_cargo_lock(text).unwrap()),
            ["serde@1.0.193", "tokio@1.35.0"]
        );
        assert!(parse_cargo_lock("[[package]]\nname = 1\n").is_err());
        assert!(parse_cargo_lock("\u{0}garbage = = =").is_err());
        assert_eq!(parse_cargo_lock("").unwrap(), []);
    }
}
