//! Tags of a repository, listed in pages (spec end-8). Tags move and go with the manifest
//! pushes and deletes that name them (`manifests`), under the tag rules (`settings`).

use super::{Page, Registry};
use crate::{
    error::{Error, Result},
    oci::{RepoName, Tag},
};

impl Registry {
    /// Tags of `repo` in lexical order after `last`, `n` at most (end-8).
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&Tag>,
        n: Option<u32>,
    ) -> Result<Page<String>> {
        let repository_id = self
            .meta
            .repository_id(repo)
            .await?
            .ok_or(Error::NameUnknown)?;
        let last = last.map(Tag::as_str).unwrap_or("");
        Page::fetch(self.page_size(n), |n| async move {
            let tags = self.meta.list_tags(repository_id, last, n).await?;
            Ok(tags.iter().map(ToString::to_string).collect())
        })
        .await
    }
}
