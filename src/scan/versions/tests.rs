//! Hand-written pairs for each order, and the real tools as oracles: `dpkg
//! --compare-versions` on pairs drawn from this machine's Debian Packages lists, rpm's own
//! `rpm.vercmp` on generated pairs with `~` and `^`, and Python's `packaging` on generated
//! PEP 440 versions. There is no apk tool on a Debian machine, so the apk vectors are
//! written by hand from apk-tools' documented rules (`digit{.digit}...{letter}{_suf{#}}...
//! {~hash}{-r#}`, pre-release suffixes before the base version).

use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::io::Write;
use std::process::Command;

use super::{Kind, compare, is_valid};

fn check(kind: Kind, pairs: &[(&str, &str, Ordering)]) {
    for (a, b, want) in pairs {
        assert_eq!(compare(kind, a, b), Some(*want), "{kind:?}: {a} vs {b}");
        assert_eq!(
            compare(kind, b, a),
            Some(want.reverse()),
            "{kind:?}: {b} vs {a}"
        );
    }
}

#[test]
fn ecosystems_name_their_order() {
    assert_eq!(Kind::of_ecosystem("Debian:12"), Some(Kind::Dpkg));
    assert_eq!(Kind::of_ecosystem("Ubuntu:22.04:LTS"), Some(Kind::Dpkg));
    assert_eq!(Kind::of_ecosystem("Alpine:v3.19"), Some(Kind::Apk));
    assert_eq!(Kind::of_ecosystem("Rocky Linux:9"), Some(Kind::Rpm));
    assert_eq!(Kind::of_ecosystem("Red Hat"), Some(Kind::Rpm));
    assert_eq!(
        Kind::of_ecosystem("SUSE:Linux Enterprise Server 15 SP5"),
        Some(Kind::Rpm)
    );
    assert_eq!(Kind::of_ecosystem("Wolfi"), Some(Kind::Apk));
    assert_eq!(Kind::of_ecosystem("crates.io"), Some(Kind::Semver));
    assert_eq!(Kind::of_ecosystem("PyPI"), Some(Kind::Pep440));
    assert_eq!(Kind::of_ecosystem("Maven"), None);
    assert_eq!(Kind::of_ecosystem(""), None);
}

#[test]
fn dpkg_orders_epochs_tildes_and_revisions() {
    check(
        Kind::Dpkg,
        &[
            ("1.0", "1.0", Equal),
            ("1.0", "1.00", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0+", "1.0.", Less),
            ("1:1.0", "2.0", Greater),
            ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1.2.3-1", "1.2.3-1.1", Less),
            ("10", "9", Greater),
            ("1.0-a", "1.0-1", Greater),
        ],
    );
}

#[test]
fn dpkg_refuses_what_dpkg_calls_an_error() {
    for bad in [
        "",
        " ",
        "1.0 1",
        "a:1.0",
        ":1.0",
        "1:",
        "1.0-",
        "-1",
        "99999999999:1",
        "-1:1.0",
    ] {
        assert!(!is_valid(Kind::Dpkg, bad), "{bad:?} should be refused");
    }
    // dpkg only warns about these, and `--compare-versions` compares them.
    assert!(is_valid(Kind::Dpkg, "a1.0"));
    assert!(is_valid(Kind::Dpkg, " 1.0 "));
}

#[test]
fn rpm_orders_tilde_caret_epoch_and_release() {
    check(
        Kind::Rpm,
        &[
            ("1.0", "1.0", Equal),
            ("1.0", "1.0.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1.0", "1.0-1", Less),
            ("1.0a", "1.0.1", Less),
            ("1.01", "1.1", Equal),
            ("2.0.1", "2.0_1", Equal),
            ("1.0", "1.0a", Less),
            ("a", "1", Less),
        ],
    );
    assert!(!is_valid(Kind::Rpm, ""));
}

#[test]
fn apk_orders_suffixes_letters_and_revisions() {
    check(
        Kind::Apk,
        &[
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-r0", Less),
            ("1.0-r1", "1.0-r2", Less),
            ("1.0-r9", "1.0-r10", Less),
            ("1.0_alpha1", "1.0_beta1", Less),
            ("1.0_beta2", "1.0_pre1", Less),
            ("1.0_pre1", "1.0_rc1", Less),
            ("1.0_rc1", "1.0", Less),
            ("1.0", "1.0_p1", Less),
            ("1.0_p1", "1.0.1", Less),
            ("1.0_cvs1", "1.0_p1", Less),
            ("1.0_git20240101", "1.0_hg1", Less),
            ("1.0a", "1.0b", Less),
            ("1.0", "1.0a", Less),
            ("1.0z", "1.0.1", Less),
            ("3.1.4-r5", "3.1.4-r6", Less),
            ("1.2.10", "1.2.9", Greater),
            ("1.02", "1.1", Less),
            ("1.10", "1.2", Greater),
            ("2.39.3-r0", "2.40.0-r0", Less),
            ("1.2.3_rc1-r0", "1.2.3-r0", Less),
            ("1.0_rc1_p1", "1.0_rc1", Greater),
            ("1.0_rc1_alpha1", "1.0_rc1", Less),
            ("1.0~aa-r1", "1.0~ab-r0", Less),
            ("1.0~aa", "1.0-r0", Greater),
        ],
    );
}

#[test]
fn apk_refuses_what_apk_calls_invalid() {
    for bad in [
        "",
        "a1",
        "1.0_foo",
        "1.0-1",
        "1..0",
        "1.0-r",
        "1.0_",
        "1.0-rc1",
        "1.0.",
        "1.0 ",
        "1.0ab",
        "1.0~",
        "1.0~xyz",
        "1.0-r1-r2",
        "1.0a1",
        "1.0-r1_p1",
    ] {
        assert!(!is_valid(Kind::Apk, bad), "{bad:?} should be refused");
    }
    for good in [
        "1",
        "1.0",
        "1.0a",
        "1.0_rc1",
        "1.0_rc",
        "1.0_p1-r3",
        "20240101",
        "1.0_rc1_p2",
        "1.0~ab12-r0",
    ] {
        assert!(is_valid(Kind::Apk, good), "{good:?} should be accepted");
    }
}

#[test]
fn semver_follows_semantic_versioning() {
    check(
        Kind::Semver,
        &[
            ("1.0.0", "v1.0.0", Equal),
            ("1.0.0-alpha", "1.0.0", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.10.0", "1.9.9", Greater),
        ],
    );
    assert!(!is_valid(Kind::Semver, "1.0"));
}

#[test]
fn pep440_orders_pre_post_dev_and_local_releases() {
    check(
        Kind::Pep440,
        &[
            ("1.0", "1.0.0", Equal),
            ("1.0.dev1", "1.0a1", Less),
            ("1.0a1", "1.0b1", Less),
            ("1.0b1", "1.0rc1", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0", "1.0.post1", Less),
            ("1.0.post1", "1.0.1", Less),
            ("1.0", "1.0+local.1", Less),
            ("1!0.1", "2.0", Greater),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0alpha1", "1.0a1", Equal),
        ],
    );
    assert!(!is_valid(Kind::Pep440, "not a version"));
    assert!(!is_valid(Kind::Pep440, ""));
}

#[test]
fn long_numbers_do_not_overflow() {
    let big = "1".repeat(200);
    assert_eq!(compare(Kind::Dpkg, &big, "2"), Some(Greater));
    assert_eq!(compare(Kind::Rpm, &big, "2"), Some(Greater));
    assert_eq!(compare(Kind::Apk, &big, "2"), Some(Greater));
}

/// A small deterministic generator, so a failing pair can be found again.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs `program` with `args`, failing with how to install `package` when it is missing.
fn run(program: &str, args: &[&str], package: &str) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} is needed as the oracle ({e}): install the Debian package {package:?} (scripts/install-test-deps.sh)")
    });
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the tool writes UTF-8")
}

/// Package name → every version the Debian Packages lists of this machine name for it
/// (binary and source versions), deduplicated.
fn debian_versions() -> Vec<(String, Vec<String>)> {
    let lists = run(
        "apt-get",
        &[
            "indextargets",
            "--format",
            "$(FILENAME)",
            "Created-By: Packages",
        ],
        "apt",
    );
    let mut by_package: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for list in lists.lines().filter(|l| !l.is_empty()) {
        let text = run("/usr/lib/apt/apt-helper", &["cat-file", list], "apt");
        let mut package = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("Package: ") {
                package = name.trim().to_owned();
            } else if let Some(version) = line.strip_prefix("Version: ") {
                by_package
                    .entry(package.clone())
                    .or_default()
                    .push(version.trim().to_owned());
            } else if let Some(source) = line.strip_prefix("Source: ")
                && let Some((name, version)) = source.split_once(" (")
            {
                by_package
                    .entry(name.trim().to_owned())
                    .or_default()
                    .push(version.trim_end_matches(')').to_owned());
            }
        }
    }
    by_package
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort();
            versions.dedup();
            (name, versions)
        })
        .collect()
}

/// Asks `dpkg --compare-versions` about every pair, ~1000 pairs per shell.
fn dpkg_orders(pairs: &[(String, String)]) -> Vec<Ordering> {
    let script = r#"while read -r a b; do
  if dpkg --compare-versions "$a" lt "$b"; then echo lt
  elif dpkg --compare-versions "$a" eq "$b"; then echo eq
  else echo gt; fi
done < "$1""#;
    let mut orders = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(1000) {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        for (a, b) in chunk {
            writeln!(file, "{a} {b}").expect("write a pair");
        }
        let path = file.path().to_str().expect("a UTF-8 temporary path");
        let out = run("sh", &["-c", script, "sh", path], "dpkg");
        orders.extend(out.lines().map(|l| match l {
            "lt" => Less,
            "eq" => Equal,
            _ => Greater,
        }));
    }
    assert_eq!(orders.len(), pairs.len(), "dpkg answered every pair");
    orders
}

#[test]
fn dpkg_agrees_with_dpkg_on_debian_packages_lists() {
    run("dpkg", &["--version"], "dpkg");
    let packages = debian_versions();
    assert!(
        packages.len() > 1000,
        "the Debian Packages lists of this machine are needed: run apt-get update"
    );
    let mut random = Lcg(12);
    let mut pairs: Vec<(String, String)> = Vec::new();
    // Versions of one package across suites (bookworm, -updates, -security).
    for (_, versions) in packages.iter().filter(|(_, v)| v.len() > 1) {
        pairs.push((versions[0].clone(), versions[versions.len() - 1].clone()));
        if pairs.len() >= 4000 {
            break;
        }
    }
    // Random pairs, and each version against a near neighbour of itself.
    let all: Vec<&String> = packages.iter().flat_map(|(_, v)| v).collect();
    let tweaks = ["~1", "+b1", "~deb12u1", ".1", "-1", "a", "0", "+really1.0"];
    while pairs.len() < 12_000 {
        let a = all[random.below(all.len())];
        let b = if random.below(2) == 0 {
            all[random.below(all.len())].clone()
        } else {
            format!("{a}{}", tweaks[random.below(tweaks.len())])
        };
        pairs.push((a.clone(), b));
    }
    let oracle = dpkg_orders(&pairs);
    let mut disagreements = Vec::new();
    for ((a, b), want) in pairs.iter().zip(oracle) {
        let ours = compare(Kind::Dpkg, a, b);
        if ours != Some(want) {
            disagreements.push(format!("{a} vs {b}: dpkg {want:?}, ours {ours:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree with dpkg, e.g. {:?}",
        disagreements.len(),
        pairs.len(),
        &disagreements[..disagreements.len().min(10)]
    );
}

/// A random rpm version: segments of digits, letters, `~`, `^`, `.`, `-`, sometimes an
/// epoch.
fn random_rpm_version(random: &mut Lcg) -> String {
    const PIECES: [&str; 14] = [
        "0", "1", "2", "10", "007", "a", "b", "rc", "git", "~", "^", ".", "-", "_",
    ];
    let mut version = String::new();
    if random.below(8) == 0 {
        version.push_str(&format!("{}:", random.below(3)));
    }
    for _ in 0..1 + random.below(6) {
        version.push_str(PIECES[random.below(PIECES.len())]);
    }
    version
}

#[test]
fn rpm_agrees_with_rpm_vercmp() {
    let mut random = Lcg(5);
    let mut pairs = Vec::new();
    while pairs.len() < 6000 {
        let a = random_rpm_version(&mut random);
        // Half the pairs share a prefix, where `~` and `^` decide.
        let b = if random.below(2) == 0 {
            format!(
                "{}{}",
                &a[..random.below(a.len() + 1)],
                random_rpm_version(&mut random)
            )
        } else {
            random_rpm_version(&mut random)
        };
        if !a.is_empty() && !b.is_empty() {
            pairs.push((a, b));
        }
    }
    assert!(
        pairs
            .iter()
            .filter(|(a, b)| a.contains('~') || b.contains('~'))
            .count()
            > 1000
    );
    assert!(
        pairs
            .iter()
            .filter(|(a, b)| a.contains('^') || b.contains('^'))
            .count()
            > 1000
    );
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    for (a, b) in &pairs {
        writeln!(file, "{a} {b}").expect("write a pair");
    }
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let lua = format!(
        "%{{lua: for line in io.lines(\"{path}\") do local a, b = line:match(\"^(%S+) (%S+)$\"); print(rpm.vercmp(a, b) .. \"\\n\") end}}"
    );
    let out = run("rpm", &["--eval", &lua], "rpm");
    let oracle: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(oracle.len(), pairs.len(), "rpm answered every pair");
    let mut disagreements = Vec::new();
    for ((a, b), want) in pairs.iter().zip(oracle) {
        let want = match want {
            "-1" => Less,
            "0" => Equal,
            _ => Greater,
        };
        let ours = compare(Kind::Rpm, a, b);
        if ours != Some(want) {
            disagreements.push(format!("{a} vs {b}: rpm {want:?}, ours {ours:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree with rpm, e.g. {:?}",
        disagreements.len(),
        pairs.len(),
        &disagreements[..disagreements.len().min(10)]
    );
}

/// A random PEP 440 version: epoch, release, pre-, post- and dev-release, local part, in the
/// spellings PEP 440 allows; sometimes something that is not a version.
fn random_pep440_version(random: &mut Lcg) -> String {
    const PRE: [&str; 8] = ["a", "b", "rc", "alpha", "beta", "c", "pre", "preview"];
    const SEP: [&str; 3] = ["", ".", "-"];
    let mut version = String::new();
    if random.below(10) == 0 {
        version.push_str(&format!("{}!", random.below(3)));
    }
    let parts = 1 + random.below(3);
    let release: Vec<String> = (0..parts).map(|_| random.below(12).to_string()).collect();
    version.push_str(&release.join("."));
    if random.below(3) == 0 {
        version.push_str(SEP[random.below(3)]);
        version.push_str(PRE[random.below(PRE.len())]);
        version.push_str(&random.below(3).to_string());
    }
    if random.below(4) == 0 {
        version.push_str([".post", "-post", "post", "-"][random.below(4)]);
        version.push_str(&random.below(3).to_string());
    }
    if random.below(5) == 0 {
        version.push_str(&format!(".dev{}", random.below(3)));
    }
    if random.below(8) == 0 {
        version.push_str(["+ubuntu.1", "+local", "+1.a", "+abc.2"][random.below(4)]);
    }
    if random.below(40) == 0 {
        version.push_str(["..", "+", "_x", "!"][random.below(4)]);
    }
    version
}

#[test]
fn pep440_agrees_with_python_packaging() {
    let mut random = Lcg(440);
    let mut pairs = Vec::new();
    while pairs.len() < 5000 {
        let a = random_pep440_version(&mut random);
        let b = if random.below(2) == 0 {
            format!(
                "{}{}",
                a.split(['+', '.']).next().unwrap_or(""),
                random_pep440_version(&mut random).get(1..).unwrap_or("")
            )
        } else {
            random_pep440_version(&mut random)
        };
        pairs.push((a, b));
    }
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    for (a, b) in &pairs {
        writeln!(file, "{a} {b}").expect("write a pair");
    }
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let script = r#"
import sys
try:
    from packaging.version import Version, InvalidVersion
except ImportError:
    sys.exit("python3-packaging is needed as the oracle: install the Debian package python3-packaging (scripts/install-test-deps.sh)")
for line in open(sys.argv[1]):
    a, b = line.split()
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        print("invalid")
        continue
    print(-1 if va < vb else (0 if va == vb else 1))
"#;
    let out = run(
        "/usr/bin/python3",
        &["-c", script, path],
        "python3-packaging",
    );
    let oracle: Vec<&str> = out.lines().collect();
    assert_eq!(oracle.len(), pairs.len(), "python answered every pair");
    let mut disagreements = Vec::new();
    let mut compared = 0;
    for ((a, b), want) in pairs.iter().zip(oracle) {
        let want = match want {
            "-1" => Some(Less),
            "0" => Some(Equal),
            "1" => Some(Greater),
            _ => None,
        };
        compared += usize::from(want.is_some());
        let ours = compare(Kind::Pep440, a, b);
        if ours != want {
            disagreements.push(format!("{a} vs {b}: packaging {want:?}, ours {ours:?}"));
        }
    }
    assert!(compared > 4000, "{compared} pairs were versions to both");
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree with packaging, e.g. {:?}",
        disagreements.len(),
        pairs.len(),
        &disagreements[..disagreements.len().min(10)]
    );
}
