//! core/v1 Events the controllers record about the objects they act on,
//! as client-go's event recorder does for kube-controller-manager: one
//! Event per occurrence named `<object>.<unix nanoseconds in hex>` in the
//! object's namespace, `source.component` and `reportingComponent` the
//! controller's name, and a repeat of the same event (same object, type,
//! reason and message) counted on the Event already written (`count`,
//! `lastTimestamp`) instead of written again, as client-go's event logger
//! does. `kubectl describe` and `kubectl events` list them.
//!
//! Recording never fails a reconcile: an Event that cannot be written is
//! logged and dropped, as upstream's recorder drops it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::client::{Api, text, uid};
use crate::registry::meta;

/// How many distinct events a recorder remembers for counting repeats
/// (client-go's event logger keeps an LRU cache of 4096); when full it
/// starts over, so a repeat after that becomes a new Event.
const REMEMBERED: usize = 4096;

/// An Event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What makes two events the same one for counting (client-go's
/// `getEventKey`, less the source host, which controllers leave empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    involved: [String; 5],
    ty: EventType,
    reason: String,
    message: String,
}

/// Records Events for one controller (`component`, e.g.
/// `deployment-controller`).
#[derive(Debug)]
pub(crate) struct EventRecorder {
    events: Api,
    component: &'static str,
    /// The name of the Event last written for each key. A
    /// `std` mutex: it is never held across an await.
    seen: Mutex<HashMap<EventKey, String>>,
}

/// upstream's `ObjectReference` to `obj` (`GetReference`).
fn reference(obj: &Value) -> Value {
    json!({
        "apiVersion": text(obj, "/apiVersion"),
        "kind": text(obj, "/kind"),
        "namespace": meta::namespace(obj),
        "name": meta::name(obj),
        "uid": uid(obj),
        "resourceVersion": text(obj, "/metadata/resourceVersion"),
    })
}

impl EventRecorder {
    /// A recorder writing to `events` (core/v1 events) as `component`.
    pub(crate) fn new(events: Api, component: &'static str) -> Self {
        EventRecorder {
            events,
            component,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `obj` (which carries its `apiVersion` and
    /// `kind`, as stored objects do).
    pub(crate) async fn record(&self, obj: &Value, ty: EventType, reason: &str, message: &str) {
        let involved = reference(obj);
        let key = EventKey {
            involved: [
                text(obj, "/apiVersion").to_string(),
                text(obj, "/kind").to_string(),
                meta::namespace(obj).to_string(),
                meta::name(obj).to_string(),
                uid(obj).to_string(),
            ],
            ty,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        // Cluster-scoped objects' events go to `default`, as upstream's.
        let ns = match meta::namespace(obj) {
            "" => "default",
            ns => ns,
        };
        let now = meta::format_time(meta::now());
        let prior = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(name) = prior {
            let counted = self
                .events
                .edit(ns, &name, |cur| {
                    let mut next = cur.clone();
                    next["count"] =
                        json!(cur.get("count").and_then(Value::as_i64).unwrap_or(1) + 1);
                    next["lastTimestamp"] = json!(now);
                    Some(next)
                })
                .await;
            match counted {
                Ok(_) => return,
                // Expired or deleted: write a new one, as upstream does.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(error = %e, reason, "could not count a repeated event");
                    return;
                }
            }
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let name = format!("{}.{nanos:x}", meta::name(obj));
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": ty.as_str(),
            "eventTime": null,
            "reportingComponent": self.component,
            "reportingInstance": "",
        });
        match self.events.create(ns, event).await {
            Ok(_) => {
                if let Ok(mut seen) = self.seen.lock() {
                    if seen.len() >= REMEMBERED {
                        seen.clear();
                    }
                    seen.insert(key, name);
                }
            }
            // A terminating namespace takes no new objects; nothing to say.
            Err(e) if e.is_forbidden() => {}
            Err(e) => tracing::warn!(error = %e, reason, "could not record an event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{EventRecorder, EventType};
    use crate::controllers::client::Api;
    use crate::registry::{ListOptions, ObjectStore, ResourceTable, kinds};
    use crate::store::{FileJournal, StaticKeys, Store, StoreOptions};

    #[tokio::test]
    async fn repeats_are_counted_on_one_event_and_others_are_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::open(dir.path().join("journal")).unwrap();
        let store = Store::open(
            StoreOptions::new(dir.path().join("index"), *b"events-test-0001"),
            &StaticKeys::single([7; 32]),
            Box::new(journal),
        )
        .unwrap();
        let objects = ObjectStore::new(store, ResourceTable::new(kinds::builtin()));
        let info = |group, resource| objects.table().lookup(group, "v1", resource).unwrap();
        Api::new(objects.clone(), info("", "namespaces"))
            .create("", json!({"metadata": {"name": "ns"}}))
            .await
            .unwrap();
        let events = info("", "events");
        let recorder =
            EventRecorder::new(Api::new(objects.clone(), events.clone()), "test-controller");
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": "ns", "uid": "u-1", "resourceVersion": "5"}});

        recorder
            .record(&rs, EventType::Normal, "SuccessfulCreate", "Created pod: a")
            .await;
        recorder
            .record(&rs, EventType::Normal, "SuccessfulCreate", "Created pod: a")
            .await;
        recorder
            .record(&rs, EventType::Normal, "SuccessfulCreate", "Created pod: b")
            .await;

        let mut listed = objects
            .list(&events, Some("ns"), &ListOptions::default())
            .await
            .unwrap()
            .items;
        listed.sort_by_key(|e| e["message"].as_str().unwrap_or("").to_string());
        assert_eq!(listed.len(), 2, "{listed:?}");
        let first = &listed[0];
        assert_eq!(first["message"], "Created pod: a");
        assert_eq!(first["count"], 2);
        assert_eq!(listed[1]["count"], 1);
        assert!(
            first["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-1."),
            "{first}"
        );
        assert_eq!(
            first["involvedObject"],
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "namespace": "ns",
                "name": "web-1", "uid": "u-1", "resourceVersion": "5"})
        );
        assert_eq!(first["source"], json!({"component": "test-controller"}));
        assert_eq!(first["reportingComponent"], "test-controller");
        assert_eq!(first["type"], "Normal");
        assert_eq!(first["reason"], "SuccessfulCreate");
        assert!(first["firstTimestamp"].is_string() && first["lastTimestamp"].is_string());
    }
}
