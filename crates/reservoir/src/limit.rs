//! What the refiller asks before opening a connection: a connect-rate limiter and an optional
//! per-connection lease (for a cluster-wide connection count shared by several processes).
//!
//! The local [`TokenBucket`] is the default limiter; a distributed one (e.g. DynamoDB-backed)
//! implements [`ConnectLimiter`] too, and a lease manager implements [`LeaseHook`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::token::BoxFuture;

/// Why the limiter or the lease hook did not grant a connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The limit is reached (for a lease: every slot is taken).
    #[error("connect refused by {0}: the limit is reached")]
    Denied(&'static str),
    /// The limiter itself failed (e.g. its backing store is unreachable).
    #[error("the connect limiter failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Paces new connections. `acquire` resolves when one connect may start.
pub trait ConnectLimiter: Send + Sync + fmt::Debug {
    /// Waits for permission to open one connection.
    fn acquire(&self) -> BoxFuture<'_, Result<(), LimitError>>;
}

/// A lease held by one physical connection; released when the reservoir closes the connection.
///
/// Clones share one revocation flag: a hook that keeps a clone can [`Lease::revoke`] it, and the
/// reservoir then closes the connection at its next checkout, return or expiry scan (and releases
/// the lease as usual). Equality and hashing look at the identifier only.
#[derive(Debug, Clone)]
pub struct Lease {
    id: String,
    revoked: Arc<AtomicBool>,
}

impl Lease {
    /// A lease with the hook's own identifier.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), revoked: Arc::default() }
    }

    /// The identifier.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Withdraws the lease (e.g. the shared count turned out to be full when the lease had to be
    /// counted again): its connection is closed instead of being handed out again.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// Whether [`Lease::revoke`] was called on this lease or a clone of it.
    #[must_use]
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

impl PartialEq for Lease {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Lease {}

impl std::hash::Hash for Lease {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// Acquires a lease before each connect and releases it when that connection is closed, so the
/// number of connections across processes can be capped (acquired before the rate limiter, as the
/// fork does, so a denied lease costs no rate budget).
pub trait LeaseHook: Send + Sync + fmt::Debug {
    /// Takes one slot.
    fn acquire(&self) -> BoxFuture<'_, Result<Lease, LimitError>>;
    /// Gives a slot back; best effort.
    fn release(&self, lease: Lease) -> BoxFuture<'_, ()>;
}

/// A local token bucket: `burst` connects at once, then `rate` per second. In any one-second
/// window at most `rate + burst` connects start.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    ///
    /// # Panics
    /// When `rate` is not positive and finite or `burst` is zero (validated configs never are).
    #[must_use]
    pub fn new(rate: f64, burst: u32) -> Self {
        assert!(rate.is_finite() && rate > 0.0 && burst > 0, "token bucket needs rate > 0 and burst > 0");
        let burst = f64::from(burst);
        Self { rate, burst, state: Mutex::new(Bucket { tokens: burst, at: Instant::now() }) }
    }

    /// Takes one token now and says how long to wait before using it (a reservation: a dropped
    /// wait forfeits the token, which errs on the safe side).
    fn reserve(&self) -> Duration {
        let mut bucket = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        bucket.at = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }
}

impl ConnectLimiter for TokenBucket {
    fn acquire(&self) -> BoxFuture<'_, Result<(), LimitError>> {
        let wait = self.reserve();
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_the_burst_then_the_rate() {
        let bucket = TokenBucket::new(10.0, 3);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..8 {
            bucket.acquire().await.unwrap();
            at.push(start.elapsed().as_millis());
        }
        assert_eq!(at, [0, 0, 0, 100, 200, 300, 400, 500]);
        // Idle time refills up to the burst, not beyond.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = Instant::now();
        for _ in 0..4 {
            bucket.acquire().await.unwrap();
        }
        assert_eq!(start.elapsed().as_millis(), 100);
    }
}
