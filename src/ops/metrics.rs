//! The Prometheus recorder and the list of every metric the connector exposes.
//!
//! Other modules record with the `metrics` macros (`metrics::counter!(names::EVENTS_TOTAL,
//! "type" => "CREATED")`); this module installs the global recorder once, sets explicit histogram
//! buckets for every `*_seconds` histogram and describes every metric (HELP text and unit), so
//! `/metrics` documents itself. librdkafka's statistics JSON is mapped to `tanma_kafka_*`
//! metrics by [`record_librdkafka_stats`].

use std::sync::OnceLock;

use std::collections::BTreeSet;
use std::sync::Mutex;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use names::MetricKind;

use super::OpsError;

pub use super::stats::{record_librdkafka_stats, record_librdkafka_stats_raw};

/// Every metric name, with its type, unit, labels and HELP text.
pub use super::metric_names as names;

/// Buckets for HTTP requests to the Tanma API.
pub const API_REQUEST_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for rate-limiter waits (mostly zero, occasionally seconds).
pub const RATE_LIMIT_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for Kafka transaction commits.
pub const KAFKA_COMMIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for long operations (state restore), and the default for any other `*_seconds`.
pub const LONG_OPERATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the global `metrics` recorder and describes every metric.
/// Names not declared in [`names`] still record, and are reported by [`undeclared`].
///
/// Idempotent: later calls return a clone of the first handle (tests in one binary may all call
/// it). Fails when another recorder was installed by someone else first. The caller should
/// serve the handle with [`crate::ops::serve`], which also runs the recorder's upkeep.
pub fn install() -> Result<PrometheusHandle, OpsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    // One installer at a time: a racing caller must not see the global recorder set before the
    // winner has published its handle.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(Checked::new(recorder)) {
        Ok(()) => {
            let handle = HANDLE.get_or_init(|| handle).clone();
            describe_all();
            Ok(handle)
        }
        Err(e) => Err(OpsError::MetricsRecorderTaken {
            reason: e.to_string(),
        }),
    }
}

fn builder() -> Result<PrometheusBuilder, OpsError> {
    let full = |n: &str| Matcher::Full(n.to_string());
    let b = PrometheusBuilder::new()
        .set_buckets_for_metric(
            full(names::API_REQUEST_DURATION_SECONDS),
            API_REQUEST_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                full(names::API_RATE_LIMIT_WAIT_SECONDS),
                RATE_LIMIT_WAIT_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                full(names::KAFKA_COMMIT_DURATION_SECONDS),
                KAFKA_COMMIT_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LONG_OPERATION_BUCKETS)
        })
        .map_err(|source| OpsError::MetricsInstall { source })?;
    Ok(b)
}

/// Registers HELP text and units for every metric of [`names::ALL`]. Called by [`install`].
pub fn describe_all() {
    for m in names::ALL {
        let unit = m.unit;
        match (m.kind, unit) {
            (MetricKind::Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
            (MetricKind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Names written through the installed recorder that [`names`] does not declare (or declares as
/// another type), sorted. Empty when every emit site uses a declared name.
pub fn undeclared() -> Vec<String> {
    UNDECLARED
        .lock()
        .map(|u| u.iter().cloned().collect())
        .unwrap_or_default()
}

static UNDECLARED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A recorder that checks every registered name against [`names::ALL`] before delegating. An
/// undeclared name is logged once (at WARN: a programming error, not an operational one) and
/// remembered for [`undeclared`]; the metric is recorded all the same.
struct Checked<R> {
    inner: R,
}

impl<R: Recorder> Checked<R> {
    fn new(inner: R) -> Self {
        Checked { inner }
    }

    fn check(&self, name: &str, kind: MetricKind) {
        if names::find(name).is_some_and(|m| m.kind == kind) {
            return;
        }
        note_undeclared(name, kind);
    }
}

fn note_undeclared(name: &str, kind: MetricKind) {
    let Ok(mut seen) = UNDECLARED.lock() else {
        return;
    };
    if seen.insert(name.to_string()) {
        tracing::warn!(
            metric = name,
            kind = kind.prometheus_type(),
            "Metric not declared in ops::metrics::names (or declared as another type)."
        );
    }
}

impl<R: Recorder> Recorder for Checked<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description)
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description)
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.check(key.name(), MetricKind::Counter);
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.check(key.name(), MetricKind::Gauge);
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.check(key.name(), MetricKind::Histogram);
        self.inner.register_histogram(key, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes one sample of every declared metric (with its labels) through `checked`.
    fn emit_every_declared_metric() {
        for m in names::ALL {
            let labels: Vec<(&'static str, &'static str)> =
                m.labels.iter().map(|l| (*l, "x")).collect();
            match m.kind {
                MetricKind::Counter => metrics::counter!(m.name, &labels).increment(1),
                MetricKind::Gauge => metrics::gauge!(m.name, &labels).set(1.0),
                MetricKind::Histogram => metrics::histogram!(m.name, &labels).record(0.2),
            }
        }
    }

    #[test]
    fn every_declared_metric_is_described_with_its_type() {
        let recorder = builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        let checked = Checked::new(recorder);
        metrics::with_local_recorder(&checked, || {
            describe_all();
            emit_every_declared_metric();
        });
        let text = handle.render();
        for m in names::ALL {
            assert!(
                text.contains(&format!("# HELP {} {}", m.name, m.help)),
                "{} is not described:\n{text}",
                m.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {}", m.name, m.kind.prometheus_type())),
                "{} is not exported as a {}:\n{text}",
                m.name,
                m.kind.prometheus_type()
            );
        }
        // Every series in the scrape belongs to a declared metric.
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let series = line.split(['{', ' ']).next().unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| series.strip_suffix(s))
                .filter(|b| names::find(b).is_some())
                .unwrap_or(series);
            assert!(names::find(base).is_some(), "undeclared series {series}");
        }
    }

    #[test]
    fn undeclared_names_and_types_are_reported() {
        let checked = Checked::new(builder().expect("builder").build_recorder());
        metrics::with_local_recorder(&checked, || {
            metrics::counter!(names::EVENTS_TOTAL, "type" => "CREATED").increment(1);
            metrics::counter!("tanma_test_not_declared_total").increment(1);
            // Declared, but as a gauge.
            metrics::counter!(names::READY).increment(1);
        });
        let undeclared = undeclared();
        assert!(undeclared.contains(&"tanma_test_not_declared_total".to_string()));
        assert!(undeclared.contains(&names::READY.to_string()));
        assert!(!undeclared.contains(&names::EVENTS_TOTAL.to_string()));
    }
}
