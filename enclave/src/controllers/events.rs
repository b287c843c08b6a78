//! core/v1 Events the controllers record about the objects they act on,
//! as client-go's event recorder does for kube-controller-manager, with
//! its event correlator:
//!
//! - one Event per occurrence, named `<object>.<unix nanoseconds in hex>`
//!   in the object's namespace, `source.component` and
//!   `reportingComponent` the controller's name;
//! - a repeat (same object, type, reason and message) is counted on the
//!   Event already written (`count`, `lastTimestamp`);
//! - from the tenth distinct message with the same object, type and
//!   reason within ten minutes, they are combined into one Event whose
//!   message starts `(combined from similar events): ` and which counts
//!   every later one;
//! - at most 25 Events per object are written in a burst, then one per
//!   five minutes (the spam filter); the counts go on meanwhile.
//!
//! `kubectl describe` and `kubectl events` list them. Recording never fails
//! a reconcile: an Event that cannot be written is logged and dropped, as
//! upstream's recorder drops it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Api, text, uid};
use crate::registry::meta;

/// How many keys each of a recorder's caches holds (client-go's LRU caches
/// hold 4096); when one is full it starts over.
const REMEMBERED: usize = 4096;

/// Distinct messages of similar events before they are combined
/// (client-go's `defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;

/// How long similar events count towards combining
/// (client-go's `defaultAggregateIntervalInSeconds`).
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);

/// The prefix of a combined event's message (client-go's).
const COMBINED: &str = "(combined from similar events): ";

/// Events per object written in a burst (client-go's `defaultSpamBurst`).
const SPAM_BURST: f64 = 25.0;

/// One more event per object may be written after this long
/// (client-go's `defaultSpamQPS`, 1/300).
const SPAM_REFILL: Duration = Duration::from_secs(300);

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

/// Similar events: same object (apiVersion, kind, namespace, name, uid),
/// type and reason (client-go's aggregate key; the source is the
/// recorder's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SimilarKey {
    involved: [String; 5],
    ty: EventType,
    reason: String,
}

/// What one Event counts: one message of similar events, or (`None`) the
/// combined ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    similar: SimilarKey,
    message: Option<String>,
}

/// The distinct messages of similar events lately.
#[derive(Debug)]
struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

/// An Event written: its name, and how many occurrences it counts.
#[derive(Debug, Clone)]
struct Written {
    name: String,
    count: i64,
}

/// Tokens of the spam filter for one object.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the correlator keeps between events.
#[derive(Debug, Default)]
struct State {
    similar: HashMap<SimilarKey, Similar>,
    written: HashMap<EventKey, Written>,
    buckets: HashMap<[String; 5], Bucket>,
}

/// What to write for one occurrence.
#[derive(Debug)]
struct Plan {
    key: EventKey,
    message: String,
    count: i64,
    /// The Event to count it on, if one was written for its key.
    existing: Option<String>,
}

/// Empties `map` when it is full, so caches stay bounded.
fn bound<K, V>(map: &mut HashMap<K, V>) {
    if map.len() >= REMEMBERED {
        map.clear();
    }
}

impl State {
    /// Correlates one occurrence (client-go's `EventCorrelate`): combines
    /// similar events, counts repeats, and returns `None` when the spam
    /// filter drops it.
    fn correlate(&mut self, similar: SimilarKey, message: &str, now: Instant) -> Option<Plan> {
        bound(&mut self.similar);
        let seen = self
            .similar
            .entry(similar.clone())
            .or_insert_with(|| Similar {
                messages: HashSet::new(),
                last: now,
            });
        if now.duration_since(seen.last) > AGGREGATE_INTERVAL {
            seen.messages.clear();
        }
        seen.messages.insert(message.to_string());
        seen.last = now;
        let (key, message) = if seen.messages.len() < AGGREGATE_MAX_EVENTS {
            let key = EventKey {
                similar: similar.clone(),
                message: Some(message.to_string()),
            };
            (key, message.to_string())
        } else {
            // Keep the set below the threshold, as upstream's PopAny does.
            if let Some(any) = seen.messages.iter().next().cloned() {
                seen.messages.remove(&any);
            }
            let key = EventKey {
                similar: similar.clone(),
                message: None,
            };
            (key, format!("{COMBINED}{message}"))
        };
        let prior = self.written.get(&key).cloned();
        let count = prior.as_ref().map_or(1, |w| w.count + 1);
        if let Some(w) = self.written.get_mut(&key) {
            w.count = count;
        }
        bound(&mut self.buckets);
        let bucket = self.buckets.entry(similar.involved).or_insert(Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return None;
        }
        bucket.tokens -= 1.0;
        Some(Plan {
            key,
            message,
            count,
            existing: prior.map(|w| w.name),
        })
    }

    /// Remembers the Event written for `key`.
    fn wrote(&mut self, key: EventKey, name: String, count: i64) {
        bound(&mut self.written);
        self.written.insert(key, Written { name, count });
    }
}

/// Records Events for one controller (`component`, e.g.
/// `deployment-controller`).
#[derive(Debug)]
pub(crate) struct EventRecorder {
    events: Api,
    component: &'static str,
    /// A `std` mutex: it is never held across an await.
    state: Mutex<State>,
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
            state: Mutex::new(State::default()),
        }
    }

    /// Records an event about `obj` (which carries its `apiVersion` and
    /// `kind`, as stored objects do).
    pub(crate) async fn record(&self, obj: &Value, ty: EventType, reason: &str, message: &str) {
        let similar = SimilarKey {
            involved: [
                text(obj, "/apiVersion").to_string(),
                text(obj, "/kind").to_string(),
                meta::namespace(obj).to_string(),
                meta::name(obj).to_string(),
                uid(obj).to_string(),
            ],
            ty,
            reason: reason.to_string(),
        };
        let plan = match self.state.lock() {
            Ok(mut st) => st.correlate(similar, message, Instant::now()),
            Err(_) => return,
        };
        let Some(plan) = plan else {
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        };
        // Cluster-scoped objects' events go to `default`, as upstream's.
        let ns = match meta::namespace(obj) {
            "" => "default",
            ns => ns,
        };
        let now = meta::format_time(meta::now());
        if let Some(name) = &plan.existing {
            let counted = self
                .events
                .edit(ns, name, |cur| {
                    let mut next = cur.clone();
                    next["count"] = json!(plan.count);
                    next["lastTimestamp"] = json!(now);
                    next["message"] = json!(plan.message);
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
            "involvedObject": reference(obj),
            "reason": reason,
            "message": plan.message,
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
                if let Ok(mut st) = self.state.lock() {
                    st.wrote(plan.key, name, 1);
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
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::{EventRecorder, EventType, SimilarKey, State};

    fn similar() -> SimilarKey {
        SimilarKey {
            involved: ["apps/v1", "ReplicaSet", "ns", "web", "u"].map(String::from),
            ty: EventType::Normal,
            reason: "SuccessfulCreate".into(),
        }
    }

    #[test]
    fn the_tenth_distinct_similar_event_starts_a_combined_one() {
        let mut st = State::default();
        let t = Instant::now();
        for i in 0..9 {
            let p = st
                .correlate(similar(), &format!("Created pod: p{i}"), t)
                .unwrap();
            assert_eq!(p.message, format!("Created pod: p{i}"));
            assert!(p.existing.is_none() && p.count == 1);
            st.wrote(p.key, format!("e{i}"), 1);
        }
        let p = st.correlate(similar(), "Created pod: p9", t).unwrap();
        assert_eq!(p.message, "(combined from similar events): Created pod: p9");
        assert!(p.existing.is_none());
        st.wrote(p.key, "combined".into(), 1);
        let p = st.correlate(similar(), "Created pod: p10", t).unwrap();
        assert_eq!(
            p.message,
            "(combined from similar events): Created pod: p10"
        );
        assert_eq!(p.existing.as_deref(), Some("combined"));
        assert_eq!(p.count, 2);
        // Ten minutes later similar events start afresh.
        let later = t + Duration::from_secs(601);
        let p = st.correlate(similar(), "Created pod: p11", later).unwrap();
        assert_eq!(p.message, "Created pod: p11");
    }

    #[test]
    fn repeats_count_and_the_spam_filter_passes_25_then_one_per_five_minutes() {
        let mut st = State::default();
        let t = Instant::now();
        let first = st.correlate(similar(), "Deleted pod: a", t).unwrap();
        st.wrote(first.key, "e".into(), 1);
        for n in 2..=25 {
            let p = st.correlate(similar(), "Deleted pod: a", t).unwrap();
            assert_eq!((p.existing.as_deref(), p.count), (Some("e"), n));
        }
        assert!(st.correlate(similar(), "Deleted pod: a", t).is_none());
        let p = st
            .correlate(similar(), "Deleted pod: a", t + Duration::from_secs(300))
            .unwrap();
        assert_eq!(p.count, 27, "dropped occurrences still count");
    }

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
