//! Failed-login limits: a fixed window per key (a client address, a user name). Once a key
//! has `max` failures in its window, attempts are refused with 429 until the window ends,
//! without checking the password, so guessing costs the attacker time and us nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::error::{Error, Result};

/// Keys tracked at once; beyond this, expired windows are dropped first.
const KEYS_MAX: usize = 100_000;

pub(super) struct Limiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    pub(super) fn new(max: u32, window: Duration) -> Limiter {
        Limiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when any of `keys` is over its limit, saying when to retry.
    pub(super) fn check(&self, keys: &[String]) -> Result<()> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some((start, count)) = map.get(key) {
                let elapsed = start.elapsed();
                if *count >= self.max && elapsed < self.window {
                    let left = self.window - elapsed;
                    return Err(Error::TooManyRequests {
                        retry_after: left.as_secs() + u64::from(left.subsec_nanos() > 0),
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts one failure against each of `keys`.
    pub(super) fn fail(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= KEYS_MAX {
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
        }
        for key in keys {
            let entry = map.entry(key.clone()).or_insert((Instant::now(), 0));
            if entry.0.elapsed() >= self.window {
                *entry = (Instant::now(), 0);
            }
            entry.1 += 1;
        }
    }

    /// A success clears a user's count (not the address's: one good password must not
    /// reopen guessing for others from the same place).
    pub(super) fn forget(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_max_failures_until_the_window_ends() {
        let limiter = Limiter::new(2, Duration::from_secs(60));
        let keys = ["addr:1".to_owned(), "user:a".to_owned()];
        limiter.fail(&keys);
        assert!(limiter.check(&keys).is_ok());
        limiter.fail(&keys);
        match limiter.check(&keys) {
            Err(Error::TooManyRequests { retry_after }) => {
                assert!((59..=60).contains(&retry_after))
            }
            other => panic!("{other:?}"),
        }
        assert!(limiter.check(&["addr:2".to_owned()]).is_ok());
        let expired = Limiter::new(1, Duration::ZERO);
        expired.fail(&keys);
        assert!(expired.check(&keys).is_ok());
    }
}
