//! The JWT ids `runway serve` has accepted, so that a captured token cannot
//! be sent again.
//!
//! Invariants:
//! - A `jti` is remembered until its token could no longer be accepted
//!   anyway (`exp` + [`LEEWAY_SECS`]), then forgotten: memory follows the
//!   tokens alive, not the tokens ever seen.
//! - The number remembered is bounded by the capacity. When full, a new id
//!   is refused ([`Seen::Full`], answered 503) rather than a live one
//!   forgotten: forgetting would reopen the replay it guards against.
//! - Check and record are one step under one lock, so of two requests with
//!   the same `jti` at once exactly one is [`Seen::New`].
//!
//! The cache is per process: after a restart, or on another replica, a
//! token not yet expired is accepted again; exactly-once of the actions
//! themselves still rests on the state ConfigMap.
//!
//! The clock is passed in (seconds since the epoch), for the tests.

use std::collections::{BTreeSet, HashMap};

use super::auth::LEEWAY_SECS;

/// How many ids are remembered at most. Tokens live at most 5 min (+ the
/// leeway), so this allows a sustained ~90 JWT requests a second; with
/// `jti` at most 128 bytes, at most ~10 MB.
pub const DEFAULT_CAPACITY: usize = 32_768;

/// What [`ReplayCache::check_and_record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never seen: now recorded.
    New,
    /// Seen before and its token still alive: refuse (401).
    Replayed,
    /// Never seen, but no room to remember it: refuse for now (503).
    Full,
}

#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    /// `jti` -> the second after which it is forgotten.
    until: HashMap<String, i64>,
    /// The same entries, oldest deadline first.
    by_deadline: BTreeSet<(i64, String)>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::new(DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            until: HashMap::new(),
            by_deadline: BTreeSet::new(),
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Checks `jti` (of a token expiring at `exp`) at `now` and, when new,
    /// remembers it until `exp` + leeway.
    pub fn check_and_record(&mut self, jti: &str, exp: i64, now: i64) -> Seen {
        self.forget_before(now);
        if self.until.contains_key(jti) {
            return Seen::Replayed;
        }
        if self.until.len() >= self.capacity {
            return Seen::Full;
        }
        let until = exp.saturating_add(LEEWAY_SECS);
        self.until.insert(jti.to_string(), until);
        self.by_deadline.insert((until, jti.to_string()));
        Seen::New
    }

    /// Forgets every id whose token is no longer accepted at `now`.
    fn forget_before(&mut self, now: i64) {
        while let Some((until, _)) = self.by_deadline.first()
            && *until < now
        {
            if let Some((_, jti)) = self.by_deadline.pop_first() {
                self.until.remove(&jti);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn an_id_is_refused_until_its_token_expires_then_forgotten() {
        let mut cache = ReplayCache::new(10);
        let exp = NOW + 60;
        assert_eq!(cache.check_and_record("a", exp, NOW), Seen::New);
        assert_eq!(cache.check_and_record("a", exp, NOW), Seen::Replayed);
        assert_eq!(cache.check_and_record("b", exp, NOW), Seen::New);
        // Still refused at the last second the token itself is accepted.
        let last = exp + LEEWAY_SECS;
        assert_eq!(cache.check_and_record("a", exp, last), Seen::Replayed);
        assert_eq!(cache.len(), 2);
        // One second later no token with that `exp` passes authentication;
        // the ids are gone.
        assert_eq!(cache.check_and_record("c", exp + 100, last + 1), Seen::New);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.check_and_record("a", exp, last + 1), Seen::New);
    }

    #[test]
    fn when_full_new_ids_are_refused_and_live_ones_kept() {
        let mut cache = ReplayCache::new(3);
        for (i, jti) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(
                cache.check_and_record(jti, NOW + 10 * i as i64, NOW),
                Seen::New
            );
        }
        assert_eq!(cache.check_and_record("d", NOW + 100, NOW), Seen::Full);
        // Full never forgets a live id.
        assert_eq!(cache.check_and_record("a", NOW, NOW), Seen::Replayed);
        assert_eq!(cache.len(), 3);
        // Once "a" expired, there is room again.
        let after_a = NOW + LEEWAY_SECS + 1;
        assert_eq!(cache.check_and_record("d", NOW + 100, after_a), Seen::New);
        assert_eq!(cache.check_and_record("e", NOW + 100, after_a), Seen::Full);
        assert_eq!(
            cache.check_and_record("b", NOW + 10, after_a),
            Seen::Replayed
        );
    }

    #[test]
    fn extreme_expiry_saturates() {
        let mut cache = ReplayCache::new(2);
        assert_eq!(cache.check_and_record("max", i64::MAX, NOW), Seen::New);
        assert_eq!(cache.check_and_record("min", i64::MIN, NOW), Seen::New);
        // `min` is forgotten at once (its token could never be accepted).
        assert_eq!(cache.check_and_record("x", NOW, NOW), Seen::New);
        assert_eq!(
            cache.check_and_record("max", i64::MAX, i64::MAX),
            Seen::Replayed
        );
    }

    #[test]
    fn the_two_indexes_stay_in_step() {
        let mut cache = ReplayCache::new(1_000);
        for i in 0..500i64 {
            let _ = cache.check_and_record(&format!("id-{}", i % 70), NOW + i % 90, NOW + i / 3);
            assert_eq!(cache.until.len(), cache.by_deadline.len());
        }
    }
}
