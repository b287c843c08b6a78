//! The replica arithmetic of upstream's deployment controller
//! (`deployment/util`): maxSurge and maxUnavailable, the new ReplicaSet's
//! size during a rolling update, and proportional scaling. Pure functions
//! over the JSON objects.

use serde_json::Value;

use super::revision::MAX_REPLICAS;
use crate::controllers::client::{annotation, int, text};

/// `spec.replicas` (defaulted to 1 by the registry).
pub(crate) fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Whether the strategy is RollingUpdate (the default).
pub(crate) fn is_rolling(d: &Value) -> bool {
    text(d, "/spec/strategy/type") != "Recreate"
}

/// upstream's `GetScaledValueFromIntOrPercent`: an integer as is, `N%` of
/// `total` rounded up or down; malformed values count as 0 (validation
/// rejects them).
fn scaled(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let scaled = p.saturating_mul(total);
            if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            }
        }
        _ => 0,
    }
}

/// upstream's `ResolveFenceposts`: (maxSurge, maxUnavailable) in pods;
/// both zero would deadlock, so maxUnavailable becomes 1.
fn fenceposts(d: &Value) -> (i64, i64) {
    let want = replicas(d);
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let surge = scaled(ru.and_then(|r| r.get("maxSurge")), want, true);
    let unavailable = scaled(ru.and_then(|r| r.get("maxUnavailable")), want, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// upstream's `MaxSurge`: 0 unless RollingUpdate.
pub(crate) fn max_surge(d: &Value) -> i64 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

/// upstream's `MaxUnavailable`: 0 unless RollingUpdate with replicas, at
/// most `spec.replicas`.
pub(crate) fn max_unavailable(d: &Value) -> i64 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// upstream's `NewRSNewReplicas`: how big the new ReplicaSet may be now.
/// Recreate: all of `spec.replicas`. RollingUpdate: as many as maxSurge
/// leaves room for above the pods all ReplicaSets want, at most
/// `spec.replicas`.
pub(crate) fn new_rs_new_replicas(d: &Value, all: &[&Value], new: &Value) -> i64 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let want = replicas(d);
    let current: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let max_total = want + max_surge(d);
    if current >= max_total {
        return replicas(new);
    }
    let up = (max_total - current).min(want - replicas(new)).max(0);
    replicas(new) + up
}

/// upstream's `getReplicaSetFraction`: how many replicas `rs` gains (or
/// loses) when the deployment is scaled, in proportion to its share of the
/// size it was last scaled for (`max-replicas`).
fn fraction(rs: &Value, d: &Value) -> i64 {
    if replicas(d) == 0 {
        return -replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotation(rs, MAX_REPLICAS)
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or_else(|| int(d, "/status/replicas"));
    if annotated == 0 {
        return 0;
    }
    // Go's math.Round: halves away from zero.
    let size = (replicas(rs) * deployment_replicas) as f64 / annotated as f64;
    size.round() as i64 - replicas(rs)
}

/// upstream's `GetProportion`.
pub(crate) fn proportion(rs: &Value, d: &Value, to_add: i64, added: i64) -> i64 {
    if replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let f = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        f.min(allowed)
    } else {
        f.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rolling(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        let d = rolling(10, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        let d = rolling(1, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
        let d = rolling(3, json!(0), json!(0));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1));
        let d = rolling(3, json!(0), json!("200%"));
        assert_eq!(max_unavailable(&d), 3);
        let d = json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn the_new_replica_set_grows_by_the_surge() {
        let d = rolling(3, json!(1), json!(0));
        let old = json!({"spec": {"replicas": 3}});
        let new = json!({"spec": {"replicas": 0}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let new = json!({"spec": {"replicas": 1}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let old = json!({"spec": {"replicas": 1}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 3);
    }

    #[test]
    fn proportions_follow_the_max_replicas_annotation() {
        // 10 → 20 replicas with maxSurge 0: a ReplicaSet holding 4 of 10 gets 4 more.
        let d = rolling(20, json!(0), json!(1));
        let rs =
            json!({"metadata": {"annotations": {MAX_REPLICAS: "10"}}, "spec": {"replicas": 4}});
        assert_eq!(proportion(&rs, &d, 10, 0), 4);
        assert_eq!(proportion(&rs, &d, 10, 8), 2);
        let d0 = rolling(0, json!(0), json!(1));
        assert_eq!(proportion(&rs, &d0, -10, 0), -4);
    }
}
