//! The values of a Berkeley DB hash database (the format of rpm's `Packages` before rpm 4.16:
//! RHEL and CentOS 7 and 8, Amazon Linux 2, older Fedora and SUSE), read page by page from
//! the file with every offset checked, for [`super::rpm`].
//!
//! A hash database is a file of fixed-size pages: page 0 describes the database, hash pages
//! hold key/value pairs (their item index grows from the page header, the items from the
//! page's end), and a value too big for a hash page sits on a chain of overflow pages that
//! the hash page points to. Every hash page is read in file order, so no bucket arithmetic
//! is needed; pages freed by the database are of another type and skipped.

use std::{fs::File, os::unix::fs::FileExt};

/// The hash access method's magic number, in the meta page.
const HASH_MAGIC: u32 = 0x0006_1561;
/// Page types (`P_HASH_UNSORTED`, `P_OVERFLOW`, `P_HASHMETA`, `P_HASH`).
const PAGE_HASH_UNSORTED: u8 = 2;
const PAGE_OVERFLOW: u8 = 7;
const PAGE_HASH_META: u8 = 8;
const PAGE_HASH: u8 = 13;
/// Item types on a hash page: the bytes follow the type byte, or live on overflow pages.
const ITEM_KEY_DATA: u8 = 1;
const ITEM_OFF_PAGE: u8 = 3;
/// The bytes before a page's item index; a checksummed database keeps 4 more.
const PAGE_HEADER: usize = 26;
const CHECKSUM_BYTES: usize = 4;
/// The meta page's flag for checksummed pages.
const META_CHECKSUM: u8 = 0x01;
/// Page sizes Berkeley DB allows.
const PAGE_SIZES: std::ops::RangeInclusive<u32> = 512..=65536;

/// The most bytes one value may have (rpm's own limit on a header is a little under 256 MiB;
/// a real one is a few hundred KiB).
pub const MAX_VALUE_BYTES: usize = 64 << 20;

/// One key/value pair of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The key's bytes (rpm: the header's instance number, 4 bytes).
    pub key: Vec<u8>,
    /// The value's bytes.
    pub value: Vec<u8>,
}

/// How the file's numbers are written (the meta page's magic tells).
#[derive(Debug, Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(match self {
            Order::Little => u16::from_le_bytes(bytes),
            Order::Big => u16::from_be_bytes(bytes),
        })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(match self {
            Order::Little => u32::from_le_bytes(bytes),
            Order::Big => u32::from_be_bytes(bytes),
        })
    }
}

/// An open hash database: its file, page size, byte order and where item indexes start.
struct Database<'f> {
    file: &'f File,
    page_size: usize,
    pages: u32,
    order: Order,
    index_at: usize,
}

/// Calls `each` with every key/value pair of the hash database in `file` (of `len` bytes),
/// in file order, until it returns `false`. A pair whose value cannot be read (an overflow
/// chain that is cut, loops or is longer than [`MAX_VALUE_BYTES`]) is passed as an error
/// naming why, and the reading goes on; a file that is no hash database, or is encrypted,
/// is an error.
pub fn for_each_pair(
    file: &File,
    len: u64,
    mut each: impl FnMut(Result<Pair, String>) -> bool,
) -> Result<(), String> {
    let db = Database::open(file, len)?;
    let mut page = vec![0; db.page_size];
    for number in 1..db.pages {
        db.read_page(number, &mut page)?;
        if !matches!(page[25], PAGE_HASH | PAGE_HASH_UNSORTED) {
            continue;
        }
        let entries = db.order.u16(&page, 20).unwrap_or(0) as usize;
        // Items come in pairs: key, value.
        for pair in 0..entries / 2 {
            let read = db
                .item(&page, pair * 2)
                .and_then(|key| Ok((key, db.item(&page, pair * 2 + 1)?)))
                .map(|(key, value)| Pair { key, value })
                .map_err(|e| format!("page {number}: {e}"));
            if !each(read) {
                return Ok(());
            }
        }
    }
    Ok(())
}

impl<'f> Database<'f> {
    /// Reads and checks the meta page.
    fn open(file: &'f File, len: u64) -> Result<Self, String> {
        let mut meta = [0; 512];
        file.read_exact_at(&mut meta, 0)
            .map_err(|_| "not a Berkeley DB database: shorter than its meta page".to_owned())?;
        let order = if Order::Little.u32(&meta, 12) == Some(HASH_MAGIC) {
            Order::Little
        } else if Order::Big.u32(&meta, 12) == Some(HASH_MAGIC) {
            Order::Big
        } else {
            return Err("not a Berkeley DB hash database (magic number)".to_owned());
        };
        if meta[25] != PAGE_HASH_META {
            return Err(format!(
                "page 0 is of type {}, not a hash meta page",
                meta[25]
            ));
        }
        if meta[24] != 0 {
            return Err("an encrypted Berkeley DB database".to_owned());
        }
        let page_size = order.u32(&meta, 20).unwrap_or(0);
        if !PAGE_SIZES.contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!("a page size of {page_size} bytes"));
        }
        // The pages the file holds; a last page number past them means a cut file, whose
        // missing pages are not read.
        let pages = u32::try_from(len / u64::from(page_size)).unwrap_or(u32::MAX);
        let index_at = PAGE_HEADER
            + if meta[26] & META_CHECKSUM != 0 {
                CHECKSUM_BYTES
            } else {
                0
            };
        Ok(Database {
            file,
            page_size: page_size as usize,
            pages,
            order,
            index_at,
        })
    }

    fn read_page(&self, number: u32, page: &mut [u8]) -> Result<(), String> {
        let at = u64::from(number) * self.page_size as u64;
        self.file
            .read_exact_at(page, at)
            .map_err(|e| format!("page {number}: {e}"))
    }

    /// Item `index` of hash page `page`: its bytes, from the page or from its overflow chain.
    fn item(&self, page: &[u8], index: usize) -> Result<Vec<u8>, String> {
        let start = self
            .order
            .u16(page, self.index_at + 2 * index)
            .map(usize::from)
            .filter(|&at| at >= self.index_at && at < page.len())
            .ok_or_else(|| format!("item {index} is outside its page"))?;
        // Items are packed from the page's end: each ends where the one before it starts.
        let end = match index {
            0 => page.len(),
            _ => self
                .order
                .u16(page, self.index_at + 2 * (index - 1))
                .map(usize::from)
                .filter(|&end| end > start && end <= page.len())
                .ok_or_else(|| format!("item {index} overlaps another"))?,
        };
        match page[start] {
            ITEM_KEY_DATA => Ok(page[start + 1..end].to_vec()),
            ITEM_OFF_PAGE => {
                let first = self.order.u32(page, start + 4);
                let total = self.order.u32(page, start + 8);
                match (first, total) {
                    (Some(first), Some(total)) => self.overflow(first, total as usize),
                    _ => Err(format!("item {index} is cut")),
                }
            }
            other => Err(format!("item {index} is of type {other}, not data")),
        }
    }

    /// The `total` bytes on the chain of overflow pages that starts at page `first`.
    fn overflow(&self, first: u32, total: usize) -> Result<Vec<u8>, String> {
        if total > MAX_VALUE_BYTES {
            return Err(format!(
                "a value of {total} bytes, more than {MAX_VALUE_BYTES} read"
            ));
        }
        // The file cannot hold more than its pages: a lying length reserves no more.
        let mut value = Vec::with_capacity(total.min(self.pages as usize * self.page_size));
        let mut page = vec![0; self.page_size];
        let mut number = first;
        // A chain visits each page once at most: more steps than pages is a loop.
        for _ in 0..self.pages {
            if number == 0 || number >= self.pages {
                return Err(format!(
                    "an overflow chain points to page {number}, which the file lacks"
                ));
            }
            self.read_page(number, &mut page)?;
            if page[25] != PAGE_OVERFLOW {
                return Err(format!(
                    "page {number} of an overflow chain is of type {}",
                    page[25]
                ));
            }
            // An overflow page's used length is kept where hash pages keep their free offset.
            let used = self.order.u16(&page, 22).map(usize::from).unwrap_or(0);
            let data = page
                .get(PAGE_HEADER..PAGE_HEADER + used)
                .ok_or_else(|| format!("overflow page {number} says it holds {used} bytes"))?;
            if value.len() + data.len() > total {
                return Err(format!("an overflow chain longer than its {total} bytes"));
            }
            value.extend_from_slice(data);
            if value.len() == total {
                return Ok(value);
            }
            number = self.order.u32(&page, 16).unwrap_or(0);
        }
        Err("an overflow chain that loops".to_owned())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A little-endian hash database of 512-byte pages holding `pairs`, one hash page per
    /// pair; a value over 100 bytes goes to overflow pages of 100 bytes each (as Berkeley DB
    /// lays them out, if with smaller pages than it would choose).
    pub(crate) fn database(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        const SIZE: usize = 512;
        let mut pages: Vec<Vec<u8>> = Vec::new();
        let mut meta = vec![0; SIZE];
        meta[12..16].copy_from_slice(&HASH_MAGIC.to_le_bytes());
        meta[16..20].copy_from_slice(&9u32.to_le_bytes());
        meta[20..24].copy_from_slice(&(SIZE as u32).to_le_bytes());
        meta[25] = PAGE_HASH_META;
        pages.push(meta);
        for (key, value) in pairs {
            let number = pages.len() as u32;
            let mut page = vec![0; SIZE];
            page[8..12].copy_from_slice(&number.to_le_bytes());
            page[20..22].copy_from_slice(&2u16.to_le_bytes());
            page[25] = PAGE_HASH;
            let key_at = SIZE - 1 - key.len();
            page[key_at] = ITEM_KEY_DATA;
            page[key_at + 1..].copy_from_slice(key);
            let value_at;
            let mut overflow = Vec::new();
            if value.len() <= 100 {
                value_at = key_at - 1 - value.len();
                page[value_at] = ITEM_KEY_DATA;
                page[value_at + 1..key_at].copy_from_slice(value);
            } else {
                value_at = key_at - 12;
                page[value_at] = ITEM_OFF_PAGE;
                page[value_at + 4..value_at + 8].copy_from_slice(&(number + 1).to_le_bytes());
                page[value_at + 8..value_at + 12]
                    .copy_from_slice(&(value.len() as u32).to_le_bytes());
                for (i, chunk) in value.chunks(100).enumerate() {
                    let this = number + 1 + i as u32;
                    let mut over = vec![0; SIZE];
                    over[8..12].copy_from_slice(&this.to_le_bytes());
                    let last = (i + 1) * 100 >= value.len();
                    let next = if last { 0 } else { this + 1 };
                    over[16..20].copy_from_slice(&next.to_le_bytes());
                    over[22..24].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
                    over[25] = PAGE_OVERFLOW;
                    over[PAGE_HEADER..PAGE_HEADER + chunk.len()].copy_from_slice(chunk);
                    overflow.push(over);
                }
            }
            page[26..28].copy_from_slice(&(key_at as u16).to_le_bytes());
            page[28..30].copy_from_slice(&(value_at as u16).to_le_bytes());
            page[22..24].copy_from_slice(&(value_at as u16).to_le_bytes());
            pages.push(page);
            pages.extend(overflow);
        }
        pages.concat()
    }

    fn pairs_of(bytes: &[u8]) -> Result<Vec<Result<Pair, String>>, String> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        let mut pairs = Vec::new();
        for_each_pair(&file, bytes.len() as u64, |pair| {
            pairs.push(pair);
            true
        })?;
        Ok(pairs)
    }

    #[test]
    fn small_values_and_overflow_chains_are_read() {
        let big: Vec<u8> = (0..=255u8).cycle().take(1234).collect();
        let bytes = database(&[(b"\x01\0\0\0", b"small"), (b"\x02\0\0\0", &big)]);
        let pairs = pairs_of(&bytes).unwrap();
        assert_eq!(
            pairs,
            vec![
                Ok(Pair {
                    key: b"\x01\0\0\0".to_vec(),
                    value: b"small".to_vec()
                }),
                Ok(Pair {
                    key: b"\x02\0\0\0".to_vec(),
                    value: big
                }),
            ]
        );
    }

    #[test]
    fn what_is_no_hash_database_is_refused() {
        assert!(pairs_of(b"short").unwrap_err().contains("shorter"));
        let mut bytes = database(&[(b"k", b"v")]);
        bytes[12] = 0x62; // a btree's magic
        assert!(pairs_of(&bytes).unwrap_err().contains("magic"));
        let mut bytes = database(&[(b"k", b"v")]);
        bytes[24] = 1;
        assert!(pairs_of(&bytes).unwrap_err().contains("encrypted"));
        let mut bytes = database(&[(b"k", b"v")]);
        bytes[20..24].copy_from_slice(&1000u32.to_le_bytes());
        assert!(pairs_of(&bytes).unwrap_err().contains("page size"));
    }

    #[test]
    fn broken_pages_and_chains_are_errors_per_pair() {
        let big = vec![7u8; 250];
        // The chain's second page points back to the first: a loop.
        let mut looped = database(&[(b"k", &big)]);
        looped[3 * 512 + 16..3 * 512 + 20].copy_from_slice(&2u32.to_le_bytes());
        looped[3 * 512 + 22..3 * 512 + 24].copy_from_slice(&10u16.to_le_bytes());
        let pairs = pairs_of(&looped).unwrap();
        assert!(
            matches!(&pairs[..], [Err(e)] if e.contains("loop") || e.contains("longer")),
            "{pairs:?}"
        );
        // The file is cut in the middle of the chain.
        let whole = database(&[(b"k", &big)]);
        let pairs = pairs_of(&whole[..3 * 512]).unwrap();
        assert!(
            matches!(&pairs[..], [Err(e)] if e.contains("lacks")),
            "{pairs:?}"
        );
        // An item index pointing past its page, and a declared length over the limit.
        let mut outside = database(&[(b"k", b"v")]);
        outside[512 + 26..512 + 28].copy_from_slice(&600u16.to_le_bytes());
        let pairs = pairs_of(&outside).unwrap();
        assert!(
            matches!(&pairs[..], [Err(e)] if e.contains("outside")),
            "{pairs:?}"
        );
        let mut huge = database(&[(b"k", &big)]);
        let item = u16::from_le_bytes([huge[512 + 28], huge[512 + 29]]) as usize;
        huge[512 + item + 8..512 + item + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let pairs = pairs_of(&huge).unwrap();
        assert!(
            matches!(&pairs[..], [Err(e)] if e.contains("more than")),
            "{pairs:?}"
        );
    }
}
