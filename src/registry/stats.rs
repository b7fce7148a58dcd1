//! Usage statistics: what the registry holds and how it was used, as a viewer may see it.
//! The counting itself happens on the `/v2/` paths (manifests, blobs) into memory and is
//! flushed by the workers; this room reads the daily counters back, in UTC days.

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::{
        repositories::CatalogViewer,
        stats::day_of,
        usage::{DayFigures, PopularRepository, PopularSubject, PopularTag, StorageDay, Totals},
    },
    oci::RepoName,
};

/// The longest time series answered at once, in days (ten years).
pub const TREND_DAYS_MAX: i64 = 3660;

/// Days between the unix epoch and the Julian day 0.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The first Monday after the unix epoch (1970-01-05), as a UTC day: ISO weeks start there.
const FIRST_MONDAY: i64 = 4;

/// How a time series is cut: UTC days, ISO weeks (Monday to Sunday) or calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// One point per day.
    Day,
    /// One point per ISO week, from Monday.
    Week,
    /// One point per calendar month.
    Month,
}

impl Interval {
    /// The first day of the bucket holding `day` (UTC days since the unix epoch).
    pub fn start(self, day: i64) -> i64 {
        match self {
            Interval::Day => day,
            Interval::Week => day - (day - FIRST_MONDAY).rem_euclid(7),
            Interval::Month => date_of(day).map_or(day, |d| day - i64::from(d.day()) + 1),
        }
    }

    /// The first day of the bucket after the one holding `day`.
    pub fn next(self, day: i64) -> i64 {
        let start = self.start(day);
        match self {
            Interval::Day => start + 1,
            Interval::Week => start + 7,
            Interval::Month => date_of(start).map_or(start + 31, |d| {
                start + i64::from(d.month().length(d.year()))
            }),
        }
    }
}

/// The calendar date of a UTC day since the unix epoch (`None` beyond the calendar's range).
fn date_of(day: i64) -> Option<time::Date> {
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|julian| time::Date::from_julian_day(julian).ok())
}

/// One point of a time series: what happened over a bucket, and the storage recorded last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrendBucket {
    /// The bucket's first UTC day.
    pub start: i64,
    /// Manifest GETs.
    pub pulls: i64,
    /// Manifest HEADs.
    pub heads: i64,
    /// Manifest PUTs.
    pub pushes: i64,
    /// Blob bytes served.
    pub bytes_out: i64,
    /// The storage recorded on the bucket's last day or, failing that, the last one before;
    /// `None` before the first record.
    pub storage_bytes: Option<i64>,
}

/// Cuts `from..=to` (both bucket-aligned) into `interval`s, summing the day's figures and
/// carrying storage records forward. `usage` and `storage` are in day order; `storage` may
/// start before `from`.
fn buckets(
    interval: Interval,
    from: i64,
    to: i64,
    usage: Vec<DayFigures>,
    storage: Vec<StorageDay>,
) -> Vec<TrendBucket> {
    let mut usage = usage.into_iter().peekable();
    let mut storage = storage.into_iter().peekable();
    let mut last_storage = None;
    let mut series = Vec::new();
    let mut start = from;
    while start <= to {
        let end = interval.next(start);
        let mut bucket = TrendBucket {
            start,
            ..TrendBucket::default()
        };
        while let Some(day) = usage.next_if(|u| u.day < end) {
            bucket.pulls += day.pulls;
            bucket.heads += day.heads;
            bucket.pushes += day.pushes;
            bucket.bytes_out += day.bytes_out;
        }
        while let Some(record) = storage.next_if(|s| s.day < end) {
            last_storage = Some(record.bytes);
        }
        bucket.storage_bytes = last_storage;
        series.push(bucket);
        start = end;
    }
    series
}

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

    /// Usage per `interval` from `from` to `to` (UTC days, both included, each the first
    /// day of its bucket; the caller bounds the range), one entry per bucket, zero for
    /// buckets without use, with the storage recorded last; over `repository` alone or over
    /// every repository `viewer` may read in `namespace` ("" for every one). A repository that
    /// does not exist is [`Error::NameUnknown`].
    pub async fn usage_trend(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        repository: Option<&RepoName>,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<TrendBucket>> {
        if let Some(repo) = repository
            && self.meta.repository_id(repo).await?.is_none()
        {
            return Err(Error::NameUnknown);
        }
        let last = interval.next(to) - 1;
        let usage = self
            .meta
            .usage_by_day(viewer, namespace, repository, from, last)
            .await?;
        let storage = self
            .meta
            .storage_by_day(viewer, namespace, repository, from, last)
            .await?;
        Ok(buckets(interval, from, to, usage, storage))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2024-02-29 (a Thursday) is day 19_782.
        assert_eq!(Interval::Week.start(19_782), 19_779);
        assert_eq!(Interval::Week.next(19_782), 19_786);
        assert_eq!(Interval::Week.start(19_779), 19_779);
        assert_eq!(Interval::Month.start(19_782), 19_782 - 28);
        assert_eq!(Interval::Month.next(19_782), 19_783);
        assert_eq!(Interval::Day.next(19_782), 19_783);
        // 1970-01-01 was a Thursday: its week began on Monday 1969-12-29.
        assert_eq!(Interval::Week.start(0), -3);
    }

    #[test]
    fn buckets_sum_usage_and_carry_storage_forward() {
        let day = |day, pulls| DayFigures {
            day,
            pulls,
            ..DayFigures::default()
        };
        let stored = |day, bytes| StorageDay { day, bytes };
        let series = buckets(
            Interval::Week,
            19_772,
            19_786,
            vec![day(19_772, 1), day(19_778, 2), day(19_780, 5)],
            vec![stored(19_760, 7), stored(19_781, 9)],
        );
        let points: Vec<_> = series
            .iter()
            .map(|b| (b.start, b.pulls, b.storage_bytes))
            .collect();
        assert_eq!(
            points,
            [
                (19_772, 3, Some(7)),
                (19_779, 5, Some(9)),
                (19_786, 0, Some(9))
            ]
        );
        assert_eq!(
            buckets(Interval::Day, 5, 5, vec![], vec![])[0].storage_bytes,
            None
        );
    }
}
