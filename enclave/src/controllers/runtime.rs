//! The controller runtime, in the reconciler style of kube-runtime: watch
//! tasks turn store events into keys on a de-duplicating work queue, and
//! one loop per controller reconciles one key at a time, requeueing with
//! backoff on error, until shutdown.
//!
//! Idle controllers cost nothing but their parked watches: there is no
//! periodic resync. A reconcile reads the current objects from the store
//! (not a cache), so it never acts on stale state and needs none of
//! upstream's "expectations".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::metrics::workqueue::QueueMetrics;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, WatchOptions, meta};

/// A namespaced object's key on a work queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ObjectKey {
    /// The namespace.
    pub(crate) namespace: String,
    /// The name.
    pub(crate) name: String,
}

impl ObjectKey {
    /// The key of `obj`.
    pub(crate) fn of(obj: &serde_json::Value) -> Self {
        ObjectKey {
            namespace: meta::namespace(obj).to_string(),
            name: meta::name(obj).to_string(),
        }
    }
}

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `delay` even if nothing changes (e.g. a
    /// progress deadline).
    #[must_use]
    pub(crate) const fn requeue(delay: Duration) -> Self {
        Action {
            requeue_after: Some(delay),
        }
    }

    /// Wait for the next watch event about this key.
    #[must_use]
    pub(crate) const fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }
}

/// One controller: which kinds it watches, how their events map to keys,
/// and how one key is reconciled. The runtime owns it and calls it from
/// one task, so it may keep plain mutable state.
pub(crate) trait Reconciler: Send + 'static {
    /// What the queue holds (namespace/name for most controllers).
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;

    /// The controller's name, for logs.
    const NAME: &'static str;

    /// Maps one watch event of the `kind`-th watched resource to keys.
    /// May read the store (e.g. to find which ReplicaSets select an
    /// orphaned pod).
    fn keys_for(
        &mut self,
        kind: usize,
        event: &WatchEvent,
    ) -> impl Future<Output = Vec<Self::Key>> + Send;

    /// Keys to reconcile once at start, before any watch event (e.g. an
    /// object that must exist even when nothing is stored yet).
    fn initial_keys(&mut self) -> Vec<Self::Key> {
        Vec::new()
    }

    /// Brings the world in line with the object named by `key`.
    /// Idempotent: it runs again after errors and restarts.
    fn reconcile(&mut self, key: &Self::Key) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// A de-duplicating work queue with delayed entries.
#[derive(Debug)]
pub(crate) struct Queue<K> {
    ready: VecDeque<K>,
    /// The keys waiting in `ready`, with when they were added.
    queued: HashMap<K, Instant>,
    delayed: BTreeMap<(Instant, u64), K>,
    seq: u64,
    metrics: Option<QueueMetrics>,
}

impl<K: Clone + Eq + Hash> Queue<K> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Queue {
            ready: VecDeque::new(),
            queued: HashMap::new(),
            delayed: BTreeMap::new(),
            seq: 0,
            metrics: None,
        }
    }

    /// Reports adds, depth and waits as the work queue `name`.
    pub(crate) fn with_metrics(mut self, name: &'static str) -> Self {
        self.metrics = Some(crate::metrics::registry().workqueue().queue(name));
        self
    }

    /// Queues `key` unless it is already waiting.
    pub(crate) fn add(&mut self, key: K) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.queued.entry(key.clone()) {
            e.insert(Instant::now());
            self.ready.push_back(key);
            if let Some(m) = &self.metrics {
                m.added();
                m.set_depth(self.ready.len());
            }
        }
    }

    /// Queues `key` once `delay` has passed.
    pub(crate) fn add_after(&mut self, key: K, delay: Duration) {
        self.seq = self.seq.wrapping_add(1);
        self.delayed.insert((Instant::now() + delay, self.seq), key);
    }

    /// Moves due delayed keys to the ready list; returns the next deadline.
    fn promote(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                return Some(entry.key().0);
            }
            let key = entry.remove();
            self.add(key);
        }
        None
    }

    /// The next ready key.
    pub(crate) fn pop(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        let since = self.queued.remove(&key);
        if let Some(m) = &self.metrics {
            m.set_depth(self.ready.len());
            if let Some(t) = since {
                m.taken(t.elapsed());
            }
        }
        Some(key)
    }

    /// Whether a key is ready now.
    fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}

/// Backoff after the `failures`-th consecutive error of one key: 5 ms
/// doubling up to 60 s (upstream's default rate limiter goes to 1000 s;
/// a shorter cap keeps a stuck object retried in human time).
fn backoff(failures: u32) -> Duration {
    let ms = 5u64.saturating_mul(1u64 << failures.min(20));
    Duration::from_millis(ms.min(60_000))
}

/// Runs `reconciler` until `shutdown`: one watch task per entry of
/// `watched`, and the reconcile loop on this task. A reconcile in flight
/// when shutdown comes finishes (the graceful step); the owner aborts the
/// task if that takes too long.
pub(crate) async fn run<R: Reconciler>(
    mut reconciler: R,
    objects: ObjectStore,
    watched: Vec<Arc<ResourceInfo>>,
    shutdown: CancellationToken,
) {
    // Bounded: a slow reconcile holds the watches back (their store
    // watchers buffer or expire, and an expired watch relists).
    let (tx, mut rx) = mpsc::channel::<(usize, WatchEvent)>(1024);
    let mut watches = tokio::task::JoinSet::new();
    for (i, info) in watched.into_iter().enumerate() {
        watches.spawn(watch_kind(
            objects.clone(),
            info,
            i,
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    let mut queue = Queue::new().with_metrics(R::NAME);
    let metrics = crate::metrics::registry().workqueue().queue(R::NAME);
    let mut failures: HashMap<R::Key, u32> = HashMap::new();
    for key in reconciler.initial_keys() {
        queue.add(key);
    }
    loop {
        let deadline = queue.promote();
        if !queue.has_ready() {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                ev = rx.recv() => match ev {
                    Some((kind, event)) => {
                        for key in reconciler.keys_for(kind, &event).await {
                            queue.add(key);
                        }
                    }
                    None => break,
                },
                () = sleep_until(deadline) => {}
            }
            continue;
        }
        // Events first, so that a burst of them coalesces into one reconcile.
        while let Ok((kind, event)) = rx.try_recv() {
            for key in reconciler.keys_for(kind, &event).await {
                queue.add(key);
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let Some(key) = queue.pop() else { continue };
        let span = tracing::debug_span!("reconcile", controller = R::NAME, object.ref = ?key);
        let started = Instant::now();
        let result = {
            let _enter = span.enter();
            tracing::trace!("start");
            reconciler.reconcile(&key).await
        };
        metrics.processed(started.elapsed());
        match result {
            Ok(action) => {
                failures.remove(&key);
                if let Some(delay) = action.requeue_after {
                    queue.add_after(key, delay);
                }
            }
            Err(e) => {
                let n = failures.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
                let delay = backoff(*n);
                if *n > 3 {
                    tracing::warn!(controller = R::NAME, object.ref = ?key, error = %e.one_line(), retry_in = ?delay, "reconcile failed");
                } else {
                    tracing::debug!(controller = R::NAME, object.ref = ?key, error = %e.one_line(), retry_in = ?delay, "reconcile failed");
                }
                metrics.retried();
                queue.add_after(key, delay);
            }
        }
    }
    shutdown.cancel();
    while watches.join_next().await.is_some() {}
    tracing::debug!(controller = R::NAME, "stopped");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Watches one resource in every namespace and forwards its events: a
/// list first (replayed as ADDED), then a watch from the list's revision;
/// after 410 Gone it lists again.
async fn watch_kind(
    objects: ObjectStore,
    info: Arc<ResourceInfo>,
    kind: usize,
    tx: mpsc::Sender<(usize, WatchEvent)>,
    shutdown: CancellationToken,
) {
    loop {
        // Always from a list: after 410 Gone (or any other error the
        // stream ends with) events may have been missed, and the list
        // replays everything as ADDED, which reconciles are made for.
        let mut stream = match objects
            .watch(info.clone(), None, WatchOptions::default())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(resource = %info.resource, error = %e, "watch failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                ev = stream.next() => ev,
            };
            match event {
                // The store shut down: nothing more to watch.
                None => return,
                Some(WatchEvent::Error(status)) => {
                    let code = status.get("code").and_then(serde_json::Value::as_u64);
                    tracing::debug!(
                        resource = %info.resource,
                        ?code,
                        "watch ended; listing again"
                    );
                    break;
                }
                Some(WatchEvent::Bookmark(_)) => {}
                Some(event) => {
                    if tx.send((kind, event)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_deduplicates_and_delays() {
        let mut q = Queue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.pop(), Some("a"));
        q.add("a");
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), None);
        q.add_after("c", Duration::from_millis(0));
        assert!(q.promote().is_none());
        assert_eq!(q.pop(), Some("c"));
        q.add_after("d", Duration::from_secs(60));
        assert!(q.promote().is_some());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert!(backoff(5) > backoff(4));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }
}
