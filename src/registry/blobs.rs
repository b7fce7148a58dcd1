//! Blob reads and deletes (spec end-2, end-10).

use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;

use super::Registry;
use crate::{
    error::{Error, Result},
    oci::{Digest, RepoName},
};

/// A `Range` header as the client wrote it (RFC 9110 §14.1.2, one range only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=a-b`
    Bounded(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`: the last n bytes
    Suffix(u64),
}

impl RangeRequest {
    /// Parses a `Range` header value; `None` for anything but one well-formed byte range.
    pub fn parse(header: &str) -> Option<RangeRequest> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        let (first, last) = spec.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (false, false) => {
                let (a, b) = (num(first)?, num(last)?);
                (a <= b).then_some(RangeRequest::Bounded(a, b))
            }
            (false, true) => Some(RangeRequest::From(num(first)?)),
            (true, false) => Some(RangeRequest::Suffix(num(last)?)),
            (true, true) => None,
        }
    }

    /// The byte range of a blob of `size` bytes this asks for, if it can be satisfied.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        let range = match self {
            RangeRequest::Bounded(a, b) => a..b.saturating_add(1).min(size),
            RangeRequest::From(a) => a..size,
            RangeRequest::Suffix(0) => return None,
            RangeRequest::Suffix(n) => size.saturating_sub(n)..size,
        };
        (range.start < size && range.start < range.end).then_some(range)
    }
}

/// An open blob: its size, the part being sent, and the bytes.
pub struct BlobRead {
    /// The whole blob's size.
    pub size: u64,
    /// The part sent, for a `Range` request; `None` for the whole blob.
    pub range: Option<Range<u64>>,
    /// The bytes (`None` for HEAD).
    pub body: Option<BoxStream<'static, Result<Bytes, object_store::Error>>>,
}

impl Registry {
    /// The size of `digest` in `repo` (HEAD).
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.meta
            .linked_blob_size(repo, digest)
            .await?
            .ok_or(Error::BlobUnknown)
    }

    /// A presigned URL of the store for `digest` in `repo`, when blob reads are redirected
    /// (`storage.redirect`). The repository's link is checked first: a URL is a capability.
    pub async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        if !self.blobs.redirects() {
            return Ok(None);
        }
        let size = self.stat_blob(repo, digest).await?;
        let url = self.blobs.presigned_get(digest).await?;
        // The client fetches the whole blob from the store: it counts as served.
        if url.is_some() {
            self.pulls.record_bytes_out(repo.as_str(), size);
        }
        Ok(url)
    }

    /// Opens `digest` in `repo`, or the part of it `range` asks for (GET); the bytes count as
    /// served in the usage statistics.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead> {
        let size = self.stat_blob(repo, digest).await?;
        let range = match range {
            Some(r) => Some(r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?),
            None => None,
        };
        let body = if size == 0 {
            None
        } else {
            Some(self.blobs.read(digest, range.clone()).await?)
        };
        // Counted when the read opens: the bytes the response is about to carry.
        let served = range.as_ref().map_or(size, |r| r.end - r.start);
        self.pulls.record_bytes_out(repo.as_str(), served);
        Ok(BlobRead { size, range, body })
    }

    /// Removes `digest` from `repo` (the bytes go when nothing else references them).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{self, *};
    use proptest::prelude::*;

    #[test]
    fn parses_and_resolves_ranges() {
        assert_eq!(RangeRequest::parse("bytes=0-9"), Some(Bounded(0, 9)));
        assert_eq!(RangeRequest::parse("bytes=5-"), Some(From(5)));
        assert_eq!(RangeRequest::parse("bytes=-3"), Some(Suffix(3)));
        for bad in [
            "bytes=9-0",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "0-1",
            "bytes=+1-2",
        ] {
            assert_eq!(RangeRequest::parse(bad), None, "{bad}");
        }
        assert_eq!(Bounded(0, 9).resolve(5), Some(0..5));
        assert_eq!(Bounded(5, 9).resolve(5), None);
        assert_eq!(From(4).resolve(5), Some(4..5));
        assert_eq!(Suffix(10).resolve(5), Some(0..5));
        assert_eq!(Suffix(0).resolve(5), None);
        assert_eq!(From(0).resolve(0), None);
    }

    proptest! {
        #[test]
        fn resolved_ranges_lie_inside_the_blob(h in "\\PC{0,30}", size in 0u64..1000) {
            if let Some(r) = RangeRequest::parse(&h).and_then(|r| r.resolve(size)) {
                prop_assert!(r.start < r.end && r.end <= size);
            }
        }
    }
}
