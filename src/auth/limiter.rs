//! Failed-login limits: a fixed window per key (a client address, a user name). Once a key
//! has `max` failures in its window, attempts are refused with 429 until the window ends,
//! without checking the password, so guessing costs the attacker time and us nothing.
//! Windows are measured on the registry's [`Clock`] in whole seconds, so tests move time
//! instead of waiting for it.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use crate::{
    clock::Clock,
    error::{Error, Result},
};

/// Keys tracked at once; beyond this, expired windows are dropped first.
const KEYS_MAX: usize = 100_000;

pub(super) struct Limiter {
    max: u32,
    /// The window, in seconds.
    window: i64,
    clock: Clock,
    /// Key → (start of its window, Unix seconds; failures in it).
    failures: Mutex<HashMap<String, (i64, u32)>>,
}

impl Limiter {
    pub(super) fn new(max: u32, window: Duration, clock: Clock) -> Limiter {
        Limiter {
            max,
            window: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            clock,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when any of `keys` is over its limit, saying when to retry.
    pub(super) fn check(&self, keys: &[String]) -> Result<()> {
        let now = self.clock.now();
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some((start, count)) = map.get(key) {
                let elapsed = now.saturating_sub(*start);
                if *count >= self.max && elapsed < self.window {
                    return Err(Error::TooManyRequests {
                        retry_after: u64::try_from(self.window - elapsed).unwrap_or(0),
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts one failure against each of `keys`.
    pub(super) fn fail(&self, keys: &[String]) {
        let now = self.clock.now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= KEYS_MAX {
            let window = self.window;
            map.retain(|_, (start, _)| now.saturating_sub(*start) < window);
        }
        for key in keys {
            let entry = map.entry(key.clone()).or_insert((now, 0));
            if now.saturating_sub(entry.0) >= self.window {
                *entry = (now, 0);
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
        let clock = Clock::default();
        let limiter = Limiter::new(2, Duration::from_secs(60), clock.clone());
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
        clock.advance(60);
        assert!(limiter.check(&keys).is_ok());
        let expired = Limiter::new(1, Duration::ZERO, Clock::default());
        expired.fail(&keys);
        assert!(expired.check(&keys).is_ok());
    }
}
