//! Usage statistics: what the registry holds and how it was used, as a viewer may see it.
//! The counting itself happens on the `/v2/` paths (manifests, blobs) into memory and is
//! flushed by the workers; this room reads the daily counters back, in UTC days.

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::{
        repositories::CatalogViewer,
        stats::day_of,
        usage::{DayFigures, PopularRepository, PopularSubject, PopularTag, Totals},
    },
    oci::RepoName,
};

/// The longest time series answered at once, in days (ten years).
pub const TREND_DAYS_MAX: i64 = 3660;

impl Registry {
    /// Counts a manifest pull (`push` false) or push in `repo` for the identity whose stable
    /// subject is `subject` (`user:<id>`, `token:<id>`, `anonymous`), shown as `name`: the
    /// `/v2/` handlers know who asks, the domain does not.
    pub fn count_by(&self, repo: &RepoName, subject: &str, name: &str, push: bool) {
        self.pulls
            .record_subject(repo.as_str(), subject, name, push);
    }

    /// Today, as a UTC day since the unix epoch, on the registry's clock.
    pub fn today(&self) -> i64 {
        day_of(self.clock.now())
    }

    /// The totals over the repositories `viewer` may read (the registry for an
    /// administrator) in `namespace` ("" for every one), with pulls and pushes today, over 7
    /// and over 30 days.
    pub async fn usage_totals(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
    ) -> Result<Totals> {
        self.meta
            .usage_totals(viewer, namespace, self.today())
            .await
    }

    /// Usage per day from `from` to `to` (UTC days, both included; the caller bounds the
    /// range), one entry per day, zero for days without use; over `repository` alone or over
    /// every repository `viewer` may read in `namespace` ("" for every one). A repository that does not exist is
    /// [`Error::NameUnknown`].
    pub async fn usage_trend(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        repository: Option<&RepoName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayFigures>> {
        if let Some(repo) = repository
            && self.meta.repository_id(repo).await?.is_none()
        {
            return Err(Error::NameUnknown);
        }
        let rows = self
            .meta
            .usage_by_day(viewer, namespace, repository, from, to)
            .await?;
        let mut rows = rows.into_iter().peekable();
        let mut series = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0));
        for day in from..=to {
            match rows.next_if(|r| r.day == day) {
                Some(row) => series.push(row),
                None => series.push(DayFigures {
                    day,
                    ..DayFigures::default()
                }),
            }
        }
        Ok(series)
    }

    /// The `n` most pulled repositories `viewer` may read in `namespace` ("" for every one)
    /// over the last `days` days (today included).
    pub async fn popular_repositories(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        days: i64,
        n: u32,
    ) -> Result<Vec<PopularRepository>> {
        let since = self.today() - days + 1;
        self.meta
            .popular_repositories(viewer, namespace, since, n)
            .await
    }

    /// The `n` most pulled tags `viewer` may read in `namespace` ("" for every one) over the
    /// last `days` days (today included).
    pub async fn popular_tags(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        days: i64,
        n: u32,
    ) -> Result<Vec<PopularTag>> {
        let since = self.today() - days + 1;
        self.meta.popular_tags(viewer, namespace, since, n).await
    }

    /// The `n` identities that pulled most from what `viewer` may read in `namespace` (""
    /// for every one) over the last `days` days (today included).
    pub async fn popular_subjects(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        days: i64,
        n: u32,
    ) -> Result<Vec<PopularSubject>> {
        let since = self.today() - days + 1;
        self.meta
            .popular_subjects(viewer, namespace, since, n)
            .await
    }
}
