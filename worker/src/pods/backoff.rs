//! Upstream's per-item exponential back-off (`client-go/util/flowcontrol.Backoff`) as the
//! kubelet uses it for CrashLoopBackOff and ImagePullBackOff: 10 s doubling to 5 min, and an
//! entry older than twice the maximum (10 min) starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first back-off.
pub(crate) const INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
pub(crate) const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Back-off entries by key.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// The current back-off of `key` (zero when none).
    pub(crate) fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// Records an attempt at `now` after an event at `event`: the first (or the first after a
    /// stable stretch) gets [`INITIAL`], later ones double up to [`MAX`].
    pub(crate) fn next(&mut self, key: &str, event: Instant, now: Instant) {
        let entry = self.entries.get(key).copied();
        let backoff = match entry {
            Some(e) if !expired(event, e.last_update) => (e.backoff * 2).min(MAX),
            _ => INITIAL,
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// Whether `key` is still backing off at `now` from an event at `event`; if so, when the
    /// back-off ends.
    pub(crate) fn in_backoff_since(
        &self,
        key: &str,
        event: Instant,
        now: Instant,
    ) -> Option<Instant> {
        let e = self.entries.get(key)?;
        if expired(event, e.last_update) {
            return None;
        }
        let until = event + e.backoff;
        (now < until).then_some(until)
    }

    /// Whether `key` is backing off at `now` counted from its last attempt (the image
    /// manager's check); if so, until when.
    pub(crate) fn in_backoff_since_update(&self, key: &str, now: Instant) -> Option<Instant> {
        let e = self.entries.get(key)?;
        let until = e.last_update + e.backoff;
        (now < until).then_some(until)
    }

    /// Forgets every key containing `part` (a pod's, once it is gone).
    pub(crate) fn forget_containing(&mut self, part: &str) {
        self.entries.retain(|k, _| !k.contains(part));
    }
}

fn expired(event: Instant, last_update: Instant) -> bool {
    event
        .checked_duration_since(last_update)
        .is_some_and(|d| d > MAX * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_five_minutes_and_resets_after_ten() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.in_backoff_since("k", t0, t0).is_none());
        let mut seen = Vec::new();
        let mut t = t0;
        for _ in 0..7 {
            b.next("k", t, t);
            seen.push(b.get("k").as_secs());
            t += Duration::from_secs(1);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
        assert!(
            b.in_backoff_since("k", t, t + Duration::from_secs(299))
                .is_some()
        );
        assert!(
            b.in_backoff_since("k", t, t + Duration::from_secs(300))
                .is_none()
        );
        // A crash more than 10 min after the last restart starts over at 10 s.
        let later = t + Duration::from_secs(601);
        assert!(b.in_backoff_since("k", later, later).is_none());
        b.next("k", later, later);
        assert_eq!(b.get("k"), INITIAL);
    }
}
