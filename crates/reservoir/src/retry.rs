//! Optimistic-concurrency retry: run a whole transaction again when DSQL (or PostgreSQL at
//! REPEATABLE READ) reports a conflict, with exponential backoff and jitter.
//!
//! Retried: SQLSTATE `40001`, `OC000`, `OC001` (by code, or by the `(OC000)` / `(OC001)` marker in
//! the message). Never retried: `0A000`, `53300`, `53400`, `54000`, `23505`, any other error, and a
//! fenced update that matched no row (return [`ConditionFailed`] from the body to say so).
//! Cancellation: drop the future; a backoff sleep in progress ends with it.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use tdsql_reservoir::retry::{RetryConfig, RetryPolicy, TxError, fenced_execute};
//!
//! let policy = RetryPolicy::new(RetryConfig::default())?;
//! let update = "UPDATE shards SET range_id = $1 WHERE shard_id = $2 AND range_id = $3";
//! policy
//!     .transaction(client, "update_shard", |tx| async move {
//!         fenced_execute(tx, "shard", update, &[&2_i64, &1_i32, &1_i64]).await?;
//!         Ok::<_, TxError>(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use std::future::Future;

use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient};

use crate::metrics::{Metrics, millis};

/// What an error means for a retry decision (label `error_class` of `dsql_tx_error_class_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// An OCC conflict (40001, OC000, OC001): run the whole transaction again.
    Retryable,
    /// A fenced (compare-and-set) update matched no row: someone else owns it now. Never retried.
    ConditionFailed,
    /// 0A000: the statement uses something DSQL does not support.
    UnsupportedFeature,
    /// 53300 / 53400: the cluster's connection count or connection rate limit.
    ConnectionLimit,
    /// 54000: a DSQL limit (transaction time, rows, size); the fork calls it `transaction_timeout`.
    LimitExceeded,
    /// 23505: a unique constraint.
    UniqueViolation,
    /// Anything else.
    Permanent,
}

impl ErrorClass {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::ConditionFailed => "condition_failed",
            Self::UnsupportedFeature => "unsupported_feature",
            Self::ConnectionLimit => "connection_limit",
            Self::LimitExceeded => "limit_exceeded",
            Self::UniqueViolation => "unique_violation",
            Self::Permanent => "permanent",
        }
    }

    /// Whether the transaction should run again.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        self == Self::Retryable
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies by SQLSTATE and message: the code decides when it is known; DSQL's OCC markers in
/// the message make any code retryable.
#[must_use]
pub fn classify_sqlstate(code: Option<&str>, message: &str) -> ErrorClass {
    if message.contains("(OC000)") || message.contains("(OC001)") {
        return ErrorClass::Retryable;
    }
    match code {
        Some("40001" | "OC000" | "OC001") => ErrorClass::Retryable,
        Some("0A000") => ErrorClass::UnsupportedFeature,
        Some("53300" | "53400") => ErrorClass::ConnectionLimit,
        Some("54000") => ErrorClass::LimitExceeded,
        Some("23505") => ErrorClass::UniqueViolation,
        Some(_) => ErrorClass::Permanent,
        // No SQLSTATE (a wrapped error): look for the codes in the text, as the fork does.
        None => ["OC000", "OC001", "40001"]
            .iter()
            .find(|marker| message.contains(*marker))
            .map_or(ErrorClass::Permanent, |_| ErrorClass::Retryable),
    }
}

/// Classifies a tokio-postgres error.
#[must_use]
pub fn classify(error: &tokio_postgres::Error) -> ErrorClass {
    match error.as_db_error() {
        Some(db) => classify_sqlstate(Some(db.code().code()), db.message()),
        None => ErrorClass::Permanent,
    }
}

/// Errors the retry loop can classify.
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
}

impl Classify for tokio_postgres::Error {
    fn class(&self) -> ErrorClass {
        classify(self)
    }
}

/// A fenced update matched no row: the fence (e.g. `range_id`) moved, another owner won. Return it
/// from a transaction body to stop the retry loop at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fenced update of {kind} matched no row: another owner changed it")]
pub struct ConditionFailed {
    /// What was fenced (`shard`, `execution`, `task_queue`, ...).
    pub kind: String,
}

impl Classify for ConditionFailed {
    fn class(&self) -> ErrorClass {
        ErrorClass::ConditionFailed
    }
}

/// The ready-made error type for transaction bodies: a database error or a lost fence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// A statement failed.
    #[error("statement failed: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A fenced update matched no row.
    #[error(transparent)]
    ConditionFailed(#[from] ConditionFailed),
}

impl Classify for TxError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Postgres(e) => classify(e),
            Self::ConditionFailed(e) => e.class(),
        }
    }
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Runs a fenced update: exactly one row must match, none is [`ConditionFailed`].
///
/// # Errors
/// [`TxError::ConditionFailed`] when no row matched, [`TxError::Postgres`] when the statement failed.
pub async fn fenced_execute<C: GenericClient>(
    client: &C,
    kind: &str,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, TxError> {
    let rows = client.execute(statement, params).await?;
    if rows == 0 {
        return Err(ConditionFailed { kind: kind.to_owned() }.into());
    }
    Ok(rows)
}

/// Retry settings: the fork's defaults are 5 retries, 100 ms base, 5 s cap, ±25 % jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// Backoff before the first retry; doubles for each further one.
    pub base_delay: Duration,
    /// Cap of the backoff before jitter.
    pub max_delay: Duration,
    /// Jitter as a fraction: the backoff is scaled by a uniform factor in `[1 - j, 1 + j]`.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter: 0.25,
        }
    }
}

/// A retry setting that makes no sense.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// The base delay is zero or above the cap.
    #[error("retry base delay {base:?} must be above zero and at most the max delay {max:?}")]
    Delays {
        /// The base delay.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// Jitter outside `0.0..=1.0`.
    #[error("retry jitter {0} must be between 0 and 1")]
    Jitter(f64),
}

impl RetryConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// When the base delay is zero or above the cap, or the jitter is outside `0..=1`.
    pub fn validate(self) -> Result<Self, RetryConfigError> {
        if self.base_delay.is_zero() || self.base_delay > self.max_delay {
            return Err(RetryConfigError::Delays { base: self.base_delay, max: self.max_delay });
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(RetryConfigError::Jitter(self.jitter));
        }
        Ok(self)
    }

    /// The nominal backoff before retry `retry` (1-based), before jitter.
    #[must_use]
    pub fn nominal_backoff(&self, retry: u32) -> Duration {
        let factor = 2_u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The backoff before retry `retry` (1-based) for a uniform sample `u` in `[0, 1)`.
    #[must_use]
    pub fn backoff(&self, retry: u32, u: f64) -> Duration {
        let scale = 1.0 + self.jitter * (2.0 * u - 1.0);
        self.nominal_backoff(retry).mul_f64(scale.max(0.0))
    }
}

/// Why a retried operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// Every attempt hit a retryable conflict.
    #[error("{operation}: still conflicting after {attempts} attempts; the retry budget is exhausted")]
    Exhausted {
        /// The operation label.
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: E,
    },
    /// An attempt failed with an error that is not retried.
    #[error("{operation} failed ({class})")]
    Failed {
        /// The operation label.
        operation: String,
        /// Its class.
        class: ErrorClass,
        /// The error.
        #[source]
        source: E,
    },
}

impl<E> RetryError<E> {
    /// The underlying error of the last attempt.
    pub fn into_inner(self) -> E {
        match self {
            Self::Exhausted { last, .. } => last,
            Self::Failed { source, .. } => source,
        }
    }

    /// The class of the last attempt's error.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Exhausted { .. } => ErrorClass::Retryable,
            Self::Failed { class, .. } => *class,
        }
    }
}

/// Runs operations with OCC retry and records `dsql_tx_*` metrics.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    config: RetryConfig,
    metrics: Option<Metrics>,
}

impl RetryPolicy {
    /// A policy with validated settings and no metrics.
    ///
    /// # Errors
    /// When the settings are invalid (see [`RetryConfig::validate`]).
    pub fn new(config: RetryConfig) -> Result<Self, RetryConfigError> {
        Ok(Self { config: config.validate()?, metrics: None })
    }

    /// Records `dsql_tx_*` metrics into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// Runs `attempt` until it succeeds, fails with a non-retryable error, or the retries run out.
    /// `attempt` must do the whole unit of work (begin, statements, commit), so that running it again
    /// is safe.
    ///
    /// # Errors
    /// [`RetryError::Failed`] on a non-retryable error, [`RetryError::Exhausted`] when every
    /// attempt conflicted.
    pub async fn run<T, E, F, Fut>(&self, operation: &str, mut attempt: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let started = Instant::now();
        let op = || vec![("operation", operation.to_owned())];
        let mut attempts = 0_u32;
        let result = loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => break Ok(value),
                Err(error) => error,
            };
            let class = error.class();
            if let Some(m) = &self.metrics {
                let mut labels = op();
                labels.push(("error_class", class.as_str().to_owned()));
                m.tx_error_class.get_or_create(&labels).inc();
            }
            if !class.is_retryable() {
                break Err(RetryError::Failed { operation: operation.to_owned(), class, source: error });
            }
            let retry = attempts;
            if retry > self.config.max_retries {
                if let Some(m) = &self.metrics {
                    m.tx_exhausted.get_or_create(&op()).inc();
                }
                break Err(RetryError::Exhausted { operation: operation.to_owned(), attempts, last: error });
            }
            let delay = self.config.backoff(retry, fastrand::f64());
            if let Some(m) = &self.metrics {
                m.tx_conflict.get_or_create(&op()).inc();
                let mut labels = op();
                labels.push(("attempt", retry.to_string()));
                m.tx_retry.get_or_create(&labels).inc();
                m.tx_backoff.get_or_create(&op()).observe(millis(delay));
            }
            tokio::time::sleep(delay).await;
        };
        if let Some(m) = &self.metrics {
            m.tx_latency.get_or_create(&op()).observe(millis(started.elapsed()));
        }
        result
    }

    /// Runs `body` in a REPEATABLE READ transaction on `client` (the only level DSQL has) and
    /// commits, retrying the whole transaction on conflicts. `body` gets the client with the
    /// transaction open and returns a future (`|client| async move { ... }`). A failed attempt is
    /// rolled back, and so is one whose future is dropped half-way.
    ///
    /// # Errors
    /// As [`RetryPolicy::run`]; errors from BEGIN and COMMIT are classified like the body's.
    pub async fn transaction<'c, T, E, F, Fut>(
        &self,
        client: &'c Client,
        operation: &str,
        mut body: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(&'c Client) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<tokio_postgres::Error>,
    {
        self.run(operation, || {
            // Futures are lazy: nothing of the body runs before BEGIN below.
            let work = body(client);
            async move {
                client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
                let mut open = OpenTransaction { client, open: true };
                let outcome = work.await;
                open.open = false;
                match outcome {
                    Ok(value) => {
                        if let Err(error) = client.batch_execute("COMMIT").await {
                            // A failed COMMIT already ended the transaction; be sure on a live link.
                            let _ = client.batch_execute("ROLLBACK").await;
                            return Err(error.into());
                        }
                        Ok(value)
                    }
                    Err(error) => {
                        // The attempt already failed; a failed rollback changes nothing about that.
                        let _ = client.batch_execute("ROLLBACK").await;
                        Err(error)
                    }
                }
            }
        })
        .await
    }
}

/// Rolls back a transaction whose attempt was dropped half-way (cancellation), so the connection
/// is not left inside it.
struct OpenTransaction<'c> {
    client: &'c Client,
    open: bool,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // tokio-postgres queues a request on its first poll; the reply is discarded, as its own
            // `Transaction` does on drop.
            let rollback = std::pin::pin!(self.client.batch_execute("ROLLBACK"));
            let _ = rollback.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn classification_follows_the_codes_and_markers() {
        let cases = [
            (Some("40001"), "could not serialize access", ErrorClass::Retryable),
            (Some("OC000"), "", ErrorClass::Retryable),
            (Some("OC001"), "", ErrorClass::Retryable),
            (Some("40001"), "change conflicts with another transaction (OC000)", ErrorClass::Retryable),
            (Some("XX000"), "schema has been updated by another transaction (OC001)", ErrorClass::Retryable),
            (Some("0A000"), "unsupported", ErrorClass::UnsupportedFeature),
            (Some("53300"), "too many", ErrorClass::ConnectionLimit),
            (Some("53400"), "rate exceeded", ErrorClass::ConnectionLimit),
            (Some("54000"), "max transaction time exceeded", ErrorClass::LimitExceeded),
            (Some("23505"), "duplicate key", ErrorClass::UniqueViolation),
            (Some("42P01"), "no such table", ErrorClass::Permanent),
            (None, "wrapped: sqlstate 40001", ErrorClass::Retryable),
            (None, "context deadline exceeded", ErrorClass::Permanent),
        ];
        for (code, message, class) in cases {
            assert_eq!(classify_sqlstate(code, message), class, "{code:?} {message}");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let config = RetryConfig::default();
        let nominal: Vec<u128> = (1..=7).map(|k| config.nominal_backoff(k).as_millis()).collect();
        assert_eq!(nominal, [100, 200, 400, 800, 1600, 3200, 5000]);
        assert_eq!(config.backoff(1, 0.0), Duration::from_millis(75));
        assert_eq!(config.backoff(1, 0.5), Duration::from_millis(100));
        assert!(config.backoff(1, 0.999_999) <= Duration::from_millis(125));
        assert_eq!(config.nominal_backoff(100), Duration::from_secs(5));
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = [
            RetryConfig { base_delay: Duration::ZERO, ..RetryConfig::default() },
            RetryConfig { base_delay: Duration::from_secs(6), ..RetryConfig::default() },
            RetryConfig { jitter: 1.5, ..RetryConfig::default() },
            RetryConfig { jitter: -0.1, ..RetryConfig::default() },
        ];
        for config in bad {
            assert!(RetryPolicy::new(config).is_err(), "{config:?}");
        }
    }

    #[derive(Debug)]
    struct Conflict;
    impl Classify for Conflict {
        fn class(&self) -> ErrorClass {
            ErrorClass::Retryable
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_the_jittered_backoff() {
        let policy = RetryPolicy::new(RetryConfig::default()).unwrap();
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let err = policy
            .run("op", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Conflict)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, RetryError::Exhausted { attempts: 6, .. }));
        assert_eq!(attempts.load(Ordering::SeqCst), 6);
        // 100 + 200 + 400 + 800 + 1600 ms, each ±25 %.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(2325) && waited <= Duration::from_millis(3875), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_future_cancels_during_backoff() {
        let policy = RetryPolicy::new(RetryConfig::default()).unwrap();
        let attempts = AtomicU32::new(0);
        let run = policy.run("op", || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Conflict)
        });
        // Attempt 1 at 0 ms, backoff 75..125 ms, attempt 2, backoff 150..250 ms: cut off at 140 ms.
        assert!(tokio::time::timeout(Duration::from_millis(140), run).await.is_err());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn success_after_conflicts_returns_the_value() {
        let config = RetryConfig {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryConfig::default()
        };
        let policy = RetryPolicy::new(config).unwrap();
        let attempts = AtomicU32::new(0);
        let value = policy
            .run("op", || async {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 { Err(Conflict) } else { Ok(7) }
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }
}
