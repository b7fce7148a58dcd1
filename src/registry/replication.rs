//! Replication: rules that copy images between this registry and a remote one, pushed
//! (this registry is the source) or pulled (the remote is). A rule names the remote and
//! its credentials (from the environment or a file, read when a run starts), which
//! repositories (a glob) and tags (a regex) it takes, the destination namespace, its
//! trigger (manual, on push, cron), whether it overrides tags the destination has at
//! another digest, whether it replicates deletes, and a bandwidth limit.
//!
//! Each run is an execution recorded in the index and run as a job of the queue
//! ([`super::jobs`]), so any replica runs it and one that dies mid-run is taken over when
//! its lease expires; the new start re-does the run, and what the destination already has
//! (HEAD) is not sent again.
//!
//! The copy of one tag: the source manifest is read (its digest checked); when the
//! destination's tag already has that digest it is skipped; an index's children are copied
//! first, by digest; each blob is asked for on the destination (HEAD), mounted from another
//! destination repository that has it, else uploaded in chunks, and a failed chunk is
//! retried with backoff from the offset the destination acknowledged. The upload session
//! in flight is kept in the index, so a start that takes a crashed run over sends only
//! what the destination does not acknowledge. The manifest goes
//! last, byte for byte. Referrers of what was copied (the OCI referrers API, its tag
//! fallback `sha256-<hex>`, and cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags) follow
//! their subject; a destination without the referrers API gets the fallback tag index.
//!
//! The remote is reached through [`crate::proxy::Remote`], the one client of other
//! registries; this module decides what is copied.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use serde::{Deserialize, Serialize};

use super::{Override, Registry, manifests::Origin};
use crate::{
    error::{Error, Result},
    meta::replication::{ExecutionRow, ReplicationCounters, RuleRow, TaskRow},
    oci::{Digest, Manifest, MediaType, Reference, RepoName, Tag, manifest::Platform},
    proxy::{Mount, Remote, UpstreamError},
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
    name: String,
    input: ReplicationRuleInput,
    push: bool,
    repositories: globset::GlobMatcher,
    tags: regex::Regex,
    /// `rename.pattern`, compiled.
    rename: Option<regex::Regex>,
    versions: Option<semver::VersionReq>,
    /// `filter.platforms`, each split into os, architecture and the variant if given.
    platforms: Vec<(String, String, Option<String>)>,
    schedule: Option<cron::Schedule>,
    timeout_secs: u64,
    chunk_bytes: usize,
}

/// The longest rule name.
const NAME_MAX: usize = 128;
/// Upload chunk size when the rule names none.
const CHUNK_DEFAULT: u64 = 8 * 1024 * 1024;
/// Attempts of one remote step before the task fails.
const ATTEMPTS: u32 = 5;
/// The first pause between attempts; doubled each time.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);

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
    fn next_after(&self, now: i64) -> Option<i64> {
        let schedule = self.schedule.as_ref()?;
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(now, 0)?;
        schedule.after(&at).next().map(|t| t.timestamp())
    }

    /// Whether the filter takes tag `tag`: its regex, and its semver range if it has one.
    fn takes_tag(&self, tag: &str) -> bool {
        self.tags.is_match(tag)
            && self
                .versions
                .as_ref()
                .is_none_or(|range| tag_version(tag).is_some_and(|v| range.matches(&v)))
    }

    /// Whether `filter.platforms` (every platform when empty) takes this one.
    fn takes_platform(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.platforms.is_empty()
            || self.platforms.iter().any(|(o, a, v)| {
                o == os && a == arch && v.as_deref().is_none_or(|v| Some(v) == variant)
            })
    }

    /// Why the rule leaves out image `read` of `repo` (not an index): its config names a
    /// platform `filter.platforms` does not list. `None` when it is taken (no filter, or no
    /// platform named: an artifact).
    async fn platform_refused(
        &self,
        source: &Side<'_>,
        repo: &str,
        read: &Read,
    ) -> Step<Option<String>> {
        if self.platforms.is_empty() {
            return Ok(None);
        }
        let Ok(parsed) = Manifest::parse(&read.payload, Some(&read.media_type)) else {
            return Ok(None);
        };
        let (Some(config), Some(media_type)) = (&parsed.config, &parsed.config_media_type) else {
            return Ok(None);
        };
        if !Platform::is_image_config(media_type) || config.size > CONFIG_MAX {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let mut stream = retry(|| source.blob(repo, &config.digest, 0)).await?;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(UpstreamError::Unavailable)?);
            if bytes.len() as u64 > CONFIG_MAX {
                return Ok(None);
            }
        }
        let platform = Platform::from_config(media_type, &bytes);
        let (Some(os), Some(arch)) = (&platform.os, &platform.architecture) else {
            return Ok(None);
        };
        if self.takes_platform(os, arch, platform.variant.as_deref()) {
            return Ok(None);
        }
        let variant = platform
            .variant
            .map(|v| format!("/{v}"))
            .unwrap_or_default();
        Ok(Some(format!(
            "the image's platform {os}/{arch}{variant} is not in filter.platforms"
        )))
    }

    /// What the rule copies of manifest `read` (a source tag's) from `repo`: the manifest
    /// [narrowed](Self::narrowed) to `filter.platforms`, or why it is skipped.
    async fn as_copied(
        &self,
        source: &Side<'_>,
        repo: &str,
        read: Read,
    ) -> Step<std::result::Result<Read, String>> {
        let Some(read) = self.narrowed(read)? else {
            return Ok(Err("the index lists none of filter.platforms".into()));
        };
        Ok(match self.platform_refused(source, repo, &read).await? {
            Some(why) => Err(why),
            None => Ok(read),
        })
    }

    /// The manifest `read` as the rule copies it: an index narrowed to `filter.platforms`
    /// (unchanged when it lists only those, `None` when it lists none of them); any other
    /// manifest as it is.
    fn narrowed(&self, read: Read) -> Step<Option<Read>> {
        let is_index = MediaType::parse(&read.media_type).is_some_and(MediaType::is_index);
        if self.platforms.is_empty() || !is_index {
            return Ok(Some(read));
        }
        let bad = |why: String| UpstreamError::BadAnswer(format!("index {}: {why}", read.digest));
        let mut index: serde_json::Value =
            serde_json::from_slice(&read.payload).map_err(|e| bad(e.to_string()))?;
        let Some(entries) = index
            .get_mut("manifests")
            .and_then(serde_json::Value::as_array_mut)
        else {
            return Err(bad("no manifests array".into()));
        };
        let listed = entries.len();
        entries.retain(|entry| {
            let field = |name: &str| entry["platform"][name].as_str();
            let (Some(os), Some(arch)) = (field("os"), field("architecture")) else {
                return false;
            };
            self.takes_platform(os, arch, field("variant"))
        });
        match entries.len() {
            0 => Ok(None),
            kept if kept == listed => Ok(Some(read)),
            _ => {
                let payload =
                    Bytes::from(serde_json::to_vec(&index).map_err(|e| bad(e.to_string()))?);
                Ok(Some(Read {
                    digest: Digest::sha256_of(&payload),
                    media_type: read.media_type,
                    payload,
                }))
            }
        }
    }

    /// The destination repository of source repository `name`: renamed, then under the
    /// destination namespace.
    fn destination(&self, name: &str) -> std::result::Result<RepoName, String> {
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
    fn credentials(&self) -> std::result::Result<Option<(String, String)>, String> {
        let r = &self.input.remote;
        let Some(user) = &r.username else {
            return Ok(None);
        };
        let password = secret("password", &r.password_env, &r.password_file)?;
        Ok(password.map(|password| (user.clone(), password)))
    }

    /// The remote's static bearer token, read now.
    fn bearer_token(&self) -> std::result::Result<Option<String>, String> {
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

/// An execution as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView {
    /// Its id.
    pub id: i64,
    /// The rule it ran.
    pub rule: String,
    /// `manual`, `on_push` or `cron`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: String,
    /// When it was asked for, started (last) and ended (unix seconds).
    pub created_at: i64,
    /// When it (last) started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Starts (more than one when a replica took over an interrupted run).
    pub attempts: i64,
    /// What failed the whole run.
    pub error: Option<String>,
    /// What it did.
    #[serde(flatten)]
    pub counters: ReplicationCounters,
    /// Its tasks (on the single execution only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskRow>>,
    /// Its log lines (on the single execution only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<String>>,
}

impl ExecutionView {
    fn of(row: ExecutionRow, tasks: Option<Vec<TaskRow>>) -> ExecutionView {
        let log = tasks
            .is_some()
            .then(|| row.log.lines().map(str::to_owned).collect());
        ExecutionView {
            id: row.id,
            rule: row.rule,
            trigger: row.trigger_kind,
            state: row.state,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            attempts: row.attempts,
            error: row.error,
            counters: row.counters,
            tasks,
            log,
        }
    }
}

/// What differs between a rule's source and destination, per source tag.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DriftEntry {
    /// `repository:tag` on the source.
    pub source: String,
    /// `repository:tag` on the destination.
    pub destination: String,
    /// The source's digest.
    pub source_digest: String,
    /// The destination's digest, if it has the tag.
    pub destination_digest: Option<String>,
    /// `missing`, `differs` or `extra` (on the destination only).
    pub state: String,
}

fn view(row: RuleRow) -> Result<ReplicationRuleView> {
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

fn checked(row: &RuleRow) -> Result<ReplicationRule> {
    let input: ReplicationRuleInput = serde_json::from_str(&row.definition)
        .map_err(|e| Error::Internal(anyhow::anyhow!("rule {}: {e}", row.name)))?;
    input.check(&row.name)
}

impl Registry {
    /// Creates or replaces rule `name` after checking it; whether it was created, and the rule.
    pub async fn put_replication_rule(
        &self,
        name: &str,
        input: ReplicationRuleInput,
        who: &str,
    ) -> Result<(bool, ReplicationRuleView)> {
        let rule = input.check(name)?;
        let definition =
            serde_json::to_string(&rule.input).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        let next = rule.next_after(self.clock.now());
        let created = self
            .meta
            .put_replication_rule(name, &definition, &rule.input.trigger, next, who)
            .await?;
        let row = self
            .meta
            .replication_rule(name)
            .await?
            .ok_or(Error::NotFound)?;
        Ok((created, view(row)?))
    }

    /// Rule `name`.
    pub async fn replication_rule(&self, name: &str) -> Result<Option<ReplicationRuleView>> {
        self.meta
            .replication_rule(name)
            .await?
            .map(view)
            .transpose()
    }

    /// Every rule, by name.
    pub async fn replication_rules(&self) -> Result<Vec<ReplicationRuleView>> {
        self.meta
            .replication_rules()
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    /// Deletes rule `name`; whether it existed.
    pub async fn delete_replication_rule(&self, name: &str) -> Result<bool> {
        self.meta.delete_replication_rule(name).await
    }

    /// Queues a run of rule `name` (`trigger` says why); the execution's id.
    pub async fn run_replication_rule(&self, name: &str, trigger: &str) -> Result<i64> {
        if self.meta.replication_rule(name).await?.is_none() {
            return Err(Error::NotFound);
        }
        self.meta.queue_replication(name, trigger).await
    }

    /// Executions (of `rule`), newest first, below id `before`.
    pub async fn replication_executions(
        &self,
        rule: Option<&str>,
        before: i64,
        n: u32,
    ) -> Result<Vec<ExecutionView>> {
        Ok(self
            .meta
            .replication_executions(rule, before, n)
            .await?
            .into_iter()
            .map(|r| ExecutionView::of(r, None))
            .collect())
    }

    /// Execution `id` with its tasks and log.
    pub async fn replication_execution(&self, id: i64) -> Result<Option<ExecutionView>> {
        let Some(row) = self.meta.replication_execution(id).await? else {
            return Ok(None);
        };
        let tasks = self.meta.replication_tasks(id).await?;
        Ok(Some(ExecutionView::of(row, Some(tasks))))
    }

    /// Queues the runs of cron rules that are due (each once, whichever replica gets
    /// there first); the executions queued.
    pub async fn schedule_replications(&self) -> Result<Vec<i64>> {
        let now = self.clock.now();
        let mut queued = Vec::new();
        for row in self.meta.due_cron_replication_rules(now).await? {
            let (Some(due), Ok(rule)) = (row.next_run_at, checked(&row)) else {
                continue;
            };
            let Some(next) = rule.next_after(now) else {
                continue;
            };
            if let Some(id) = self
                .meta
                .queue_cron_replication(&row.name, due, next)
                .await?
            {
                queued.push(id);
            }
        }
        Ok(queued)
    }

    /// After a push of `tag` to `repo`: queues the on-push rules that take it. A failure is
    /// logged, never the push's.
    pub(super) async fn replicate_after_push(&self, repo: &RepoName, tag: &Tag) {
        let rules = match self.meta.on_push_replication_rules().await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the on-push replication rules");
                return;
            }
        };
        for row in rules {
            let Ok(rule) = checked(&row) else { continue };
            if rule.repositories.is_match(repo.as_str()) && rule.tags.is_match(tag.as_str()) {
                if let Err(e) = self.meta.queue_replication(&row.name, "on_push").await {
                    tracing::warn!(rule = row.name, error = %e, "could not queue a replication");
                }
            }
        }
    }

    /// Runs execution `id` (a job of the queue). The outcome is recorded on the execution;
    /// only a failure to record it fails the job.
    pub(super) async fn run_replication(&self, id: i64) -> Result<()> {
        let Some(execution) = self.meta.start_replication(id).await? else {
            return Ok(());
        };
        let mut run = Run {
            registry: self,
            execution: id,
            counters: ReplicationCounters::default(),
            log: execution.log.lines().map(str::to_owned).collect(),
            placed: HashMap::new(),
            done: HashSet::new(),
            throttle: None,
            chunk: CHUNK_DEFAULT as usize,
        };
        if execution.attempts > 1 {
            run.note(format!(
                "resumed (start {}): what the destination has is not sent again",
                execution.attempts
            ));
        }
        let outcome = match self.meta.replication_rule(&execution.rule).await? {
            None => Err(format!("rule {} no longer exists", execution.rule)),
            Some(row) => match checked(&row) {
                Err(e) => Err(format!("rule {}: {e}", row.name)),
                Ok(rule) => run.rule(&rule).await,
            },
        };
        let (state, error) = match &outcome {
            Ok(()) if run.counters.failed == 0 => ("succeeded", None),
            Ok(()) => (
                "failed",
                Some(format!("{} task(s) failed", run.counters.failed)),
            ),
            Err(e) => ("failed", Some(e.clone())),
        };
        if let Some(e) = &error {
            run.note(format!("failed: {e}"));
        } else {
            run.note("finished".into());
        }
        self.meta
            .finish_replication(
                id,
                state,
                error.as_deref(),
                &run.counters,
                &run.log.join("\n"),
            )
            .await?;
        let detail = serde_json::json!({
            "rule": execution.rule,
            "execution": id,
            "trigger": execution.trigger_kind,
            "state": state,
            "error": error,
            "counters": run.counters,
        });
        tracing::info!(
            rule = execution.rule,
            execution = id,
            state,
            "replication done"
        );
        self.replication_completed(None, None, &detail).await;
        Ok(())
    }

    /// What differs between rule `name`'s source and destination: per source tag the
    /// digests on both sides, and destination tags the source lacks.
    pub async fn replication_drift(&self, name: &str) -> Result<Vec<DriftEntry>> {
        let row = self
            .meta
            .replication_rule(name)
            .await?
            .ok_or(Error::NotFound)?;
        let rule = checked(&row)?;
        let remote = remote_of(&rule, self).map_err(Error::BadRequest)?;
        let upstream = |e: UpstreamError| Error::Upstream {
            status: axum::http::StatusCode::BAD_GATEWAY,
            message: e.to_string(),
        };
        let (source, destination) = sides(&rule, self, &remote);
        let mut drift = Vec::new();
        for repo in source.repositories(&rule).await.map_err(upstream)? {
            let Ok(to) = rule.destination(&repo) else {
                continue;
            };
            let source_tags = source.tags(&repo, &rule).await.map_err(upstream)?;
            for tag in &source_tags {
                // What a run would put there (with platforms, a manifest read and narrowed).
                let digest = if rule.platforms.is_empty() {
                    source.tag_digest(&repo, tag).await.map_err(upstream)?
                } else {
                    match source.manifest(&repo, tag).await.map_err(upstream)? {
                        Some(read) => rule
                            .as_copied(&source, &repo, read)
                            .await
                            .map_err(upstream)?
                            .ok()
                            .map(|read| read.digest),
                        None => None,
                    }
                };
                let Some(digest) = digest else {
                    continue;
                };
                let there = destination
                    .tag_digest(to.as_str(), tag)
                    .await
                    .map_err(upstream)?;
                let state = match &there {
                    None => "missing",
                    Some(d) if *d == digest => continue,
                    Some(_) => "differs",
                };
                drift.push(DriftEntry {
                    source: format!("{repo}:{tag}"),
                    destination: format!("{to}:{tag}"),
                    source_digest: digest.to_string(),
                    destination_digest: there.map(|d| d.to_string()),
                    state: state.into(),
                });
            }
            for tag in destination
                .tags(to.as_str(), &rule)
                .await
                .map_err(upstream)?
            {
                if !source_tags.contains(&tag) {
                    let there = destination
                        .tag_digest(to.as_str(), &tag)
                        .await
                        .map_err(upstream)?;
                    drift.push(DriftEntry {
                        source: format!("{repo}:{tag}"),
                        destination: format!("{to}:{tag}"),
                        source_digest: String::new(),
                        destination_digest: there.map(|d| d.to_string()),
                        state: "extra".into(),
                    });
                }
            }
        }
        Ok(drift)
    }
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

fn remote_of(rule: &ReplicationRule, registry: &Registry) -> std::result::Result<Remote, String> {
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

fn sides<'a>(
    rule: &ReplicationRule,
    registry: &'a Registry,
    remote: &'a Remote,
) -> (Side<'a>, Side<'a>) {
    if rule.push {
        (Side::Local(registry), Side::Remote(remote))
    } else {
        (Side::Remote(remote), Side::Local(registry))
    }
}

/// One end of a copy: this registry (through the index and store directly) or the remote.
#[derive(Clone, Copy)]
enum Side<'a> {
    Local(&'a Registry),
    Remote(&'a Remote),
}

/// A manifest read from the source.
struct Read {
    digest: Digest,
    media_type: String,
    payload: Bytes,
}

type Step<T> = std::result::Result<T, UpstreamError>;

/// A failure of this registry's own, told as a remote's would be (not transient).
fn local(e: Error) -> UpstreamError {
    UpstreamError::BadAnswer(format!("this registry: {e}"))
}

/// Tag `tag` read as a version: a leading `v` dropped, a missing minor or patch taken as
/// 0 (`1.25` → 1.25.0, `v3-alpine` → 3.0.0-alpine); `None` when it is no version.
fn tag_version(tag: &str) -> Option<semver::Version> {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let (core, rest) = tag.split_at(tag.find(['-', '+']).unwrap_or(tag.len()));
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => tag.to_owned(),
    };
    semver::Version::parse(&padded).ok()
}

/// The referrers tag fallback (OCI distribution 1.1): `sha256-<hex>` of a subject.
fn fallback_tag(digest: &Digest) -> String {
    digest.as_str().replace(':', "-")
}

fn is_fallback_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl<'a> Side<'a> {
    fn name(&self) -> String {
        match self {
            Side::Local(_) => "local".into(),
            Side::Remote(r) => r.url().to_owned(),
        }
    }

    async fn repositories(&self, rule: &ReplicationRule) -> Step<Vec<String>> {
        let names = match self {
            Side::Local(reg) => {
                let mut all = Vec::new();
                let mut last = String::new();
                loop {
                    let page = reg.meta.catalog(&last, 1000).await.map_err(local)?;
                    let Some(end) = page.last() else { break };
                    last = end.to_string();
                    all.extend(page.iter().map(ToString::to_string));
                }
                all
            }
            Side::Remote(r) => {
                let glob = rule.input.filter.repositories.as_deref().unwrap_or("**");
                // A literal name needs no catalog (Docker Hub has none).
                if !glob.contains(['*', '?', '[', '{']) {
                    vec![glob.to_owned()]
                } else {
                    r.catalog().await?
                }
            }
        };
        Ok(names
            .into_iter()
            .filter(|n| rule.repositories.is_match(n))
            .collect())
    }

    /// Tags of `repo` the rule takes, without referrer fallback tags.
    async fn tags(&self, repo: &str, rule: &ReplicationRule) -> Step<Vec<String>> {
        let tags = match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(Vec::new());
                };
                let Some(id) = reg.meta.repository_id(&name).await.map_err(local)? else {
                    return Ok(Vec::new());
                };
                let mut all = Vec::new();
                let mut last = String::new();
                loop {
                    let page = reg.meta.list_tags(id, &last, 1000).await.map_err(local)?;
                    let Some(end) = page.last() else { break };
                    last = end.to_string();
                    all.extend(page.iter().map(ToString::to_string));
                }
                all
            }
            Side::Remote(r) => r.tags(repo).await?,
        };
        Ok(tags
            .into_iter()
            .filter(|t| !is_fallback_tag(t) && rule.takes_tag(t))
            .collect())
    }

    async fn tag_digest(&self, repo: &str, tag: &str) -> Step<Option<Digest>> {
        match self {
            Side::Local(reg) => {
                let (Ok(name), Ok(tag)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) else {
                    return Ok(None);
                };
                Ok(reg
                    .meta
                    .manifest_by_tag(&name, &tag, false)
                    .await
                    .map_err(local)?
                    .map(|m| m.digest))
            }
            Side::Remote(r) => r.manifest_digest(repo, tag, MANIFEST_MAX).await,
        }
    }

    async fn has_manifest(&self, repo: &str, digest: &Digest) -> Step<bool> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(false);
                };
                Ok(reg
                    .meta
                    .manifest_by_digest(&name, digest, false)
                    .await
                    .map_err(local)?
                    .is_some())
            }
            Side::Remote(r) => Ok(r
                .manifest_digest(repo, digest.as_str(), MANIFEST_MAX)
                .await?
                .is_some()),
        }
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Step<Option<Read>> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(None);
                };
                let found = match reference.parse::<Digest>() {
                    Ok(d) => reg.meta.manifest_by_digest(&name, &d, true).await,
                    Err(_) => match reference.parse::<Tag>() {
                        Ok(t) => reg.meta.manifest_by_tag(&name, &t, true).await,
                        Err(_) => return Ok(None),
                    },
                }
                .map_err(local)?;
                Ok(found.map(|m| Read {
                    digest: m.digest,
                    media_type: m.media_type,
                    payload: Bytes::from(m.payload),
                }))
            }
            Side::Remote(r) => match r.manifest(repo, reference, MANIFEST_MAX).await {
                Ok(m) => {
                    let parsed =
                        Manifest::parse(&m.payload, m.media_type.as_deref()).map_err(|e| {
                            UpstreamError::BadAnswer(format!(
                                "remote {} sent a manifest that does not parse: {e}",
                                r.url()
                            ))
                        })?;
                    Ok(Some(Read {
                        digest: m.digest,
                        media_type: parsed.media_type.as_str().to_owned(),
                        payload: m.payload,
                    }))
                }
                Err(UpstreamError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Digests of the manifests referring to `digest` in `repo`: the referrers API, else
    /// its tag fallback, plus cosign's tags (by tag name, for the copy to keep them).
    async fn referrers(&self, repo: &str, digest: &Digest) -> Step<Vec<Digest>> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(Vec::new());
                };
                let found = reg
                    .meta
                    .referrers(&name, digest, None, "", 1000)
                    .await
                    .map_err(local)?;
                Ok(found.into_iter().map(|r| r.digest).collect())
            }
            Side::Remote(r) => {
                let descriptors = match r.referrers(repo, digest).await? {
                    Some(d) => d,
                    None => match r.manifest(repo, &fallback_tag(digest), MANIFEST_MAX).await {
                        Ok(index) => serde_json::from_slice::<serde_json::Value>(&index.payload)
                            .ok()
                            .and_then(|v| v["manifests"].as_array().cloned())
                            .unwrap_or_default(),
                        Err(UpstreamError::NotFound) => Vec::new(),
                        Err(e) => return Err(e),
                    },
                };
                Ok(descriptors
                    .iter()
                    .filter_map(|d| d["digest"].as_str()?.parse().ok())
                    .collect())
            }
        }
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Step<Option<u64>> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(None);
                };
                reg.meta
                    .linked_blob_size(&name, digest)
                    .await
                    .map_err(local)
            }
            Side::Remote(r) => r.blob_size(repo, digest).await,
        }
    }

    /// Blob `digest` of `repo` from byte `offset` on.
    async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Step<BoxStream<'static, std::result::Result<Bytes, String>>> {
        match self {
            Side::Local(reg) => {
                let name: RepoName = repo
                    .parse()
                    .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
                let size = reg
                    .meta
                    .linked_blob_size(&name, digest)
                    .await
                    .map_err(local)?
                    .ok_or_else(|| local(Error::BlobUnknown))?;
                if size == offset {
                    return Ok(futures::stream::empty().boxed());
                }
                let stream = reg
                    .blobs
                    .read(digest, Some(offset..size))
                    .await
                    .map_err(local)?;
                Ok(stream.map_err(|e| e.to_string()).boxed())
            }
            Side::Remote(r) => Ok(r.blob(repo, digest, offset).await?.body),
        }
    }

    async fn put_manifest(&self, repo: &str, reference: &str, read: &Read) -> Step<bool> {
        match self {
            Side::Local(reg) => {
                let name: RepoName = repo
                    .parse()
                    .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
                let reference = match reference.parse::<Digest>() {
                    Ok(d) => Reference::Digest(d),
                    Err(_) => Reference::Tag(
                        reference
                            .parse::<Tag>()
                            .map_err(|e| local(Error::TagInvalid(format!("{e}"))))?,
                    ),
                };
                let put = reg
                    .store_manifest(
                        &name,
                        &reference,
                        Some(&read.media_type),
                        read.payload.clone(),
                        Override::Allowed,
                        // A copy is a push, by the replication, as push events and rules see it.
                        Origin::Push {
                            actor: Some("replication"),
                        },
                    )
                    .await
                    .map_err(local)?;
                if put.digest != read.digest {
                    return Err(local(Error::DigestInvalid(format!(
                        "stored as {}, read as {}",
                        put.digest, read.digest
                    ))));
                }
                Ok(true)
            }
            Side::Remote(r) => {
                let pushed = r
                    .put_manifest(repo, reference, &read.media_type, read.payload.clone())
                    .await?;
                if let Some(d) = pushed.digest
                    && d.starts_with("sha256:")
                    && d != read.digest.as_str()
                {
                    return Err(UpstreamError::BadAnswer(format!(
                        "remote {} stored {} as {d}",
                        r.url(),
                        read.digest
                    )));
                }
                Ok(pushed.subject_indexed)
            }
        }
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Step<()> {
        match self {
            Side::Local(reg) => {
                let (Ok(name), Ok(tag)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) else {
                    return Ok(());
                };
                reg.delete_manifest(
                    &name,
                    &Reference::Tag(tag),
                    Override::Allowed,
                    Some("replication"),
                )
                .await
                .map_err(local)
            }
            Side::Remote(r) => r.delete_manifest(repo, tag).await,
        }
    }
}

/// The largest manifest read from a remote.
const MANIFEST_MAX: usize = 4 * 1024 * 1024;
/// The largest image config read to learn an image's platform.
const CONFIG_MAX: u64 = 1024 * 1024;

/// Paces blob bytes to the rule's bandwidth limit.
struct Throttle {
    per_sec: u64,
    start: Instant,
    sent: u64,
}

impl Throttle {
    async fn pace(&mut self, n: usize) {
        self.sent += n as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.per_sec as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// One execution in progress.
struct Run<'a> {
    registry: &'a Registry,
    execution: i64,
    counters: ReplicationCounters,
    log: Vec<String>,
    /// Blobs known on the destination in this run, with a repository that holds each (a
    /// mount source).
    placed: HashMap<Digest, String>,
    /// Manifests (destination repository, digest) copied or found in this run.
    done: HashSet<(String, Digest)>,
    throttle: Option<Throttle>,
    /// Bytes per upload chunk.
    chunk: usize,
}

/// What became of one tag.
enum Outcome {
    Copied(Digest),
    Skipped(Digest, String),
}

impl Run<'_> {
    fn note(&mut self, line: String) {
        let at = self.registry.clock.now();
        tracing::debug!(execution = self.execution, "{line}");
        self.log.push(format!("{at} {line}"));
    }

    async fn rule(&mut self, rule: &ReplicationRule) -> std::result::Result<(), String> {
        let remote = remote_of(rule, self.registry)?;
        self.chunk = rule.chunk_bytes;
        self.throttle = rule.input.bandwidth_limit.map(|per_sec| Throttle {
            per_sec,
            start: Instant::now(),
            sent: 0,
        });
        let (source, destination) = sides(rule, self.registry, &remote);
        self.note(format!(
            "rule {}: {} {} -> {}",
            rule.name,
            rule.input.direction,
            source.name(),
            destination.name()
        ));
        retry(|| remote.ping()).await.map_err(|e| e.to_string())?;
        let repositories = retry(|| source.repositories(rule))
            .await
            .map_err(|e| e.to_string())?;
        // Which source repository each destination is copied from (a rename may map two
        // sources to one destination: the second is refused, never merged into the first).
        let mut taken: HashMap<RepoName, String> = HashMap::new();
        for repo in repositories {
            let to = match rule.destination(&repo) {
                Ok(to) => to,
                Err(e) => {
                    self.task(&repo, "", None, "failed", 0, e).await?;
                    continue;
                }
            };
            match taken.get(&to) {
                Some(first) => {
                    let why =
                        format!("{to} is already the copy of {first}: the rename maps both there");
                    self.task(&repo, to.as_str(), None, "failed", 0, why)
                        .await?;
                    continue;
                }
                None => {
                    taken.insert(to.clone(), repo.clone());
                }
            }
            let tags = retry(|| source.tags(&repo, rule))
                .await
                .map_err(|e| e.to_string())?;
            for tag in &tags {
                let before = self.counters.bytes_moved;
                let outcome = self
                    .copy_tag(rule, source, destination, &repo, to.as_str(), tag)
                    .await;
                let moved = self.counters.bytes_moved - before;
                let (from, dest) = (format!("{repo}:{tag}"), format!("{to}:{tag}"));
                match outcome {
                    Ok(Outcome::Copied(d)) => {
                        self.task(&from, &dest, Some(&d), "copied", moved, String::new())
                            .await?
                    }
                    Ok(Outcome::Skipped(d, why)) => {
                        self.task(&from, &dest, Some(&d), "skipped", moved, why)
                            .await?
                    }
                    Err(e) => {
                        self.counters.failed += 1;
                        self.task(&from, &dest, None, "failed", moved, e.to_string())
                            .await?
                    }
                }
            }
            if rule.input.replicate_deletes {
                let there = retry(|| destination.tags(to.as_str(), rule))
                    .await
                    .map_err(|e| e.to_string())?;
                for tag in there.iter().filter(|t| !tags.contains(t)) {
                    let dest = format!("{to}:{tag}");
                    match retry(|| destination.delete_tag(to.as_str(), tag)).await {
                        Ok(()) => {
                            self.task(
                                &format!("{repo}:{tag}"),
                                &dest,
                                None,
                                "copied",
                                0,
                                "deleted: gone from the source".into(),
                            )
                            .await?
                        }
                        Err(e) => {
                            self.counters.failed += 1;
                            self.task(
                                &format!("{repo}:{tag}"),
                                &dest,
                                None,
                                "failed",
                                0,
                                format!("delete: {e}"),
                            )
                            .await?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn task(
        &mut self,
        source: &str,
        destination: &str,
        digest: Option<&Digest>,
        state: &str,
        bytes: i64,
        message: String,
    ) -> std::result::Result<(), String> {
        self.note(format!(
            "{state} {source} -> {destination}{}{}",
            digest.map(|d| format!(" ({d})")).unwrap_or_default(),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ));
        let row = TaskRow {
            source: source.to_owned(),
            destination: destination.to_owned(),
            digest: digest.map(ToString::to_string),
            state: state.to_owned(),
            bytes,
            message,
        };
        self.registry
            .meta
            .record_replication_task(self.execution, &row, &self.counters, &self.log.join("\n"))
            .await
            .map_err(|e| format!("could not record the task: {e}"))
    }

    async fn copy_tag(
        &mut self,
        rule: &ReplicationRule,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        tag: &str,
    ) -> Step<Outcome> {
        let read = retry(|| source.manifest(repo, tag))
            .await?
            .ok_or(UpstreamError::NotFound)?;
        let source_digest = read.digest.clone();
        let read = match rule.as_copied(&source, repo, read).await? {
            Ok(read) => read,
            Err(why) => return Ok(Outcome::Skipped(source_digest, why)),
        };
        let there = retry(|| destination.tag_digest(to, tag)).await?;
        let outcome = match there {
            Some(d) if d == read.digest => {
                self.counters.manifests_skipped += 1;
                self.done.insert((to.to_owned(), read.digest.clone()));
                Outcome::Skipped(read.digest.clone(), "the destination has it".into())
            }
            Some(d) if !rule.input.override_tags => {
                return Ok(Outcome::Skipped(
                    read.digest,
                    format!("the destination's tag points at {d} (override_tags is off)"),
                ));
            }
            _ => {
                self.copy_manifest(source, destination, repo, to, tag, read.clone_ref())
                    .await?;
                Outcome::Copied(read.digest.clone())
            }
        };
        self.copy_referrers(source, destination, repo, to, &read)
            .await?;
        if read.digest != source_digest {
            self.note_referrers_left(source, repo, to, &source_digest)
                .await?;
        }
        Ok(outcome)
    }

    /// Notes the referrers of a source index that the copy narrowed: they name the
    /// source's digest and vouch for that index, not for the narrowed one, so they are not
    /// copied (the kept images' own referrers are).
    async fn note_referrers_left(
        &mut self,
        source: Side<'_>,
        repo: &str,
        to: &str,
        index: &Digest,
    ) -> Step<()> {
        let mut left = retry(|| source.referrers(repo, index)).await?.len();
        for suffix in ["sig", "att", "sbom"] {
            let tag = format!("{}.{suffix}", fallback_tag(index));
            if retry(|| source.tag_digest(repo, &tag)).await?.is_some() {
                left += 1;
            }
        }
        if left > 0 {
            self.note(format!(
                "{left} referrer(s) of {repo}@{index} not copied to {to}: they name the \
                 source index, which the platforms filter narrowed to a new digest"
            ));
        }
        Ok(())
    }

    /// Copies the manifest `read` (children and blobs first), stored under `reference`.
    async fn copy_manifest(
        &mut self,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        reference: &str,
        read: Read,
    ) -> Step<bool> {
        let parsed = Manifest::parse(&read.payload, Some(&read.media_type)).map_err(|e| {
            UpstreamError::BadAnswer(format!(
                "{} is not a manifest Berth reads: {e}",
                read.digest
            ))
        })?;
        for child in &parsed.children {
            if self.done.contains(&(to.to_owned(), child.digest.clone())) {
                continue;
            }
            if !retry(|| destination.has_manifest(to, &child.digest)).await? {
                let child_read = retry(|| source.manifest(repo, child.digest.as_str()))
                    .await?
                    .ok_or_else(|| {
                        UpstreamError::BadAnswer(format!(
                            "the source lacks {} of index {}",
                            child.digest, read.digest
                        ))
                    })?;
                if child_read.digest != child.digest {
                    return Err(UpstreamError::BadAnswer(format!(
                        "the source sent {} for {}",
                        child_read.digest, child.digest
                    )));
                }
                Box::pin(self.copy_manifest(
                    source,
                    destination,
                    repo,
                    to,
                    child.digest.as_str(),
                    child_read,
                ))
                .await?;
            } else {
                self.counters.manifests_skipped += 1;
            }
            self.done.insert((to.to_owned(), child.digest.clone()));
        }
        for blob in parsed.required_blobs() {
            self.copy_blob(source, destination, repo, to, &blob.digest)
                .await?;
        }
        let indexed = retry(|| destination.put_manifest(to, reference, &read)).await?;
        self.counters.manifests_copied += 1;
        self.done.insert((to.to_owned(), read.digest.clone()));
        if let (Some(subject), false) = (&parsed.subject, indexed) {
            self.add_to_fallback(destination, to, subject, &read, &parsed)
                .await?;
        }
        Ok(indexed)
    }

    /// Lists `read` (a referrer of `subject`) in the destination's `sha256-<hex>` index,
    /// for a destination without the referrers API.
    async fn add_to_fallback(
        &mut self,
        destination: Side<'_>,
        to: &str,
        subject: &Digest,
        read: &Read,
        parsed: &Manifest,
    ) -> Step<()> {
        let Side::Remote(remote) = destination else {
            return Ok(());
        };
        let tag = fallback_tag(subject);
        let mut index = match remote.manifest(to, &tag, MANIFEST_MAX).await {
            Ok(m) => serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap_or_default(),
            Err(UpstreamError::NotFound) => serde_json::Value::Null,
            Err(e) => return Err(e),
        };
        if !index["manifests"].is_array() {
            index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [],
            });
        }
        let manifests = index["manifests"].as_array_mut().expect("an array");
        if manifests
            .iter()
            .any(|d| d["digest"].as_str() == Some(read.digest.as_str()))
        {
            return Ok(());
        }
        let mut descriptor = serde_json::json!({
            "mediaType": read.media_type,
            "digest": read.digest.as_str(),
            "size": read.payload.len(),
        });
        let artifact_type = parsed
            .artifact_type
            .clone()
            .or_else(|| parsed.config_media_type.clone());
        if let Some(t) = artifact_type {
            descriptor["artifactType"] = t.into();
        }
        if let Some(a) = &parsed.annotations {
            descriptor["annotations"] = serde_json::to_value(a).unwrap_or_default();
        }
        manifests.push(descriptor);
        let payload = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
        let media = "application/vnd.oci.image.index.v1+json";
        retry(|| remote.put_manifest(to, &tag, media, payload.clone())).await?;
        self.note(format!(
            "listed {} in {to}:{tag} (referrers tag fallback)",
            read.digest
        ));
        Ok(())
    }

    /// Copies the referrers of `read` (and of its children) and cosign's tags of it.
    async fn copy_referrers(
        &mut self,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        read: &Read,
    ) -> Step<()> {
        let mut subjects = vec![read.digest.clone()];
        if let Ok(parsed) = Manifest::parse(&read.payload, Some(&read.media_type)) {
            subjects.extend(parsed.children.iter().map(|c| c.digest.clone()));
        }
        for subject in subjects {
            for referrer in retry(|| source.referrers(repo, &subject)).await? {
                if self.done.contains(&(to.to_owned(), referrer.clone())) {
                    continue;
                }
                if retry(|| destination.has_manifest(to, &referrer)).await? {
                    self.done.insert((to.to_owned(), referrer));
                    continue;
                }
                let Some(r) = retry(|| source.manifest(repo, referrer.as_str())).await? else {
                    continue;
                };
                if r.digest != referrer {
                    return Err(UpstreamError::BadAnswer(format!(
                        "the source sent {} for referrer {referrer}",
                        r.digest
                    )));
                }
                Box::pin(self.copy_manifest(source, destination, repo, to, referrer.as_str(), r))
                    .await?;
                self.note(format!("copied referrer {referrer} of {subject} to {to}"));
            }
            // cosign's tag scheme: the signature, attestations and SBOM of a digest.
            for suffix in ["sig", "att", "sbom"] {
                let tag = format!("{}.{suffix}", fallback_tag(&subject));
                let Some(at) = retry(|| source.tag_digest(repo, &tag)).await? else {
                    continue;
                };
                if retry(|| destination.tag_digest(to, &tag)).await? == Some(at.clone()) {
                    continue;
                }
                let Some(r) = retry(|| source.manifest(repo, &tag)).await? else {
                    continue;
                };
                Box::pin(self.copy_manifest(source, destination, repo, to, &tag, r)).await?;
                self.note(format!("copied {repo}:{tag} of {subject} to {to}"));
            }
        }
        Ok(())
    }

    /// Makes blob `digest` present in destination repository `to`: found there, mounted
    /// from another repository that has it, or uploaded.
    async fn copy_blob(
        &mut self,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
    ) -> Step<()> {
        if retry(|| destination.blob_size(to, digest)).await?.is_some() {
            self.counters.blobs_skipped += 1;
            self.placed.insert(digest.clone(), to.to_owned());
            return Ok(());
        }
        let mut session = None;
        match destination {
            Side::Local(reg) => {
                let name: RepoName = to
                    .parse()
                    .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
                if !reg
                    .meta
                    .repositories_linking(digest, 1)
                    .await
                    .map_err(local)?
                    .is_empty()
                    && let Ok(super::Mounted::Blob { .. }) =
                        reg.mount_blob(&name, digest, None).await
                {
                    self.counters.blobs_mounted += 1;
                    return Ok(());
                }
            }
            Side::Remote(remote) => {
                if let Some(from) = self.placed.get(digest).filter(|f| f.as_str() != to) {
                    let from = from.clone();
                    match retry(|| remote.mount(to, digest, &from)).await? {
                        Mount::Mounted => {
                            self.counters.blobs_mounted += 1;
                            self.placed.insert(digest.clone(), to.to_owned());
                            return Ok(());
                        }
                        Mount::Session(location) => session = Some(location),
                    }
                }
            }
        }
        match destination {
            Side::Local(reg) => self.download(reg, source, repo, to, digest).await?,
            Side::Remote(remote) => {
                self.upload(remote, source, repo, to, digest, session)
                    .await?
            }
        }
        self.counters.blobs_copied += 1;
        self.placed.insert(digest.clone(), to.to_owned());
        Ok(())
    }

    /// Pulls blob `digest` into this registry (verified before it is committed).
    async fn download(
        &mut self,
        reg: &Registry,
        source: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
    ) -> Step<()> {
        let name: RepoName = to
            .parse()
            .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = match source.blob(repo, digest, 0).await {
                Ok(b) => b,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    backoff(attempt).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let seen = counted.clone();
            let limit = self.throttle.as_ref().map(|t| t.per_sec);
            let started = Instant::now();
            let body = body.then(move |chunk| {
                let seen = seen.clone();
                async move {
                    if let Ok(c) = &chunk {
                        let total = seen
                            .fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed)
                            + c.len() as u64;
                        if let Some(per_sec) = limit {
                            let due = Duration::from_secs_f64(total as f64 / per_sec as f64);
                            if due > started.elapsed() {
                                tokio::time::sleep(due - started.elapsed()).await;
                            }
                        }
                    }
                    chunk
                }
            });
            match reg.put_blob(&name, digest, Box::pin(body)).await {
                Ok(size) => {
                    self.counters.bytes_moved += size as i64;
                    return Ok(());
                }
                Err(e) => {
                    let message = format!("blob {digest} from {}: {e}", source.name());
                    if attempt >= ATTEMPTS {
                        return Err(UpstreamError::BadAnswer(message));
                    }
                    self.note(format!("retrying {message}"));
                    backoff(attempt).await;
                }
            }
        }
    }

    /// Pushes blob `digest` to the remote in chunks; after a failure, resumes from the
    /// offset the remote acknowledged (a new session when it lost the old one).
    async fn upload(
        &mut self,
        remote: &Remote,
        source: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
        session: Option<String>,
    ) -> Step<()> {
        let chunk_size = self.chunk;
        let (mut location, mut offset) = match session {
            Some(location) => {
                self.keep_upload(to, digest, Some(&location)).await?;
                (location, 0)
            }
            None => self.upload_session(remote, to, digest).await?,
        };
        let mut attempt = 0;
        loop {
            let sent = self
                .send_from(
                    remote,
                    source,
                    repo,
                    to,
                    digest,
                    &mut location,
                    &mut offset,
                    chunk_size,
                )
                .await;
            let failure = match sent {
                Ok(()) => match remote.finish_upload(to, &location, digest).await {
                    Ok(()) => return self.keep_upload(to, digest, None).await,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            attempt += 1;
            if !failure.is_transient() || attempt >= ATTEMPTS {
                return Err(failure);
            }
            self.note(format!(
                "blob {digest} to {to}: {failure}; resuming (attempt {})",
                attempt + 1
            ));
            backoff(attempt).await;
            offset = match remote.upload_offset(to, &location).await {
                Ok(acknowledged) => acknowledged,
                Err(_) => {
                    location = retry(|| remote.start_upload(to)).await?;
                    self.keep_upload(to, digest, Some(&location)).await?;
                    0
                }
            };
        }
    }

    /// An upload session for blob `digest` of remote repository `to`: the one an
    /// interrupted start of this execution left, at the offset the remote acknowledges,
    /// else a new one.
    async fn upload_session(
        &mut self,
        remote: &Remote,
        to: &str,
        digest: &Digest,
    ) -> Step<(String, u64)> {
        let kept = self
            .registry
            .meta
            .replication_upload(self.execution, to, digest.as_str())
            .await
            .map_err(local)?;
        if let Some(location) = kept {
            match remote.upload_offset(to, &location).await {
                Ok(offset) => {
                    self.note(format!(
                        "blob {digest} to {to}: resuming the upload an earlier start left, at byte {offset}"
                    ));
                    return Ok((location, offset));
                }
                Err(e) => self.note(format!(
                    "blob {digest} to {to}: the upload an earlier start left is gone ({e}); starting again"
                )),
            }
        }
        let location = retry(|| remote.start_upload(to)).await?;
        self.keep_upload(to, digest, Some(&location)).await?;
        Ok((location, 0))
    }

    /// Records the upload session in flight for blob `digest` of `to` (`None`: complete).
    async fn keep_upload(&self, to: &str, digest: &Digest, location: Option<&str>) -> Step<()> {
        self.registry
            .meta
            .keep_replication_upload(self.execution, to, digest.as_str(), location)
            .await
            .map_err(local)
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_from(
        &mut self,
        remote: &Remote,
        source: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
        location: &mut String,
        offset: &mut u64,
        chunk_size: usize,
    ) -> Step<()> {
        let mut body = source.blob(repo, digest, *offset).await?;
        let mut buffer = BytesMut::new();
        loop {
            let next = body.next().await;
            let end = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(UpstreamError::Unavailable)?;
                buffer.extend_from_slice(&chunk);
            }
            while buffer.len() >= chunk_size || (end && !buffer.is_empty()) {
                let take = buffer.len().min(chunk_size);
                let part = buffer.split_to(take).freeze();
                let n = part.len();
                let next = remote.upload_chunk(to, location, *offset, part).await?;
                *offset += n as u64;
                if next != *location {
                    // Some registries move the session with each chunk (Distribution's
                    // `_state`); a resume needs the newest.
                    *location = next;
                    self.keep_upload(to, digest, Some(location.as_str()))
                        .await?;
                }
                self.counters.bytes_moved += n as i64;
                if let Some(t) = &mut self.throttle {
                    t.pace(n).await;
                }
            }
            if end {
                return Ok(());
            }
        }
    }
}

impl Read {
    fn clone_ref(&self) -> Read {
        Read {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            payload: self.payload.clone(),
        }
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(attempt.saturating_sub(1).min(6))).await;
}

/// Runs `step` until it succeeds, fails for good, or has failed [`ATTEMPTS`] times with
/// transient errors, pausing with exponential backoff between.
async fn retry<T, F, Fut>(step: F) -> Step<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match step().await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => backoff(attempt).await,
            other => return other,
        }
    }
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
        assert!(is_fallback_tag(&format!("sha256-{}", "a".repeat(64))));
        assert!(!is_fallback_tag(&format!("sha256-{}.sig", "a".repeat(64))));
    }
}
