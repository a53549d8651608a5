//! Prometheus metrics under the fork's names and labels, so the same dashboards work.
//!
//! Exposition follows what the fork's Temporal server exports with `framework: opentelemetry`:
//! counters end in `_total`, timers are histograms in milliseconds exported as
//! `<name>_milliseconds_bucket|_sum|_count`, gauges keep their name.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What kind of series a metric family exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A value that goes up and down; one series named like the family.
    Gauge,
    /// A monotonic count; one series named like the family (which ends in `_total`).
    Counter,
    /// A histogram; series `<family>_bucket`, `<family>_sum` and `<family>_count`.
    Histogram,
}

/// One exported metric family: its exposition name, kind and label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricFamily {
    /// The name as it appears in the exposition (and in dashboard queries).
    pub name: &'static str,
    /// Gauge, counter or histogram.
    pub kind: MetricKind,
    /// Label names, besides `le` on histogram buckets.
    pub labels: &'static [&'static str],
}

impl MetricFamily {
    /// Every series name a query can use for this family.
    #[must_use]
    pub fn series(&self) -> Vec<String> {
        match self.kind {
            MetricKind::Gauge | MetricKind::Counter => vec![self.name.to_owned()],
            MetricKind::Histogram => {
                ["_bucket", "_sum", "_count"].iter().map(|suffix| format!("{}{suffix}", self.name)).collect()
            }
        }
    }
}

const fn family(name: &'static str, kind: MetricKind, labels: &'static [&'static str]) -> MetricFamily {
    MetricFamily { name, kind, labels }
}

/// Every metric family this crate exports, by exposition name (the dashboards' contract).
pub const METRIC_FAMILIES: &[MetricFamily] = &[
    family("dsql_reservoir_size", MetricKind::Gauge, &[]),
    family("dsql_reservoir_target", MetricKind::Gauge, &[]),
    family("dsql_reservoir_checkouts_total", MetricKind::Counter, &[]),
    family("dsql_reservoir_empty_total", MetricKind::Counter, &[]),
    family("dsql_reservoir_discards_total", MetricKind::Counter, &["reason"]),
    family("dsql_reservoir_refills_total", MetricKind::Counter, &[]),
    family("dsql_reservoir_refill_failures_total", MetricKind::Counter, &["reason"]),
    family("dsql_reservoir_checkout_latency_milliseconds", MetricKind::Histogram, &[]),
    family("dsql_refiller_inflight", MetricKind::Gauge, &[]),
    family("dsql_tx_conflict_total", MetricKind::Counter, &["operation"]),
    family("dsql_tx_retry_total", MetricKind::Counter, &["operation", "attempt"]),
    family("dsql_tx_exhausted_total", MetricKind::Counter, &["operation"]),
    family("dsql_tx_error_class_total", MetricKind::Counter, &["operation", "error_class"]),
    family("dsql_tx_latency_milliseconds", MetricKind::Histogram, &["operation"]),
    family("dsql_tx_backoff_milliseconds", MetricKind::Histogram, &["operation"]),
    family("dsql_token_cache_hits_total", MetricKind::Counter, &[]),
    family("dsql_token_cache_misses_total", MetricKind::Counter, &[]),
    family("dsql_token_refreshes_total", MetricKind::Counter, &[]),
    family("dsql_token_refresh_failures_total", MetricKind::Counter, &[]),
    family("dsql_distributed_rate_limiter_permits_granted_total", MetricKind::Counter, &[]),
    family("dsql_distributed_rate_limiter_permits_denied_total", MetricKind::Counter, &[]),
    family("dsql_distributed_rate_limiter_wait_milliseconds", MetricKind::Histogram, &[]),
    family("dsql_distributed_rate_limiter_round_trips_total", MetricKind::Counter, &[]),
    family("dsql_distributed_rate_limiter_fallback", MetricKind::Gauge, &[]),
    family("dsql_distributed_rate_limiter_fallbacks_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_held", MetricKind::Gauge, &[]),
    family("dsql_distributed_conn_lease_active", MetricKind::Gauge, &[]),
    family("dsql_distributed_conn_lease_limit", MetricKind::Gauge, &[]),
    family("dsql_distributed_conn_lease_acquired_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_denied_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_renewals_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_repairs_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_recounts_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_revoked_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_round_trips_total", MetricKind::Counter, &[]),
    family("dsql_distributed_conn_lease_fallback", MetricKind::Gauge, &[]),
    family("dsql_distributed_conn_lease_fallbacks_total", MetricKind::Counter, &[]),
];

type Labels = Vec<(&'static str, String)>;

fn ms_histogram(start: f64, length: u16) -> Histogram {
    Histogram::new(exponential_buckets(start, 2.0, length))
}

/// Milliseconds as a float, for histograms.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The metrics of one process (or one part of it): cheap to clone, every clone counts into the
/// same series.
///
/// Reservoirs, retry policies and token providers that share a `Metrics` add up: gauges such as
/// `dsql_reservoir_size` move by increments, so they read as the sum over all reservoirs.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub(crate) reservoir_size: Gauge,
    pub(crate) reservoir_target: Gauge,
    pub(crate) checkouts: Counter,
    pub(crate) empty: Counter,
    pub(crate) discards: Family<Labels, Counter>,
    pub(crate) refills: Counter,
    pub(crate) refill_failures: Family<Labels, Counter>,
    pub(crate) checkout_latency: Histogram,
    pub(crate) refiller_inflight: Gauge,
    pub(crate) tx_conflict: Family<Labels, Counter>,
    pub(crate) tx_retry: Family<Labels, Counter>,
    pub(crate) tx_exhausted: Family<Labels, Counter>,
    pub(crate) tx_error_class: Family<Labels, Counter>,
    pub(crate) tx_latency: Family<Labels, Histogram>,
    pub(crate) tx_backoff: Family<Labels, Histogram>,
    pub(crate) token_cache_hits: Counter,
    pub(crate) token_cache_misses: Counter,
    pub(crate) token_refreshes: Counter,
    pub(crate) token_refresh_failures: Counter,
    pub(crate) rate_granted: Counter,
    pub(crate) rate_denied: Counter,
    pub(crate) rate_wait: Histogram,
    pub(crate) rate_round_trips: Counter,
    pub(crate) rate_fallback: Gauge,
    pub(crate) rate_fallbacks: Counter,
    pub(crate) lease_held: Gauge,
    pub(crate) lease_active: Gauge,
    pub(crate) lease_limit: Gauge,
    pub(crate) lease_acquired: Counter,
    pub(crate) lease_denied: Counter,
    pub(crate) lease_renewals: Counter,
    pub(crate) lease_repairs: Counter,
    pub(crate) lease_recounts: Counter,
    pub(crate) lease_revoked: Counter,
    pub(crate) lease_round_trips: Counter,
    pub(crate) lease_fallback: Gauge,
    pub(crate) lease_fallbacks: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates every family, registered in a registry of its own (see [`Metrics::encode`]).
    #[must_use]
    pub fn new() -> Self {
        let mut this = Self {
            registry: Arc::new(Registry::default()),
            reservoir_size: Gauge::default(),
            reservoir_target: Gauge::default(),
            checkouts: Counter::default(),
            empty: Counter::default(),
            discards: Family::default(),
            refills: Counter::default(),
            refill_failures: Family::default(),
            // 1 µs .. ~0.5 s: checkouts are microseconds, an empty wait is at most 100 ms.
            checkout_latency: ms_histogram(0.001, 20),
            refiller_inflight: Gauge::default(),
            tx_conflict: Family::default(),
            tx_retry: Family::default(),
            tx_exhausted: Family::default(),
            tx_error_class: Family::default(),
            // 0.5 ms .. ~4.5 min.
            tx_latency: Family::new_with_constructor(|| ms_histogram(0.5, 20)),
            tx_backoff: Family::new_with_constructor(|| ms_histogram(1.0, 14)),
            token_cache_hits: Counter::default(),
            token_cache_misses: Counter::default(),
            token_refreshes: Counter::default(),
            token_refresh_failures: Counter::default(),
            rate_granted: Counter::default(),
            rate_denied: Counter::default(),
            // 1 µs .. ~65 s: a spare permit is microseconds, a bounded wait at most max_wait.
            rate_wait: ms_histogram(0.001, 27),
            rate_round_trips: Counter::default(),
            rate_fallback: Gauge::default(),
            rate_fallbacks: Counter::default(),
            lease_held: Gauge::default(),
            lease_active: Gauge::default(),
            lease_limit: Gauge::default(),
            lease_acquired: Counter::default(),
            lease_denied: Counter::default(),
            lease_renewals: Counter::default(),
            lease_repairs: Counter::default(),
            lease_recounts: Counter::default(),
            lease_revoked: Counter::default(),
            lease_round_trips: Counter::default(),
            lease_fallback: Gauge::default(),
            lease_fallbacks: Counter::default(),
        };
        let mut registry = Registry::default();
        this.register(&mut registry);
        this.registry = Arc::new(registry);
        this
    }

    /// Registers every family (sharing the series) into an application's own registry.
    pub fn register(&self, registry: &mut Registry) {
        let ms = || Unit::Other("milliseconds".to_owned());
        // prometheus-client appends `_total` to counters and the unit to names given one.
        registry.register(
            "dsql_reservoir_size",
            "Ready connections in the reservoir",
            self.reservoir_size.clone(),
        );
        registry.register(
            "dsql_reservoir_target",
            "Ready connections the reservoir aims for",
            self.reservoir_target.clone(),
        );
        registry.register("dsql_reservoir_checkouts", "Successful checkouts", self.checkouts.clone());
        registry.register(
            "dsql_reservoir_empty",
            "Checkouts that found no usable connection",
            self.empty.clone(),
        );
        registry.register(
            "dsql_reservoir_discards",
            "Connections closed by the reservoir, by reason",
            self.discards.clone(),
        );
        registry.register(
            "dsql_reservoir_refills",
            "Connections opened by the refiller",
            self.refills.clone(),
        );
        registry.register(
            "dsql_reservoir_refill_failures",
            "Failed connection attempts of the refiller, by reason",
            self.refill_failures.clone(),
        );
        registry.register_with_unit(
            "dsql_reservoir_checkout_latency",
            "Time a checkout took",
            ms(),
            self.checkout_latency.clone(),
        );
        registry.register(
            "dsql_refiller_inflight",
            "Connection attempts in progress",
            self.refiller_inflight.clone(),
        );
        registry.register(
            "dsql_tx_conflict",
            "Retryable conflicts about to be retried",
            self.tx_conflict.clone(),
        );
        registry.register("dsql_tx_retry", "Transaction retry attempts", self.tx_retry.clone());
        registry.register(
            "dsql_tx_exhausted",
            "Transactions that ran out of retries",
            self.tx_exhausted.clone(),
        );
        registry.register(
            "dsql_tx_error_class",
            "Failed transaction attempts by error class",
            self.tx_error_class.clone(),
        );
        registry.register_with_unit(
            "dsql_tx_latency",
            "Whole retried transaction time",
            ms(),
            self.tx_latency.clone(),
        );
        registry.register_with_unit(
            "dsql_tx_backoff",
            "Backoff before a retry",
            ms(),
            self.tx_backoff.clone(),
        );
        registry.register(
            "dsql_token_cache_hits",
            "IAM tokens served from the cache",
            self.token_cache_hits.clone(),
        );
        registry.register(
            "dsql_token_cache_misses",
            "IAM tokens generated on demand",
            self.token_cache_misses.clone(),
        );
        registry.register("dsql_token_refreshes", "IAM tokens generated", self.token_refreshes.clone());
        registry.register(
            "dsql_token_refresh_failures",
            "IAM token generation failures",
            self.token_refresh_failures.clone(),
        );
        self.register_coordination(registry);
    }

    fn register_coordination(&self, registry: &mut Registry) {
        let ms = Unit::Other("milliseconds".to_owned());
        registry.register(
            "dsql_distributed_rate_limiter_permits_granted",
            "Connect permits granted by the distributed rate limiter (shared or fallback)",
            self.rate_granted.clone(),
        );
        registry.register(
            "dsql_distributed_rate_limiter_permits_denied",
            "Connect permits not granted within the limiter's max wait",
            self.rate_denied.clone(),
        );
        registry.register_with_unit(
            "dsql_distributed_rate_limiter_wait",
            "Time a connect waited for a distributed permit",
            ms,
            self.rate_wait.clone(),
        );
        registry.register(
            "dsql_distributed_rate_limiter_round_trips",
            "DynamoDB requests made by the distributed rate limiter",
            self.rate_round_trips.clone(),
        );
        registry.register(
            "dsql_distributed_rate_limiter_fallback",
            "1 while the rate limiter runs on its local fallback share (DynamoDB unreachable)",
            self.rate_fallback.clone(),
        );
        registry.register(
            "dsql_distributed_rate_limiter_fallbacks",
            "Times the rate limiter fell back to its local share",
            self.rate_fallbacks.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_held",
            "Connection leases this process holds",
            self.lease_held.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_active",
            "Cluster-wide leased connections, as last read from DynamoDB",
            self.lease_active.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_limit",
            "Cluster-wide connection limit of the lease",
            self.lease_limit.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_acquired",
            "Connection leases granted (shared or fallback)",
            self.lease_acquired.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_denied",
            "Connection leases refused because the limit was reached",
            self.lease_denied.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_renewals",
            "Heartbeats that renewed every lease of this process",
            self.lease_renewals.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_repairs",
            "Leases of vanished holders reclaimed by this process's repair pass",
            self.lease_repairs.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_recounts",
            "Times the repair pass corrected the cluster-wide counter",
            self.lease_recounts.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_revoked",
            "Leases withdrawn because the limit was full when they had to be counted again (their connections are closed)",
            self.lease_revoked.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_round_trips",
            "DynamoDB requests made by the connection lease",
            self.lease_round_trips.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_fallback",
            "1 while the lease runs on its local fallback cap (DynamoDB unreachable)",
            self.lease_fallback.clone(),
        );
        registry.register(
            "dsql_distributed_conn_lease_fallbacks",
            "Times the lease fell back to its local cap",
            self.lease_fallbacks.clone(),
        );
    }

    /// The exposition of this `Metrics`' own registry, in OpenMetrics text ([`CONTENT_TYPE`]).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn discard(&self, reason: DiscardReason) {
        self.discards.get_or_create(&vec![("reason", reason.as_str().to_owned())]).inc();
    }

    pub(crate) fn refill_failure(&self, reason: RefillFailure) {
        self.refill_failures.get_or_create(&vec![("reason", reason.as_str().to_owned())]).inc();
    }
}

/// Why the reservoir closed a connection (label `reason` of `dsql_reservoir_discards_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiscardReason {
    /// Lifetime over when a checkout reached it.
    ExpiredOnCheckout,
    /// Inside the guard window when a checkout reached it.
    InsufficientRemainingLifetime,
    /// Lifetime over when it came back.
    ExpiredOnReturn,
    /// Inside the guard window when it came back.
    InsufficientRemainingLifetimeOnReturn,
    /// Lifetime over at the expiry scan.
    ExpiredOnScan,
    /// Inside the guard window at the expiry scan.
    ExpiringSoonOnScan,
    /// The reservoir already held its target when it came back.
    ReservoirFull,
    /// The connection was closed or failed (server kill, network, a failed query marked it).
    Broken,
    /// The reservoir was closing.
    Closed,
    /// Its lease was revoked (the cluster-wide connection count was full when it was counted
    /// again, e.g. after this process had been taken for vanished).
    LeaseRevoked,
}

impl DiscardReason {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredOnCheckout => "expired_on_checkout",
            Self::InsufficientRemainingLifetime => "insufficient_remaining_lifetime",
            Self::ExpiredOnReturn => "expired_on_return",
            Self::InsufficientRemainingLifetimeOnReturn => "insufficient_remaining_lifetime_on_return",
            Self::ExpiredOnScan => "expired_on_scan",
            Self::ExpiringSoonOnScan => "expiring_soon_on_scan",
            Self::ReservoirFull => "reservoir_full",
            Self::Broken => "broken",
            Self::Closed => "closed",
            Self::LeaseRevoked => "lease_revoked",
        }
    }
}

/// Why the refiller failed to open a connection (label `reason` of
/// `dsql_reservoir_refill_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefillFailure {
    /// The connection-lease hook refused or failed.
    LeaseAcquire,
    /// The connect-rate limiter refused or failed.
    RateLimit,
    /// No password could be obtained (IAM token generation failed).
    TokenProvider,
    /// Connecting failed (refused, TLS, authentication, timeout).
    ConnectionOpen,
}

impl RefillFailure {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeaseAcquire => "lease_acquire",
            Self::RateLimit => "rate_limit",
            Self::TokenProvider => "token_provider",
            Self::ConnectionOpen => "connection_open",
        }
    }
}
