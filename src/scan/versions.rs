//! The version orders of the packaging systems advisories name: dpkg (Debian, Ubuntu),
//! rpm (Red Hat and its rebuilds, SUSE), apk (Alpine), semantic versioning (crates.io,
//! npm, Go) and PEP 440 (PyPI, through the `pep440_rs` crate).
//!
//! Each order is written after the real tool's own algorithm (dpkg's `verrevcmp`, rpm's
//! `rpmvercmp` with its epoch:version-release split, apk-tools' tokenizer) because no
//! maintained crate implements all three; the unit tests check them against `dpkg
//! --compare-versions` and `rpm.vercmp` on thousands of pairs. A string the system itself
//! rejects compares as `None`, never as some arbitrary order.

use std::cmp::Ordering;

/// Which version order applies, derived from an OSV ecosystem name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Debian's `dpkg` (epoch, upstream version, revision, `~` before everything).
    Dpkg,
    /// `rpm` (epoch:version-release, `~` before and `^` after the base version).
    Rpm,
    /// Alpine's `apk` (digits, a letter, `_alpha`…`_p` suffixes, `~hash`, `-r` revision).
    Apk,
    /// Semantic versioning 2.0 (an optional leading `v` is ignored, as Go writes it).
    Semver,
    /// Python's PEP 440 (epochs, pre-, post- and dev-releases, local versions).
    Pep440,
}

impl Kind {
    /// The order of an OSV ecosystem such as `Debian:12`, `Alpine:v3.19` or `crates.io`;
    /// `None` for an ecosystem whose order is not implemented (PyPI, Maven, …).
    pub fn of_ecosystem(ecosystem: &str) -> Option<Kind> {
        let family = ecosystem.split(':').next().unwrap_or_default().trim();
        match family {
            "Debian" | "Ubuntu" => Some(Kind::Dpkg),
            "Alpine"
            | "Wolfi"
            | "Chainguard"
            | "Alpaquita"
            | "BellSoft Hardened Containers"
            | "MinimOS" => Some(Kind::Apk),
            "Red Hat" | "Rocky Linux" | "AlmaLinux" | "openSUSE" | "SUSE" | "Mageia"
            | "openEuler" | "Photon OS" | "Azure Linux" | "CBL-Mariner" => Some(Kind::Rpm),
            "crates.io" | "npm" | "Go" | "Hex" | "Pub" => Some(Kind::Semver),
            "PyPI" => Some(Kind::Pep440),
            _ => None,
        }
    }
}

/// Orders versions `a` and `b` by the rules of `kind`; `None` when either is a string that
/// packaging system refuses.
pub fn compare(kind: Kind, a: &str, b: &str) -> Option<Ordering> {
    match kind {
        Kind::Dpkg => Some(dpkg::Version::parse(a)?.cmp(&dpkg::Version::parse(b)?)),
        Kind::Rpm => rpm::compare_evr(a, b),
        Kind::Apk => apk::compare(a, b),
        Kind::Semver => Some(parse_semver(a)?.cmp(&parse_semver(b)?)),
        Kind::Pep440 => Some(parse_pep440(a)?.cmp(&parse_pep440(b)?)),
    }
}

/// Whether `version` is a string `kind` accepts.
pub fn is_valid(kind: Kind, version: &str) -> bool {
    compare(kind, version, version).is_some()
}

fn parse_pep440(version: &str) -> Option<pep440_rs::Version> {
    version.parse().ok()
}

fn parse_semver(version: &str) -> Option<semver::Version> {
    let version = version.strip_prefix('v').unwrap_or(version);
    semver::Version::parse(version).ok()
}

/// Debian versions after deb-version(7) and dpkg's `parseversion`/`verrevcmp`.
pub mod dpkg {
    use std::cmp::Ordering;

    /// A parsed `[epoch:]upstream[-revision]`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Version<'a> {
        /// The epoch (0 when absent).
        pub epoch: u32,
        /// The upstream version.
        pub upstream: &'a str,
        /// The Debian revision ("" when absent).
        pub revision: &'a str,
    }

    impl<'a> Version<'a> {
        /// Parses `text` as dpkg does; `None` where dpkg reports an error (empty, embedded
        /// blanks, an epoch that is not a number up to `i32::MAX`, an empty upstream version or
        /// revision). Like `dpkg --compare-versions`, it accepts what dpkg only warns about
        /// (a first character that is not a digit, unusual characters).
        pub fn parse(text: &'a str) -> Option<Version<'a>> {
            let text = text.trim_matches(|c| c == ' ' || c == '\t');
            if text.is_empty() || text.contains([' ', '\t']) {
                return None;
            }
            let (epoch, rest) = match text.split_once(':') {
                Some((epoch, rest)) => {
                    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let epoch: u32 = epoch.parse().ok().filter(|e| *e <= i32::MAX as u32)?;
                    if rest.is_empty() {
                        return None;
                    }
                    (epoch, rest)
                }
                None => (0, text),
            };
            let (upstream, revision) = match rest.rsplit_once('-') {
                Some((_, "")) => return None,
                Some((upstream, revision)) => (upstream, revision),
                None => (rest, ""),
            };
            if upstream.is_empty() {
                return None;
            }
            Some(Version {
                epoch,
                upstream,
                revision,
            })
        }
    }

    impl Ord for Version<'_> {
        fn cmp(&self, other: &Self) -> Ordering {
            self.epoch
                .cmp(&other.epoch)
                .then_with(|| verrevcmp(self.upstream, other.upstream))
                .then_with(|| verrevcmp(self.revision, other.revision))
        }
    }

    impl PartialOrd for Version<'_> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    /// The weight of a non-digit character: `~` first, then the end of the string, letters,
    /// then everything else.
    fn order(c: u8) -> i32 {
        if c.is_ascii_digit() {
            0
        } else if c.is_ascii_alphabetic() {
            i32::from(c)
        } else if c == b'~' {
            -1
        } else if c != 0 {
            i32::from(c) + 256
        } else {
            0
        }
    }

    /// dpkg's `verrevcmp`: alternating non-digit and digit runs.
    fn verrevcmp(a: &str, b: &str) -> Ordering {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let at = |i: usize| a.get(i).copied().unwrap_or(0);
        let bt = |i: usize| b.get(i).copied().unwrap_or(0);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            while (i < a.len() && !at(i).is_ascii_digit())
                || (j < b.len() && !bt(j).is_ascii_digit())
            {
                let (ac, bc) = (order(at(i)), order(bt(j)));
                if ac != bc {
                    return ac.cmp(&bc);
                }
                i += 1;
                j += 1;
            }
            while at(i) == b'0' {
                i += 1;
            }
            while bt(j) == b'0' {
                j += 1;
            }
            let mut first_diff = Ordering::Equal;
            while at(i).is_ascii_digit() && bt(j).is_ascii_digit() {
                if first_diff == Ordering::Equal {
                    first_diff = at(i).cmp(&bt(j));
                }
                i += 1;
                j += 1;
            }
            if at(i).is_ascii_digit() {
                return Ordering::Greater;
            }
            if bt(j).is_ascii_digit() {
                return Ordering::Less;
            }
            if first_diff != Ordering::Equal {
                return first_diff;
            }
        }
        Ordering::Equal
    }
}

/// rpm versions after rpm's `rpmvercmp` and `rpmverCmp` (the comparison `rpm.vercmp` and
/// dependency resolution use).
pub mod rpm {
    use std::cmp::Ordering;

    /// Compares two `[epoch:]version[-release]` strings: epochs (missing is 0), then
    /// versions, then releases (one without a release is older). `None` for an empty
    /// string.
    pub fn compare_evr(a: &str, b: &str) -> Option<Ordering> {
        let (a, b) = (split_evr(a)?, split_evr(b)?);
        let mut order =
            vercmp(a.0.unwrap_or("0"), b.0.unwrap_or("0")).then_with(|| vercmp(a.1, b.1));
        if order == Ordering::Equal {
            // A release, even an empty one, is newer than none (as `rpm.vercmp` orders them).
            order = match (a.2, b.2) {
                (Some(ra), Some(rb)) => vercmp(ra, rb),
                (ra, rb) => ra.is_some().cmp(&rb.is_some()),
            };
        }
        Some(order)
    }

    /// rpm's `parseEVR`: digits then `:` are the epoch; the last `-` after them starts the
    /// release.
    fn split_evr(evr: &str) -> Option<(Option<&str>, &str, Option<&str>)> {
        if evr.is_empty() {
            return None;
        }
        let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = if evr.as_bytes().get(digits) == Some(&b':') {
            let epoch = &evr[..digits];
            (
                Some(if epoch.is_empty() { "0" } else { epoch }),
                &evr[digits + 1..],
            )
        } else {
            (None, evr)
        };
        // The release separator is searched from the end of the epoch's digits, colon
        // excluded, as rpm does.
        Some(match rest.rfind('-') {
            Some(at) => (epoch, &rest[..at], Some(&rest[at + 1..])),
            None => (epoch, rest, None),
        })
    }

    /// rpm's `rpmvercmp`: alphanumeric segments, digits beat letters, `~` sorts before
    /// anything and `^` after the end of the base version.
    pub fn vercmp(a: &str, b: &str) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
        let is_separator = |c: u8| c != 0 && !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
        let (mut one, mut two) = (0, 0);
        while one < a.len() || two < b.len() {
            while is_separator(at(a, one)) {
                one += 1;
            }
            while is_separator(at(b, two)) {
                two += 1;
            }
            let (c1, c2) = (at(a, one), at(b, two));
            if c1 == b'~' || c2 == b'~' {
                if c1 != b'~' {
                    return Ordering::Greater;
                }
                if c2 != b'~' {
                    return Ordering::Less;
                }
                one += 1;
                two += 1;
                continue;
            }
            if c1 == b'^' || c2 == b'^' {
                if c1 == 0 {
                    return Ordering::Less;
                }
                if c2 == 0 {
                    return Ordering::Greater;
                }
                if c1 != b'^' {
                    return Ordering::Greater;
                }
                if c2 != b'^' {
                    return Ordering::Less;
                }
                one += 1;
                two += 1;
                continue;
            }
            if c1 == 0 || c2 == 0 {
                break;
            }
            let numeric = c1.is_ascii_digit();
            let in_segment = |c: u8| {
                if numeric {
                    c.is_ascii_digit()
                } else {
                    c.is_ascii_alphabetic()
                }
            };
            let end1 = one + a[one..].iter().take_while(|c| in_segment(**c)).count();
            let end2 = two + b[two..].iter().take_while(|c| in_segment(**c)).count();
            if end2 == two {
                // Segments of different types: a number is newer than letters.
                return if numeric {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            let (mut s1, mut s2) = (&a[one..end1], &b[two..end2]);
            if numeric {
                while s1.first() == Some(&b'0') {
                    s1 = &s1[1..];
                }
                while s2.first() == Some(&b'0') {
                    s2 = &s2[1..];
                }
                match s1.len().cmp(&s2.len()) {
                    Ordering::Equal => {}
                    longer => return longer,
                }
            }
            match s1.cmp(s2) {
                Ordering::Equal => {}
                order => return order,
            }
            one = end1;
            two = end2;
        }
        match (one >= a.len(), two >= b.len()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        }
    }
}

/// Alpine versions after apk-tools' `version.c`: `digit{.digit}...{letter}{_suf{#}}...
/// {~hash}{-r#}`, the pre-release suffixes `_alpha`, `_beta`, `_pre`, `_rc` sorting before
/// the base version and `_cvs`, `_svn`, `_git`, `_hg`, `_p` after it.
pub mod apk {
    use std::cmp::Ordering;

    /// The kinds of token, in the order apk ranks them: where two versions are equal up to
    /// where one goes on, the one going on with a later kind is the older.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Kind {
        InitialDigit,
        Digit,
        Letter,
        Suffix,
        SuffixNumber,
        CommitHash,
        Revision,
        End,
    }

    /// Suffixes in their order; those before `""` (the base version) are pre-releases.
    const SUFFIXES: [&str; 10] = [
        "alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p",
    ];
    /// Where the base version sits in [`SUFFIXES`].
    const BASE: usize = 4;

    /// One token: its kind, its text, and for a suffix its rank in [`SUFFIXES`].
    #[derive(Debug, Clone, Copy)]
    struct Token<'a> {
        kind: Kind,
        text: &'a [u8],
        suffix: usize,
    }

    /// `rest` split after the run of bytes matching `keep`.
    fn split_run(rest: &[u8], keep: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
        rest.split_at(rest.iter().take_while(|c| keep(**c)).count())
    }

    /// The tokens of `version`, or `None` where apk finds it invalid.
    fn tokens(version: &str) -> Option<Vec<Token<'_>>> {
        let mut rest = version.as_bytes();
        let (digits, after) = split_run(rest, |c| c.is_ascii_digit());
        if digits.is_empty() {
            return None;
        }
        rest = after;
        let mut tokens = vec![Token {
            kind: Kind::InitialDigit,
            text: digits,
            suffix: 0,
        }];
        while let Some(&first) = rest.first() {
            let last = tokens.last().map_or(Kind::InitialDigit, |t| t.kind);
            let (kind, text, suffix, after) = match first {
                b'a'..=b'z' if last <= Kind::Digit => (Kind::Letter, &rest[..1], 0, &rest[1..]),
                b'.' | b'0'..=b'9' => {
                    let kind = match last {
                        Kind::InitialDigit | Kind::Digit => Kind::Digit,
                        Kind::Suffix if first != b'.' => Kind::SuffixNumber,
                        _ => return None,
                    };
                    let from = if first == b'.' { &rest[1..] } else { rest };
                    let (digits, after) = split_run(from, |c| c.is_ascii_digit());
                    (kind, digits, 0, after)
                }
                b'_' if last <= Kind::SuffixNumber => {
                    let (name, after) = split_run(&rest[1..], |c| c.is_ascii_lowercase());
                    let rank = SUFFIXES
                        .iter()
                        .position(|s| !s.is_empty() && s.as_bytes() == name)?;
                    (Kind::Suffix, name, rank, after)
                }
                b'~' if last < Kind::CommitHash => {
                    let (hash, after) = split_run(&rest[1..], |c| c.is_ascii_hexdigit());
                    (Kind::CommitHash, hash, 0, after)
                }
                b'-' if last < Kind::Revision && rest.get(1) == Some(&b'r') => {
                    let (digits, after) = split_run(&rest[2..], |c| c.is_ascii_digit());
                    (Kind::Revision, digits, 0, after)
                }
                _ => return None,
            };
            if text.is_empty() {
                return None;
            }
            tokens.push(Token { kind, text, suffix });
            rest = after;
        }
        Some(tokens)
    }

    /// Orders two runs of digits by value, without overflow.
    fn by_value(a: &[u8], b: &[u8]) -> Ordering {
        let strip = |s: &[u8]| {
            let zeros = s.iter().take_while(|c| **c == b'0').count();
            s[zeros..].to_vec()
        };
        let (a, b) = (strip(a), strip(b));
        a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
    }

    /// Orders two tokens of the same kind.
    fn token_order(a: &Token<'_>, b: &Token<'_>) -> Ordering {
        match a.kind {
            // A fractional part with a leading zero compares as text (`1.02` < `1.1`).
            Kind::Digit if a.text[0] == b'0' || b.text[0] == b'0' => a.text.cmp(b.text),
            Kind::InitialDigit | Kind::Digit | Kind::SuffixNumber | Kind::Revision => {
                by_value(a.text, b.text)
            }
            Kind::Suffix => a.suffix.cmp(&b.suffix),
            Kind::Letter | Kind::CommitHash | Kind::End => a.text.cmp(b.text),
        }
    }

    /// Whether apk accepts `version`.
    pub fn is_valid(version: &str) -> bool {
        tokens(version).is_some()
    }

    /// Orders two apk versions; `None` when either is invalid.
    pub fn compare(a: &str, b: &str) -> Option<Ordering> {
        let end = Token {
            kind: Kind::End,
            text: b"",
            suffix: 0,
        };
        let (ta, tb) = (tokens(a)?, tokens(b)?);
        let (mut ia, mut ib) = (ta.iter().chain([&end]), tb.iter().chain([&end]));
        loop {
            let (x, y) = (ia.next().unwrap_or(&end), ib.next().unwrap_or(&end));
            if x.kind != y.kind {
                // Equal so far: the one going on is newer unless it goes on with a
                // pre-release suffix, or with a kind of token ranked after the other's.
                if x.kind == Kind::Suffix && x.suffix < BASE {
                    return Some(Ordering::Less);
                }
                if y.kind == Kind::Suffix && y.suffix < BASE {
                    return Some(Ordering::Greater);
                }
                return Some(y.kind.cmp(&x.kind));
            }
            if x.kind == Kind::End {
                return Some(Ordering::Equal);
            }
            match token_order(x, y) {
                Ordering::Equal => {}
                order => return Some(order),
            }
        }
    }
}

#[cfg(test)]
mod tests;
