//! Listings a page at a time: the database returns one row more than the page holds, and
//! that extra row only says that another page follows. Every listing (tags, the catalog,
//! referrers, and the management API's) cuts its pages here.

use std::future::Future;

/// One page of a listing, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The entries of this page, `n` at most, in the listing's order.
    pub items: Vec<T>,
    /// Another page follows: the listing continues after the last of `items`.
    pub more: bool,
}

impl<T> Page<T> {
    /// A page with nothing on it and nothing after it.
    pub fn empty() -> Page<T> {
        Page {
            items: Vec::new(),
            more: false,
        }
    }

    /// The page of `rows`, fetched with one row more than `n`: the rows past `n` are dropped
    /// and only say that more follow.
    pub fn from_rows(mut rows: Vec<T>, n: u32) -> Page<T> {
        let more = rows.len() > n as usize;
        rows.truncate(n as usize);
        Page { items: rows, more }
    }

    /// Fetches a page of `n` entries: `fetch` is asked for `n + 1` rows, and not asked at all
    /// when `n` is 0 (an empty last page).
    pub async fn fetch<E, F, Fut>(n: u32, fetch: F) -> Result<Page<T>, E>
    where
        F: FnOnce(u32) -> Fut,
        Fut: Future<Output = Result<Vec<T>, E>>,
    {
        if n == 0 {
            return Ok(Page::empty());
        }
        let rows = fetch(n.saturating_add(1)).await?;
        Ok(Page::from_rows(rows, n))
    }
}

/// The entries a page holds: `asked` (the client's `n`) up to `max`, `max` without one.
pub fn page_size(asked: Option<u32>, max: u32) -> u32 {
    asked.unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_past_the_page_only_says_more_follow() {
        assert_eq!(
            Page::from_rows(vec![1, 2, 3], 2),
            Page {
                items: vec![1, 2],
                more: true
            }
        );
        assert_eq!(
            Page::from_rows(vec![1, 2], 2),
            Page {
                items: vec![1, 2],
                more: false
            }
        );
        assert_eq!(page_size(None, 50), 50);
        assert_eq!(page_size(Some(7), 50), 7);
        assert_eq!(page_size(Some(70), 50), 50);
    }

    #[tokio::test]
    async fn fetch_asks_for_one_row_more_and_nothing_for_an_empty_page() {
        let page = Page::fetch(2, |n| async move { Ok::<_, ()>((0..n).collect()) }).await;
        assert_eq!(
            page,
            Ok(Page {
                items: vec![0, 1],
                more: true
            })
        );
        let page: Result<Page<u32>, ()> =
            Page::fetch(0, |_| async { panic!("an empty page fetches nothing") }).await;
        assert_eq!(page, Ok(Page::empty()));
    }
}
