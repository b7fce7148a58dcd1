//! Replication rules: what a rule says (as written and checked), how the API shows it, and
//! the remote it names with its credentials (read when a run starts).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    meta::replication::RuleRow,
    oci::RepoName,
    proxy::Remote,
    registry::Registry,
};

/// A rule as written (API body, CLI file), checked by [`ReplicationRuleInput::check`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicationRuleInput {
    /// `push` (this registry to the remote) or `pull` (the remote to this registry).
    pub direction: String,
    /// The other registry.
    pub remote: RemoteInput,
    /// Which repositories and tags of the source are copied.
    #[serde(default)]
    pub filter: FilterInput,
    /// A namespace the copies go under (`mirror` puts `library/app` at `mirror/library/app`).
    #[serde(default)]
    pub destination_namespace: Option<String>,
    /// Rewrites each source repository's name before the destination namespace is put in
    /// front.
    #[serde(default)]
    pub rename: Option<RenameInput>,
    /// `manual`, `on_push` (a push to a matching repository; push rules only) or `cron`.
    #[serde(default = "manual")]
    pub trigger: String,
    /// With `trigger = "cron"`: a cron expression, five fields (minute first) or six (second
    /// first), in UTC.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Move a destination tag that points at another digest (else the tag is skipped).
    #[serde(default = "yes")]
    pub override_tags: bool,
    /// Delete destination tags (matching the filter) that the source no longer has.
    #[serde(default)]
    pub replicate_deletes: bool,
    /// Blob bytes per second at most, if limited.
    #[serde(default)]
    pub bandwidth_limit: Option<u64>,
    /// Bytes per upload chunk (default 8 MiB).
    #[serde(default)]
    pub chunk_bytes: Option<u64>,
}

fn manual() -> String {
    "manual".into()
}

fn yes() -> bool {
    true
}

/// The remote registry of a rule; secrets are named, never written here.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteInput {
    /// Its base URL, `http://` or `https://`.
    pub url: String,
    /// The user name, if it wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password or token.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password or token.
    #[serde(default)]
    pub password_file: Option<String>,
    /// The environment variable holding a static access token, sent as `Authorization:
    /// Bearer` on every request (no user name, no token flow).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding such a token.
    #[serde(default)]
    pub token_file: Option<String>,
    /// Connect and read timeout of each request, in seconds (default 30).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A rewrite of repository names: the first match of `pattern` (a regex) in the source
/// repository's name is replaced by `replacement`, where `$1` or `${name}` stand for its
/// groups. `{"pattern": "^library/", "replacement": ""}` copies `library/alpine` to `alpine`;
/// `{"pattern": "^.*/", "replacement": ""}` keeps only the last segment. A name the pattern
/// does not match is kept. Two source repositories renamed to one destination: the second is
/// refused (a failed task), never merged.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameInput {
    /// The regex matched against the source repository's name.
    pub pattern: String,
    /// What replaces the match (nothing when left out).
    #[serde(default)]
    pub replacement: String,
}

/// Which source content a rule takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterInput {
    /// A glob over repository names (`*` within a path segment, `**` across); all by default.
    #[serde(default)]
    pub repositories: Option<String>,
    /// A regex a tag must match (anchor it with `^…$` for whole tags); all by default.
    #[serde(default)]
    pub tags: Option<String>,
    /// A semver range a tag must also satisfy (`>=1.2, <2`, `~1.4`, `^3`). A tag is read as
    /// a version after a leading `v`, a missing minor or patch taken as 0 (`1.25` is
    /// 1.25.0, `v3-alpine` is 3.0.0-alpine); tags that are no version are left out.
    #[serde(default)]
    pub semver: Option<String>,
    /// Platforms (`os/architecture`, or `os/architecture/variant`) an index is narrowed
    /// to: its copy lists only the images of these platforms (so it is a new index, with a
    /// digest of its own) and only those images are copied; an index with none of them is
    /// skipped. A platform without a variant takes every variant. An image tagged on its
    /// own is taken by the platform its config names. Every platform when left out.
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct ReplicationRule {
    pub(super) name: String,
    pub(super) input: ReplicationRuleInput,
    pub(super) push: bool,
    pub(super) repositories: globset::GlobMatcher,
    pub(super) tags: regex::Regex,
    /// `rename.pattern`, compiled.
    pub(super) rename: Option<regex::Regex>,
    pub(super) versions: Option<semver::VersionReq>,
    /// `filter.platforms`, each split into os, architecture and the variant if given.
    pub(super) platforms: Vec<(String, String, Option<String>)>,
    pub(super) schedule: Option<cron::Schedule>,
    pub(super) timeout_secs: u64,
    pub(super) chunk_bytes: usize,
}

/// The longest rule name.
const NAME_MAX: usize = 128;
/// Upload chunk size when the rule names none.
pub(super) const CHUNK_DEFAULT: u64 = 8 * 1024 * 1024;

impl ReplicationRuleInput {
    /// Checks every field; a 400 naming the first one at fault.
    pub fn check(self, name: &str) -> Result<ReplicationRule> {
        let bad = |field: &str, why: String| Error::BadRequest(format!("{field}: {why}"));
        if name.is_empty()
            || name.len() > NAME_MAX
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(bad(
                "name",
                format!("{name:?} must be 1 to {NAME_MAX} letters, digits, '-', '_' or '.'"),
            ));
        }
        let push = match self.direction.as_str() {
            "push" => true,
            "pull" => false,
            other => return Err(bad("direction", format!("{other:?} is not push or pull"))),
        };
        let url = url::Url::parse(&self.remote.url).map_err(|e| {
            bad(
                "remote.url",
                format!("{:?} is not a URL: {e}", self.remote.url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(
                "remote.url",
                format!(
                    "{:?} must be an http:// or https:// URL with a host",
                    self.remote.url
                ),
            ));
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "remote.url",
                "takes no query or credentials (use username and password_env or password_file)"
                    .into(),
            ));
        }
        if self.remote.password_env.is_some() && self.remote.password_file.is_some() {
            return Err(bad(
                "remote.password_env",
                "give password_env or password_file, not both".into(),
            ));
        }
        if self.remote.token_env.is_some() && self.remote.token_file.is_some() {
            return Err(bad(
                "remote.token_env",
                "give token_env or token_file, not both".into(),
            ));
        }
        let has_password =
            self.remote.password_env.is_some() || self.remote.password_file.is_some();
        if (self.remote.token_env.is_some() || self.remote.token_file.is_some())
            && (has_password || self.remote.username.is_some())
        {
            return Err(bad(
                "remote.token_env",
                "a bearer token (token_env or token_file) goes without a user name and password"
                    .into(),
            ));
        }
        if self.remote.username.is_some() != has_password {
            return Err(bad(
                "remote.username",
                "give a user name and a password (password_env or password_file), or neither"
                    .into(),
            ));
        }
        let timeout_secs = self.remote.timeout_secs.unwrap_or(30);
        if timeout_secs == 0 {
            return Err(bad("remote.timeout_secs", "must be at least 1".into()));
        }
        let glob = self.filter.repositories.as_deref().unwrap_or("**");
        let repositories = globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                bad(
                    "filter.repositories",
                    format!("{glob:?} is not a glob: {e}"),
                )
            })?
            .compile_matcher();
        let tags_pattern = self.filter.tags.as_deref().unwrap_or(".*");
        let tags = regex::RegexBuilder::new(tags_pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                bad(
                    "filter.tags",
                    format!("{tags_pattern:?} is not a regex: {e}"),
                )
            })?;
        let rename = match &self.rename {
            Some(r) => Some(
                regex::RegexBuilder::new(&r.pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        bad(
                            "rename.pattern",
                            format!("{:?} is not a regex: {e}", r.pattern),
                        )
                    })?,
            ),
            None => None,
        };
        let versions = match &self.filter.semver {
            Some(range) => Some(semver::VersionReq::parse(range).map_err(|e| {
                bad(
                    "filter.semver",
                    format!("{range:?} is not a semver range: {e}"),
                )
            })?),
            None => None,
        };
        let platforms = self
            .filter
            .platforms
            .iter()
            .map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                let part_ok = |s: &&str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                };
                match parts[..] {
                    [os, arch] | [os, arch, _] if parts.iter().all(part_ok) => Ok((
                        os.to_owned(),
                        arch.to_owned(),
                        parts.get(2).map(|v| (*v).to_owned()),
                    )),
                    _ => Err(bad(
                        "filter.platforms",
                        format!(
                            "{p:?} is not a platform (os/architecture or \
                             os/architecture/variant, lowercase: linux/arm64/v8)"
                        ),
                    )),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(ns) = &self.destination_namespace
            && ns.trim_matches('/').parse::<RepoName>().is_err()
        {
            return Err(bad(
                "destination_namespace",
                format!("{ns:?} is not a repository name prefix"),
            ));
        }
        let schedule = match (self.trigger.as_str(), &self.schedule) {
            ("cron", Some(expr)) => Some(parse_cron(expr).map_err(|e| bad("schedule", e))?),
            ("cron", None) => return Err(bad("schedule", "a cron rule needs one".into())),
            ("manual" | "on_push", Some(_)) => {
                return Err(bad("schedule", "only a cron rule takes one".into()));
            }
            ("on_push", None) if !push => {
                return Err(bad(
                    "trigger",
                    "on_push starts push rules only (a pull rule has no push here to follow)"
                        .into(),
                ));
            }
            ("manual" | "on_push", None) => None,
            (other, _) => {
                return Err(bad(
                    "trigger",
                    format!("{other:?} is not manual, on_push or cron"),
                ));
            }
        };
        if self.bandwidth_limit == Some(0) {
            return Err(bad("bandwidth_limit", "must be at least 1 byte/s".into()));
        }
        let chunk = self.chunk_bytes.unwrap_or(CHUNK_DEFAULT);
        if !(1024..=1024 * 1024 * 1024).contains(&chunk) {
            return Err(bad("chunk_bytes", "must be between 1 KiB and 1 GiB".into()));
        }
        Ok(ReplicationRule {
            name: name.to_owned(),
            push,
            repositories,
            tags,
            rename,
            versions,
            platforms,
            schedule,
            timeout_secs,
            chunk_bytes: chunk as usize,
            input: self,
        })
    }
}

/// A cron expression: five fields (minute first) get a `0` second prepended.
fn parse_cron(expr: &str) -> std::result::Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("{expr:?} is not a cron expression: {e}"))
}

impl ReplicationRule {
    /// The next time strictly after `now` (clock seconds) the schedule fires.
    pub(super) fn next_after(&self, now: i64) -> Option<i64> {
        let schedule = self.schedule.as_ref()?;
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(now, 0)?;
        schedule.after(&at).next().map(|t| t.timestamp())
    }

    /// Whether the filter takes tag `tag`: its regex, and its semver range if it has one.
    pub(super) fn takes_tag(&self, tag: &str) -> bool {
        self.tags.is_match(tag)
            && self
                .versions
                .as_ref()
                .is_none_or(|range| tag_version(tag).is_some_and(|v| range.matches(&v)))
    }

    /// Whether `filter.platforms` (every platform when empty) takes this one.
    pub(super) fn takes_platform(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.platforms.is_empty()
            || self.platforms.iter().any(|(o, a, v)| {
                o == os && a == arch && v.as_deref().is_none_or(|v| Some(v) == variant)
            })
    }

    /// The destination repository of source repository `name`: renamed, then under the
    /// destination namespace.
    pub(super) fn destination(&self, name: &str) -> std::result::Result<RepoName, String> {
        let renamed = match (&self.rename, &self.input.rename) {
            (Some(pattern), Some(input)) => pattern.replace(name, input.replacement.as_str()),
            _ => name.into(),
        };
        let full = match &self.input.destination_namespace {
            Some(ns) => format!("{}/{renamed}", ns.trim_matches('/')),
            None => renamed.into_owned(),
        };
        full.parse()
            .map_err(|e| format!("destination {full:?} is not a repository name: {e}"))
    }

    /// The remote's credentials, read now.
    pub(super) fn credentials(&self) -> std::result::Result<Option<(String, String)>, String> {
        let r = &self.input.remote;
        let Some(user) = &r.username else {
            return Ok(None);
        };
        let password = secret("password", &r.password_env, &r.password_file)?;
        Ok(password.map(|password| (user.clone(), password)))
    }

    /// The remote's static bearer token, read now.
    pub(super) fn bearer_token(&self) -> std::result::Result<Option<String>, String> {
        let r = &self.input.remote;
        secret("token", &r.token_env, &r.token_file)
    }
}

/// A rule as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplicationRuleView {
    /// Its name.
    pub name: String,
    /// Its definition (secrets only named).
    #[serde(flatten)]
    pub rule: ReplicationRuleInput,
    /// When a cron rule next runs (unix seconds).
    pub next_run_at: Option<i64>,
    /// Who saved it last.
    pub updated_by: String,
    /// When it was created and last saved (unix seconds).
    pub created_at: i64,
    /// When it was last saved.
    pub updated_at: i64,
}

pub(super) fn view(row: RuleRow) -> Result<ReplicationRuleView> {
    let rule: ReplicationRuleInput = serde_json::from_str(&row.definition)
        .map_err(|e| Error::Internal(anyhow::anyhow!("rule {}: {e}", row.name)))?;
    Ok(ReplicationRuleView {
        name: row.name,
        rule,
        next_run_at: row.next_run_at,
        updated_by: row.created_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(super) fn checked(row: &RuleRow) -> Result<ReplicationRule> {
    let input: ReplicationRuleInput = serde_json::from_str(&row.definition)
        .map_err(|e| Error::Internal(anyhow::anyhow!("rule {}: {e}", row.name)))?;
    input.check(&row.name)
}

/// Secret `what` of a remote, from the environment variable `var` or the file `file`
/// (its trailing newline dropped), read now; `None` when neither is given.
fn secret(
    what: &str,
    var: &Option<String>,
    file: &Option<String>,
) -> std::result::Result<Option<String>, String> {
    match (var, file) {
        (Some(var), _) => std::env::var(var)
            .map(Some)
            .map_err(|_| format!("remote.{what}_env: ${var} is not set")),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| format!("remote.{what}_file: reading {path}: {e}")),
        (None, None) => Ok(None),
    }
}

pub(super) fn remote_of(
    rule: &ReplicationRule,
    registry: &Registry,
) -> std::result::Result<Remote, String> {
    let credentials = rule.credentials()?;
    let remote = Remote::new(
        &rule.input.remote.url,
        credentials,
        rule.timeout_secs,
        registry.clock.clone(),
    )
    .map_err(|e| format!("the HTTP client failed to start: {e}"))?;
    Ok(match rule.bearer_token()? {
        Some(token) => remote.with_bearer(token),
        None => remote,
    })
}

/// Tag `tag` read as a version: a leading `v` dropped, a missing minor or patch taken as
/// 0 (`1.25` → 1.25.0, `v3-alpine` → 3.0.0-alpine); `None` when it is no version.
pub(super) fn tag_version(tag: &str) -> Option<semver::Version> {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let (core, rest) = tag.split_at(tag.find(['-', '+']).unwrap_or(tag.len()));
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => tag.to_owned(),
    };
    semver::Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> ReplicationRuleInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn tags_read_as_versions() {
        let version = |tag| tag_version(tag).map(|v| v.to_string());
        assert_eq!(version("v1.3").as_deref(), Some("1.3.0"));
        assert_eq!(version("1.25").as_deref(), Some("1.25.0"));
        assert_eq!(version("3").as_deref(), Some("3.0.0"));
        assert_eq!(version("v3-alpine").as_deref(), Some("3.0.0-alpine"));
        assert_eq!(version("1.4.0-rc1").as_deref(), Some("1.4.0-rc1"));
        for not_one in ["latest", "1.2.3.4", "v", "1..2", "sha256-abc"] {
            assert_eq!(version(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn cron_with_five_or_six_fields() {
        let rule = input(serde_json::json!({
            "direction": "push", "remote": {"url": "http://127.0.0.1:1"},
            "trigger": "cron", "schedule": "*/15 * * * *"
        }))
        .check("r")
        .unwrap();
        // 2026-01-01T00:00:00Z, then every quarter hour.
        assert_eq!(rule.next_after(1_767_225_600), Some(1_767_225_600 + 900));
        assert!(parse_cron("0 0 * * * *").is_ok());
        assert!(parse_cron("every minute").is_err());
    }

    #[test]
    fn globs_keep_to_segments_unless_doubled() {
        let rule = input(serde_json::json!({
            "direction": "pull", "remote": {"url": "https://example.invalid"},
            "filter": {"repositories": "library/*"}
        }))
        .check("r")
        .unwrap();
        assert!(rule.repositories.is_match("library/app"));
        assert!(!rule.repositories.is_match("library/app/sub"));
    }
}
