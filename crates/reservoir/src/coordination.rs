//! Cluster-wide coordination on DynamoDB (feature `coordination`): a connect-rate limiter that
//! shares one budget between every process ([`DynamoRateLimiter`], a [`ConnectLimiter`](crate::ConnectLimiter)) and a
//! connection lease that caps the open connections of all processes ([`DynamoConnLease`], a
//! [`LeaseHook`](crate::LeaseHook)).
//!
//! Both keep running when DynamoDB does not answer or throttles: they fall back to a local share of
//! the budget ([`FallbackConfig`]), count it in `dsql_distributed_*_fallback`, show it in
//! [`DynamoRateLimiter::mode`] / [`DynamoConnLease::mode`], and go back to the shared budget as
//! soon as DynamoDB answers again. Libraries do not print: the metric and the mode are the
//! warning.
//!
//! # Table layout
//!
//! What `terraform/shared` creates: hash key `pk` of type S, no sort key, `PAY_PER_REQUEST`, TTL on
//! the number attribute `ttl_epoch` (epoch seconds). One table can serve both components (their
//! keys have different prefixes) or each gets its own (`coordination.rate_limiter.table`,
//! `coordination.conn_lease.table`). `<endpoint>` is the cluster endpoint, lower-cased, without a
//! port. Items:
//!
//! | item | `pk` | attributes |
//! |---|---|---|
//! | rate bucket (one per endpoint) | `rate#<endpoint>` | `tat_us` N (the bucket's theoretical arrival time, epoch µs), `ttl_epoch` N |
//! | lease counter (one per endpoint) | `lease#<endpoint>#counter` | `active` N, `version` N, `repair_until_ms` N, `repair_by` S |
//! | lease holder (one per process) | `lease#<endpoint>#holder#<holder>` | `expires_ms` N (heartbeat + `holder_ttl`), `ttl_epoch` N |
//! | lease (one per connection) | `lease#<endpoint>#conn#<lease>` | `holder` S, `created_ms` N, `ttl_epoch` N |
//!
//! DynamoDB's TTL only collects garbage (`ttl_epoch` lies `ttl_grace` past the point where an item
//! stops mattering); no correctness depends on when it deletes.
//!
//! # Least-privilege IAM policy
//!
//! Transactions are authorised by the actions inside them (AWS: "TransactWriteItems" needs the
//! `PutItem`/`UpdateItem`/`DeleteItem`/`ConditionCheckItem` permissions of its actions; there is
//! no `dynamodb:TransactWriteItems` action). The limiter uses `UpdateItem` (claims) and `GetItem`
//! (probes while on its fallback share); the lease uses all of them (`Scan` for the repair pass,
//! which lists the endpoint's items):
//!
//! ```json
//! {
//!   "Version": "2012-10-17",
//!   "Statement": [
//!     {
//!       "Sid": "TdsqlCoordination",
//!       "Effect": "Allow",
//!       "Action": [
//!         "dynamodb:GetItem",
//!         "dynamodb:PutItem",
//!         "dynamodb:UpdateItem",
//!         "dynamodb:DeleteItem",
//!         "dynamodb:ConditionCheckItem",
//!         "dynamodb:Scan"
//!       ],
//!       "Resource": [
//!         "arn:aws:dynamodb:<region>:<account>:table/<rate-limiter-table>",
//!         "arn:aws:dynamodb:<region>:<account>:table/<conn-lease-table>"
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! # How the limiter works
//!
//! The bucket is kept as GCRA (a token bucket written as one timestamp, the theoretical arrival
//! time `tat`): taking `n` permits moves `tat` on by `n / rate`; the last of them may be spent once
//! `tat` is within `burst / rate` of now. A claim *reserves*: while the bucket is in use (`tat`
//! ahead of now) it is one conditional `ADD` that succeeds whenever the permits fall due within
//! the caller's remaining `max_wait`, so concurrent processes never lose races to each other and
//! nobody reads first; an idle bucket is reset to now with a conditional `SET`. The caller then
//! sleeps until its permit is due (dropping the future forfeits it, which errs on the safe side).
//! One claim is in flight per process at a time and asks for as many permits as the process has
//! waiters (up to `batch`), so under load one round trip serves several connects; the other
//! waiters take the spares, each usable from its due time for `spare_ttl`. Because a spare can be
//! spent up to `spare_ttl` after it falls due, the shared bucket's burst is
//! `burst - rate × spare_ttl`: in any one-second window at most `rate + burst` connects start
//! cluster-wide. Clock skew of δ between processes adds at most `rate × δ`; while some processes
//! are on their fallback share, that share comes on top.
//!
//! # How the lease works
//!
//! Taking leases is one transaction: the counter's `active` goes up by their number if that stays
//! within the limit, and one lease item per lease is written. Acquires of one process share one
//! transaction in flight: it takes a lease for every acquire waiting meanwhile (up to `batch`,
//! default 10), so a refiller opening many connections at once pays about one round trip for
//! several and the processes of a cluster contend less for the counter item. When fewer slots are
//! free than waiters, a read of the counter shrinks the batch to what fits. A lease taken for a
//! waiter that no longer wants it is given back by the next heartbeat. Giving it back deletes the item (if it is still this holder's)
//! and decrements the counter, again in one transaction, so `active` always equals the number of
//! lease items. Leases are renewed while their connections live by one heartbeat per process
//! (the holder item), not one write per lease. A repair pass, run every `repair_interval` by the
//! one process that wins a conditional claim on the counter, deletes the holder item of every
//! holder whose heartbeat is older than `holder_ttl`, then that holder's leases (each with its
//! decrement and a check that the holder item is still absent, in one transaction), and recounts
//! the live leases, correcting `active` under an optimistic check on `version`: a crashed holder's
//! slots come back within `holder_ttl + repair_interval`, with no manual reset. A release that
//! fails is retried by the heartbeat. A holder that was only slow (its heartbeat finds its item
//! gone) registers itself again, which stops any further reclaim, and then counts its leases
//! again *within the limit*: a lease that no longer fits is revoked ([`crate::Lease::revoke`]),
//! and the reservoir closes its connection at the next checkout, return or expiry scan
//! (`dsql_distributed_conn_lease_revoked_total`, discard reason `lease_revoked`). Leases granted
//! on the fallback share are registered the same way when DynamoDB answers again, so the cap
//! holds again once the outage is over. The counter is a hot item: a transaction that
//! DynamoDB cancels for `TransactionConflict` (another one was changing it) is tried again after a
//! short jittered pause; contention never counts as an outage. Once an acquire was refused at the
//! limit, the next ones read the counter first and send a transaction only when a slot came free
//! (a refused transaction costs its writes all the same). The repair pass also removes items of
//! its own process that the process no longer knows (held, being released or being registered),
//! so even a lost write cannot leave a slot taken for good. A repair pass scans the table (filtered on the
//! endpoint's prefix): with 10,000 leases that is about 1.5 MB, a few hundred read units, once per
//! `repair_interval` for the whole cluster. A lease item's `ttl_epoch` is its creation plus
//! `ttl_grace` (default a day, well past DSQL's 60-minute connection limit), so DynamoDB's TTL never
//! removes the item of a live connection.
//!
//! # While DynamoDB is down
//!
//! A request that fails for another reason than a condition (unreachable, throttled after the
//! SDK's retries, slower than `call_timeout`, no such table) switches the component to
//! [`Mode::Fallback`]: permits come from a local token bucket of `rate / expected_processes`
//! (burst `burst / expected_processes`), and leases from a local cap of
//! `limit / expected_processes` counting every lease the process holds. Once per `probe_interval`
//! a probe (a read, on a task of its own: no connect waits for it) checks DynamoDB; the lease's
//! heartbeat probes too. When one answers, the component shares again: leases granted locally are
//! registered in the counter and releases that could not be sent are sent.

mod lease;
mod rate;

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::time::Instant;

pub use lease::{ConnLeaseConfig, DynamoConnLease, MAX_BATCH};
pub use rate::{DynamoRateLimiter, RateLimiterConfig};

/// A coordination setting that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinationError {
    /// A setting is out of its range.
    #[error("coordination setting {key} = {value} is invalid: {why}")]
    Invalid {
        /// The setting (as under `coordination.*`).
        key: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        why: &'static str,
    },
}

/// A DynamoDB request that failed for another reason than a condition (unreachable, throttled,
/// timed out, no such table); what makes a component fall back to its local share.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request did not complete within the call timeout.
    #[error("dynamodb {operation} did not answer within {timeout:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// The call timeout.
        timeout: Duration,
    },
    /// Another transaction was changing the same item (DynamoDB's `TransactionConflict`) on
    /// every attempt: contention, not an outage, so no fallback.
    #[error("dynamodb {operation} kept conflicting with other transactions on the same item; try again")]
    Conflict {
        /// The operation.
        operation: &'static str,
    },
    /// The SDK returned an error.
    #[error("dynamodb {operation} failed: {message}")]
    Request {
        /// The operation.
        operation: &'static str,
        /// The error and its sources.
        message: String,
    },
}

/// What to do while DynamoDB is unreachable or throttling.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackConfig {
    /// How many processes share the budget: the local share is the budget divided by this.
    pub expected_processes: u32,
    /// How often a component in fallback tries DynamoDB again.
    pub probe_interval: Duration,
    /// Longest wait for one DynamoDB request before it counts as unreachable.
    pub call_timeout: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            expected_processes: 20,
            probe_interval: Duration::from_secs(5),
            call_timeout: Duration::from_secs(2),
        }
    }
}

impl FallbackConfig {
    fn validate(&self, prefix: &'static str) -> Result<(), CoordinationError> {
        if self.expected_processes == 0 {
            return invalid(prefix, "0".into(), "fallback.expected_processes must be at least 1");
        }
        if self.probe_interval.is_zero() || self.call_timeout.is_zero() {
            return invalid(
                prefix,
                format!("{:?} / {:?}", self.probe_interval, self.call_timeout),
                "fallback.probe_interval and fallback.call_timeout must be above zero",
            );
        }
        Ok(())
    }
}

/// Whether a component uses the shared budget or its local fallback share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// DynamoDB answers; the budget is shared.
    Shared,
    /// DynamoDB did not answer (or throttled); the local share is in force.
    Fallback,
}

fn invalid(key: &'static str, value: String, why: &'static str) -> Result<(), CoordinationError> {
    Err(CoordinationError::Invalid { key, value, why })
}

/// The endpoint as it appears in keys: trimmed, lower-cased, without a port.
fn normalise_endpoint(endpoint: &str) -> String {
    let host = endpoint.trim().to_ascii_lowercase();
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
}

fn check_names(prefix: &'static str, table: &str, endpoint: &str) -> Result<(), CoordinationError> {
    if table.trim().is_empty() {
        return invalid(
            prefix,
            String::new(),
            "table must name the DynamoDB table (cargo xtask infra apply sets it)",
        );
    }
    if normalise_endpoint(endpoint).is_empty() {
        return invalid(prefix, String::new(), "endpoint must be the cluster endpoint");
    }
    Ok(())
}

/// Wall-clock time since the epoch (shared between processes, unlike `Instant`).
fn epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn epoch_ms() -> i64 {
    i64::try_from(epoch().as_millis()).unwrap_or(i64::MAX)
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn number(item: Option<&std::collections::HashMap<String, AttributeValue>>, name: &str) -> Option<i64> {
    item?.get(name)?.as_n().ok()?.parse().ok()
}

/// DynamoDB requests made, in a metric (possibly shared) and for this component alone.
#[derive(Debug, Clone)]
struct RoundTrips {
    metric: prometheus_client::metrics::counter::Counter,
    own: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RoundTrips {
    fn new(metric: prometheus_client::metrics::counter::Counter) -> Self {
        Self { metric, own: std::sync::Arc::default() }
    }

    fn get(&self) -> u64 {
        self.own.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Runs one request within the call timeout; counts it as a round trip.
async fn call<T, E>(
    operation: &'static str,
    timeout: Duration,
    round_trips: &RoundTrips,
    request: impl Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, StoreError> {
    round_trips.metric.inc();
    round_trips.own.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::time::timeout(timeout, request).await.map_err(|_| StoreError::Timeout { operation, timeout })
}

fn request_error<E>(operation: &'static str, error: &E) -> StoreError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    if error.code() == Some("TransactionConflictException") {
        return StoreError::Conflict { operation };
    }
    StoreError::Request { operation, message: crate::error_chain(error) }
}

/// Counts a waiter for as long as it waits (also when its future is dropped).
pub(super) struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A conditional write's answer: `true` when it went through, `false` when its condition failed.
fn written<T, E>(operation: &'static str, sent: Result<T, E>) -> Result<bool, StoreError>
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match sent {
        Ok(_) => Ok(true),
        Err(error) if error.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(error) => Err(request_error(operation, &error)),
    }
}

/// Shared or fallback, when the next probe is due, and the error that caused it.
struct ModeState {
    mode: Mode,
    next_probe: Instant,
    last_error: Option<String>,
}

/// The mode machinery both components use.
struct Fallback {
    state: Mutex<ModeState>,
    probe_interval: Duration,
    gauge: prometheus_client::metrics::gauge::Gauge,
    entered: prometheus_client::metrics::counter::Counter,
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback").field("mode", &self.mode()).finish_non_exhaustive()
    }
}

impl Fallback {
    fn new(
        probe_interval: Duration,
        gauge: prometheus_client::metrics::gauge::Gauge,
        entered: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let state = ModeState { mode: Mode::Shared, next_probe: Instant::now(), last_error: None };
        Self { state: Mutex::new(state), probe_interval, gauge, entered }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ModeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mode(&self) -> Mode {
        self.lock().mode
    }

    fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Whether to try DynamoDB now: always in shared mode, once per probe interval in fallback.
    fn should_try(&self) -> bool {
        let mut state = self.lock();
        match state.mode {
            Mode::Shared => true,
            Mode::Fallback => {
                let now = Instant::now();
                if now >= state.next_probe {
                    state.next_probe = now + self.probe_interval;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A request failed: fall back (or stay in fallback until the next probe). Contention
    /// (`StoreError::Conflict`) is no outage and changes nothing.
    fn failed(&self, error: &StoreError) {
        if matches!(error, StoreError::Conflict { .. }) {
            return;
        }
        let mut state = self.lock();
        state.last_error = Some(error.to_string());
        // In fallback already, `should_try` has set the next probe when it granted this one.
        if state.mode == Mode::Shared {
            state.next_probe = Instant::now() + self.probe_interval;
            state.mode = Mode::Fallback;
            self.gauge.inc();
            self.entered.inc();
        }
    }

    /// A request went through; returns whether this ended a fallback.
    fn recovered(&self) -> bool {
        let mut state = self.lock();
        if state.mode == Mode::Fallback {
            state.mode = Mode::Shared;
            self.gauge.dec();
            return true;
        }
        false
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        if self.lock().mode == Mode::Fallback {
            self.gauge.dec();
        }
    }
}

fn random_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(normalise_endpoint(" ABC.dsql.us-east-1.on.aws:5432 "), "abc.dsql.us-east-1.on.aws");
        assert_eq!(normalise_endpoint("abc.dsql.us-east-1.on.aws"), "abc.dsql.us-east-1.on.aws");
        assert_eq!(normalise_endpoint("  "), "");
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_probes_once_per_interval_and_recovers() {
        let fallback = Fallback::new(Duration::from_secs(5), Default::default(), Default::default());
        assert!(fallback.should_try());
        fallback.failed(&StoreError::Timeout { operation: "UpdateItem", timeout: Duration::from_secs(1) });
        assert_eq!(fallback.mode(), Mode::Fallback);
        assert_eq!(fallback.gauge.get(), 1);
        assert!(!fallback.should_try());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(fallback.should_try());
        assert!(!fallback.should_try(), "one probe per interval");
        assert!(fallback.recovered());
        assert!(!fallback.recovered());
        assert_eq!((fallback.mode(), fallback.gauge.get(), fallback.entered.get()), (Mode::Shared, 0, 1));
        assert!(fallback.last_error().unwrap().contains("UpdateItem"));
    }
}
