//! kube-apiserver's request metrics: `apiserver_request_total` and
//! `apiserver_request_duration_seconds`, with upstream's labels and buckets.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// upstream's `apiserver_request_duration_seconds` buckets.
const BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// What a request was, as upstream labels it.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`,
    /// `DELETECOLLECTION` (or the HTTP method of a non-resource request).
    pub verb: String,
    /// `All` for dry-run requests, else empty.
    pub dry_run: String,
    /// The API group (empty for core and non-resource requests).
    pub group: String,
    /// The API version.
    pub version: String,
    /// The resource (plural).
    pub resource: String,
    /// The subresource, or the path of a non-resource request.
    pub subresource: String,
    /// `resource` (one object), `namespace` or `cluster` (collections).
    pub scope: String,
    /// `apiserver` for resource requests, empty otherwise.
    pub component: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    verb: String,
    dry_run: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: String,
    component: String,
    code: String,
}

/// The request metric families.
#[derive(Debug)]
pub struct ApiserverMetrics {
    requests: Family<CodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
}

impl ApiserverMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        let durations =
            Family::<RequestLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        ApiserverMetrics {
            requests,
            durations,
        }
    }

    /// Counts one request answered with `code` after `elapsed`.
    pub fn observe(&self, labels: RequestLabels, code: u16, elapsed: Duration) {
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let RequestLabels {
            verb,
            dry_run,
            group,
            version,
            resource,
            subresource,
            scope,
            component,
        } = labels;
        self.requests
            .get_or_create(&CodeLabels {
                verb,
                dry_run,
                group,
                version,
                resource,
                subresource,
                scope,
                component,
                code: code.to_string(),
            })
            .inc();
    }
}
