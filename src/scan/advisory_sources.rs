//! Reading advisories from a request body, a file, a directory or a zip: OSV records (one,
//! or an array of them), and the distributions' feeds that [`super::feeds`] turns into OSV
//! records, told apart by their shape.
//!
//! Reading is bounded: a record over [`MAX_RECORD_BYTES`], a file or zip entry over
//! [`MAX_ENTRY_BYTES`] and a zip of more than [`MAX_ZIP_ENTRIES`] entries are refused with a
//! message; a malformed record is reported by name and the others are read on.

use std::{
    collections::BTreeMap,
    fmt,
    fs::File,
    io::{self, Read, Seek},
    path::Path,
};

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::{Value, value::RawValue};

use super::{
    feeds::{self, Feed},
    osv::{Item, MAX_ID_LEN, Record, Rejected},
};

/// The largest record read (4 MiB); real ones are a few KiB.
pub const MAX_RECORD_BYTES: usize = 4 << 20;
/// The largest file or zip entry read (256 MiB), which may be an array of records.
pub const MAX_ENTRY_BYTES: u64 = 256 << 20;
/// The most entries a zip may hold (OSV's whole-ecosystem dumps hold a few hundred thousand).
pub const MAX_ZIP_ENTRIES: usize = 1_000_000;
/// The most files read from one directory tree.
pub const MAX_FILES: usize = 1_000_000;
/// The caps of one reading ([`Limits::DEFAULT`] holds the constants above), and the
/// `modified` given to the records of feeds that date nothing (the import's time).
#[derive(Debug, Clone, Copy)]
struct Limits<'a> {
    record_bytes: usize,
    entry_bytes: u64,
    zip_entries: usize,
    files: usize,
    undated_modified: &'a str,
}

impl Limits<'_> {
    const DEFAULT: Limits<'static> = Limits {
        record_bytes: MAX_RECORD_BYTES,
        entry_bytes: MAX_ENTRY_BYTES,
        zip_entries: MAX_ZIP_ENTRIES,
        files: MAX_FILES,
        undated_modified: "1970-01-01T00:00:00Z",
    };

    /// The default caps, with `modified` for undated feeds.
    fn undated(modified: &str) -> Limits<'_> {
        Limits {
            undated_modified: modified,
            ..Limits::DEFAULT
        }
    }
}

/// Why a whole source could not be read (as opposed to one record of it).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Neither JSON nor a zip.
    #[error("{0}: not JSON (one OSV record or an array of them): {1}")]
    NotJson(String, String),
    /// A zip that does not open, or is over the entry cap.
    #[error("{0}: {1}")]
    BadZip(String, String),
    /// Reading the file system failed.
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

/// Reads `bytes` named `name` (a file, a zip entry, a request body) as JSON: one record or
/// an array of them. `Err` only when the bytes are not JSON at all.
pub fn read_json(
    bytes: &[u8],
    name: &str,
    undated_modified: &str,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    json_within(&Limits::undated(undated_modified), bytes, name, each)
}

fn json_within(
    limits: &Limits,
    bytes: &[u8],
    name: &str,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    let not_json = |e: serde_json::Error| SourceError::NotJson(name.to_owned(), e.to_string());
    // The whole text is checked first (without keeping anything), so that a syntax error
    // anywhere refuses it all rather than after the records before it were handed on.
    serde_json::from_slice::<IgnoredAny>(bytes).map_err(not_json)?;
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if bytes.get(start) == Some(&b'[') {
        // One element at a time: an array of millions of tiny values is never held as a
        // list.
        let mut records = EachRecord {
            limits,
            name,
            each,
            index: 0,
        };
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        serde::Deserializer::deserialize_seq(&mut reader, &mut records).map_err(not_json)?;
        return reader.end().map_err(not_json);
    }
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(not_json)?;
    if raw.get().starts_with('{') {
        let top: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).map_err(not_json)?;
        match feeds::sniff(&top) {
            Some(Feed::DebianTracker) => {
                feeds::read_debian_tracker(&top, name, limits.undated_modified, each);
                return Ok(());
            }
            Some(Feed::AlpineSecdb) => {
                feeds::read_alpine_secdb(bytes, name, limits.undated_modified, each);
                return Ok(());
            }
            None => {}
        }
    }
    each(parse_record(limits, raw.get(), name));
    Ok(())
}

/// Hands each element of a JSON array on as a record (or a refusal naming its index).
struct EachRecord<'a> {
    limits: &'a Limits<'a>,
    name: &'a str,
    each: &'a mut dyn FnMut(Item),
    index: usize,
}

impl<'de> Visitor<'de> for &mut EachRecord<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of OSV records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let entry = format!("{}[{}]", self.name, self.index);
            (self.each)(parse_record(self.limits, raw.get(), &entry));
            self.index += 1;
        }
        Ok(())
    }
}

/// One record from its JSON text.
fn parse_record(limits: &Limits, json: &str, entry: &str) -> Item {
    let reject = |id: Option<String>, reason: String| {
        Item::Rejected(Rejected {
            id,
            entry: entry.to_owned(),
            reason,
        })
    };
    if json.len() > limits.record_bytes {
        return reject(
            None,
            format!(
                "a record of {} bytes is over the cap of {}",
                json.len(),
                limits.record_bytes
            ),
        );
    }
    match serde_json::from_str::<Record>(json) {
        Ok(record) => match record.check() {
            Ok(()) => Item::Record(Box::new(record)),
            Err(reason) => reject(Some(record.id).filter(|id| printable_id(id)), reason),
        },
        Err(e) => {
            let id = serde_json::from_str::<Value>(json)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                .filter(|id| printable_id(id));
            reject(id, format!("not an OSV record: {e}"))
        }
    }
}

/// Whether `id` may be repeated in a report: not empty, not too long, no control characters.
fn printable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

/// Reads every `*.json` entry of a zip (others are skipped). An entry that is too large or
/// does not read is rejected; a zip that does not open, or holds more than
/// [`MAX_ZIP_ENTRIES`] entries, is an `Err`.
pub fn read_zip<R: Read + Seek>(
    reader: R,
    name: &str,
    undated_modified: &str,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    zip_within(&Limits::undated(undated_modified), reader, name, each)
}

fn zip_within<R: Read + Seek>(
    limits: &Limits,
    reader: R,
    name: &str,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    let bad = |why: String| SourceError::BadZip(name.to_owned(), why);
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| bad(format!("not a zip: {e}")))?;
    if archive.len() > limits.zip_entries {
        return Err(bad(format!(
            "{} entries, over the cap of {}",
            archive.len(),
            limits.zip_entries
        )));
    }
    for index in 0..archive.len() {
        let mut file = match archive.by_index(index) {
            Ok(file) => file,
            Err(e) => {
                each(Item::Rejected(Rejected {
                    id: None,
                    entry: format!("{name}:#{index}"),
                    reason: format!("the entry does not read: {e}"),
                }));
                continue;
            }
        };
        let entry = format!("{name}:{}", file.name());
        if file.is_dir() || !file.name().ends_with(".json") {
            continue;
        }
        let reject = |reason: String| {
            Item::Rejected(Rejected {
                id: None,
                entry: entry.clone(),
                reason,
            })
        };
        let cap = limits.entry_bytes;
        if file.size() > cap {
            each(reject(format!(
                "{} bytes, over the cap of {cap}",
                file.size()
            )));
            continue;
        }
        // The header's size may lie: read one byte past the cap at most.
        let mut bytes = Vec::new();
        match (&mut file).take(cap + 1).read_to_end(&mut bytes) {
            Ok(_) if bytes.len() as u64 > cap => {
                each(reject(format!("over the cap of {cap} bytes")));
            }
            Ok(_) => {
                if let Err(e) = json_within(limits, &bytes, &entry, each) {
                    each(reject(e.to_string()));
                }
            }
            Err(e) => each(reject(format!("the entry does not read: {e}"))),
        }
    }
    Ok(())
}

/// Whether `bytes` start like a zip archive.
pub fn looks_like_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Reads a file (JSON or zip), or every `*.json` and `*.zip` file under a directory
/// (symbolic links are not followed). A file that is not JSON is rejected and the others
/// are read on; `Err` when `path` itself cannot be read or a zip given directly is broken.
pub fn read_path(
    path: &Path,
    undated_modified: &str,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    path_within(&Limits::undated(undated_modified), path, each)
}

fn path_within(
    limits: &Limits,
    path: &Path,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| SourceError::Io(name.clone(), e))?;
    if meta.is_dir() {
        let mut files = 0;
        return dir_within(limits, path, &mut files, each);
    }
    file_within(limits, path, each)
}

fn dir_within(
    limits: &Limits,
    dir: &Path,
    files: &mut usize,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    let io_error = |e| SourceError::Io(dir.display().to_string(), e);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error)?
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // The entry's own type: a symbolic link is neither a directory nor a file here.
        let kind = entry.file_type().map_err(io_error)?;
        if kind.is_dir() {
            dir_within(limits, &path, files, each)?;
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|ext| ext == "json" || ext == "zip")
        {
            *files += 1;
            if *files > limits.files {
                return Err(SourceError::Io(
                    dir.display().to_string(),
                    io::Error::other(format!("more than {} files", limits.files)),
                ));
            }
            if let Err(e) = file_within(limits, &path, each) {
                each(Item::Rejected(Rejected {
                    id: None,
                    entry: path.display().to_string(),
                    reason: e.to_string(),
                }));
            }
        }
    }
    Ok(())
}

fn file_within(
    limits: &Limits,
    path: &Path,
    each: &mut dyn FnMut(Item),
) -> Result<(), SourceError> {
    let name = path.display().to_string();
    let io_error = |e| SourceError::Io(name.clone(), e);
    let mut file = File::open(path).map_err(io_error)?;
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic).map_err(io_error)?;
    file.rewind().map_err(io_error)?;
    if looks_like_zip(&magic[..read]) {
        return zip_within(limits, file, &name, each);
    }
    let cap = limits.entry_bytes;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > cap {
        each(Item::Rejected(Rejected {
            id: None,
            entry: name,
            reason: format!("over the cap of {cap} bytes"),
        }));
        return Ok(());
    }
    json_within(limits, &bytes, &name, each)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::osv::{Event, RangeKind, Severity, cvss_base_score};
    use serde_json::json;

    const UNDATED: &str = "2026-01-01T00:00:00Z";

    fn record(extra: Value) -> Value {
        let mut base = json!({
            "id": "CVE-2024-0001",
            "modified": "2024-05-01T00:00:00Z",
            "affected": [{
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}]
            }]
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn read(bytes: &[u8]) -> (Vec<Record>, Vec<Rejected>) {
        let (mut records, mut rejected) = (Vec::new(), Vec::new());
        read_json(bytes, "body", UNDATED, &mut |item| match item {
            Item::Record(r) => records.push(*r),
            Item::Rejected(r) => rejected.push(r),
        })
        .unwrap();
        (records, rejected)
    }

    #[test]
    fn a_record_reads_with_its_ranges_and_unknown_fields() {
        let text = record(json!({"schema_version": "1.6.0", "something_new": {"a": 1}}));
        let (records, rejected) = read(text.to_string().as_bytes());
        assert!(rejected.is_empty());
        let ranges = &records[0].affected[0].ranges[0];
        assert_eq!(ranges.kind, RangeKind::Ecosystem);
        assert_eq!(
            ranges.events,
            vec![
                Event::Introduced("0".into()),
                Event::Fixed("3.0.13-1~deb12u1".into())
            ]
        );
    }

    #[test]
    fn an_array_rejects_the_bad_records_and_keeps_the_others() {
        let body = json!([
            record(json!({"id": "A"})),
            {"modified": "2024-05-01T00:00:00Z"},
            record(json!({"id": "C", "affected": [{"package": {"ecosystem": "npm", "name": "x"},
                "ranges": [{"type": "MAGIC", "events": [{"introduced": "0"}]}]}]})),
            record(json!({"id": "D", "modified": "yesterday"})),
            record(json!({"id": "E", "affected": [{"package": {"ecosystem": "npm", "name": "x"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"broken": "1"}]}]}]})),
        ]);
        let (records, rejected) = read(body.to_string().as_bytes());
        assert_eq!(
            records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["A"]
        );
        let named: Vec<_> = rejected
            .iter()
            .map(|r| (r.entry.as_str(), r.id.as_deref()))
            .collect();
        assert_eq!(
            named,
            [
                ("body[1]", None),
                ("body[2]", Some("C")),
                ("body[3]", Some("D")),
                ("body[4]", Some("E"))
            ]
        );
        assert!(rejected[0].reason.contains("missing field `id`"));
        assert!(
            rejected[1].reason.contains("MAGIC"),
            "{}",
            rejected[1].reason
        );
        assert!(rejected[2].reason.contains("RFC 3339"));
    }

    #[test]
    fn not_json_is_an_error_of_the_whole_source() {
        let mut each = |_| {};
        assert!(matches!(
            read_json(b"{not json", "body", UNDATED, &mut each),
            Err(SourceError::NotJson(..))
        ));
    }

    #[test]
    fn a_syntax_error_late_in_an_array_hands_nothing_on() {
        let mut handed = 0;
        let body = format!("[{}, {{\"id\": ", record(json!({})));
        let outcome = read_json(body.as_bytes(), "body", UNDATED, &mut |_| handed += 1);
        assert!(matches!(outcome, Err(SourceError::NotJson(..))));
        assert_eq!(handed, 0);
        // Values that are not records are refused one by one, by index.
        let (records, rejected) = read(b"[1, null, [], \"x\"]");
        assert!(records.is_empty());
        let entries: Vec<_> = rejected.iter().map(|r| r.entry.as_str()).collect();
        assert_eq!(entries, ["body[0]", "body[1]", "body[2]", "body[3]"]);
    }

    #[test]
    fn a_huge_record_is_refused() {
        let huge = record(json!({"details": "x".repeat(MAX_RECORD_BYTES)}));
        let (records, rejected) = read(json!([huge]).to_string().as_bytes());
        assert!(records.is_empty());
        assert!(rejected[0].reason.contains("over the cap"));
    }

    #[test]
    fn severity_comes_from_cvss_then_from_words() {
        let with = |extra: Value| -> Severity {
            serde_json::from_value::<Record>(record(extra))
                .unwrap()
                .severity()
        };
        let v31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"; // 9.8
        let v31_medium = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N"; // 4.2
        assert_eq!(cvss_base_score(v31), Some(9.8));
        assert_eq!(
            with(json!({"severity": [{"type": "CVSS_V3", "score": v31}]})),
            Severity::Critical
        );
        assert_eq!(
            with(json!({"severity": [{"type": "CVSS_V3", "score": v31_medium}]})),
            Severity::Medium
        );
        let v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"; // 9.3
        assert_eq!(
            with(json!({"severity": [{"type": "CVSS_V4", "score": v4}]})),
            Severity::Critical
        );
        assert_eq!(
            with(json!({"severity": [{"type": "Ubuntu", "score": "medium"}]})),
            Severity::Medium
        );
        assert_eq!(
            with(json!({"database_specific": {"urgency": "unimportant"}})),
            Severity::Low
        );
        assert_eq!(
            with(json!({"database_specific": {"urgency": "not yet assigned"}})),
            Severity::Unknown
        );
        assert_eq!(
            with(json!({"severity": [{"type": "CVSS_V3", "score": "garbage"}]})),
            Severity::Unknown
        );
        assert_eq!(with(json!({})), Severity::Unknown);
    }

    /// A zip of `(name, bytes)` entries.
    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buffer = io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buffer);
            for (name, bytes) in entries {
                zip.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                io::Write::write_all(&mut zip, bytes).unwrap();
            }
            zip.finish().unwrap();
        }
        buffer.into_inner()
    }

    fn collect(
        read: impl FnOnce(&mut dyn FnMut(Item)) -> Result<(), SourceError>,
    ) -> (Vec<String>, Vec<Rejected>, Result<(), SourceError>) {
        let (mut ids, mut rejected) = (Vec::new(), Vec::new());
        let outcome = read(&mut |item| match item {
            Item::Record(r) => ids.push(r.id),
            Item::Rejected(r) => rejected.push(r),
        });
        (ids, rejected, outcome)
    }

    #[test]
    fn zip_caps_refuse_large_entries_and_too_many_entries() {
        let small = Limits {
            entry_bytes: 400,
            zip_entries: 3,
            ..Limits::DEFAULT
        };
        let one = record(json!({"id": "CVE-1"})).to_string();
        let big = record(json!({"id": "CVE-2", "details": "x".repeat(400)})).to_string();
        let bytes = zip_of(&[("one.json", one.as_bytes()), ("big.json", big.as_bytes())]);
        let (ids, rejected, outcome) =
            collect(|each| zip_within(&small, io::Cursor::new(bytes), "db.zip", each));
        outcome.unwrap();
        assert_eq!(ids, ["CVE-1"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].entry, "db.zip:big.json");
        assert!(
            rejected[0].reason.contains("over the cap of 400"),
            "{:?}",
            rejected[0]
        );

        let four = zip_of(&[
            ("a.json", b"[]"),
            ("b.json", b"[]"),
            ("c.json", b"[]"),
            ("d.json", b"[]"),
        ]);
        let (_, _, outcome) =
            collect(|each| zip_within(&small, io::Cursor::new(four), "many.zip", each));
        let error = outcome.unwrap_err().to_string();
        assert!(error.contains("4 entries, over the cap of 3"), "{error}");
    }

    #[test]
    fn a_directory_is_read_recursively_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(
            dir.path().join("1.json"),
            record(json!({"id": "CVE-1"})).to_string(),
        )
        .unwrap();
        std::fs::write(
            nested.join("2.json"),
            record(json!({"id": "CVE-2"})).to_string(),
        )
        .unwrap();
        std::fs::write(
            nested.join("3.zip"),
            zip_of(&[(
                "3.json",
                record(json!({"id": "CVE-3"})).to_string().as_bytes(),
            )]),
        )
        .unwrap();
        std::fs::write(nested.join("notes.txt"), "not read").unwrap();
        std::fs::write(nested.join("bad.json"), "<html>").unwrap();
        // A link back up would loop if it were followed.
        std::os::unix::fs::symlink(dir.path(), nested.join("loop")).unwrap();
        let (mut ids, rejected, outcome) = collect(|each| read_path(dir.path(), UNDATED, each));
        outcome.unwrap();
        ids.sort();
        assert_eq!(ids, ["CVE-1", "CVE-2", "CVE-3"]);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].entry.ends_with("bad.json"));

        let few = Limits {
            files: 2,
            ..Limits::DEFAULT
        };
        let (_, _, outcome) = collect(|each| path_within(&few, dir.path(), each));
        assert!(
            outcome
                .unwrap_err()
                .to_string()
                .contains("more than 2 files")
        );
        let (_, _, outcome) = collect(|each| read_path(&dir.path().join("missing"), UNDATED, each));
        assert!(matches!(outcome, Err(SourceError::Io(..))));
    }

    #[test]
    fn a_zip_is_read_entry_by_entry() {
        let mut buffer = io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buffer);
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file("a/CVE-1.json", options).unwrap();
            io::Write::write_all(
                &mut zip,
                record(json!({"id": "CVE-1"})).to_string().as_bytes(),
            )
            .unwrap();
            zip.start_file("broken.json", options).unwrap();
            io::Write::write_all(&mut zip, b"{broken").unwrap();
            zip.start_file("README.md", options).unwrap();
            io::Write::write_all(&mut zip, b"# not a record").unwrap();
            zip.finish().unwrap();
        }
        buffer.set_position(0);
        let (mut ids, mut rejected) = (Vec::new(), Vec::new());
        read_zip(buffer, "db.zip", UNDATED, &mut |item| match item {
            Item::Record(r) => ids.push(r.id),
            Item::Rejected(r) => rejected.push(r.entry),
        })
        .unwrap();
        assert_eq!(ids, ["CVE-1"]);
        assert_eq!(rejected, ["db.zip:broken.json"]);
        let mut each = |_| {};
        assert!(matches!(
            read_zip(
                io::Cursor::new(b"PK\x03\x04junk".to_vec()),
                "x.zip",
                UNDATED,
                &mut each
            ),
            Err(SourceError::BadZip(..))
        ));
    }
}
