//! Single-use join challenges: random, short-lived, and bounded in number, since anyone may
//! ask for one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::join::CHALLENGE_LEN;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a challenge is kept.
pub(super) const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Most challenges outstanding at once.
pub(super) const MAX_OUTSTANDING: usize = 4096;

/// Why no challenge could be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IssueError {
    /// [`MAX_OUTSTANDING`] unexpired challenges exist.
    Full,
    /// The random generator failed.
    Random,
}

/// The outstanding challenges.
#[derive(Debug)]
pub(super) struct Challenges {
    outstanding: Mutex<HashMap<[u8; CHALLENGE_LEN], Instant>>,
    rng: SystemRandom,
    ttl: Duration,
}

impl Challenges {
    /// No challenges yet; each lives `ttl`.
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            outstanding: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
            ttl,
        }
    }

    /// How long each challenge lives.
    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; CHALLENGE_LEN], Instant>> {
        match self.outstanding.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A fresh challenge, kept until it is used or expires.
    ///
    /// # Errors
    ///
    /// [`IssueError::Full`] when too many are outstanding, [`IssueError::Random`] without
    /// randomness.
    pub(super) fn issue(&self) -> Result<[u8; CHALLENGE_LEN], IssueError> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        self.rng
            .fill(&mut challenge)
            .map_err(|_| IssueError::Random)?;
        let now = Instant::now();
        let mut map = self.locked();
        if map.len() >= MAX_OUTSTANDING {
            map.retain(|_, expires| *expires > now);
            if map.len() >= MAX_OUTSTANDING {
                return Err(IssueError::Full);
            }
        }
        map.insert(challenge, now + self.ttl);
        Ok(challenge)
    }

    /// Uses `challenge`: true exactly once for a challenge issued less than its lifetime ago.
    pub(super) fn take(&self, challenge: &[u8; CHALLENGE_LEN]) -> bool {
        let now = Instant::now();
        self.locked()
            .remove(challenge)
            .is_some_and(|expires| expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_and_expiring() {
        let book = Challenges::new(Duration::from_secs(60));
        let c = book.issue().unwrap();
        assert!(book.take(&c));
        assert!(!book.take(&c), "a challenge is used once");
        assert!(!book.take(&[0; CHALLENGE_LEN]), "unknown");
        let short = Challenges::new(Duration::ZERO);
        let c = short.issue().unwrap();
        assert!(!short.take(&c), "expired");
    }

    #[test]
    fn bounded() {
        let book = Challenges::new(Duration::from_secs(60));
        for _ in 0..MAX_OUTSTANDING {
            book.issue().unwrap();
        }
        assert_eq!(book.issue(), Err(IssueError::Full));
        let expired = Challenges::new(Duration::ZERO);
        for _ in 0..MAX_OUTSTANDING + 10 {
            expired.issue().unwrap();
        }
    }
}
