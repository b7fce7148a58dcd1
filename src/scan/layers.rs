//! Reading a layer blob once: [`index_layer`] streams a gzip, zstd or plain tar archive
//! (told apart by magic bytes, not by media type), keeps only what says what is installed
//! and the layer's whiteouts and opaque directories; everything else is skipped as it streams
//! by. What it reads: the dpkg and apk databases and `os-release` (each up to
//! [`LayerLimits::max_file_bytes`]), rpm's SQLite and Berkeley DB databases, Python `METADATA` (and
//! egg-info), npm `package.json` and `package-lock.json`, `Cargo.lock`, the build information
//! of Go executables (ELF files with an executable bit, up to
//! [`LayerLimits::max_binary_bytes`], streamed, never held whole) and the cargo-auditable
//! section of Rust executables (those up to [`rustaudit::MAX_AUDITED_BINARY_BYTES`], held
//! whole while read). [`merge`] then stacks the layers of an image, bottom to top, into its
//! inventory, without reading any blob again.
//!
//! Entries are only read by name, and links are never followed. The one file written is the
//! copy of an rpm database read from a file, in a scratch directory of its own that is
//! removed when the layer is done. Paths are normalised (`./` and leading `/` stripped); an
//! entry with a `..` component is skipped and noted. A file that cannot be read (malformed,
//! too big, truncated) is noted, and lists no packages.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};

use super::gobinary::{self, BuildInfoScanner};
use super::languages::{self, LanguageFile};
use super::packages::{
    self, OsRelease, Package, PackageKind, parse_apk_installed, parse_dpkg_status, parse_os_release,
};
use super::{rpm, rustaudit};

/// Bumped whenever what is read from a layer changes: layers indexed by an older version are
/// read again, those of this version never. 2: rpm, Go binaries, Rust binaries built with
/// cargo-auditable, Python, npm and Cargo.lock. 3: rpm's Berkeley DB database.
pub const INDEXER_VERSION: i64 = 3;

/// How much of a layer is read at most.
#[derive(Debug, Clone, Copy)]
pub struct LayerLimits {
    /// The largest package database, lockfile or `os-release` read (into memory, or for an
    /// rpm database into its scratch copy); a bigger one is skipped with a note. A `METADATA`
    /// is read up to its first [`languages::MAX_METADATA_HEAD_BYTES`] whatever its size.
    pub max_file_bytes: u64,
    /// The most bytes a layer may decompress to (a gzip bomb ends with an error here).
    pub max_layer_bytes: u64,
    /// The largest executable searched for Go build information (streamed through, never
    /// held); a bigger one is not searched.
    pub max_binary_bytes: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_file_bytes: 64 << 20,
            max_layer_bytes: 32 << 30,
            max_binary_bytes: 1 << 30,
        }
    }
}

/// A file of a layer that says what is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerFile {
    /// A package database and the installed packages it lists.
    Packages {
        /// Its packaging system.
        kind: PackageKind,
        /// The installed packages, in database order.
        packages: Vec<Package>,
    },
    /// An `os-release` file (`None`: it names no distribution).
    OsRelease {
        /// What it says.
        release: Option<OsRelease>,
    },
}

/// What one layer says about installed software.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    /// The interesting files this layer adds or replaces, by normalised path.
    pub files: BTreeMap<String, LayerFile>,
    /// Paths this layer deletes from the layers below (`.wh.<name>` entries).
    pub whiteouts: Vec<String>,
    /// Directories whose lower contents this layer hides (`.wh..wh..opq` entries).
    pub opaque_dirs: Vec<String>,
    /// Entries skipped on purpose (a `..` path, a database too big, a link at a database
    /// path, a file that is not what its path says, a binary cut inside its build
    /// information), for people.
    pub notes: Vec<String>,
}

/// Why a layer could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The stream ended early or its compression is corrupt.
    #[error("layer is truncated or corrupt: {0}")]
    Corrupt(io::Error),
    /// It decompresses to more than the limit.
    #[error("layer decompresses to more than {0} bytes")]
    TooBig(u64),
}

/// Which database, if any, lives at `path` (already normalised).
fn kind_of(path: &str) -> Option<FileRole> {
    match path {
        "var/lib/dpkg/status" => Some(FileRole::Db(PackageKind::Dpkg)),
        "lib/apk/db/installed" => Some(FileRole::Db(PackageKind::Apk)),
        "etc/os-release" | "usr/lib/os-release" => Some(FileRole::OsRelease),
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => {
            Some(FileRole::RpmSqlite)
        }
        "var/lib/rpm/Packages" | "usr/lib/sysimage/rpm/Packages" => Some(FileRole::RpmBerkeley),
        "var/lib/rpm/Packages.db" | "usr/lib/sysimage/rpm/Packages.db" => Some(FileRole::RpmNdb),
        _ => {
            if let Some(file) = LanguageFile::of(path) {
                return Some(FileRole::Language(file));
            }
            let name = path.strip_prefix("var/lib/dpkg/status.d/")?;
            // distroless writes `<pkg>` and `<pkg>.md5sums` side by side.
            (!name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums"))
                .then_some(FileRole::Db(PackageKind::Dpkg))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum FileRole {
    Db(PackageKind),
    OsRelease,
    /// rpm's SQLite database.
    RpmSqlite,
    /// rpm's Berkeley DB database (`Packages`).
    RpmBerkeley,
    /// rpm's NDB database, which is not read (noted).
    RpmNdb,
    Language(LanguageFile),
}

/// The packages `file` lists, or why it lists none.
fn language_packages(
    file: LanguageFile,
    bytes: &[u8],
) -> (PackageKind, Result<Vec<Package>, String>) {
    match file {
        LanguageFile::PythonMetadata => (
            PackageKind::Python,
            languages::parse_python_metadata(&String::from_utf8_lossy(bytes)),
        ),
        LanguageFile::NpmPackageJson => {
            (PackageKind::Npm, languages::parse_npm_package_json(bytes))
        }
        LanguageFile::NpmLock => (PackageKind::Npm, languages::parse_npm_lock(bytes)),
        LanguageFile::CargoLock => (
            PackageKind::Cargo,
            std::str::from_utf8(bytes)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(languages::parse_cargo_lock),
        ),
    }
}

const ELF_MAGIC: &[u8] = b"\x7fELF";

/// The packages a file lists, or why it lists none.
type Listed = Result<Vec<Package>, String>;

/// What an ELF executable says it was built from: Go build information (streamed), else the
/// `.dep-v0` section of cargo-auditable (which needs the file whole, so only up to
/// [`rustaudit::MAX_AUDITED_BINARY_BYTES`] is held); `None` when it says nothing (or is no
/// ELF file, which is seen from its first bytes).
fn read_executable(entry: &mut impl Read, size: u64) -> io::Result<Option<(PackageKind, Listed)>> {
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match entry.read(&mut head[filled..])? {
            0 => return Ok(None),
            n => filled += n,
        }
    }
    if head != ELF_MAGIC {
        return Ok(None);
    }
    let hold = size <= rustaudit::MAX_AUDITED_BINARY_BYTES;
    let mut whole = Vec::new();
    if hold {
        whole.reserve(size.min(8 << 20) as usize);
        whole.extend_from_slice(&head);
    }
    let mut scanner = BuildInfoScanner::new();
    scanner.feed(&head);
    let mut buf = vec![0u8; 64 << 10];
    while hold || scanner.wants_more() {
        match entry.read(&mut buf)? {
            0 => break,
            n => {
                scanner.feed(&buf[..n]);
                if hold {
                    whole.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    if let Some(outcome) = scanner.finish() {
        return Ok(Some((
            PackageKind::Go,
            outcome
                .map(|info| gobinary::packages(&info))
                .map_err(|e| e.to_string()),
        )));
    }
    Ok(rustaudit::dep_section(&whole)
        .map(|section| (PackageKind::Cargo, rustaudit::parse_dep_section(section))))
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Reads one layer blob (gzip, zstd or plain tar) in a single streaming pass.
pub fn index_layer(blob: impl Read, limits: LayerLimits) -> Result<LayerIndex, LayerError> {
    let mut blob = BufReader::new(blob);
    let head = blob.fill_buf().map_err(LayerError::Corrupt)?;
    let decompressed: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(blob))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::with_buffer(blob).map_err(LayerError::Corrupt)?)
    } else {
        Box::new(blob)
    };
    let mut capped = Capped {
        inner: TarGuard::new(decompressed),
        left: limits.max_layer_bytes,
        tripped: false,
    };
    let result = read_tar(&mut capped, limits);
    let result = result.and_then(|index| {
        // The rest (tar padding, the compressor's trailer and checksum) is read too, so a
        // truncated or corrupt end is noticed.
        io::copy(&mut capped, &mut io::sink())?;
        Ok(index)
    });
    result.map_err(|e| {
        if capped.tripped {
            LayerError::TooBig(limits.max_layer_bytes)
        } else {
            LayerError::Corrupt(e)
        }
    })
}

fn read_tar(reader: &mut dyn Read, limits: LayerLimits) -> io::Result<LayerIndex> {
    let mut index = LayerIndex::default();
    // Created on the first rpm database, removed (with what is in it) on return.
    let mut scratch: Option<tempfile::TempDir> = None;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalise(&raw_path) else {
            index
                .notes
                .push(format!("skipped {raw_path:?}: a path leaving the layer"));
            continue;
        };
        if path.is_empty() {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (dir, name),
            None => ("", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            index.opaque_dirs.push(dir.to_owned());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if !hidden.is_empty() {
                index.whiteouts.push(join(dir, hidden));
            }
            continue;
        }
        let entry_type = entry.header().entry_type();
        let Some(role) = kind_of(&path) else {
            let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            if entry_type.is_file() && executable {
                let size = entry.header().size()?;
                if size <= limits.max_binary_bytes {
                    match read_executable(&mut entry, size)? {
                        Some((kind, Ok(packages))) => {
                            index
                                .files
                                .insert(path, LayerFile::Packages { kind, packages });
                        }
                        Some((_, Err(e))) => index.notes.push(format!("skipped {path}: {e}")),
                        None => {}
                    }
                }
            }
            continue;
        };
        if !entry_type.is_file() {
            if !entry_type.is_dir() {
                index.notes.push(format!(
                    "skipped {path}: a link or special file, not followed"
                ));
            }
            continue;
        }
        let size = entry.header().size()?;
        // Only the head of a `METADATA` is read, whatever its size.
        let head_only = matches!(role, FileRole::Language(LanguageFile::PythonMetadata));
        if size > limits.max_file_bytes && !head_only {
            index.notes.push(format!(
                "skipped {path}: {size} bytes, more than the {} read at most",
                limits.max_file_bytes
            ));
            continue;
        }
        let file = match role {
            FileRole::RpmNdb => {
                index.notes.push(format!(
                    "skipped {path}: rpm's NDB database is not read (rpm 4.16 and later keep \
                     rpmdb.sqlite, earlier ones Packages)"
                ));
                continue;
            }
            FileRole::RpmSqlite | FileRole::RpmBerkeley => {
                let scratch = match &scratch {
                    Some(dir) => dir,
                    None => scratch.insert(tempfile::tempdir()?),
                };
                let sqlite = matches!(role, FileRole::RpmSqlite);
                let copy = scratch
                    .path()
                    .join(if sqlite { "rpmdb.sqlite" } else { "Packages" });
                {
                    let mut out = std::fs::File::create(&copy)?;
                    io::copy(&mut (&mut entry).take(limits.max_file_bytes), &mut out)?;
                }
                let read = if sqlite {
                    rpm::read_sqlite_db(&copy)
                } else {
                    rpm::read_berkeley_db(&copy)
                };
                let packages = match read {
                    Ok((packages, notes)) => {
                        index
                            .notes
                            .extend(notes.into_iter().map(|n| format!("{path}: {n}")));
                        packages
                    }
                    Err(e) => {
                        index.notes.push(format!("skipped {path}: {e}"));
                        Vec::new()
                    }
                };
                std::fs::remove_file(&copy)?;
                LayerFile::Packages {
                    kind: PackageKind::Rpm,
                    packages,
                }
            }
            FileRole::Language(file) => {
                // A `METADATA`'s headers come first; the rest is not needed.
                let cap = match file {
                    LanguageFile::PythonMetadata => {
                        languages::MAX_METADATA_HEAD_BYTES.min(limits.max_file_bytes)
                    }
                    _ => limits.max_file_bytes,
                };
                let mut bytes = Vec::with_capacity(size.min(cap).min(1 << 20) as usize);
                (&mut entry).take(cap).read_to_end(&mut bytes)?;
                let (kind, packages) = language_packages(file, &bytes);
                let packages = packages.unwrap_or_else(|e| {
                    index.notes.push(format!("skipped {path}: {e}"));
                    Vec::new()
                });
                LayerFile::Packages { kind, packages }
            }
            FileRole::Db(kind) => {
                let text = read_text(&mut entry, size, limits)?;
                LayerFile::Packages {
                    kind,
                    packages: match kind {
                        PackageKind::Apk => parse_apk_installed(&text),
                        _ => parse_dpkg_status(&text),
                    },
                }
            }
            FileRole::OsRelease => LayerFile::OsRelease {
                release: parse_os_release(&read_text(&mut entry, size, limits)?),
            },
        };
        index.files.insert(path, file);
    }
    Ok(index)
}

/// A text file of at most `limits.max_file_bytes`, invalid UTF-8 replaced.
fn read_text(entry: &mut impl Read, size: u64, limits: LayerLimits) -> io::Result<String> {
    let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
    entry.take(limits.max_file_bytes).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `./var//lib/./dpkg/` → `var/lib/dpkg`; `None` when a component is `..`.
fn normalise(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` is `prefix` or below it (`prefix` "" is the whole tree).
fn is_under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A reader that fails once more than `left` bytes have passed.
struct Capped<R> {
    inner: R,
    left: u64,
    tripped: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.tripped = true;
            return Err(io::Error::other("decompressed size limit reached"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The most bytes of a tar metadata entry (a GNU long name or link, a PAX header): the `tar`
/// crate reads these whole into memory, so a bigger one is refused before it does.
pub const MAX_TAR_METADATA_BYTES: u64 = 1 << 20;

const BLOCK: usize = 512;

/// Watches the tar stream as it passes (without changing it) and fails it when a metadata
/// entry the `tar` crate would read into memory is larger than [`MAX_TAR_METADATA_BYTES`].
/// It follows the archive's layout as the crate does: header blocks, data rounded up to
/// blocks, a PAX `size` overriding the next entry's, GNU sparse extension blocks; at the end
/// of the archive (a zero block) it stops looking.
struct TarGuard<R> {
    inner: R,
    /// The header (or sparse extension) block being gathered.
    block: [u8; BLOCK],
    filled: usize,
    /// Bytes of entry data (and padding) to let pass before the next block.
    skip: u64,
    /// Data to skip once the GNU sparse extension blocks have passed.
    after_extensions: Option<u64>,
    /// The PAX header being gathered, and how much of it is still to come.
    pax: Option<(Vec<u8>, u64)>,
    /// The size a PAX header gives the next entry.
    pax_size: Option<u64>,
    done: bool,
}

impl<R> TarGuard<R> {
    fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            block: [0; BLOCK],
            filled: 0,
            skip: 0,
            after_extensions: None,
            pax: None,
            pax_size: None,
            done: false,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.done {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some((buf, left)) = &mut self.pax {
                    let take = (*left).min(n as u64) as usize;
                    buf.extend_from_slice(&data[..take]);
                    *left -= take as u64;
                }
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0
                    && let Some((buf, _)) = self.pax.take()
                {
                    self.pax_size = pax_size_of(&buf);
                }
                continue;
            }
            let n = (BLOCK - self.filled).min(data.len());
            self.block[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled < BLOCK {
                continue;
            }
            self.filled = 0;
            if let Some(after) = self.after_extensions {
                // A GNU sparse extension block: another follows while its flag is set.
                if self.block[504] == 0 {
                    self.after_extensions = None;
                    self.skip = after;
                }
                continue;
            }
            self.header()?;
        }
        Ok(())
    }

    /// Reads the header block just gathered.
    fn header(&mut self) -> io::Result<()> {
        let block = &self.block;
        if block.iter().all(|b| *b == 0) {
            self.done = true;
            return Ok(());
        }
        let Some(size) = size_field(&block[124..136]) else {
            // The tar crate refuses this header itself.
            self.done = true;
            return Ok(());
        };
        let recognised = &block[257..262] == b"ustar";
        let kind = block[156];
        let extension = recognised && matches!(kind, b'L' | b'K' | b'x' | b'g');
        if extension && kind != b'g' && size > MAX_TAR_METADATA_BYTES {
            return Err(io::Error::other(format!(
                "a tar metadata entry of {size} bytes (more than {MAX_TAR_METADATA_BYTES})"
            )));
        }
        let size = match (extension, self.pax_size) {
            (false, Some(pax_size)) => {
                self.pax_size = None;
                pax_size
            }
            _ => size,
        };
        if extension && kind == b'x' {
            self.pax = Some((Vec::with_capacity(size as usize), size));
        }
        let padded = size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
        if kind == b'S' && block[482] != 0 {
            self.after_extensions = Some(padded);
        } else {
            self.skip = padded;
            if self.skip == 0
                && let Some((buf, _)) = self.pax.take()
            {
                self.pax_size = pax_size_of(&buf);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// A tar numeric field as the `tar` crate reads it: base-256 when the high bit is set, else
/// octal text.
fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut n: u64 = 0;
        for b in &field[field.len() - 8..] {
            n = (n << 8) | u64::from(*b);
        }
        return Some(n);
    }
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The `size` record of a PAX header (`<len> size=<n>\n`), if it has one.
fn pax_size_of(pax: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(pax);
    text.lines().find_map(|record| {
        let (_, kv) = record.split_once(' ')?;
        kv.strip_prefix("size=")?.trim().parse().ok()
    })
}

/// One package of an image's merged inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPackage {
    /// The OSV ecosystem (`Debian:12`).
    pub ecosystem: String,
    /// Its packaging system.
    pub kind: PackageKind,
    /// The binary package and versions.
    #[serde(flatten)]
    pub package: Package,
    /// Its package URL.
    pub purl: String,
    /// The database file listing it.
    pub db_path: String,
    /// The layer (as the caller names it, a digest) from which this name and version has been
    /// present without interruption.
    pub layer: String,
}

/// An image's inventory: its layers stacked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The distribution, from `etc/os-release` or else `usr/lib/os-release`.
    pub os_release: Option<OsRelease>,
    /// Every installed package, ordered by database path then database order.
    pub packages: Vec<InventoryPackage>,
}

/// Stacks `layers` (bottom first, each named by its digest) as a container runtime would: a
/// file of a higher layer replaces the one below, a whiteout or an opaque directory of a layer
/// hides what the layers below put there. Each package names the lowest layer from which the
/// image has held that package at that version continuously.
pub fn merge<'a>(layers: impl IntoIterator<Item = (&'a str, &'a LayerIndex)>) -> Inventory {
    let mut files: BTreeMap<&str, &LayerFile> = BTreeMap::new();
    let mut introduced: HashMap<(PackageKind, &str, &str), &str> = HashMap::new();
    for (digest, layer) in layers {
        // A layer's whiteouts apply to the layers below it, never to its own files.
        files.retain(|path, _| {
            !layer
                .opaque_dirs
                .iter()
                .any(|dir| is_under(path, dir) && path != dir)
                && !layer.whiteouts.iter().any(|gone| is_under(path, gone))
        });
        for (path, file) in &layer.files {
            files.insert(path, file);
        }
        let mut now = HashMap::new();
        for file in files.values() {
            if let LayerFile::Packages { kind, packages } = file {
                for p in packages {
                    let key = (*kind, p.name.as_str(), p.version.as_str());
                    let since = introduced.get(&key).copied().unwrap_or(digest);
                    now.insert(key, since);
                }
            }
        }
        introduced = now;
    }
    let os_release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match files.get(p) {
            Some(LayerFile::OsRelease { release }) => release.clone(),
            _ => None,
        });
    let mut packages_out = Vec::new();
    for (path, file) in &files {
        let LayerFile::Packages { kind, packages } = file else {
            continue;
        };
        let ecosystem = packages::ecosystem(*kind, os_release.as_ref());
        for p in packages {
            let layer = introduced
                .get(&(*kind, p.name.as_str(), p.version.as_str()))
                .copied()
                .unwrap_or_default();
            packages_out.push(InventoryPackage {
                ecosystem: ecosystem.clone(),
                kind: *kind,
                purl: packages::purl(*kind, p, os_release.as_ref()),
                package: p.clone(),
                db_path: (*path).to_owned(),
                layer: layer.to_owned(),
            });
        }
    }
    Inventory {
        os_release,
        packages: packages_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tar of `(path, contents)` regular files; a path ending in `/` is a directory.
    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            if path.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
            } else {
                header.set_size(data.len() as u64);
            }
            // set_path refuses `..`; write the raw name as a hostile archive would.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn index(bytes: &[u8]) -> Result<LayerIndex, LayerError> {
        index_layer(bytes, LayerLimits::default())
    }

    const STATUS: &[u8] = b"Package: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9\nArchitecture: amd64\n\nPackage: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n";
    const OS: &[u8] = b"ID=debian\nVERSION_ID=\"12\"\n";

    fn names(index: &LayerIndex, path: &str) -> Vec<String> {
        match index.files.get(path) {
            Some(LayerFile::Packages { packages, .. }) => packages
                .iter()
                .map(|p| format!("{}={}", p.name, p.version))
                .collect(),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn plain_gzip_and_zstd_layers_give_the_same_index() {
        let tar = tar_of(&[
            ("./etc/", b""),
            ("./etc/os-release", OS),
            ("var/lib/dpkg/status", STATUS),
            ("usr/bin/true", b"\x7fELF"),
            ("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\n"),
        ]);
        let plain = index(&tar).unwrap();
        assert_eq!(
            names(&plain, "var/lib/dpkg/status"),
            ["libc6=2.36-9", "zlib1g=1:1.2.13.dfsg-1"]
        );
        assert_eq!(names(&plain, "lib/apk/db/installed"), ["musl=1.2.4-r2"]);
        assert_eq!(
            plain.files.get("etc/os-release"),
            Some(&LayerFile::OsRelease {
                release: parse_os_release(std::str::from_utf8(OS).unwrap())
            })
        );
        assert_eq!(plain.files.len(), 3);
        assert_eq!(index(&gzip(&tar)).unwrap(), plain);
        assert_eq!(index(&zstd(&tar)).unwrap(), plain);
    }

    #[test]
    fn status_d_files_are_each_a_database() {
        let tar = tar_of(&[
            ("var/lib/dpkg/status.d/libssl3", b"Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1\n"),
            ("var/lib/dpkg/status.d/libssl3.md5sums", b"abc  usr/lib/libssl.so.3\n"),
            ("var/lib/dpkg/status.d/sub/x", b"Package: x\nStatus: install ok installed\nVersion: 1\n"),
        ]);
        let layer = index(&tar).unwrap();
        assert_eq!(
            layer.files.keys().collect::<Vec<_>>(),
            ["var/lib/dpkg/status.d/libssl3"]
        );
    }

    #[test]
    fn whiteouts_and_opaque_dirs_are_recorded() {
        let tar = tar_of(&[
            ("var/lib/dpkg/status.d/.wh.libssl3", b""),
            ("./usr/lib/.wh..wh..opq", b""),
            (".wh.etc", b""),
        ]);
        let layer = index(&tar).unwrap();
        assert_eq!(layer.whiteouts, ["var/lib/dpkg/status.d/libssl3", "etc"]);
        assert_eq!(layer.opaque_dirs, ["usr/lib"]);
        assert!(layer.files.is_empty());
    }

    #[test]
    fn dot_dot_entries_are_skipped_and_noted() {
        let tar = tar_of(&[
            ("../var/lib/dpkg/status", STATUS),
            ("var/lib/../lib/dpkg/status", STATUS),
            ("/etc/os-release", OS),
        ]);
        let layer = index(&tar).unwrap();
        assert_eq!(layer.files.keys().collect::<Vec<_>>(), ["etc/os-release"]);
        assert_eq!(layer.notes.len(), 2);
        assert!(
            layer.notes[0].contains("../var/lib/dpkg/status"),
            "{:?}",
            layer.notes
        );
    }

    #[test]
    fn links_at_database_paths_are_not_followed() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "var/lib/dpkg/status", "/etc/shadow")
            .unwrap();
        let layer = index(&builder.into_inner().unwrap()).unwrap();
        assert!(layer.files.is_empty());
        assert!(layer.notes[0].contains("not followed"));
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let tar = tar_of(&[("var/lib/dpkg/status", STATUS), ("big", &[7u8; 100_000])]);
        let gz = gzip(&tar);
        let err = index(&gz[..gz.len() / 2]).unwrap_err();
        assert!(matches!(err, LayerError::Corrupt(_)), "{err}");
        // Only the trailer missing.
        let err = index(&gz[..gz.len() - 4]).unwrap_err();
        assert!(matches!(err, LayerError::Corrupt(_)), "{err}");
    }

    #[test]
    fn truncated_plain_tar_inside_an_entry_is_an_error() {
        let tar = tar_of(&[("var/lib/dpkg/status", STATUS), ("big", &[7u8; 100_000])]);
        assert!(index(&tar[..2048]).is_err());
    }

    #[test]
    fn a_truncated_zstd_stream_is_an_error() {
        let z = zstd(&tar_of(&[
            ("var/lib/dpkg/status", STATUS),
            ("big", &[7u8; 100_000]),
        ]));
        let err = index(&z[..z.len() - 3]).unwrap_err();
        assert!(matches!(err, LayerError::Corrupt(_)), "{err}");
    }

    #[test]
    fn a_database_over_the_file_limit_is_skipped_with_a_note() {
        let big = STATUS.repeat(100);
        let tar = tar_of(&[("var/lib/dpkg/status", &big), ("etc/os-release", OS)]);
        let limits = LayerLimits {
            max_file_bytes: 1000,
            ..LayerLimits::default()
        };
        let layer = index_layer(&tar[..], limits).unwrap();
        assert_eq!(layer.files.keys().collect::<Vec<_>>(), ["etc/os-release"]);
        assert!(
            layer.notes[0].contains("var/lib/dpkg/status"),
            "{:?}",
            layer.notes
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_layer_limit() {
        let tar = tar_of(&[("zeros", &vec![0u8; 1 << 20])]);
        let limits = LayerLimits {
            max_layer_bytes: 64 << 10,
            ..LayerLimits::default()
        };
        let err = index_layer(&gzip(&tar)[..], limits).unwrap_err();
        assert!(matches!(err, LayerError::TooBig(_)), "{err}");
    }

    #[test]
    fn long_names_and_pax_headers_pass_the_guard() {
        let long_dir = "d".repeat(120);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        builder
            .append_data(&mut header, format!("{long_dir}/file"), &b"12345"[..])
            .unwrap();
        builder
            .append_pax_extensions([("path", &b"var/lib/dpkg/status"[..])])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(STATUS.len() as u64);
        header.set_path("placeholder").unwrap();
        header.set_cksum();
        builder.append(&header, STATUS).unwrap();
        let tar = builder.into_inner().unwrap();
        let layer = index(&gzip(&tar)).unwrap();
        assert_eq!(
            names(&layer, "var/lib/dpkg/status"),
            ["libc6=2.36-9", "zlib1g=1:1.2.13.dfsg-1"]
        );
    }

    #[test]
    fn a_pax_size_overrides_the_header_size_for_the_guard_too() {
        let data = [b'x'; 2000];
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("size", &b"2000"[..])])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("big").unwrap();
        header.set_size(0);
        header.set_cksum();
        builder.get_mut().extend_from_slice(header.as_bytes());
        builder.get_mut().extend_from_slice(&data);
        builder.get_mut().extend_from_slice(&[0u8; 48]);
        let mut header = tar::Header::new_gnu();
        header.set_size(STATUS.len() as u64);
        builder
            .append_data(&mut header, "var/lib/dpkg/status", STATUS)
            .unwrap();
        let layer = index(&builder.into_inner().unwrap()).unwrap();
        assert_eq!(layer.files.len(), 1);
    }

    #[test]
    fn a_huge_long_name_entry_is_refused_before_it_is_read() {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_path("././@LongLink").unwrap();
        header.set_size(10 << 30);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[b'a'; 4096]);
        let err = index(&gzip(&tar)).unwrap_err();
        assert!(err.to_string().contains("metadata entry"), "{err}");
    }

    #[test]
    fn a_sparse_entry_is_skipped() {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNUSparse);
        header.set_path("sparse").unwrap();
        header.set_size(512);
        {
            let gnu = header.as_gnu_mut().unwrap();
            // Ten GiB of holes, then 512 bytes of data; one extension block.
            gnu.realsize = *b"120000000000";
            gnu.sparse[0].offset = *b"117777777000";
            gnu.sparse[0].numbytes = *b"00000001000\0";
            gnu.isextended = [1];
        }
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[0u8; 512]); // the extension block: no more
        tar.extend_from_slice(&[b's'; 512]);
        let mut status = tar::Header::new_gnu();
        status.set_size(STATUS.len() as u64);
        status.set_path("var/lib/dpkg/status").unwrap();
        status.set_cksum();
        tar.extend_from_slice(status.as_bytes());
        tar.extend_from_slice(STATUS);
        tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
        // The ten GiB are never materialised: the entry is skipped as it streams by, and
        // the database after it is found.
        let layer = index(&tar).unwrap();
        assert_eq!(
            names(&layer, "var/lib/dpkg/status"),
            ["libc6=2.36-9", "zlib1g=1:1.2.13.dfsg-1"]
        );
    }

    fn tar_with_modes(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, mode, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(*mode);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn executables_are_searched_for_go_build_information() {
        let bin = super::super::gobinary::tests::binary(
            "go1.21.5",
            "path\tx\nmod\tx\t(devel)\t\ndep\tgolang.org/x/net\tv0.17.0\th1:x=\n",
        );
        let cut = &bin[..4096 + 40];
        let tar = tar_with_modes(&[
            ("usr/bin/app", 0o755, &bin),
            ("usr/share/app.bin", 0o644, &bin),
            ("usr/bin/cut", 0o755, cut),
            ("usr/bin/script", 0o755, b"#!/bin/sh\n"),
            ("usr/bin/tiny", 0o755, b"\x7fE"),
        ]);
        let layer = index(&gzip(&tar)).unwrap();
        assert_eq!(
            names(&layer, "usr/bin/app"),
            ["x=(devel)", "golang.org/x/net=v0.17.0", "stdlib=1.21.5"]
        );
        assert_eq!(layer.files.len(), 1);
        assert_eq!(
            layer.notes,
            ["skipped usr/bin/cut: its Go build information is truncated"]
        );
        // Over the size searched: not read at all.
        let limits = LayerLimits {
            max_binary_bytes: 1000,
            ..LayerLimits::default()
        };
        assert!(index_layer(&tar[..], limits).unwrap().files.is_empty());
    }

    #[test]
    fn rust_executables_built_with_cargo_auditable_list_their_crates() {
        use super::super::rustaudit::tests::{AUDIT_JSON, elf64};
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(AUDIT_JSON.as_bytes()).unwrap();
        let elf = elf64(&[(".text", b"\x90"), (".dep-v0", &enc.finish().unwrap())]);
        let broken = elf64(&[(".dep-v0", b"not zlib")]);
        let tar = tar_with_modes(&[
            ("usr/bin/rusty", 0o755, &elf),
            ("usr/lib/librusty.so", 0o644, &elf),
            ("usr/bin/broken", 0o755, &broken),
        ]);
        let layer = index(&tar).unwrap();
        assert_eq!(
            names(&layer, "usr/bin/rusty"),
            ["smallvec=1.6.0", "cc=1.0.83"]
        );
        assert_eq!(layer.files.len(), 1);
        assert_eq!(layer.notes.len(), 1);
        assert!(layer.notes[0].starts_with("skipped usr/bin/broken: its cargo-auditable data"));
        assert_eq!(
            rows(&merge([("L1", &layer)])),
            ["crates.io smallvec=1.6.0 L1", "crates.io cc=1.0.83 L1"]
        );
    }

    #[test]
    fn language_files_are_read_and_malformed_ones_noted() {
        let tar = tar_with_modes(&[
            (
                "app/node_modules/a/package.json",
                0o644,
                br#"{"name":"a","version":"1.0.0"}"#,
            ),
            ("app/node_modules/b/package.json", 0o644, b"{oops"),
            (
                "site/Foo_Bar-2.0.dist-info/METADATA",
                0o644,
                b"Name: Foo_Bar\nVersion: 2.0\n",
            ),
            ("var/lib/rpm/Packages", 0o644, b"berkeley"),
        ]);
        let layer = index(&tar).unwrap();
        assert_eq!(
            names(&layer, "app/node_modules/a/package.json"),
            ["a=1.0.0"]
        );
        // A malformed file still replaces what a lower layer had there.
        assert!(names(&layer, "app/node_modules/b/package.json").is_empty());
        assert_eq!(
            names(&layer, "site/Foo_Bar-2.0.dist-info/METADATA"),
            ["foo-bar=2.0"]
        );
        assert_eq!(layer.notes.len(), 2, "{:?}", layer.notes);
        assert!(layer.notes[0].starts_with("skipped app/node_modules/b/package.json: not a JSON"));
        assert!(layer.notes[1].contains("Berkeley DB"));
        let inv = merge([("L1", &layer)]);
        assert_eq!(rows(&inv), ["npm a=1.0.0 L1", "PyPI foo-bar=2.0 L1"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(index(b"\x1f\x8b\x08\x00garbage").is_err());
        let _ = index(&[0xAAu8; 4096]);
        assert_eq!(index(b"").unwrap(), LayerIndex::default());
    }

    fn layer(files: &[(&str, &[u8])], whiteouts: &[&str], opaque: &[&str]) -> LayerIndex {
        let mut index = index(&tar_of(files)).unwrap();
        index.whiteouts = whiteouts.iter().map(|s| s.to_string()).collect();
        index.opaque_dirs = opaque.iter().map(|s| s.to_string()).collect();
        index
    }

    fn rows(inv: &Inventory) -> Vec<String> {
        inv.packages
            .iter()
            .map(|p| {
                format!(
                    "{} {}={} {}",
                    p.ecosystem, p.package.name, p.package.version, p.layer
                )
            })
            .collect()
    }

    #[test]
    fn merge_takes_the_topmost_database_and_keeps_introducing_layers() {
        let base = layer(
            &[("etc/os-release", OS), ("var/lib/dpkg/status", STATUS)],
            &[],
            &[],
        );
        let upgraded = layer(
            &[("var/lib/dpkg/status", b"Package: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u4\n\nPackage: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n")],
            &[],
            &[],
        );
        let unrelated = layer(&[("usr/bin/x", b"x")], &[], &[]);
        let inv = merge([("L1", &base), ("L2", &upgraded), ("L3", &unrelated)]);
        assert_eq!(
            rows(&inv),
            [
                "Debian:12 libc6=2.36-9+deb12u4 L2",
                "Debian:12 zlib1g=1:1.2.13.dfsg-1 L1"
            ]
        );
        assert_eq!(inv.packages[0].package.source_name, "glibc");
        assert_eq!(
            inv.packages[0].purl,
            "pkg:deb/debian/libc6@2.36-9+deb12u4?distro=debian-12&upstream=glibc"
        );
    }

    #[test]
    fn merge_applies_whiteouts_and_opaque_dirs_of_higher_layers_only() {
        let a = b"Package: a\nStatus: install ok installed\nVersion: 1\n";
        let b = b"Package: b\nStatus: install ok installed\nVersion: 2\n";
        let base = layer(
            &[
                ("var/lib/dpkg/status.d/a", a),
                ("var/lib/dpkg/status.d/b", b),
            ],
            &[],
            &[],
        );
        let remove_a = layer(&[], &["var/lib/dpkg/status.d/a"], &[]);
        assert_eq!(
            rows(&merge([("L1", &base), ("L2", &remove_a)])),
            ["Debian b=2 L1"]
        );
        // A whiteout hides lower files only: the same layer may put the file back (and the
        // image never lacked it, so it still comes from L1).
        let a2 = b"Package: a\nStatus: install ok installed\nVersion: 2\n";
        let readd = layer(
            &[("var/lib/dpkg/status.d/a", a2)],
            &["var/lib/dpkg/status.d/a"],
            &[],
        );
        assert_eq!(
            rows(&merge([("L1", &base), ("L2", &readd)])),
            ["Debian a=2 L2", "Debian b=2 L1"]
        );
        let opaque = layer(
            &[("var/lib/dpkg/status.d/b", b)],
            &[],
            &["var/lib/dpkg/status.d"],
        );
        assert_eq!(
            rows(&merge([("L1", &base), ("L2", &opaque)])),
            ["Debian b=2 L1"]
        );
        let whole_dir = layer(&[], &["var/lib/dpkg"], &[]);
        assert!(
            merge([("L1", &base), ("L2", &whole_dir)])
                .packages
                .is_empty()
        );
    }

    #[test]
    fn a_package_removed_and_readded_is_introduced_by_the_readding_layer() {
        let a = b"Package: a\nStatus: install ok installed\nVersion: 1\n";
        let base = layer(&[("var/lib/dpkg/status", a)], &[], &[]);
        let empty = layer(&[("var/lib/dpkg/status", b"")], &[], &[]);
        let inv = merge([("L1", &base), ("L2", &empty), ("L3", &base)]);
        assert_eq!(rows(&inv), ["Debian a=1 L3"]);
    }

    #[test]
    fn os_release_prefers_etc_and_follows_whiteouts() {
        let alpine = layer(
            &[
                ("usr/lib/os-release", b"ID=alpine\nVERSION_ID=3.18.0\n"),
                ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
                ("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\n"),
            ],
            &[],
            &[],
        );
        assert_eq!(
            rows(&merge([("L1", &alpine)])),
            ["Alpine:v3.19 musl=1.2.4-r2 L1"]
        );
        let no_etc = layer(&[], &["etc/os-release"], &[]);
        assert_eq!(
            rows(&merge([("L1", &alpine), ("L2", &no_etc)])),
            ["Alpine:v3.18 musl=1.2.4-r2 L1"]
        );
    }
}
