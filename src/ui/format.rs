//! Figures for people: sizes in binary units, dates as UTC days and times with how long ago,
//! and the usage charts as SVG made here (numbers only go into the markup, so it needs no
//! escaping).

use std::fmt::Write as _;

use time::OffsetDateTime;

/// `1536` → `1.5 KiB`.
pub fn size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A unix time as `2026-03-01 14:05 UTC`.
pub fn date(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix.to_string(),
    }
}

/// How long before `now` `unix` was: `just now`, `5 minutes ago`, `3 days ago`.
pub fn ago(unix: i64, now: i64) -> String {
    let secs = now - unix;
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match secs {
        s if s < 60 => "just now".to_owned(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 86_400 => plural(s / 3600, "hour"),
        s if s < 60 * 86_400 => plural(s / 86_400, "day"),
        s if s < 730 * 86_400 => plural(s / (30 * 86_400), "month"),
        s => plural(s / (365 * 86_400), "year"),
    }
}

/// A UTC day number (days since the epoch) as `2026-03-01`.
pub fn day(day: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(day * 86_400) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => day.to_string(),
    }
}

/// A named series of a chart.
pub struct Series<'a> {
    /// The legend's name (a constant: it goes into the markup as is).
    pub name: &'static str,
    /// The CSS class that colours it.
    pub class: &'static str,
    /// One value per bucket.
    pub values: &'a [i64],
}

/// A bar chart of `series` side by side per bucket, with the first and last bucket's labels
/// and the highest value on the axis (as `value_label` writes it). Accessible: `title` names
/// it for screen readers.
pub fn bar_chart(
    title: &'static str,
    labels: (&str, &str),
    value_label: fn(i64) -> String,
    series: &[Series<'_>],
) -> String {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 160.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 20.0;
    let buckets = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{title}\" preserveAspectRatio=\"none\"><title>{title}</title>"
    );
    let plot = HEIGHT - TOP - BOTTOM;
    let slot = WIDTH / buckets.max(1) as f64;
    let bar = (slot * 0.8) / series.len().max(1) as f64;
    for (i, s) in series.iter().enumerate() {
        for (b, &value) in s.values.iter().enumerate() {
            let h = plot * value.max(0) as f64 / max as f64;
            let x = b as f64 * slot + slot * 0.1 + i as f64 * bar;
            let y = TOP + plot - h;
            let _ = write!(
                svg,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" \
                 height=\"{h:.1}\"><title>{}: {value}</title></rect>",
                s.class, s.name
            );
        }
    }
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\"/>\
         <text x=\"0\" y=\"11\" class=\"label\">{}</text>\
         <text x=\"0\" y=\"{HEIGHT}\" class=\"label\">{}</text>\
         <text x=\"{WIDTH}\" y=\"{HEIGHT}\" class=\"label end\">{}</text>",
        plain(&value_label(max)),
        plain(labels.0),
        plain(labels.1),
        base = TOP + plot,
    );
    svg.push_str("</svg>");
    svg
}

/// Keeps the letters, digits, spaces, dots and dashes of a label (labels are made here, but
/// the chart is inserted unescaped, so no markup may pass).
fn plain(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(200 * 1024 * 1024), "200 MiB");
    }

    #[test]
    fn dates_are_utc_and_relative() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(day(1), "1970-01-02");
        assert_eq!(ago(100, 130), "just now");
        assert_eq!(ago(0, 7200), "2 hours ago");
        assert_eq!(ago(0, 86_400), "1 day ago");
    }

    #[test]
    fn charts_hold_only_numbers_and_their_names() {
        let svg = bar_chart(
            "Pulls",
            ("2026-01-01", "<script>"),
            |n| n.to_string(),
            &[Series {
                name: "pulls",
                class: "pulls",
                values: &[1, 5, 0],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<script>"));
        assert_eq!(svg.matches("<rect").count(), 3);
    }
}
