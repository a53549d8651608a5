//! A DSQL connection reservoir for tokio-postgres, with IAM tokens, OCC retry and metrics.
//!
//! - [`reservoir`]: the [`Reservoir`] of pre-opened connections and its refiller.
//! - [`limit`]: the connect-rate limiter ([`TokenBucket`]) and the per-connection [`LeaseHook`].
//! - [`connect`]: the [`Connector`] trait and the real [`PgConnector`] (rustls verify-full or no
//!   TLS, password from a [`TokenProvider`]), with typed connect errors.
//! - [`token`]: [`IamTokenProvider`] (aws-sdk-dsql, cached, refreshed before expiry) and
//!   [`StaticPassword`].
//! - [`retry`]: OCC retry of whole transactions with jittered exponential backoff.
//! - [`metrics`]: Prometheus metrics under the fork's names ([`METRIC_FAMILIES`]).
//! - `coordination` (feature `coordination`): a cluster-wide connect budget and connection lease
//!   on DynamoDB, behind the same [`ConnectLimiter`] and [`LeaseHook`] traits.

pub mod connect;
#[cfg(feature = "coordination")]
pub mod coordination;
pub mod limit;
pub mod metrics;
pub mod reservoir;
pub mod retry;
pub mod token;

pub use connect::{ConnectConfig, ConnectError, Connector, PgConnection, PgConnector, Tls};
pub use limit::{ConnectLimiter, Lease, LeaseHook, LimitError, TokenBucket};
pub use metrics::{METRIC_FAMILIES, Metrics};
pub use reservoir::{
    CheckoutError, ConfigError, Conn, Reservoir, ReservoirBuilder, ReservoirConfig, Statistics, Status,
    WarmupError,
};
pub use retry::{ErrorClass, RetryConfig, RetryError, RetryPolicy};
pub use token::{
    IamTokenConfig, IamTokenProvider, Password, StaticPassword, TokenDuration, TokenError, TokenProvider,
};

/// An error and its sources in one line, for last-error texts (SDK and driver errors keep the
/// useful part in a source).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
