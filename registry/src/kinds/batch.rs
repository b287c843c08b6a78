//! batch/v1 `jobs` and `cronjobs`: upstream's defaults (including the
//! generated job selector), validation and columns.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Map, Value, json};

use super::pods::{default_pod_spec, validate_pod_spec};
use super::{
    containers_images, default_at, drop_status, format_selector, immutable, int, keep_status, s,
    typed, unsupported, validate_non_negative, validate_selector,
};
use crate::table::{Column, age, age_cell, human_duration, name_cell};
use crate::{FieldError, Strategy, meta};

const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";
const SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// Upstream's `backoffLimit` default when `backoffLimitPerIndex` is set:
/// the per-index limit governs, so the job-wide one is effectively off.
const BACKOFF_LIMIT_PER_INDEX_DEFAULT: i64 = i32::MAX as i64;

/// Job defaults as upstream's `SetDefaults_Job` (1.33, its beta features
/// on): completions and parallelism, backoffLimit, completionMode,
/// suspend, podReplacementPolicy, manualSelector (defaulted since 1.29),
/// the Job's labels from its template's when it has none, and the pod
/// template's defaults.
fn default_job(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        default_job_spec(spec);
    }
    default_labels_from_template(obj);
}

/// The `SetDefaults_Job` defaults that live in the spec.
fn default_job_spec(spec: &mut Value) {
    let has = |v: &Value, k: &str| v.get(k).is_some_and(|x| !x.is_null());
    if !has(spec, "completions") && !has(spec, "parallelism") {
        default_at(spec, "/completions", json!(1));
    }
    default_at(spec, "/parallelism", json!(1));
    let backoff = if has(spec, "backoffLimitPerIndex") {
        BACKOFF_LIMIT_PER_INDEX_DEFAULT
    } else {
        6
    };
    default_at(spec, "/backoffLimit", json!(backoff));
    default_at(spec, "/completionMode", json!("NonIndexed"));
    default_at(spec, "/suspend", json!(false));
    let replacement = if has(spec, "podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_at(spec, "/podReplacementPolicy", json!(replacement));
    default_at(spec, "/manualSelector", json!(false));
    default_job_spec_nested(spec);
}

/// The defaults of the types inside a job spec, which upstream's generated
/// defaulters apply to a CronJob's job template too (unlike
/// `SetDefaults_Job`): the pod template's, and `status: "True"` in pod
/// failure policy condition patterns.
fn default_job_spec_nested(spec: &mut Value) {
    if let Some(pod) = spec.pointer_mut("/template/spec") {
        default_pod_spec(pod);
    }
    if let Some(Value::Array(rules)) = spec.pointer_mut("/podFailurePolicy/rules") {
        for rule in rules {
            if let Some(Value::Array(patterns)) = rule.get_mut("onPodConditions") {
                for pattern in patterns {
                    // The typed decode turns a missing `status` into "".
                    if pattern.get("status").and_then(Value::as_str) == Some("") {
                        pattern["status"] = json!("True");
                    }
                    default_at(pattern, "/status", json!("True"));
                }
            }
        }
    }
}

/// A Job without labels takes its pod template's (upstream applies this
/// default on every decode, so the labels the selector generation adds to
/// the template show on the Job as well).
fn default_labels_from_template(obj: &mut Value) {
    let Some(Value::Object(template)) = obj.pointer("/spec/template/metadata/labels") else {
        return;
    };
    let has_labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|l| !l.is_empty());
    if has_labels {
        return;
    }
    let labels = Value::Object(template.clone());
    if let Some(m) = meta::metadata_mut(obj) {
        m.insert("labels".into(), labels);
    }
}

/// Checks a job spec at JSON pointer `ptr` (field paths under `path`).
fn validate_job_spec(obj: &Value, ptr: &str, path: &str) -> Vec<FieldError> {
    let Some(spec) = obj.pointer(ptr) else {
        return vec![FieldError::required(path.to_string(), "")];
    };
    let mut out = validate_pod_spec(
        spec.pointer("/template/spec"),
        &format!("{path}.template.spec"),
    );
    for f in [
        "completions",
        "parallelism",
        "backoffLimit",
        "activeDeadlineSeconds",
    ] {
        let v = int(spec, &format!("/{f}"));
        if v < 0 {
            out.push(FieldError::invalid_int(
                format!("{path}.{f}"),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    let restart = s(spec, "/template/spec/restartPolicy");
    if restart != "OnFailure" && restart != "Never" {
        let field = format!("{path}.template.spec.restartPolicy");
        if restart.is_empty() {
            out.push(FieldError::required(
                field,
                "valid values: \"OnFailure\", \"Never\"",
            ));
        } else {
            out.push(unsupported(field, restart, &["OnFailure", "Never"]));
        }
    }
    out
}

/// `jobs`: a generated selector (`batch.kubernetes.io/controller-uid`)
/// unless `manualSelector` is set; `status.successful` is selectable.
#[derive(Debug)]
pub(crate) struct Jobs;

/// Upstream's `generateSelector`: labels on the template, a selector on the uid.
fn generate_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let uid = meta::meta_str(obj, "uid").unwrap_or("").to_string();
    let name = meta::name(obj).to_string();
    if obj.pointer("/spec/selector").is_some_and(|s| !s.is_null()) {
        // A user-set selector without manualSelector is rejected in validate.
        return;
    }
    default_at(obj, "/spec/template/metadata/labels", json!({}));
    if let Some(Value::Object(labels)) = obj.pointer_mut("/spec/template/metadata/labels") {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k).or_insert_with(|| Value::String(v.clone()));
        }
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let mut m = Map::new();
        m.insert(
            "batch.kubernetes.io/controller-uid".into(),
            Value::String(uid),
        );
        spec.insert("selector".into(), json!({"matchLabels": m}));
    }
}

fn condition_true(obj: &Value, ty: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        })
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

fn job_status(obj: &Value) -> &'static str {
    if condition_true(obj, "Complete") {
        "Complete"
    } else if condition_true(obj, "Failed") {
        "Failed"
    } else if meta::meta_str(obj, "deletionTimestamp").is_some() {
        "Terminating"
    } else if condition_true(obj, "Suspended") {
        "Suspended"
    } else if condition_true(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn job_completions(obj: &Value) -> String {
    let succeeded = int(obj, "/status/succeeded");
    match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let p = int(obj, "/spec/parallelism");
            if p > 1 {
                format!("{succeeded}/1 of {p}")
            } else {
                format!("{succeeded}/1")
            }
        }
    }
}

fn job_duration(obj: &Value, now: jiff::Timestamp) -> String {
    let t = |p: &str| s(obj, p).parse::<jiff::Timestamp>().ok();
    match (t("/status/startTime"), t("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.as_second() - start.as_second()),
        (Some(start), Some(end)) => human_duration(end.as_second() - start.as_second()),
    }
}

impl Strategy for Jobs {
    typed!(Job);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
        if let Some(spec) = obj.get_mut("spec") {
            default_job_spec(spec);
        }
        generate_selector(obj);
        // After the generation: upstream defaults the labels again when the
        // stored Job is read, by then from the generated template labels.
        default_labels_from_template(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        default_job(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = validate_job_spec(obj, "/spec", "spec");
        let manual = obj.pointer("/spec/manualSelector") == Some(&json!(true));
        let uid = meta::meta_str(obj, "uid").unwrap_or("");
        let generated = obj
            .pointer("/spec/selector/matchLabels/batch.kubernetes.io~1controller-uid")
            .and_then(Value::as_str)
            == Some(uid);
        if !manual && !generated {
            out.push(FieldError::invalid(
                "spec.selector",
                &obj.pointer("/spec/selector")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                "`selector` not auto-generated",
            ));
        } else {
            out.extend(validate_selector(obj, "spec", "/spec/template", "job"));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/selector"));
        out.extend(immutable(new, old, "/spec/completions"));
        let suspended = old.pointer("/spec/suspend") == Some(&json!(true));
        if !suspended {
            out.extend(immutable(new, old, "/spec/template"));
        }
        out
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.successful").then(|| int(obj, "/status/succeeded").to_string())
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Status", "Status of the job."),
            Column::text(
                "Completions",
                "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.",
            ),
            Column::text("Duration", "Time required to complete the job."),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
            Column::text("Selector", SELECTOR).wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/template");
        vec![
            name_cell(obj),
            json!(job_status(obj)),
            json!(job_completions(obj)),
            json!(job_duration(obj, now)),
            age_cell(obj, now),
            containers,
            images,
            format_selector(obj.pointer("/spec/selector")),
        ]
    }
}

/// `cronjobs`.
#[derive(Debug)]
pub(crate) struct CronJobs;

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// A standard five-field cron schedule (or a descriptor), as the cron
/// library upstream uses accepts it; the error in its words.
fn check_schedule(schedule: &str) -> Result<(), String> {
    let sched = schedule.trim();
    if sched.starts_with("TZ=") || sched.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if sched.starts_with('@') {
        if DESCRIPTORS.contains(&sched) || sched.starts_with("@every ") {
            return Ok(());
        }
        return Err(format!("unrecognized descriptor: {sched}"));
    }
    let fields: Vec<&str> = sched.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for f in &fields {
        let ok = f
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?'));
        if !ok {
            return Err(format!("failed to parse int from {f}"));
        }
    }
    Ok(())
}

/// Upstream's `validateTimeZone`: an IANA zone name from the time zone
/// database (the bundled one the CronJob controller reads), not `Local`.
fn check_time_zone(tz: &str) -> Option<FieldError> {
    let why = if tz.is_empty() {
        "timeZone must be nil or non-empty string".to_string()
    } else if tz.eq_ignore_ascii_case("local") {
        "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
            .to_string()
    } else if jiff::tz::TimeZone::get(tz).is_err() {
        format!("unknown time zone {tz}")
    } else {
        return None;
    };
    Some(FieldError::invalid("spec.timeZone", tz, &why))
}

/// Upstream's `SetDefaults_CronJob` and the nested types' defaults of its
/// job template; not `SetDefaults_Job`, which upstream applies to Jobs
/// only (a CronJob's template gets those when its Jobs are created).
fn cronjob_defaults(obj: &mut Value) {
    default_at(obj, "/spec/concurrencyPolicy", json!("Allow"));
    default_at(obj, "/spec/suspend", json!(false));
    default_at(obj, "/spec/successfulJobsHistoryLimit", json!(3));
    default_at(obj, "/spec/failedJobsHistoryLimit", json!(1));
    if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec") {
        default_job_spec_nested(spec);
    }
}

impl Strategy for CronJobs {
    typed!(CronJob);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
        cronjob_defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        cronjob_defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        let schedule = s(obj, "/spec/schedule");
        if schedule.is_empty() {
            out.push(FieldError::required("spec.schedule", ""));
        } else if let Err(why) = check_schedule(schedule) {
            out.push(FieldError::invalid("spec.schedule", schedule, &why));
        }
        if let Some(tz) = obj.pointer("/spec/timeZone").and_then(Value::as_str) {
            out.extend(check_time_zone(tz));
        }
        let policy = s(obj, "/spec/concurrencyPolicy");
        if !["Allow", "Forbid", "Replace"].contains(&policy) {
            out.push(unsupported(
                "spec.concurrencyPolicy",
                policy,
                &["Allow", "Forbid", "Replace"],
            ));
        }
        for f in [
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ] {
            out.extend(validate_non_negative(obj, &format!("/spec/{f}")));
        }
        out.extend(validate_job_spec(
            obj,
            "/spec/jobTemplate/spec",
            "spec.jobTemplate.spec",
        ));
        if obj
            .pointer("/spec/jobTemplate/spec/selector")
            .is_some_and(|s| !s.is_null())
            && obj.pointer("/spec/jobTemplate/spec/manualSelector") != Some(&json!(true))
        {
            out.push(FieldError::invalid(
                "spec.jobTemplate.spec.selector",
                "",
                "`selector` will be auto-generated",
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Schedule",
                "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            ),
            Column::text(
                "Timezone",
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
            ),
            Column::boolean(
                "Suspend",
                "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false.",
            ),
            Column::integer("Active", "A list of pointers to currently running jobs."),
            Column::text(
                "Last Schedule",
                "Information when was the last time the job was successfully scheduled.",
            ),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
            Column::text("Selector", SELECTOR).wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/jobTemplate/spec/template");
        let tz = s(obj, "/spec/timeZone");
        let last = match s(obj, "/status/lastScheduleTime") {
            "" => json!("<none>"),
            t => age(Some(t), now),
        };
        let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/schedule")),
            json!(if tz.is_empty() { "<none>" } else { tz }),
            json!(suspend),
            json!(super::count(obj, "/status/active")),
            last,
            age_cell(obj, now),
            containers,
            images,
            format_selector(obj.pointer("/spec/jobTemplate/spec/selector")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{CronJobs, Jobs, check_schedule};
    use crate::Strategy;

    fn created_job(
        labels: serde_json::Value,
        template_labels: serde_json::Value,
    ) -> serde_json::Value {
        let mut job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "x", "namespace": "ns", "uid": "u-1", "labels": labels},
            "spec": {"template": {"metadata": {"labels": template_labels}, "spec": {
                "restartPolicy": "Never", "containers": [{"name": "x", "image": "busybox"}]}}},
        });
        Jobs.prepare_for_create(&mut job);
        job
    }

    #[test]
    fn a_created_job_gets_upstreams_selector_labels_and_defaults() {
        let job = created_job(json!(null), json!(null));
        let generated = json!({
            "batch.kubernetes.io/controller-uid": "u-1",
            "batch.kubernetes.io/job-name": "x",
            "controller-uid": "u-1",
            "job-name": "x",
        });
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], generated);
        assert_eq!(
            job["metadata"]["labels"], generated,
            "labels from the template"
        );
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        for (field, want) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
            ("manualSelector", json!(false)),
        ] {
            assert_eq!(job["spec"][field], want, "{field}");
        }
        assert!(Jobs.validate(&job).is_empty(), "{:?}", Jobs.validate(&job));
    }

    #[test]
    fn a_jobs_own_labels_are_kept_and_user_template_labels_stay() {
        let job = created_job(json!({"tier": "batch"}), json!({"app": "a"}));
        assert_eq!(job["metadata"]["labels"], json!({"tier": "batch"}));
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["app"], "a");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "x"
        );
        let job = created_job(json!({}), json!({"app": "a"}));
        assert_eq!(
            job["metadata"]["labels"]["app"], "a",
            "empty labels default"
        );
        assert_eq!(job["metadata"]["labels"]["controller-uid"], "u-1");
    }

    #[test]
    fn per_index_backoff_and_a_failure_policy_change_the_defaults() {
        let mut job = json!({"metadata": {"name": "x", "uid": "u"}, "spec": {
            "backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 2,
            "podFailurePolicy": {"rules": [{"action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget"}, {"type": "Decoded", "status": ""}]}]},
            "template": {"spec": {}}}});
        Jobs.prepare_for_create(&mut job);
        assert_eq!(job["spec"]["backoffLimit"], json!(i32::MAX));
        assert_eq!(job["spec"]["podReplacementPolicy"], "Failed");
        for i in 0..2 {
            assert_eq!(
                job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][i]["status"],
                "True"
            );
        }
    }

    #[test]
    fn a_cronjobs_job_template_gets_only_nested_defaults() {
        let mut cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        CronJobs.prepare_for_create(&mut cj);
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        let spec = &cj["spec"]["jobTemplate"]["spec"];
        for field in [
            "completions",
            "parallelism",
            "backoffLimit",
            "suspend",
            "manualSelector",
        ] {
            assert!(spec.get(field).is_none(), "{field}: {spec}");
        }
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn schedules() {
        assert!(check_schedule("*/5 * * * *").is_ok());
        assert!(check_schedule("@hourly").is_ok());
        assert!(check_schedule("0 0 * * MON-FRI").is_ok());
        assert_eq!(
            check_schedule("never").unwrap_err(),
            "expected exactly 5 fields, found 1: [never]"
        );
        assert!(check_schedule("TZ=UTC 0 * * * *").is_err());
    }

    #[test]
    fn time_zones_come_from_the_iana_database() {
        assert!(super::check_time_zone("Europe/Berlin").is_none());
        assert!(super::check_time_zone("Local").is_some());
        let e = super::check_time_zone("Mars/Base").unwrap();
        assert!(
            e.message.contains("unknown time zone Mars/Base"),
            "{}",
            e.message
        );
    }
}
