//! The typed configuration of a temporal-dsql-deploy profile, and the renderers of every file the
//! containers read.
//!
//! - [`Config`] is the model: serde, a default for every key, key names such as `dsql.max_conns`.
//! - [`Loader`] merges the layers (built-in defaults < `profiles/<p>/profile.toml` < `config.toml`
//!   < `TDSQL_*` environment < flags), checks each value where it was written, validates the result
//!   ([`validate()`]) and records where every value came from ([`Loaded::origin`]).
//! - [`ConfigFile`] edits a config file in place, keeping comments and layout, and saves atomically.
//!
//! - [`render::render_all`] renders every file the containers read; [`render::write_all`] writes them.
//! - [`init_template`] is the commented `config.toml` of `cargo xtask config init`.
//!
//! This crate never prints and never exits; every failure is a [`ConfigError`].

mod duration;
mod edit;
mod error;
mod init;
pub mod keys;
mod load;
mod model;
pub mod render;
mod validate;

pub use duration::{DurationError, GoDuration};
pub use edit::{ConfigFile, write_atomic};
pub use error::{ConfigError, Origin, Problem, Severity};
pub use init::init_template;
pub use load::{Entry, Loaded, Loader, check_value, parse_text};
pub use model::{
    Arch, Backend, Build, Config, ConnLease, Coordination, Dsql, Elasticsearch, Fork, ForkSource, Infra,
    InfraState, Local, Observability, OpenSearch, Pool, Ports, Project, RateLimit, RateLimiter, Reservoir,
    StateBackend, Temporal, Visibility, VisibilityBackend,
};
pub use validate::{
    CLUSTER_CONNECT_BURST, CLUSTER_CONNECT_RATE, CLUSTER_MAX_CONNECTIONS, CONNECTION_MAX_AGE, FORK_TOKEN_MAX,
    TEMPORAL_SERVICES, TOKEN_MAX, TOKEN_MIN, validate,
};
