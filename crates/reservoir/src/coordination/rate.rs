//! The distributed connect-rate limiter: one GCRA bucket item per endpoint, claimed in batches.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use tokio::time::Instant;

use super::{
    CoordinationError, Fallback, FallbackConfig, Mode, RoundTrips, StoreError, Waiting, call, check_names,
    epoch, invalid, n, normalise_endpoint, number, request_error, s,
};
use crate::limit::{ConnectLimiter, LimitError, TokenBucket};
use crate::metrics::{Metrics, millis};
use crate::token::BoxFuture;

/// Bucket items stay this long after their last claim (garbage collection only).
const BUCKET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Claim attempts that lose a race before the caller pauses briefly.
const CLAIM_ATTEMPTS: usize = 4;

/// Settings of [`DynamoRateLimiter`]; the defaults are DSQL's connection-rate limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimiterConfig {
    /// The DynamoDB table (`coordination.rate_limiter.table`).
    pub table: String,
    /// The cluster endpoint whose budget this is (one bucket per endpoint).
    pub endpoint: String,
    /// Connects per second for all processes together (DSQL: 100).
    pub rate: f64,
    /// Connects at once after a quiet spell, for all processes together (DSQL: 1000).
    pub burst: u32,
    /// Most permits one DynamoDB request claims; the spares serve this process's next connects.
    pub batch: u32,
    /// How long a spare permit stays usable; the shared bucket's burst is reduced by
    /// `rate × spare_ttl` so spares never push a one-second window over `rate + burst`.
    pub spare_ttl: Duration,
    /// Longest wait for one permit; then the connect is refused.
    pub max_wait: Duration,
    /// What to do while DynamoDB does not answer.
    pub fallback: FallbackConfig,
}

impl RateLimiterConfig {
    /// The defaults for one table and endpoint: 100/s, burst 1000, batches of 10 spares kept for
    /// 100 ms, 30 s max wait.
    #[must_use]
    pub fn new(table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            endpoint: endpoint.into(),
            rate: 100.0,
            burst: 1000,
            batch: 10,
            spare_ttl: Duration::from_millis(100),
            max_wait: Duration::from_secs(30),
            fallback: FallbackConfig::default(),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`CoordinationError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), CoordinationError> {
        const KEY: &str = "coordination.rate_limiter";
        check_names(KEY, &self.table, &self.endpoint)?;
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return invalid(KEY, self.rate.to_string(), "rate must be a positive number per second");
        }
        if self.batch == 0 || self.max_wait.is_zero() {
            return invalid(
                KEY,
                format!("batch {} max_wait {:?}", self.batch, self.max_wait),
                "batch and max_wait must be above zero",
            );
        }
        if self.shared_burst() < 1.0 {
            return invalid(
                KEY,
                format!("burst {} spare_ttl {:?}", self.burst, self.spare_ttl),
                "burst must exceed rate × spare_ttl by at least 1: raise burst or shorten spare_ttl",
            );
        }
        self.fallback.validate(KEY)
    }

    /// The burst of the shared bucket: `burst - rate × spare_ttl`.
    fn shared_burst(&self) -> f64 {
        f64::from(self.burst) - self.rate * self.spare_ttl.as_secs_f64()
    }
}

/// What one claim got.
enum Claim {
    /// Permits (at least one), each with the epoch microsecond from which it may be spent.
    Granted(Vec<i64>),
    /// No permit can be had before the caller's deadline.
    TooLate,
    /// Lost every race to other processes; try again shortly.
    Contended,
}

/// Permits this process claimed and has not handed out yet, earliest first: when each may be
/// spent, and until when.
type Spares = std::collections::VecDeque<(Instant, Instant)>;

/// State of the one claim in flight (claims are made one at a time per process).
struct Claimer {
    /// The bucket's `tat` as last seen: a lower bound of the real one (claims only raise it).
    seen_tat_us: Option<i64>,
}

/// A [`ConnectLimiter`] whose budget is shared by every process through one DynamoDB item per
/// endpoint (see the [module docs](super) for the algorithm, the table and the IAM policy).
///
/// A claim reserves permits (possibly a little in the future, within the caller's max wait), so
/// processes never lose races to each other. Waiters of one process share one claim in flight: it
/// asks for as many permits as there are waiters (up to `batch`), and each waiter sleeps until its
/// permit's time. When DynamoDB does not answer, permits come from a local token bucket of
/// `rate / expected_processes` (and `burst / expected_processes`) until a probe gets through.
pub struct DynamoRateLimiter {
    client: Client,
    config: RateLimiterConfig,
    pk: String,
    period_us: f64,
    tau_us: f64,
    batch: u32,
    waiting: AtomicUsize,
    spares: Mutex<Spares>,
    claimer: tokio::sync::Mutex<Claimer>,
    local: TokenBucket,
    fallback: Arc<Fallback>,
    round_trips: RoundTrips,
    metrics: Metrics,
}

impl fmt::Debug for DynamoRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoRateLimiter")
            .field("pk", &self.pk)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    i64::try_from(epoch().as_micros()).unwrap_or(i64::MAX)
}

impl DynamoRateLimiter {
    /// A limiter on `config.table`, recording into `metrics`.
    ///
    /// # Errors
    /// [`CoordinationError::Invalid`] for a bad setting.
    pub fn new(
        client: Client,
        config: RateLimiterConfig,
        metrics: Metrics,
    ) -> Result<Self, CoordinationError> {
        config.validate()?;
        let shared_burst = config.shared_burst();
        let period_us = 1e6 / config.rate;
        let processes = config.fallback.expected_processes;
        // Truncation is intended: the batch never exceeds what the shared bucket can hold.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let batch = config.batch.min(shared_burst.floor() as u32).max(1);
        let local = TokenBucket::new(config.rate / f64::from(processes), (config.burst / processes).max(1));
        Ok(Self {
            pk: format!("rate#{}", normalise_endpoint(&config.endpoint)),
            client,
            period_us,
            tau_us: shared_burst * period_us,
            batch,
            waiting: AtomicUsize::new(0),
            spares: Mutex::new(Spares::new()),
            claimer: tokio::sync::Mutex::new(Claimer { seen_tat_us: None }),
            local,
            fallback: Arc::new(Fallback::new(
                config.fallback.probe_interval,
                metrics.rate_fallback.clone(),
                metrics.rate_fallbacks.clone(),
            )),
            round_trips: RoundTrips::new(metrics.rate_round_trips.clone()),
            metrics,
            config,
        })
    }

    /// Shared, or on the local fallback share.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.fallback.mode()
    }

    /// The DynamoDB error that caused the last fallback, if any.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.fallback.last_error()
    }

    /// DynamoDB requests this limiter made.
    #[must_use]
    pub fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &RateLimiterConfig {
        &self.config
    }

    /// The earliest claimed permit still usable: when it may be spent.
    fn take_spare(&self) -> Option<Instant> {
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some((from, until)) = spares.pop_front() {
            if now <= until {
                return Some(from);
            }
        }
        None
    }

    fn granted(&self, started: Instant) {
        self.metrics.rate_granted.inc();
        self.metrics.rate_wait.observe(millis(started.elapsed()));
    }

    fn denied(&self) -> LimitError {
        self.metrics.rate_denied.inc();
        LimitError::Denied("the distributed connect-rate limiter (no permit within max_wait)")
    }

    /// A permit: reserved, then spent at its time. The caller counts as a waiter until then,
    /// which sizes the next claim: a caller sleeping until its permit's time usually wants another
    /// soon after (a refiller), so the claim brings its next permit along.
    async fn acquire_permit(&self) -> Result<(), LimitError> {
        let _waiting = Waiting::new(&self.waiting);
        let started = Instant::now();
        let from = self.reserve(started + self.config.max_wait).await?;
        tokio::time::sleep_until(from).await;
        self.granted(started);
        Ok(())
    }

    /// Reserves one permit (a spare, a new claim, or the local share): when it may be spent.
    async fn reserve(&self, deadline: Instant) -> Result<Instant, LimitError> {
        loop {
            if let Some(from) = self.take_spare() {
                return Ok(from);
            }
            if self.mode() == Mode::Fallback {
                if self.fallback.should_try() {
                    self.probe();
                }
                return match tokio::time::timeout_at(deadline, self.local.acquire()).await {
                    Ok(_) => Ok(Instant::now()),
                    Err(_) => Err(self.denied()),
                };
            }
            let Ok(mut claimer) = tokio::time::timeout_at(deadline, self.claimer.lock()).await else {
                return Err(self.denied());
            };
            if let Some(from) = self.take_spare() {
                return Ok(from);
            }
            if self.mode() == Mode::Fallback {
                continue; // Another waiter's claim just failed: use the local share.
            }
            let want =
                u32::try_from(self.waiting.load(Ordering::Relaxed)).unwrap_or(u32::MAX).clamp(1, self.batch);
            let pause = match self.claim(&mut claimer, want, deadline).await {
                Ok(Claim::Granted(permits)) => {
                    self.fallback.recovered();
                    let (now, epoch_now) = (Instant::now(), now_us());
                    let mut at = permits.into_iter().map(|valid_us| {
                        let ahead = Duration::from_micros(u64::try_from(valid_us - epoch_now).unwrap_or(0));
                        (now + ahead, now + ahead + self.config.spare_ttl)
                    });
                    let first = at.next().map(|(from, _)| from);
                    self.spares.lock().unwrap_or_else(PoisonError::into_inner).extend(at);
                    return Ok(first.unwrap_or(now));
                }
                Ok(Claim::TooLate) => {
                    self.fallback.recovered();
                    return Err(self.denied());
                }
                Ok(Claim::Contended) => Duration::from_micros(fastrand::u64(1_000..5_000)),
                Err(error) => {
                    self.fallback.failed(&error);
                    continue;
                }
            };
            drop(claimer);
            let wake = Instant::now() + pause;
            if wake >= deadline {
                return Err(self.denied());
            }
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Asks DynamoDB (a read of the bucket) on a task of its own, so no connect waits for it;
    /// shared mode resumes when it answers.
    fn probe(&self) {
        let request = self.client.get_item().table_name(&self.config.table).key("pk", s(&self.pk));
        let (fallback, trips, timeout) =
            (self.fallback.clone(), self.round_trips.clone(), self.config.fallback.call_timeout);
        drop(tokio::spawn(async move {
            match call("GetItem", timeout, &trips, request.send()).await {
                Ok(Ok(_)) => {
                    fallback.recovered();
                }
                Ok(Err(error)) => fallback.failed(&request_error("GetItem", &error)),
                Err(error) => fallback.failed(&error),
            }
        }));
    }

    /// Reserves up to `want` permits from the shared bucket, none later than `deadline`.
    async fn claim(&self, claimer: &mut Claimer, want: u32, deadline: Instant) -> Result<Claim, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let now = now_us();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let horizon = now + i64::try_from(remaining.as_micros()).unwrap_or(i64::MAX);
            let step = match claimer.seen_tat_us {
                Some(tat) if tat > now => match self.room(tat, horizon, want) {
                    Some(permits) => Step::Add(permits),
                    None => return Ok(Claim::TooLate),
                },
                _ => Step::Reset(want),
            };
            match self.write(step, now, horizon).await? {
                Written::Ok(tat) => {
                    claimer.seen_tat_us = Some(tat);
                    // The i-th of k permits may be spent from tat - tau - (k - i) periods.
                    let k = step.permits();
                    #[allow(clippy::cast_possible_truncation)]
                    let permits = (1..=k)
                        .map(|i| tat - self.tau_us as i64 - (f64::from(k - i) * self.period_us) as i64)
                        .collect();
                    return Ok(Claim::Granted(permits));
                }
                // The bucket's value when the condition failed (`tat` never goes down).
                Written::Lost(tat) => claimer.seen_tat_us = tat,
            }
        }
        Ok(Claim::Contended)
    }

    /// How many of `want` permits fit before `horizon` while the bucket's `tat` is ahead of now.
    fn room(&self, tat: i64, horizon: i64, want: u32) -> Option<u32> {
        #[allow(clippy::cast_precision_loss)] // Microsecond timestamps fit a double exactly.
        let room_us = horizon as f64 + self.tau_us - tat as f64;
        let fits = (room_us / self.period_us).floor();
        // In 1..=want, so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (fits >= 1.0).then(|| (fits.min(f64::from(want))) as u32)
    }

    /// One conditional write of the bucket item.
    async fn write(&self, step: Step, now: i64, horizon: i64) -> Result<Written, StoreError> {
        #[allow(clippy::cast_possible_truncation)] // At most burst periods in microseconds.
        let increment = (f64::from(step.permits()) * self.period_us).ceil() as i64;
        let ttl = i64::try_from((epoch() + BUCKET_TTL).as_secs()).unwrap_or(i64::MAX);
        let request = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", s(&self.pk))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", n(ttl))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match step {
            // A bucket in use: move `tat` on, as long as the last permit is due by the horizon.
            Step::Add(_) => {
                #[allow(clippy::cast_possible_truncation)]
                let max = horizon + self.tau_us as i64 - increment;
                request
                    .update_expression("SET ttl_epoch = :ttl ADD tat_us :inc")
                    .condition_expression("tat_us > :now AND tat_us <= :max")
                    .expression_attribute_values(":inc", n(increment))
                    .expression_attribute_values(":max", n(max))
            }
            // An idle (or new) bucket: start from now.
            Step::Reset(_) => request
                .update_expression("SET tat_us = :tat, ttl_epoch = :ttl")
                .condition_expression("attribute_not_exists(tat_us) OR tat_us <= :now")
                .expression_attribute_values(":tat", n(now + increment)),
        };
        let timeout = self.config.fallback.call_timeout;
        match call("UpdateItem", timeout, &self.round_trips, request.send()).await? {
            Ok(output) => Ok(Written::Ok(number(output.attributes(), "tat_us").unwrap_or(now + increment))),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    Ok(Written::Lost(number(e.item(), "tat_us")))
                }
                _ => Err(request_error("UpdateItem", &error)),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Add(u32),
    Reset(u32),
}

impl Step {
    fn permits(self) -> u32 {
        match self {
            Self::Add(p) | Self::Reset(p) => p,
        }
    }
}

enum Written {
    /// The claim went through; the bucket's new `tat`.
    Ok(i64),
    /// Its condition failed; the bucket's `tat` at that moment (`None`: no bucket yet).
    Lost(Option<i64>),
}

impl ConnectLimiter for DynamoRateLimiter {
    fn acquire(&self) -> BoxFuture<'_, Result<(), LimitError>> {
        Box::pin(self.acquire_permit())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region};

    use super::*;

    fn limiter(rate: f64, burst: u32, batch: u32) -> DynamoRateLimiter {
        let client = Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let config =
            RateLimiterConfig { rate, burst, batch, ..RateLimiterConfig::new("t", "e.example:5432") };
        DynamoRateLimiter::new(client, config, Metrics::new()).unwrap()
    }

    #[test]
    fn the_shared_burst_leaves_room_for_spares_and_caps_the_batch() {
        // 20/s, burst 10, spares kept 100 ms: the bucket holds 10 - 2 = 8 permits.
        let l = limiter(20.0, 10, 50);
        assert_eq!((l.period_us, l.tau_us, l.batch), (50_000.0, 400_000.0, 8));
        assert_eq!(l.pk, "rate#e.example");
        let now = 1_000_000_000;
        // A full debt: nothing before now, one permit per period after it.
        assert_eq!(l.room(now + 400_000, now, 5), None);
        assert_eq!(l.room(now + 400_000, now + 50_000, 5), Some(1));
        assert_eq!(l.room(now + 400_000, now + 1_000_000, 5), Some(5));
        // Two permits' worth taken: six fit at once.
        assert_eq!(l.room(now + 100_000, now, 10), Some(6));
    }

    #[test]
    fn impossible_settings_are_refused() {
        let client = |config| {
            let client = Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .build(),
            );
            DynamoRateLimiter::new(client, config, Metrics::new()).map(|_| ()).unwrap_err().to_string()
        };
        let base = RateLimiterConfig::new("t", "e");
        let err = client(RateLimiterConfig { burst: 10, rate: 100.0, ..base.clone() });
        assert!(err.contains("raise burst or shorten spare_ttl"), "{err}");
        let err = client(RateLimiterConfig { table: String::new(), ..base.clone() });
        assert!(err.contains("table must name"), "{err}");
        let err = client(RateLimiterConfig {
            fallback: FallbackConfig { expected_processes: 0, ..base.fallback.clone() },
            ..base
        });
        assert!(err.contains("expected_processes"), "{err}");
    }
}
