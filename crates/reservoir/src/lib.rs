//! A DSQL connection reservoir for tokio-postgres, with IAM tokens, OCC retry and metrics.
//!
//! - [`connect`]: the [`Connector`] trait and the real [`PgConnector`] (rustls verify-full or no
//!   TLS, password from a [`TokenProvider`]), with typed connect errors.
//! - [`token`]: [`IamTokenProvider`] (aws-sdk-dsql, cached, refreshed before expiry) and
//!   [`StaticPassword`].
//! - [`retry`]: OCC retry of whole transactions with jittered exponential backoff.
//! - [`metrics`]: Prometheus metrics under the fork's names ([`METRIC_FAMILIES`]).

pub mod connect;
pub mod metrics;
pub mod retry;
pub mod token;

pub use connect::{ConnectConfig, ConnectError, Connector, PgConnection, PgConnector, Tls};
pub use metrics::{METRIC_FAMILIES, Metrics};
pub use retry::{ErrorClass, RetryConfig, RetryError, RetryPolicy};
pub use token::{
    IamTokenConfig, IamTokenProvider, Password, StaticPassword, TokenDuration, TokenError, TokenProvider,
};
