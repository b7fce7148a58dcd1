//! Whether an installed version is affected by an OSV entry, and which version fixes it.
//!
//! The rules are OSV's: a range's events are sorted by version (`introduced: "0"` first),
//! walked in order (introduced opens, fixed closes at its version, last_affected closes just
//! after it), and a `limit` caps the range. The explicit `versions` list matches too. `GIT`
//! ranges name commits, not package versions, and are left out. A range whose versions the
//! ecosystem's order refuses cannot be judged and matches nothing.

use std::cmp::Ordering;

use super::{
    osv::{Event, Range, RangeKind},
    versions::{Kind, compare},
};

/// An installed version an entry affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The lowest version above the installed one that fixes it, when one is known.
    pub fixed: Option<String>,
}

/// Whether version `installed` (of an ecosystem ordered by `kind`) is affected by `ranges`
/// and `versions`; `None` when it is not (or `installed` is a string `kind` refuses).
pub fn affected(kind: Kind, installed: &str, ranges: &[Range], versions: &[String]) -> Option<Fix> {
    let mut is_affected = versions
        .iter()
        .any(|v| v == installed || compare(kind, v, installed) == Some(Ordering::Equal));
    let mut fixed: Option<&str> = None;
    for range in ranges {
        let range_kind = match range.kind {
            RangeKind::Ecosystem => kind,
            RangeKind::Semver => Kind::Semver,
            RangeKind::Git => continue,
        };
        let Some(in_range) = in_range(range_kind, installed, &range.events) else {
            continue;
        };
        if !in_range {
            continue;
        }
        is_affected = true;
        // The lowest fix above the installed version, over every range that affects it.
        for event in &range.events {
            if let Event::Fixed(v) = event
                && compare(range_kind, v, installed) == Some(Ordering::Greater)
                && fixed.is_none_or(|f| compare(range_kind, v, f) == Some(Ordering::Less))
            {
                fixed = Some(v);
            }
        }
    }
    is_affected.then(|| Fix {
        fixed: fixed.map(str::to_owned),
    })
}

/// Whether `installed` falls in the range of `events`; `None` when a version does not
/// compare.
fn in_range(kind: Kind, installed: &str, events: &[Event]) -> Option<bool> {
    let cmp = |a: &str, b: &str| compare(kind, a, b);
    // Every version must compare, or the sort below would be arbitrary.
    cmp(installed, installed)?;
    for event in events {
        if !(matches!(event, Event::Introduced(v) if v == "0")) {
            cmp(event.version(), event.version())?;
        }
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| match (a, b) {
        (Event::Introduced(x), _) if x == "0" => Ordering::Less,
        (_, Event::Introduced(y)) if y == "0" => Ordering::Greater,
        _ => cmp(a.version(), b.version()).unwrap_or(Ordering::Equal),
    });
    let mut affected = false;
    for event in sorted {
        match event {
            Event::Introduced(v) => {
                if v == "0" || cmp(installed, v)? != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if cmp(installed, v)? != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if cmp(installed, v)? == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(v) => {
                if cmp(installed, v)? != Ordering::Less {
                    return Some(false);
                }
            }
        }
    }
    Some(affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(kind: RangeKind, events: &[(&str, &str)]) -> Range {
        Range {
            kind,
            repo: None,
            events: events
                .iter()
                .map(|(k, v)| {
                    let v = (*v).to_owned();
                    match *k {
                        "introduced" => Event::Introduced(v),
                        "fixed" => Event::Fixed(v),
                        "last_affected" => Event::LastAffected(v),
                        _ => Event::Limit(v),
                    }
                })
                .collect(),
        }
    }

    fn fixed_in(v: &str) -> Option<Fix> {
        Some(Fix {
            fixed: Some(v.to_owned()),
        })
    }

    #[test]
    fn introduced_zero_to_fixed() {
        let r = [range(
            RangeKind::Ecosystem,
            &[("introduced", "0"), ("fixed", "1:1.2.13.dfsg-1+deb12u1")],
        )];
        assert_eq!(
            affected(Kind::Dpkg, "1:1.2.13.dfsg-1", &r, &[]),
            fixed_in("1:1.2.13.dfsg-1+deb12u1")
        );
        assert_eq!(
            affected(Kind::Dpkg, "1:1.2.13.dfsg-1+deb12u1", &r, &[]),
            None
        );
        assert_eq!(affected(Kind::Dpkg, "1:1.3-1", &r, &[]), None);
        // Without its epoch the version is older than any with epoch 1.
        assert_eq!(
            affected(Kind::Dpkg, "9.9-1", &r, &[]),
            fixed_in("1:1.2.13.dfsg-1+deb12u1")
        );
    }

    #[test]
    fn events_out_of_order_are_sorted_first() {
        let r = [range(
            RangeKind::Ecosystem,
            &[
                ("fixed", "2.0"),
                ("introduced", "1.5"),
                ("fixed", "1.2"),
                ("introduced", "1.0"),
            ],
        )];
        assert_eq!(affected(Kind::Rpm, "0.9", &r, &[]), None);
        assert_eq!(affected(Kind::Rpm, "1.1", &r, &[]), fixed_in("1.2"));
        assert_eq!(affected(Kind::Rpm, "1.3", &r, &[]), None);
        assert_eq!(affected(Kind::Rpm, "1.5", &r, &[]), fixed_in("2.0"));
        assert_eq!(affected(Kind::Rpm, "2.0", &r, &[]), None);
    }

    #[test]
    fn last_affected_includes_its_version_and_has_no_fix() {
        let r = [range(
            RangeKind::Ecosystem,
            &[("introduced", "1.0-r0"), ("last_affected", "1.2-r3")],
        )];
        assert_eq!(
            affected(Kind::Apk, "1.2-r3", &r, &[]),
            Some(Fix { fixed: None })
        );
        assert_eq!(affected(Kind::Apk, "1.2-r4", &r, &[]), None);
        assert_eq!(affected(Kind::Apk, "0.9-r0", &r, &[]), None);
    }

    #[test]
    fn limit_caps_the_range() {
        let r = [range(
            RangeKind::Semver,
            &[("introduced", "0"), ("limit", "2.0.0")],
        )];
        assert_eq!(
            affected(Kind::Dpkg, "1.9.0", &r, &[]),
            Some(Fix { fixed: None })
        );
        assert_eq!(affected(Kind::Dpkg, "2.0.0", &r, &[]), None);
    }

    #[test]
    fn several_ranges_give_the_lowest_fix_above_the_installed_version() {
        let r = [
            range(
                RangeKind::Semver,
                &[("introduced", "1.0.0"), ("fixed", "1.4.2")],
            ),
            range(
                RangeKind::Semver,
                &[("introduced", "0"), ("fixed", "1.3.0")],
            ),
            range(
                RangeKind::Semver,
                &[("introduced", "2.0.0"), ("fixed", "2.1.0")],
            ),
        ];
        assert_eq!(affected(Kind::Semver, "1.2.0", &r, &[]), fixed_in("1.3.0"));
        assert_eq!(affected(Kind::Semver, "1.3.5", &r, &[]), fixed_in("1.4.2"));
        assert_eq!(affected(Kind::Semver, "2.0.5", &r, &[]), fixed_in("2.1.0"));
        assert_eq!(affected(Kind::Semver, "1.5.0", &r, &[]), None);
    }

    #[test]
    fn the_versions_list_matches_alone() {
        let versions = vec!["1.0-1".to_owned(), "1.0-2".to_owned()];
        assert_eq!(
            affected(Kind::Dpkg, "1.0-2", &[], &versions),
            Some(Fix { fixed: None })
        );
        assert_eq!(affected(Kind::Dpkg, "1.0-3", &[], &versions), None);
    }

    #[test]
    fn versions_the_order_refuses_match_nothing() {
        let r = [range(
            RangeKind::Ecosystem,
            &[("introduced", "0"), ("fixed", "1.0_bogus")],
        )];
        assert_eq!(affected(Kind::Apk, "0.5", &r, &[]), None);
        let good = [range(
            RangeKind::Ecosystem,
            &[("introduced", "0"), ("fixed", "1.0")],
        )];
        assert_eq!(affected(Kind::Apk, "not-a-version", &good, &[]), None);
        let git = [range(
            RangeKind::Git,
            &[("introduced", "abc"), ("fixed", "def")],
        )];
        assert_eq!(affected(Kind::Apk, "0.5", &git, &[]), None);
    }
}
