//! The modules a Go binary was built from, read from the build information the Go linker
//! embeds (`go version -m` prints the same): a 32-byte header starting `\xff Go buildinf:`,
//! then, since Go 1.18, the Go version and the module information as two length-prefixed
//! strings. Binaries of older Go versions point to those strings instead; they are noted and
//! not read.
//!
//! The file is fed to a [`BuildInfoScanner`] chunk by chunk as the layer streams by: it keeps
//! a few bytes across chunks to find the header and, once found, at most
//! [`MAX_BUILD_INFO_BYTES`], so a large binary is never held in memory.

use super::packages::Package;

/// The magic that starts the build information blob.
const MAGIC: &[u8] = b"\xff Go buildinf:";
/// The fixed header: magic, pointer size, flags, padding.
const HEADER: usize = 32;
/// The flag saying the strings follow the header inline (Go 1.18 and later).
const FLAG_INLINE: u8 = 0x2;
/// The most bytes of build information kept (a binary with thousands of modules has some
/// hundred KiB).
pub const MAX_BUILD_INFO_BYTES: usize = 4 << 20;

/// What a Go binary says it contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain (`go1.21.5`).
    pub go_version: String,
    /// The main module's path, when built in module mode.
    pub main: Option<Module>,
    /// The dependencies, each as built (a replaced module's replacement).
    pub deps: Vec<Module>,
}

/// One module of a Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The module path (`golang.org/x/net`), or a replacement's directory (`../lib`).
    pub path: String,
    /// Its version (`v0.17.0`); `(devel)` for the main module and local replacements.
    pub version: String,
}

/// Why a binary's build information was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    /// The file ended (or the size limit was reached) inside the build information.
    #[error("its Go build information is truncated")]
    Truncated,
    /// A Go before 1.18 wrote it (pointers into the binary rather than inline strings).
    #[error("its Go build information predates Go 1.18 and is not read")]
    OldFormat,
    /// The header or the strings are not what the Go linker writes.
    #[error("its Go build information is malformed")]
    Malformed,
}

/// Finds and reads the build information of a file fed to it in chunks. The linker aligns the
/// blob to 16 bytes; a magic elsewhere, or one followed by no valid header (a program that
/// reads build information carries the magic as a constant), is passed over.
#[derive(Debug, Default)]
pub struct BuildInfoScanner {
    /// Before a candidate magic: the last bytes seen (a magic may straddle chunks). After: the
    /// blob from the magic on, up to [`MAX_BUILD_INFO_BYTES`].
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    base: u64,
    /// Where in `buf` the candidate magic being read starts.
    start: usize,
    /// Whether a candidate is being read.
    found: bool,
    /// A header of a Go before 1.18 was seen.
    old_format: bool,
    outcome: Option<Result<BuildInfo, BuildInfoError>>,
}

impl BuildInfoScanner {
    /// A scanner at the start of a file.
    pub fn new() -> BuildInfoScanner {
        BuildInfoScanner::default()
    }

    /// Whether more bytes could still change the outcome.
    pub fn wants_more(&self) -> bool {
        self.outcome.is_none()
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        if self.found {
            let room = MAX_BUILD_INFO_BYTES.saturating_sub(self.buf.len() - self.start);
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        } else {
            self.buf.extend_from_slice(chunk);
        }
        loop {
            if !self.found {
                match self.find_magic(self.start) {
                    Some(at) => {
                        self.start = at;
                        self.found = true;
                    }
                    None => {
                        // Only a tail that may begin a magic is kept.
                        let keep_from = self.buf.len().saturating_sub(MAGIC.len() - 1);
                        self.buf.drain(..keep_from);
                        self.base += keep_from as u64;
                        self.start = 0;
                        return;
                    }
                }
            }
            let blob = &self.buf[self.start..];
            match parse_blob(blob) {
                Err(BuildInfoError::Truncated) if blob.len() < MAX_BUILD_INFO_BYTES => {
                    // Wait for more, keeping nothing before the candidate.
                    self.buf.drain(..self.start);
                    self.base += self.start as u64;
                    self.start = 0;
                    return;
                }
                Err(e @ (BuildInfoError::Malformed | BuildInfoError::OldFormat)) => {
                    // Not the linker's blob (or an old one): look further.
                    self.old_format |= e == BuildInfoError::OldFormat;
                    self.found = false;
                    self.start += 1;
                }
                outcome => {
                    self.outcome = Some(outcome);
                    self.buf = Vec::new();
                    return;
                }
            }
        }
    }

    /// Where in `buf`, at or after `from`, the next magic at an aligned file offset starts.
    fn find_magic(&self, mut from: usize) -> Option<usize> {
        while let Some(at) = memchr::memmem::find(self.buf.get(from..)?, MAGIC) {
            let pos = from + at;
            if (self.base + pos as u64) % 16 == 0 {
                return Some(pos);
            }
            from = pos + 1;
        }
        None
    }

    /// The outcome once the file has ended: `None` when it carries no build information.
    pub fn finish(self) -> Option<Result<BuildInfo, BuildInfoError>> {
        match self.outcome {
            Some(outcome) => Some(outcome),
            None if self.found => Some(Err(BuildInfoError::Truncated)),
            None if self.old_format => Some(Err(BuildInfoError::OldFormat)),
            None => None,
        }
    }
}

/// Parses the blob starting at the magic; `Truncated` when it needs more bytes.
fn parse_blob(blob: &[u8]) -> Result<BuildInfo, BuildInfoError> {
    if blob.len() < HEADER {
        return Err(BuildInfoError::Truncated);
    }
    let pointer_size = blob[MAGIC.len()];
    let flags = blob[MAGIC.len() + 1];
    if flags & FLAG_INLINE == 0 {
        return if matches!(pointer_size, 4 | 8) {
            Err(BuildInfoError::OldFormat)
        } else {
            Err(BuildInfoError::Malformed)
        };
    }
    let rest = &blob[HEADER..];
    let (version, rest) = length_prefixed(rest)?;
    let (modinfo, _) = length_prefixed(rest)?;
    let go_version = String::from_utf8_lossy(version).into_owned();
    if !go_version.starts_with("go") && !go_version.starts_with("devel") {
        return Err(BuildInfoError::Malformed);
    }
    let (main, deps) = parse_modinfo(&String::from_utf8_lossy(strip_sentinels(modinfo)));
    Ok(BuildInfo {
        go_version,
        main,
        deps,
    })
}

/// A uvarint length, then that many bytes.
fn length_prefixed(data: &[u8]) -> Result<(&[u8], &[u8]), BuildInfoError> {
    let mut len: u64 = 0;
    for (i, byte) in data.iter().enumerate() {
        if i >= 10 {
            return Err(BuildInfoError::Malformed);
        }
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let start = i + 1;
            if len > MAX_BUILD_INFO_BYTES as u64 {
                return Err(BuildInfoError::Malformed);
            }
            let end = start + len as usize;
            return match data.get(start..end) {
                Some(s) => Ok((s, &data[end..])),
                None => Err(BuildInfoError::Truncated),
            };
        }
    }
    Err(BuildInfoError::Truncated)
}

/// The module information is framed by 16-byte sentinels, which the Go runtime strips the same
/// way (`debug.ParseBuildInfo` is given the text between them).
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    }
}

/// The `mod` line (the main module) and the `dep` lines, each replaced by the `=>` line that
/// follows it, if any.
fn parse_modinfo(text: &str) -> (Option<Module>, Vec<Module>) {
    let mut main = None;
    let mut deps: Vec<Module> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(kind), Some(path)) = (fields.next(), fields.next()) else {
            continue;
        };
        let version = fields.next().unwrap_or_default();
        let module = Module {
            path: path.to_owned(),
            version: if version.is_empty() {
                "(devel)".to_owned()
            } else {
                version.to_owned()
            },
        };
        if module.path.is_empty() {
            continue;
        }
        match kind {
            "mod" => main = Some(module),
            "dep" => deps.push(module),
            "=>" => {
                if let Some(last) = deps.last_mut() {
                    *last = module;
                }
            }
            _ => {}
        }
    }
    (main, deps)
}

/// The packages of a binary: the main module, its dependencies and the standard library
/// (`stdlib`, at the toolchain's version written as OSV's Go advisories do: `go1.21` →
/// `1.21.0`).
pub fn packages(info: &BuildInfo) -> Vec<Package> {
    let module = |path: &str, version: &str| Package {
        name: path.to_owned(),
        version: version.to_owned(),
        source_name: path.to_owned(),
        source_version: version.to_owned(),
        architecture: None,
    };
    let mut out = Vec::new();
    if let Some(main) = &info.main {
        out.push(module(&main.path, &main.version));
    }
    out.extend(info.deps.iter().map(|d| module(&d.path, &d.version)));
    if let Some(version) = stdlib_version(&info.go_version) {
        out.push(module("stdlib", &version));
    }
    out
}

/// `go1.21.5` → `1.21.5`, `go1.21` → `1.21.0`, `go1.22rc1` → `1.22.0-rc1`; `None` for a
/// development toolchain (`devel +abc`), which has no release.
fn stdlib_version(go_version: &str) -> Option<String> {
    // A toolchain built with an experiment appends ` X:...`.
    let version = go_version.split_whitespace().next()?.strip_prefix("go")?;
    let split = version
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(version.len());
    let (numbers, pre) = version.split_at(split);
    let mut parts: Vec<&str> = numbers.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
        return None;
    }
    while parts.len() < 3 {
        parts.push("0");
    }
    let mut out = parts.join(".");
    if !pre.is_empty() {
        out.push('-');
        out.push_str(pre);
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const START: &[u8] = &[
        0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18,
        0xe6,
    ];
    const END: &[u8] = &[
        0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8,
        0xf2,
    ];

    fn uvarint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A binary's bytes around a build information blob as Go 1.18+ writes it.
    pub(crate) fn binary(go: &str, modinfo: &str) -> Vec<u8> {
        let mut out = b"\x7fELF".to_vec();
        out.resize(4096, 0xcc);
        out.extend_from_slice(MAGIC);
        out.push(8);
        out.push(FLAG_INLINE);
        out.resize(4096 + HEADER, 0);
        uvarint(go.len(), &mut out);
        out.extend_from_slice(go.as_bytes());
        let mut framed = START.to_vec();
        framed.extend_from_slice(modinfo.as_bytes());
        framed.extend_from_slice(END);
        uvarint(framed.len(), &mut out);
        out.extend_from_slice(&framed);
        out.resize(out.len() + 10_000, 0xcc);
        out
    }

    const MODINFO: &str = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
        dep\tgolang.org/x/text\tv0.14.0\th1:abc=\n\
        dep\texample.com/old\tv1.0.0\th1:def=\n=>\texample.com/fork\tv1.0.1\th1:ghi=\n\
        dep\texample.com/local\tv1.2.3\n=>\t../local\t\t\n\
        build\t-compiler=gc\nbuild\tGOOS=linux\n";

    fn scan_in_chunks(bytes: &[u8], chunk: usize) -> Option<Result<BuildInfo, BuildInfoError>> {
        let mut scanner = BuildInfoScanner::new();
        for c in bytes.chunks(chunk) {
            scanner.feed(c);
        }
        scanner.finish()
    }

    #[test]
    fn modules_are_read_whatever_the_chunking() {
        let bin = binary("go1.21.5", MODINFO);
        let expected = scan_in_chunks(&bin, bin.len()).unwrap().unwrap();
        for chunk in [1, 7, 13, 14, 15, 512, 4099] {
            assert_eq!(scan_in_chunks(&bin, chunk).unwrap().unwrap(), expected);
        }
        let rows: Vec<String> = packages(&expected)
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(
            rows,
            [
                "example.com/app@(devel)",
                "golang.org/x/text@v0.14.0",
                "example.com/fork@v1.0.1",
                "../local@(devel)",
                "stdlib@1.21.5"
            ]
        );
    }

    #[test]
    fn stdlib_versions_are_written_as_osv_writes_them() {
        assert_eq!(stdlib_version("go1.21.5").as_deref(), Some("1.21.5"));
        assert_eq!(stdlib_version("go1.21").as_deref(), Some("1.21.0"));
        assert_eq!(stdlib_version("go1.22rc1").as_deref(), Some("1.22.0-rc1"));
        assert_eq!(
            stdlib_version("go1.20.3 X:boringcrypto").as_deref(),
            Some("1.20.3")
        );
        assert_eq!(stdlib_version("devel go1.23-abc"), None);
        assert_eq!(stdlib_version("go"), None);
    }

    #[test]
    fn a_binary_without_build_information_says_nothing() {
        assert_eq!(scan_in_chunks(&[0xcc; 100_000], 4096), None);
        assert_eq!(scan_in_chunks(b"", 1), None);
    }

    #[test]
    fn a_binary_cut_inside_its_build_information_is_truncated() {
        let bin = binary("go1.21.5", MODINFO);
        for cut in [4096 + 20, 4096 + HEADER + 4, 4096 + HEADER + 40] {
            assert_eq!(
                scan_in_chunks(&bin[..cut], 1000),
                Some(Err(BuildInfoError::Truncated)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn old_headers_are_noted_and_malformed_ones_passed_over() {
        let mut old = binary("go1.17", MODINFO);
        old[4096 + MAGIC.len() + 1] = 0;
        assert_eq!(
            scan_in_chunks(&old, 4096),
            Some(Err(BuildInfoError::OldFormat))
        );
        let mut bad = binary("go1.21.5", MODINFO);
        bad[4096 + HEADER + 1] = b'x'; // the version no longer starts with `go`
        assert_eq!(scan_in_chunks(&bad, 4096), None);
        // A length claiming more than the limit is refused before anything is allocated.
        let mut huge = binary("go1.21.5", "");
        huge.truncate(4096 + HEADER);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(scan_in_chunks(&huge, 4096), None);
    }

    #[test]
    fn a_magic_constant_before_the_blob_is_passed_over() {
        // A program that reads build information carries the magic in its read-only data,
        // unaligned or followed by other bytes.
        let real = binary("go1.21.5", MODINFO);
        let mut bin = b"\x7fELF".to_vec();
        bin.resize(1000, 0);
        bin.extend_from_slice(MAGIC); // unaligned (1000 is not a multiple of 16)
        bin.resize(2048, 0);
        bin.extend_from_slice(MAGIC); // aligned, but no header follows
        bin.extend_from_slice(b"plain read-only data");
        bin.resize(4096, 0);
        bin.extend_from_slice(&real[4096..]);
        for chunk in [5, 100, 4096, bin.len()] {
            let info = scan_in_chunks(&bin, chunk).unwrap().unwrap();
            assert_eq!(info.go_version, "go1.21.5");
            assert_eq!(info.deps.len(), 3);
        }
        // Many candidates in one chunk cost a pass, not a pass each.
        let mut decoys = MAGIC.to_vec();
        decoys.resize(16, 0);
        let mut decoys = decoys.repeat(100_000);
        decoys.resize(decoys.len() + 64, 0);
        let mut scanner = BuildInfoScanner::new();
        scanner.feed(&decoys);
        assert_eq!(scanner.finish(), None);
    }

    #[test]
    fn build_information_over_the_limit_is_truncated_not_kept() {
        let big = "dep\texample.com/m\tv1.0.0\n".repeat(MAX_BUILD_INFO_BYTES / 20);
        let bin = binary("go1.21.5", &big);
        let mut scanner = BuildInfoScanner::new();
        for c in bin.chunks(1 << 16) {
            scanner.feed(c);
            assert!(scanner.buf.len() <= MAX_BUILD_INFO_BYTES + (1 << 16));
        }
        assert_eq!(scanner.finish(), None);
    }
}
