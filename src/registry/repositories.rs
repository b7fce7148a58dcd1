//! Repositories as a whole: the catalog, the management API's summaries, and deleting one.

use super::{Override, Page, Registry};
use crate::{
    error::{Error, Result},
    meta::repositories::{
        CatalogViewer, NamespaceMatch, NamespaceOrder, NamespaceSummary, RepositoryQuery,
        RepositorySummary,
    },
    oci::{Reference, RepoName},
};

/// The longest description a repository takes, in characters.
const DESCRIPTION_MAX_CHARS: usize = 2000;

impl Registry {
    /// Repositories holding a manifest, in byte order after `last`, `n` at most (clamped to
    /// `limits.page_max_entries`). With a `viewer` (access control on), only those it may see.
    pub async fn catalog(
        &self,
        viewer: Option<&CatalogViewer<'_>>,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page<String>> {
        let last = last.unwrap_or("");
        Page::fetch(self.page_size(n), |n| async move {
            let names = match viewer {
                Some(viewer) => self.meta.visible_catalog(last, n, viewer).await?,
                None => self.meta.catalog(last, n).await?,
            };
            Ok(names.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// A page of the repositories `viewer` may read, as `query` filters and orders them,
    /// `n` at most (fetch one more to learn whether a page follows).
    pub async fn repository_summaries(
        &self,
        query: &RepositoryQuery,
        viewer: &CatalogViewer<'_>,
        n: u32,
    ) -> Result<Vec<RepositorySummary>> {
        self.meta.repository_summaries(query, viewer, n).await
    }

    /// The namespaces holding repositories `viewer` may read, with their figures summed
    /// (those `matching`, in `order`, `n` at most after the first `skip`).
    pub async fn namespace_summaries(
        &self,
        matching: NamespaceMatch<'_>,
        order: NamespaceOrder,
        viewer: &CatalogViewer<'_>,
        skip: u32,
        n: u32,
    ) -> Result<Vec<NamespaceSummary>> {
        self.meta
            .namespace_summaries(matching, order, viewer, skip, n)
            .await
    }

    /// `repo` with its figures; its visibility falls back to `default_visibility` (the
    /// registry's, for namespaces without one). `NameUnknown` when there is no such repository.
    pub async fn repository_summary(
        &self,
        repo: &RepoName,
        default_visibility: &str,
    ) -> Result<RepositorySummary> {
        self.meta
            .repository_summary(repo, default_visibility)
            .await?
            .ok_or(Error::NameUnknown)
    }

    /// Creates `repo` ahead of its first push, with `description`; `Conflict` if it exists.
    pub async fn create_repository(&self, repo: &RepoName, description: &str) -> Result<()> {
        check_description(description)?;
        self.admit_repository(repo).await?;
        if self.meta.create_repository(repo, description).await? {
            Ok(())
        } else {
            Err(Error::Conflict(format!("repository {repo} exists already")))
        }
    }

    /// Replaces the description of `repo`; `NameUnknown` when there is no such repository.
    pub async fn set_repository_description(
        &self,
        repo: &RepoName,
        description: &str,
    ) -> Result<()> {
        check_description(description)?;
        if self
            .meta
            .set_repository_description(repo, description)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NameUnknown)
        }
    }

    /// Deletes `repo` with its manifests, tags, links and upload sessions (it leaves the
    /// catalog); the blobs only it referenced are then unreferenced and collected. `who`
    /// says whether the caller may delete protected tags (a repository holding any needs it).
    pub async fn delete_repository(&self, repo: &RepoName, who: Override) -> Result<()> {
        if who != Override::Allowed {
            let rules = self.tag_rules(repo).await?;
            if !rules.protected_patterns.is_empty() {
                for tag in self.meta.tag_facts(repo).await? {
                    let reference = Reference::Tag(
                        tag.name
                            .as_str()
                            .parse()
                            .map_err(|_| Error::Internal(anyhow::anyhow!("bad tag")))?,
                    );
                    self.check_delete(repo, &reference, who).await?;
                }
            }
        }
        let parts = self
            .meta
            .delete_repository(repo)
            .await?
            .ok_or(Error::NameUnknown)?;
        if let Err(e) = self.blobs.delete_parts(&parts).await {
            // Left as orphans for the collector.
            tracing::warn!(error = %e, "could not delete the staged parts of a deleted repository");
        }
        Ok(())
    }
}

/// Refuses a description longer than [`DESCRIPTION_MAX_CHARS`].
fn check_description(description: &str) -> Result<()> {
    let chars = description.chars().count();
    if chars > DESCRIPTION_MAX_CHARS {
        return Err(Error::BadRequest(format!(
            "description: {chars} characters, at most {DESCRIPTION_MAX_CHARS}"
        )));
    }
    Ok(())
}
