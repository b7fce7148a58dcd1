//! How the commands print for people: aligned tables under a header line, sizes in
//! KiB/MiB/GiB, unix times as UTC dates, and a one-line bar chart of a daily series.

/// A table: a header line and rows of cells, columns separated by two spaces and padded to
/// their widest cell (numbers aligned right).
pub(super) struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, every column aligned left.
    pub(super) fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns the columns at `columns` (numbers, sizes) to the right.
    pub(super) fn right(mut self, columns: &[usize]) -> Table {
        for &c in columns {
            self.right[c] = true;
        }
        self
    }

    /// Adds a row (one cell per header).
    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines of text, each ending with a line break.
    pub(super) fn render(&self) -> String {
        let width = |text: &str| text.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                widths[c] = widths[c].max(width(cell));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = " ".repeat(widths[c] - width(cell));
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right[c] {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on standard output.
    pub(super) fn print(&self) {
        print!("{}", self.render());
    }
}

/// Prints `label  value` lines with the labels padded to the widest.
pub(super) fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in fields {
        println!("{label:<width$}  {value}");
    }
}

/// Bytes as people read them: `512 B`, `3.0 KiB`, `12.3 MiB`, `1.5 GiB`.
pub(super) fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes.abs() < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A unix time as its UTC date and minute, `2026-12-02 05:10`.
pub(super) fn date(unix_secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix_secs.to_string(),
    }
}

/// [`date`] of a time that may be missing (`-`, as never pulled).
pub(super) fn maybe_date(unix_secs: Option<i64>) -> String {
    unix_secs.map_or_else(|| "-".to_owned(), date)
}

/// An image's signed status as the image and tag listings carry it (`signature`).
#[derive(serde::Deserialize)]
pub(super) struct Signed {
    verified: bool,
    identity: Option<String>,
    reason: Option<String>,
}

/// `yes (key sha256:…)`, `no: <why>`, or `-` for an image without a signature.
pub(super) fn signed(status: &Option<Signed>) -> String {
    match status {
        None => "-".to_owned(),
        Some(s) if s.verified => match &s.identity {
            Some(who) => format!("yes ({})", short_digest_in(who)),
            None => "yes".to_owned(),
        },
        Some(s) => format!("no: {}", s.reason.as_deref().unwrap_or("not verified")),
    }
}

/// `key sha256:<64 hex>` with its digest shortened; any other identity as it is.
fn short_digest_in(identity: &str) -> String {
    match identity.strip_prefix("key ") {
        Some(digest) => format!("key {}", short_digest(digest, false)),
        None => identity.to_owned(),
    }
}

/// A digest shortened as docker shortens image ids: the algorithm and 12 hex digits.
pub(super) fn short_digest(digest: &str, full: bool) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) if !full && hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

/// One bar per value, `▁` (zero) to `█` (the largest): a day's pulls at a glance. Any
/// value above zero shows at least the second step, so a quiet day stands out from none.
pub(super) fn sparkline(values: &[i64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(0);
    values
        .iter()
        .map(|&v| {
            if v <= 0 || max == 0 {
                BARS[0]
            } else {
                // 1..=7, rounded up.
                let step = (v as i128 * 7 + max as i128 - 1) / max as i128;
                BARS[step.clamp(1, 7) as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(12_897_485), "12.3 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }

    #[test]
    fn dates_are_utc_minutes() {
        assert_eq!(date(0), "1970-01-01 00:00");
        assert_eq!(date(1_796_189_400), "2026-12-02 05:30");
        assert_eq!(maybe_date(None), "-");
    }

    #[test]
    fn digests_shorten_to_twelve_digits() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&digest, false), "sha256:abababababab");
        assert_eq!(short_digest(&digest, true), digest);
    }

    #[test]
    fn tables_align_columns_under_their_headers() {
        let mut table = Table::new(&["NAME", "SIZE"]).right(&[1]);
        table.row(vec!["team/app".into(), "1.0 KiB".into()]);
        table.row(vec!["a".into(), "5 B".into()]);
        assert_eq!(
            table.render(),
            "NAME         SIZE\nteam/app  1.0 KiB\na             5 B\n"
        );
    }

    #[test]
    fn sparklines_scale_to_the_largest_value() {
        assert_eq!(sparkline(&[0, 1, 7, 14]), "▁▂▅█");
        assert_eq!(sparkline(&[0, 0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }
}
