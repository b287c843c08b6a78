//! Event expiry: kube-apiserver stores every Event under an etcd lease of
//! `--event-ttl` (1 hour by default), renewed by each write, so an event
//! disappears an hour after it last changed. The store has no leases; this
//! controller plays their part for both `v1` and `events.k8s.io/v1` events.
//!
//! A write is timed when its watch event arrives. Events that were already
//! stored when the controller started (after a restart) are timed by the
//! latest write time they record (creation, managedFields, and the event's own
//! timestamps), never later than the moment they are first seen, so a
//! timestamp in the future cannot keep an event alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::Error;
use super::runtime::{Action, Reconciler};
use crate::registry::generic::DeleteOptions;
use crate::registry::{self, ObjectStore, ResourceInfo, WatchEvent, meta};

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// One stored event: which of the watched event resources, and where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EventKey {
    kind: usize,
    namespace: String,
    name: String,
}

/// When an event was last written, as far as the controller knows.
#[derive(Debug)]
struct LastWrite {
    uid: String,
    resource_version: String,
    at: Timestamp,
}

/// The event TTL controller.
#[derive(Debug)]
pub(crate) struct EventTtl {
    objects: ObjectStore,
    kinds: Vec<Arc<ResourceInfo>>,
    ttl: Duration,
    writes: HashMap<EventKey, LastWrite>,
}

impl EventTtl {
    /// The controller over the event resources `kinds` (watched in this order).
    pub(crate) fn new(objects: ObjectStore, kinds: Vec<Arc<ResourceInfo>>, ttl: Duration) -> Self {
        EventTtl {
            objects,
            kinds,
            ttl,
            writes: HashMap::new(),
        }
    }
}

/// The latest write time `event` records, if any: its creation, its
/// managers' last writes, and the times the event reports itself.
fn recorded_write(event: &Value) -> Option<Timestamp> {
    const TIMES: [&str; 5] = [
        "/metadata/creationTimestamp",
        "/lastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/deprecatedLastTimestamp",
    ];
    let own = TIMES.iter().filter_map(|p| event.pointer(p));
    let managers = event
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("time"));
    own.chain(managers)
        .filter_map(|t| t.as_str()?.parse::<Timestamp>().ok())
        .max()
}

impl Reconciler for EventTtl {
    type Key = EventKey;

    const NAME: &'static str = "event-ttl";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<EventKey> {
        let (obj, live_write) = match event {
            WatchEvent::Added(o) => (o, false),
            WatchEvent::Modified(o) => (o, true),
            WatchEvent::Deleted(o) => {
                self.writes.remove(&EventKey {
                    kind,
                    namespace: meta::namespace(o).to_string(),
                    name: meta::name(o).to_string(),
                });
                return Vec::new();
            }
            _ => return Vec::new(),
        };
        let key = EventKey {
            kind,
            namespace: meta::namespace(obj).to_string(),
            name: meta::name(obj).to_string(),
        };
        let resource_version = meta::meta_str(obj, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let uid = super::client::uid(obj).to_string();
        let now = Timestamp::now();
        let at = match self.writes.get(&key) {
            // A re-list after a broken watch: nothing was written since.
            Some(known) if known.resource_version == resource_version => known.at,
            // A change this controller saw happen, or one it missed while re-listing.
            Some(_) => now,
            None if live_write => now,
            // Stored before the controller started, or just created.
            None => recorded_write(obj).map_or(now, |t| t.min(now)),
        };
        self.writes.insert(
            key.clone(),
            LastWrite {
                uid,
                resource_version,
                at,
            },
        );
        vec![key]
    }

    async fn reconcile(&mut self, key: &EventKey) -> Result<Action, Error> {
        let Some(last) = self.writes.get(key) else {
            return Ok(Action::await_change());
        };
        let ttl = jiff::SignedDuration::try_from(self.ttl).unwrap_or(jiff::SignedDuration::MAX);
        let expires = last.at.checked_add(ttl).unwrap_or(Timestamp::MAX);
        let now = Timestamp::now();
        if now < expires {
            let left = Duration::try_from(expires.duration_since(now)).unwrap_or(self.ttl);
            return Ok(Action::requeue(left));
        }
        let Some(info) = self.kinds.get(key.kind) else {
            return Ok(Action::await_change());
        };
        // Only the version whose time ran out: a write since then renews it.
        let opts = DeleteOptions {
            uid: Some(last.uid.clone()),
            resource_version: Some(last.resource_version.clone()),
            ..Default::default()
        };
        match self
            .objects
            .delete(info, Some(&key.namespace), &key.name, &opts)
            .await
        {
            // Gone (also when its deletion happened while the watch was re-listing, which sends no event).
            Ok(_) | Err(registry::Error::NotFound { .. }) => {
                self.writes.remove(key);
                Ok(Action::await_change())
            }
            // Written since: its watch event has renewed it.
            Err(registry::Error::Conflict { .. }) => Ok(Action::await_change()),
            Err(source) => Err(Error::Api {
                verb: "delete",
                resource: info.resource.clone(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                source: Box::new(source),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_latest_recorded_write_counts() {
        let event = json!({
            "metadata": {
                "creationTimestamp": "2026-11-22T01:00:00Z",
                "managedFields": [
                    {"manager": "a", "time": "2026-11-22T01:05:00Z"},
                    {"manager": "b", "time": "not a time"},
                ],
            },
            "lastTimestamp": "2026-11-22T01:03:00Z",
            "series": {"lastObservedTime": "2026-11-22T01:04:00.123456Z"},
        });
        assert_eq!(
            recorded_write(&event),
            Some("2026-11-22T01:05:00Z".parse().unwrap())
        );
        assert_eq!(recorded_write(&json!({"metadata": {}})), None);
        let micro = json!({"eventTime": "2026-11-22T02:00:00.500000Z"});
        assert_eq!(
            recorded_write(&micro),
            Some("2026-11-22T02:00:00.5Z".parse().unwrap())
        );
    }
}
