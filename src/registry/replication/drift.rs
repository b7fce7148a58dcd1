//! Drift: what differs between a rule's source and its destination, read without copying.

use serde::Serialize;

use crate::{
    error::{Error, Result},
    proxy::UpstreamError,
    registry::Registry,
};

use super::{
    copy::sides,
    rules::{checked, remote_of},
};

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

impl Registry {
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
