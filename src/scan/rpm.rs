//! rpm's package database, which holds one rpm header per installed package: in its SQLite
//! form (rpm 4.16 and later: Fedora 33+, RHEL 9 and its rebuilds, openSUSE), the `Packages`
//! table; in its Berkeley DB form (earlier: RHEL and CentOS 7 and 8, Amazon Linux 2), the
//! values of the hash database `Packages` ([`super::berkeley`]).
//!
//! The database is read from a scratch copy the caller writes (see [`super::layers`]); the
//! SQLite one is opened read-only and immutable so SQLite writes nothing beside it.
//! Headers are parsed by a small bounded reader ([`parse_header`]): every offset and count is
//! checked against the blob before it is used.

use std::path::Path;

use super::packages::Package;

/// Header tags read.
const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

/// Entry types used by those tags.
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;

/// rpm's own limits on a header (`hdrblobVerifyInfo`): at most this many index entries and
/// data bytes.
const MAX_INDEX_ENTRIES: u32 = 0x0000_ffff;
const MAX_DATA_BYTES: u32 = 0x0fff_ffff;

/// The most rows of `Packages` read (a real system has a few thousand).
const MAX_PACKAGES: usize = 100_000;

/// The fields of one rpm header that name a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `NAME`.
    pub name: String,
    /// `VERSION`.
    pub version: String,
    /// `RELEASE`.
    pub release: String,
    /// `EPOCH`, when set.
    pub epoch: Option<u32>,
    /// `ARCH`, when set.
    pub arch: Option<String>,
    /// `SOURCERPM` (`bash-5.2.15-3.fc38.src.rpm`), when set.
    pub source_rpm: Option<String>,
}

/// Parses an rpm header as the database stores it (no lead, no magic): the count of index
/// entries and the size of the data store as big-endian 32-bit numbers, the 16-byte entries
/// (tag, type, offset, count), then the data store.
pub fn parse_header(blob: &[u8]) -> Result<Header, String> {
    let u32_at = |at: usize| -> Option<u32> {
        blob.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(entries), Some(data_len)) = (u32_at(0), u32_at(4)) else {
        return Err("header shorter than its preamble".to_owned());
    };
    if entries == 0 || entries > MAX_INDEX_ENTRIES || data_len > MAX_DATA_BYTES {
        return Err(format!(
            "header claims {entries} entries and {data_len} data bytes"
        ));
    }
    let data_start = 8 + entries as usize * 16;
    let data = blob
        .get(data_start..data_start + data_len as usize)
        .ok_or("header shorter than it claims")?;
    let mut fields: [Option<&str>; 5] = [None; 5];
    let mut epoch = None;
    for i in 0..entries as usize {
        let at = 8 + i * 16;
        let (Some(tag), Some(kind), Some(offset)) = (u32_at(at), u32_at(at + 4), u32_at(at + 8))
        else {
            return Err("truncated index entry".to_owned());
        };
        let slot = match tag {
            TAG_NAME => 0,
            TAG_VERSION => 1,
            TAG_RELEASE => 2,
            TAG_ARCH => 3,
            TAG_SOURCERPM => 4,
            TAG_EPOCH => {
                if kind != TYPE_INT32 {
                    return Err("EPOCH is not a number".to_owned());
                }
                let bytes = data
                    .get(offset as usize..offset as usize + 4)
                    .ok_or("EPOCH outside the data store")?;
                epoch = Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                continue;
            }
            _ => continue,
        };
        if kind != TYPE_STRING {
            return Err(format!("tag {tag} is not a string"));
        }
        let rest = data
            .get(offset as usize..)
            .ok_or_else(|| format!("tag {tag} outside the data store"))?;
        let end = memchr::memchr(0, rest).ok_or_else(|| format!("tag {tag} unterminated"))?;
        let text = std::str::from_utf8(&rest[..end]).map_err(|_| format!("tag {tag} not UTF-8"))?;
        fields[slot] = Some(text);
    }
    let [name, version, release, arch, source_rpm] = fields;
    let (Some(name), Some(version)) = (name, version) else {
        return Err("header without NAME or VERSION".to_owned());
    };
    Ok(Header {
        name: name.to_owned(),
        version: version.to_owned(),
        release: release.unwrap_or_default().to_owned(),
        epoch,
        arch: arch.filter(|a| !a.is_empty()).map(str::to_owned),
        source_rpm: source_rpm.filter(|s| !s.is_empty()).map(str::to_owned),
    })
}

/// `[epoch:]version[-release]`, as rpm prints and OSV's rpm ecosystems write it.
fn evr(epoch: Option<u32>, version: &str, release: &str) -> String {
    let mut out = String::new();
    if let Some(epoch) = epoch {
        out.push_str(&format!("{epoch}:"));
    }
    out.push_str(version);
    if !release.is_empty() {
        out.push('-');
        out.push_str(release);
    }
    out
}

/// `bash-5.2.15-3.fc38.src.rpm` → (`bash`, `5.2.15`, `3.fc38`).
fn split_source_rpm(source_rpm: &str) -> Option<(&str, &str, &str)> {
    let stem = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = stem.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    (!name.is_empty() && !version.is_empty() && !release.is_empty())
        .then_some((name, version, release))
}

/// The installed package a header describes: the source package from `SOURCERPM` (with the
/// binary's epoch, which the file name does not carry).
pub fn package_of(header: &Header) -> Package {
    let version = evr(header.epoch, &header.version, &header.release);
    let (source_name, source_version) =
        match header.source_rpm.as_deref().and_then(split_source_rpm) {
            Some((name, version, release)) => {
                (name.to_owned(), evr(header.epoch, version, release))
            }
            None => (header.name.clone(), version.clone()),
        };
    Package {
        name: header.name.clone(),
        version,
        source_name,
        source_version,
        architecture: header.arch.clone(),
    }
}

/// The packages of the SQLite rpm database at `path`, and a note per header that could not be
/// read. `gpg-pubkey` entries (imported signing keys, not software) are left out.
pub fn read_sqlite_db(path: &Path) -> Result<(Vec<Package>, Vec<String>), String> {
    let mut uri = url::Url::from_file_path(path).map_err(|()| "scratch path is not absolute")?;
    // immutable: SQLite takes no lock and writes no journal, WAL or shared-memory file.
    uri.set_query(Some("immutable=1"));
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
        | rusqlite::OpenFlags::SQLITE_OPEN_URI
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = rusqlite::Connection::open_with_flags(uri.as_str(), flags)
        .map_err(|e| format!("not an SQLite database: {e}"))?;
    // The file comes from an image: no value may grow past what a header can be, and
    // `Packages` must be the plain table rpm creates, not a view or a generated column that
    // would compute without end.
    db.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        MAX_DATA_BYTES as i32,
    );
    db.pragma_update(None, "trusted_schema", "OFF")
        .map_err(|e| format!("not an SQLite database: {e}"))?;
    let kind: Option<String> = db
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = 'Packages'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| format!("no Packages table: {e}"))
        .ok();
    if kind.as_deref() != Some("table") {
        return Err("no Packages table".to_owned());
    }
    let plain_columns: i64 = db
        .query_row(
            "SELECT count(*) FROM pragma_table_xinfo('Packages') \
             WHERE name IN ('hnum', 'blob') AND hidden = 0",
            [],
            |row| row.get(0),
        )
        .map_err(|e| format!("unreadable: {e}"))?;
    let all_columns: i64 = db
        .query_row(
            "SELECT count(*) FROM pragma_table_xinfo('Packages')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| format!("unreadable: {e}"))?;
    if plain_columns != 2 || all_columns != 2 {
        return Err("Packages is not the table rpm creates (hnum, blob)".to_owned());
    }
    let mut statement = db
        .prepare("SELECT blob FROM Packages ORDER BY hnum")
        .map_err(|e| format!("no Packages table: {e}"))?;
    let mut rows = statement
        .query([])
        .map_err(|e| format!("unreadable: {e}"))?;
    let mut read = Headers::default();
    while let Some(row) = rows.next().map_err(|e| format!("unreadable: {e}"))? {
        let more = match row.get::<_, Vec<u8>>(0) {
            Ok(blob) => read.add(Ok(&blob)),
            Err(e) => read.add(Err(format!("a header that is no blob: {e}"))),
        };
        if !more {
            break;
        }
    }
    Ok((read.packages, read.notes))
}

/// The packages of the Berkeley DB rpm database at `path`, and a note per header that could
/// not be read. The record of instance 0 (rpm's counter, not a header) and `gpg-pubkey`
/// entries are left out.
pub fn read_berkeley_db(path: &Path) -> Result<(Vec<Package>, Vec<String>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("unreadable: {e}"))?
        .len();
    let mut read = Headers::default();
    super::berkeley::for_each_pair(&file, len, |pair| match pair {
        Ok(pair) if pair.key.iter().all(|&b| b == 0) => true,
        Ok(pair) => read.add(Ok(&pair.value)),
        Err(e) => read.add(Err(format!("a header not read: {e}"))),
    })?;
    Ok((read.packages, read.notes))
}

/// The packages of the headers read so far (`gpg-pubkey` entries, imported signing keys and
/// not software, left out), and a note per header that could not be read.
#[derive(Default)]
struct Headers {
    packages: Vec<Package>,
    notes: Vec<String>,
}

impl Headers {
    /// Takes one stored header (or why it could not be had); false once
    /// [`MAX_PACKAGES`] have been taken, when the rest is not to be read.
    fn add(&mut self, blob: Result<&[u8], String>) -> bool {
        if self.packages.len() + self.notes.len() >= MAX_PACKAGES {
            self.notes.push(format!(
                "more than {MAX_PACKAGES} headers; the rest not read"
            ));
            return false;
        }
        match blob
            .and_then(|blob| parse_header(blob).map_err(|e| format!("a header not read: {e}")))
        {
            Ok(header) if header.name == "gpg-pubkey" => {}
            Ok(header) => self.packages.push(package_of(&header)),
            Err(note) => self.notes.push(note),
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header blob with the given string tags and an optional epoch, as rpm writes it.
    pub(crate) fn header_blob(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        let mut entries = 0u32;
        if let Some(epoch) = epoch {
            for v in [TAG_EPOCH, TYPE_INT32, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(&epoch.to_be_bytes());
            entries += 1;
        }
        for (tag, text) in strings {
            for v in [*tag, TYPE_STRING, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
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

    fn bash() -> Vec<u8> {
        header_blob(
            &[
                (TAG_NAME, "bash"),
                (TAG_VERSION, "5.2.15"),
                (TAG_RELEASE, "3.fc38"),
                (TAG_ARCH, "x86_64"),
                (TAG_SOURCERPM, "bash-5.2.15-3.fc38.src.rpm"),
            ],
            Some(1),
        )
    }

    #[test]
    fn a_header_names_the_package_and_its_source() {
        let p = package_of(&parse_header(&bash()).unwrap());
        assert_eq!(
            (
                p.name.as_str(),
                p.version.as_str(),
                p.source_name.as_str(),
                p.source_version.as_str(),
                p.architecture.as_deref()
            ),
            (
                "bash",
                "1:5.2.15-3.fc38",
                "bash",
                "1:5.2.15-3.fc38",
                Some("x86_64")
            )
        );
        let lib = header_blob(
            &[
                (TAG_NAME, "openssl-libs"),
                (TAG_VERSION, "3.0.7"),
                (TAG_RELEASE, "27.el9"),
                (TAG_SOURCERPM, "openssl-3.0.7-27.el9.src.rpm"),
            ],
            None,
        );
        let p = package_of(&parse_header(&lib).unwrap());
        assert_eq!(
            (p.source_name.as_str(), p.source_version.as_str()),
            ("openssl", "3.0.7-27.el9")
        );
    }

    #[test]
    fn the_berkeley_db_values_are_read_and_bad_ones_noted() {
        let key = |n: u32| n.to_le_bytes();
        let pubkey = header_blob(&[(TAG_NAME, "gpg-pubkey"), (TAG_VERSION, "1")], None);
        let bytes = crate::scan::berkeley::tests::database(&[
            (&key(0), &key(3)),
            (&key(1), &bash()),
            (&key(2), &pubkey),
            (&key(3), b"\0\0\0\x09 not a header"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Packages");
        std::fs::write(&path, &bytes).unwrap();
        let (packages, notes) = read_berkeley_db(&path).unwrap();
        let names: Vec<_> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash"]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("a header not read"), "{notes:?}");

        std::fs::write(&path, b"SQLite format 3\0").unwrap();
        assert!(read_berkeley_db(&path).unwrap_err().contains("Berkeley DB"));
    }

    #[test]
    fn source_rpm_names_split_at_the_last_two_dashes() {
        assert_eq!(
            split_source_rpm("python3-dateutil-2.8.2-1.fc38.src.rpm"),
            Some(("python3-dateutil", "2.8.2", "1.fc38"))
        );
        assert_eq!(split_source_rpm("nodashes.src.rpm"), None);
        assert_eq!(split_source_rpm("a-1-2.rpm"), None);
    }

    /// A database at `dir/rpmdb.sqlite` made by `sql`, then `headers` inserted into `Packages`.
    fn db_with(dir: &Path, sql: &str, headers: &[Vec<u8>]) -> std::path::PathBuf {
        let path = dir.join("rpmdb.sqlite");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(sql).unwrap();
        for header in headers {
            db.execute("INSERT INTO Packages (blob) VALUES (?1)", [header])
                .unwrap();
        }
        path
    }

    const RPM_SCHEMA: &str =
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);";

    #[test]
    fn the_packages_table_is_read_and_bad_rows_noted() {
        let dir = tempfile::tempdir().unwrap();
        let key = header_blob(&[(TAG_NAME, "gpg-pubkey"), (TAG_VERSION, "1")], None);
        let path = db_with(dir.path(), RPM_SCHEMA, &[bash(), b"junk".to_vec(), key]);
        let (packages, notes) = read_sqlite_db(&path).unwrap();
        assert_eq!(
            packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["bash"]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        // Read-only and immutable: nothing was written beside the database.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["rpmdb.sqlite"]);
    }

    #[test]
    fn a_database_that_is_not_rpms_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A view that would compute rows without end.
        let view = db_with(
            dir.path(),
            "CREATE VIEW Packages AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
             SELECT x AS hnum, randomblob(1000) AS blob FROM n;",
            &[],
        );
        assert!(read_sqlite_db(&view).is_err());
        std::fs::remove_file(&view).unwrap();
        let generated = db_with(
            dir.path(),
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, seed INTEGER, \
             blob BLOB GENERATED ALWAYS AS (zeroblob(seed)) VIRTUAL);",
            &[],
        );
        assert!(read_sqlite_db(&generated).is_err());
        std::fs::remove_file(&generated).unwrap();
        let other = db_with(dir.path(), "CREATE TABLE Other (x);", &[]);
        assert!(read_sqlite_db(&other).is_err());
        std::fs::write(&other, b"not a database at all").unwrap();
        assert!(read_sqlite_db(&other).is_err());
        // A real database with its pages scrambled: an error or fewer rows, never a panic.
        std::fs::remove_file(&other).unwrap();
        let path = db_with(dir.path(), RPM_SCHEMA, &[bash(), bash(), bash()]);
        let mut bytes = std::fs::read(&path).unwrap();
        for byte in bytes.iter_mut().skip(100).step_by(5) {
            *byte ^= 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok((packages, _)) = read_sqlite_db(&path) {
            assert!(packages.len() <= 3);
        }
    }

    #[test]
    fn corrupt_headers_are_errors_not_panics() {
        let good = bash();
        // Every truncation, and every single-byte corruption of the preamble and the index.
        for cut in 0..good.len() {
            let _ = parse_header(&good[..cut]);
        }
        assert!(parse_header(&good[..good.len() - 1]).is_err());
        for at in 0..(8 + 6 * 16) {
            for byte in [0x00, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = parse_header(&bad);
            }
        }
        // Huge claims are refused before anything is sliced or allocated.
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
        let mut offset = good.clone();
        offset[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_header(&offset).is_err());
        assert!(parse_header(&[]).is_err());
        let no_name = header_blob(&[(TAG_VERSION, "1")], None);
        assert!(parse_header(&no_name).is_err());
    }
}
