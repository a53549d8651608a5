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
