//! The crates a Rust binary built with `cargo auditable` was made from: its `.dep-v0` ELF
//! section holds zlib-compressed JSON listing each package with its version and source.
//!
//! The section is found through the section header table, which linkers put at the end of the
//! file, so the binary must be held whole: only executables up to
//! [`MAX_AUDITED_BINARY_BYTES`] are read this way, and the JSON is inflated up to
//! [`MAX_AUDIT_JSON_BYTES`]. Every offset is checked against the file before it is used.

use std::io::Read;

use serde::Deserialize;

use super::packages::{Package, registry_package};

/// The largest executable held in memory to look for the section.
pub const MAX_AUDITED_BINARY_BYTES: u64 = 64 << 20;
/// The most bytes the section's JSON may inflate to.
pub const MAX_AUDIT_JSON_BYTES: u64 = 8 << 20;

const SECTION: &[u8] = b".dep-v0";
/// `SHT_NOBITS`: a section without bytes in the file.
const SHT_NOBITS: u32 = 8;

/// The bytes of the `.dep-v0` section of ELF file `elf`, if it has one.
pub fn dep_section(elf: &[u8]) -> Option<&[u8]> {
    if elf.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match elf.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big_endian = match elf.get(5)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(at..at.checked_add(len)?)?;
        let mut n: u64 = 0;
        if big_endian {
            for b in bytes {
                n = (n << 8) | u64::from(*b);
            }
        } else {
            for b in bytes.iter().rev() {
                n = (n << 8) | u64::from(*b);
            }
        }
        Some(n)
    };
    let word = if wide { 8 } else { 4 };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            read(0x28, 8)?,
            read(0x3a, 2)?,
            read(0x3c, 2)?,
            read(0x3e, 2)?,
        )
    } else {
        (
            read(0x20, 4)?,
            read(0x2e, 2)?,
            read(0x30, 2)?,
            read(0x32, 2)?,
        )
    };
    let min_entry = if wide { 64 } else { 40 };
    if shentsize < min_entry || shstrndx >= shnum {
        return None;
    }
    // (name, type, offset, size) of section `i`.
    let section = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let at = usize::try_from(shoff.checked_add(i.checked_mul(shentsize)?)?).ok()?;
        let name = read(at, 4)?;
        let kind = read(at + 4, 4)?;
        // sh_flags and sh_addr are a word each, then sh_offset and sh_size.
        let offset = read(at + 8 + 2 * word, word)?;
        let size = read(at + 8 + 3 * word, word)?;
        Some((name, kind, offset, size))
    };
    let bytes_of = |offset: u64, size: u64| -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        elf.get(start..end)
    };
    let (_, _, names_offset, names_size) = section(shstrndx)?;
    let names = bytes_of(names_offset, names_size)?;
    for i in 0..shnum {
        let (name, kind, offset, size) = section(i)?;
        let name = names.get(usize::try_from(name).ok()?..)?;
        let end = memchr::memchr(0, name)?;
        if &name[..end] == SECTION && kind != u64::from(SHT_NOBITS) {
            return bytes_of(offset, size);
        }
    }
    None
}

#[derive(Deserialize)]
struct AuditData {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    source: String,
}

/// The crates.io packages of a `.dep-v0` section (the binary's own crates and those from git,
/// a path or another registry are not crates.io's).
pub fn parse_dep_section(compressed: &[u8]) -> Result<Vec<Package>, String> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_AUDIT_JSON_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("its cargo-auditable data does not inflate: {e}"))?;
    if json.len() as u64 > MAX_AUDIT_JSON_BYTES {
        return Err(format!(
            "its cargo-auditable data inflates to more than {MAX_AUDIT_JSON_BYTES} bytes"
        ));
    }
    let data: AuditData = serde_json::from_slice(&json)
        .map_err(|e| format!("its cargo-auditable data is not what cargo-auditable writes: {e}"))?;
    Ok(data
        .packages
        .iter()
        .filter(|p| p.source == "crates.io")
        .map(|p| registry_package(&p.name, &p.version))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A 64-bit little-endian ELF file with sections `(name, bytes)` and a section name table,
    /// the section headers at the end as linkers put them.
    pub(crate) fn elf64(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        let mut names = vec![0u8];
        let mut headers: Vec<(u32, u64, u64)> = vec![(0, 0, 0)]; // the null section
        for (name, bytes) in sections {
            let name_at = names.len() as u32;
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            headers.push((name_at, out.len() as u64, bytes.len() as u64));
            out.extend_from_slice(bytes);
        }
        let names_at = names.len() as u32;
        names.extend_from_slice(b".shstrtab\0");
        headers.push((names_at, out.len() as u64, names.len() as u64));
        out.extend_from_slice(&names);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let shoff = out.len() as u64;
        for (name, offset, size) in &headers {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&1u32.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&h);
        }
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&((headers.len() - 1) as u16).to_le_bytes());
        out
    }

    pub(crate) const AUDIT_JSON: &str = r#"{"packages":[
        {"name":"app","version":"0.1.0","source":"local","kind":"runtime","dependencies":[1,2],"root":true},
        {"name":"smallvec","version":"1.6.0","source":"crates.io","kind":"runtime"},
        {"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"},
        {"name":"forked","version":"0.2.0","source":"git"}
    ]}"#;

    #[test]
    fn crates_io_packages_of_the_section_are_listed() {
        let section = zlib(AUDIT_JSON.as_bytes());
        let elf = elf64(&[(".text", b"\x90\x90"), (".dep-v0", &section)]);
        let found = dep_section(&elf).unwrap();
        assert_eq!(found, section.as_slice());
        let rows: Vec<String> = parse_dep_section(found)
            .unwrap()
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(rows, ["smallvec@1.6.0", "cc@1.0.83"]);
    }

    #[test]
    fn binaries_without_the_section_or_broken_ones_say_nothing() {
        assert_eq!(dep_section(&elf64(&[(".text", b"\x90")])), None);
        assert_eq!(dep_section(b"\x7fELF"), None);
        assert_eq!(dep_section(b"not an elf file at all"), None);
        let elf = elf64(&[(".dep-v0", b"x")]);
        for cut in 0..elf.len() {
            let _ = dep_section(&elf[..cut]);
        }
        for at in 0..elf.len() {
            let mut bad = elf.clone();
            bad[at] ^= 0xff;
            let _ = dep_section(&bad);
        }
    }

    #[test]
    fn bad_section_data_is_an_error() {
        assert!(parse_dep_section(b"not zlib").is_err());
        assert!(parse_dep_section(&zlib(b"{\"packages\": 1}")).is_err());
        // A bomb stops at the limit.
        let bomb = zlib(&vec![b' '; (MAX_AUDIT_JSON_BYTES + 10) as usize]);
        let err = parse_dep_section(&bomb).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
