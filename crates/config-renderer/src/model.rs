//! The typed model of a deployment. Every field has a default, so an empty file is a valid config.
//!
//! Key names (`dsql.max_conns`, ...) are the TOML paths of these fields; `keys.rs` derives the key
//! registry from [`Config::default`], so adding a field here adds a key everywhere.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::{GoDuration, dur};

/// The whole configuration of one deployment profile.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Project name and AWS region.
    pub project: Project,
    /// Where the fork's source comes from.
    pub fork: Fork,
    /// Image build settings.
    pub build: Build,
    /// The persistence store: Aurora DSQL (or the local PostgreSQL stand-in) and the plugin's pool.
    pub dsql: Dsql,
    /// Optional DynamoDB-backed coordination across processes.
    pub coordination: Coordination,
    /// Which visibility store Temporal uses.
    pub visibility: Visibility,
    /// The local Elasticsearch container (`visibility.backend = "elasticsearch"`).
    pub elasticsearch: Elasticsearch,
    /// An Amazon OpenSearch Service domain (`visibility.backend = "opensearch"`).
    pub opensearch: OpenSearch,
    /// The Temporal server.
    pub temporal: Temporal,
    /// Grafana, Mimir.
    pub observability: Observability,
    /// Settings only the `local` profile uses.
    pub local: Local,
    /// How `cargo xtask infra` runs Terraform.
    pub infra: Infra,
}

/// `[project]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Project {
    /// Prefix for AWS resource names and tags, and the compose project name.
    pub name: String,
    /// AWS region of the cluster (and of CloudWatch in Grafana).
    pub region: String,
}

impl Default for Project {
    fn default() -> Self {
        Self { name: "temporal-dev".to_owned(), region: "eu-west-1".to_owned() }
    }
}

/// `[fork]`: a local checkout, or a git URL and ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Fork {
    /// Local checkout of the fork; relative paths are relative to the repository root.
    pub path: String,
    /// Git URL to build from instead of `path` (empty: use `path`).
    pub git: String,
    /// Branch, tag or commit to build when `git` is set.
    pub git_ref: String,
}

impl Default for Fork {
    fn default() -> Self {
        Self { path: "../temporal".to_owned(), git: String::new(), git_ref: "main".to_owned() }
    }
}

/// Where the fork's source comes from, resolved from [`Fork`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForkSource {
    /// A local checkout (absolute path).
    Path(PathBuf),
    /// A git URL and the ref to check out.
    Git {
        /// The repository URL.
        url: String,
        /// Branch, tag or commit.
        git_ref: String,
    },
}

impl Fork {
    /// The source to build from: `git` when set, else `path` resolved against `root`.
    #[must_use]
    pub fn source(&self, root: &Path) -> ForkSource {
        if self.git.trim().is_empty() {
            ForkSource::Path(normalize(&root.join(&self.path)))
        } else {
            ForkSource::Git { url: self.git.clone(), git_ref: self.git_ref.clone() }
        }
    }
}

/// Removes `.` and `name/..` pairs without touching the file system (the fork may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `[build]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Build {
    /// Target architecture of the image.
    pub arch: Arch,
}

/// Image architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Arch {
    /// The Docker engine's own architecture.
    #[default]
    Auto,
    /// linux/amd64.
    Amd64,
    /// linux/arm64.
    Arm64,
}

impl Arch {
    /// `auto`, `amd64` or `arm64` (`cargo xtask build --arch all` builds both at once).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
}

/// What the fork's `dsql` plugin talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Backend {
    /// A real Aurora DSQL cluster (IAM tokens, TLS).
    #[default]
    Dsql,
    /// The local PostgreSQL 16, behind the dsql-local gateway unless `local.gateway.enabled` is false.
    Postgres,
}

/// `[dsql]`: the cluster and the plugin's connection pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Dsql {
    /// `dsql` for Aurora DSQL, `postgres` for the local stand-in.
    pub backend: Backend,
    /// Cluster identifier (26 characters); written back by `cargo xtask infra apply`.
    pub identifier: String,
    /// Endpoint host of the Aurora DSQL cluster; empty means `<identifier>.dsql.<region>.on.aws`.
    /// Written back by `cargo xtask infra apply`. Never the local stand-in's host
    /// ([`Local::postgres_host`]), so a value in config.toml leaves the local profile alone.
    pub endpoint: String,
    /// Port of the endpoint.
    pub port: u16,
    /// Database user (the server always connects as `admin`).
    pub user: String,
    /// Database name; DSQL has exactly one, `postgres`.
    pub database: String,
    /// TLS with certificate and host verification (mandatory on DSQL).
    pub tls: bool,
    /// Connections per pool (`maxConns`).
    pub max_conns: u32,
    /// Idle connections per pool (`maxIdleConns`); must equal `max_conns`.
    pub max_idle_conns: u32,
    /// Connection lifetime outside reservoir mode (`maxConnLifetime`).
    pub max_conn_lifetime: GoDuration,
    /// IAM token lifetime (`DSQL_TOKEN_DURATION`).
    pub token_duration: GoDuration,
    /// The plugin's connection reservoir.
    pub reservoir: Reservoir,
    /// The plugin's per-process connection rate limiter.
    pub rate_limit: RateLimit,
    /// The non-reservoir pool's warmup and keeper.
    pub pool: Pool,
}

impl Default for Dsql {
    fn default() -> Self {
        Self {
            backend: Backend::Dsql,
            identifier: String::new(),
            endpoint: String::new(),
            port: 5432,
            user: "admin".to_owned(),
            database: "postgres".to_owned(),
            tls: true,
            max_conns: 50,
            max_idle_conns: 50,
            max_conn_lifetime: dur("55m"),
            token_duration: dur("15m"),
            reservoir: Reservoir::default(),
            rate_limit: RateLimit::default(),
            pool: Pool::default(),
        }
    }
}

/// `[dsql.reservoir]` (`DSQL_RESERVOIR_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Reservoir {
    /// Hand out pre-opened connections instead of connecting on demand.
    pub enabled: bool,
    /// Ready connections to hold; 0 means `dsql.max_conns` (the fork's default).
    pub target_ready: u32,
    /// Startup waits until this many are ready (or `initial_fill_timeout`); 0 means the target.
    pub low_watermark: u32,
    /// Connection lifetime before jitter.
    pub base_lifetime: GoDuration,
    /// Extra lifetime, uniform in `[0, jitter)`, sampled per connection.
    pub lifetime_jitter: GoDuration,
    /// Connections with less remaining lifetime are not handed out.
    pub guard_window: GoDuration,
    /// How long startup waits for `low_watermark`.
    pub initial_fill_timeout: GoDuration,
}

impl Default for Reservoir {
    fn default() -> Self {
        Self {
            enabled: true,
            target_ready: 0,
            low_watermark: 0,
            base_lifetime: dur("11m"),
            lifetime_jitter: dur("2m"),
            guard_window: dur("45s"),
            initial_fill_timeout: dur("30s"),
        }
    }
}

/// `[dsql.rate_limit]`: the per-process token bucket (`DSQL_CONNECTION_*`, `DSQL_STAGGERED_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimit {
    /// New connections per second per process.
    pub rate: u32,
    /// Bucket size per process.
    pub burst: u32,
    /// Random delay before the first connection of a process.
    pub staggered_startup: bool,
    /// Upper bound of that delay.
    pub staggered_startup_max_delay: GoDuration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { rate: 10, burst: 100, staggered_startup: true, staggered_startup_max_delay: dur("5s") }
    }
}

/// `[dsql.pool]`: warmup and keeper of the non-reservoir pool (`DSQL_POOL_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Pool {
    /// Spread of the warmup; `0s` lets the plugin choose from the pool size.
    pub warmup_stagger: GoDuration,
    /// Keeper tick.
    pub keeper_tick_interval: GoDuration,
    /// Connections the keeper opens per tick; 0 lets the plugin choose.
    pub keeper_max_conns_per_tick: u32,
}

impl Default for Pool {
    fn default() -> Self {
        Self { warmup_stagger: dur("0s"), keeper_tick_interval: dur("1s"), keeper_max_conns_per_tick: 0 }
    }
}

/// `[coordination]`: DynamoDB-backed limits shared by every process.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Coordination {
    /// Cluster-wide connection rate limiter.
    pub rate_limiter: RateLimiter,
    /// Cluster-wide connection lease (reservoir mode only).
    pub conn_lease: ConnLease,
}

/// `[coordination.rate_limiter]` (`DSQL_DISTRIBUTED_RATE_LIMITER_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimiter {
    /// Use the DynamoDB limiter instead of the per-process one.
    pub enabled: bool,
    /// DynamoDB table; written back by `cargo xtask infra apply`.
    pub table: String,
    /// New connections per second for the whole cluster.
    pub limit: u32,
    /// Longest wait for a permit.
    pub max_wait: GoDuration,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self { enabled: false, table: String::new(), limit: 100, max_wait: dur("30s") }
    }
}

/// `[coordination.conn_lease]` (`DSQL_DISTRIBUTED_CONN_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConnLease {
    /// Count every connection against a cluster-wide limit.
    pub enabled: bool,
    /// DynamoDB table; written back by `cargo xtask infra apply`.
    pub table: String,
    /// Cluster-wide connection limit.
    pub limit: u32,
}

impl Default for ConnLease {
    fn default() -> Self {
        Self { enabled: false, table: String::new(), limit: 10_000 }
    }
}

/// Where Temporal keeps visibility (the dsql plugin serves no visibility call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VisibilityBackend {
    /// The profile's own Elasticsearch container ([`Elasticsearch`]).
    #[default]
    Elasticsearch,
    /// An Amazon OpenSearch Service domain ([`OpenSearch`]), reached with SigV4-signed requests.
    Opensearch,
}

impl VisibilityBackend {
    /// `elasticsearch` or `opensearch`, as written in config.toml.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elasticsearch => "elasticsearch",
            Self::Opensearch => "opensearch",
        }
    }
}

/// `[visibility]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Visibility {
    /// `elasticsearch` (the local container) or `opensearch` (an Amazon OpenSearch Service domain).
    pub backend: VisibilityBackend,
}

/// `[opensearch]`: an Amazon OpenSearch Service domain, used when `visibility.backend = "opensearch"`.
/// Temporal reaches it with its Elasticsearch client, every request signed with SigV4 from the same
/// AWS credentials the plugin signs its IAM tokens with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OpenSearch {
    /// Create the domain with `cargo xtask infra apply` (terraform/shared), which writes its
    /// endpoint into [`endpoint`](Self::endpoint).
    pub create: bool,
    /// The domain's endpoint, `https://<host>` (HTTPS only).
    pub endpoint: String,
    /// Region of the domain, which requests are signed for; empty means `project.region`.
    pub region: String,
    /// Visibility index name.
    pub index: String,
}

impl Default for OpenSearch {
    fn default() -> Self {
        Self {
            create: false,
            endpoint: String::new(),
            region: String::new(),
            index: "temporal_visibility_v1_dev".to_owned(),
        }
    }
}

impl OpenSearch {
    /// The host (and port, when the endpoint names one) of [`endpoint`](Self::endpoint): `None`
    /// unless it is `https://` followed by a host, with nothing after it but an optional `/`.
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        let rest = self.endpoint.trim().strip_prefix("https://")?;
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let (name, port) = host.rsplit_once(':').map_or((host, None), |(n, p)| (n, Some(p)));
        let name_ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        (name_ok && port_ok).then_some(host)
    }
}

/// `[elasticsearch]`: the local Elasticsearch container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Elasticsearch {
    /// Host name inside the compose network.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `http` or `https`.
    pub scheme: String,
    /// Temporal's Elasticsearch client version: `v7` or `v8`.
    pub version: String,
    /// Visibility index name.
    pub index: String,
}

impl Default for Elasticsearch {
    fn default() -> Self {
        Self {
            host: "elasticsearch".to_owned(),
            port: 9200,
            scheme: "http".to_owned(),
            version: "v8".to_owned(),
            index: "temporal_visibility_v1_dev".to_owned(),
        }
    }
}

/// `[temporal]`: the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Temporal {
    /// Image of the fork's server.
    pub image: String,
    /// Number of history shards (fixed for the life of a database).
    pub history_shards: u32,
    /// Server log level.
    pub log_level: String,
    /// `persistenceMaxQPS` of history, matching and frontend (dynamic config).
    pub persistence_max_qps: u32,
    /// Read and write partitions per task queue (dynamic config).
    pub task_queue_partitions: u32,
    /// Service ports.
    pub ports: Ports,
}

impl Default for Temporal {
    fn default() -> Self {
        Self {
            image: "temporal-dsql-server:latest".to_owned(),
            history_shards: 4,
            log_level: "info".to_owned(),
            persistence_max_qps: 3000,
            task_queue_partitions: 4,
            ports: Ports::default(),
        }
    }
}

/// `[temporal.ports]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Ports {
    /// Frontend gRPC (published on 127.0.0.1).
    pub frontend_grpc: u16,
    /// Frontend HTTP API (published on 127.0.0.1).
    pub frontend_http: u16,
    /// Frontend membership.
    pub frontend_membership: u16,
    /// History gRPC.
    pub history_grpc: u16,
    /// History membership.
    pub history_membership: u16,
    /// Matching gRPC.
    pub matching_grpc: u16,
    /// Matching membership.
    pub matching_membership: u16,
    /// Worker gRPC.
    pub worker_grpc: u16,
    /// Worker membership.
    pub worker_membership: u16,
    /// Prometheus metrics of every service (inside its container).
    pub metrics: u16,
    /// Temporal UI (published on 127.0.0.1).
    pub ui: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            frontend_grpc: 7233,
            frontend_http: 8233,
            frontend_membership: 6933,
            history_grpc: 7234,
            history_membership: 6934,
            matching_grpc: 7235,
            matching_membership: 6935,
            worker_grpc: 7239,
            worker_membership: 6939,
            metrics: 9090,
            ui: 8080,
        }
    }
}

/// `[observability]`: Grafana and Mimir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Observability {
    /// Grafana (published on 127.0.0.1).
    pub grafana_port: u16,
    /// Grafana admin user.
    pub grafana_admin_user: String,
    /// Grafana admin password; empty: generated into config.toml on first render. Never rendered
    /// into a file: compose gets it as process environment.
    pub grafana_admin_password: String,
    /// Mimir HTTP (published on 127.0.0.1).
    pub mimir_port: u16,
    /// How long Mimir keeps metrics.
    pub mimir_retention: GoDuration,
}

impl Default for Observability {
    fn default() -> Self {
        Self {
            grafana_port: 3000,
            grafana_admin_user: "admin".to_owned(),
            grafana_admin_password: String::new(),
            mimir_port: 9009,
            mimir_retention: dur("168h"),
        }
    }
}

/// `[local]`: the local profile's PostgreSQL stand-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Local {
    /// Host of the PostgreSQL 16 container inside the compose network (its service name): what
    /// the Temporal containers connect to when `dsql.backend = "postgres"`.
    pub postgres_host: String,
    /// Host port of the PostgreSQL 16 container (published on 127.0.0.1).
    pub postgres_port: u16,
    /// The dsql-local gateway in front of that PostgreSQL.
    pub gateway: Gateway,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            postgres_host: crate::render::POSTGRES_SERVICE.to_owned(),
            postgres_port: 15432,
            gateway: Gateway::default(),
        }
    }
}

/// `[local.gateway]`: the dsql-local gateway, which gives the local PostgreSQL Aurora DSQL's TLS,
/// IAM authentication, limits and statement rules. Its defaults are DSQL's own limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Gateway {
    /// Temporal reaches PostgreSQL only through the gateway; false: directly, without TLS or token
    /// checks (the behaviour before the gateway, for debugging).
    pub enabled: bool,
    /// Host port of the gateway (published on 127.0.0.1).
    pub port: u16,
    /// New connections per second (DSQL: 100).
    pub rate: u32,
    /// Connection bucket size (DSQL: 1,000).
    pub burst: u32,
    /// Open connections at most (DSQL: 10,000 per cluster).
    pub max_connections: u32,
    /// The gateway closes a connection after this long (DSQL: 60 minutes).
    pub max_lifetime: GoDuration,
    /// How long a row write waits for a lock before it fails like DSQL's optimistic concurrency.
    pub lock_timeout: GoDuration,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 15433,
            rate: 100,
            burst: 1000,
            max_connections: 10_000,
            max_lifetime: dur("60m"),
            lock_timeout: dur("10ms"),
        }
    }
}

/// `[infra]`: how `cargo xtask infra` runs Terraform for `terraform/shared`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Infra {
    /// Where the Terraform state of the long-lived resources is kept.
    pub state: InfraState,
}

/// Where Terraform keeps the state of `terraform/shared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StateBackend {
    /// A file of this clone (`terraform.tfstate`, or under `TDSQL_TF_STATE_DIR`).
    #[default]
    Local,
    /// An object in an S3 bucket, shared by every clone that names it.
    S3,
}

/// `[infra.state]`: Terraform's `backend "s3"` settings (`terraform init -backend-config=...`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct InfraState {
    /// `local` or `s3`.
    pub backend: StateBackend,
    /// S3 bucket of the state (`backend = "s3"`).
    pub bucket: String,
    /// Object key of the state; empty means `<project.name>/terraform/shared.tfstate`.
    pub key: String,
    /// Region of the bucket (and of the lock table); empty means `project.region`.
    pub region: String,
    /// DynamoDB table with hash key `LockID` (String) that holds the state lock; empty means S3's
    /// own locking (a `.tflock` object beside the state, Terraform 1.10 and later).
    pub lock_table: String,
}

impl InfraState {
    /// The object key of the state for project `project`.
    #[must_use]
    pub fn key_for(&self, project: &str) -> String {
        let key = self.key.trim();
        if key.is_empty() { format!("{project}/terraform/shared.tfstate") } else { key.to_owned() }
    }
}

impl Config {
    /// The region of the state bucket: `infra.state.region`, else `project.region`.
    #[must_use]
    pub fn state_region(&self) -> &str {
        let region = self.infra.state.region.trim();
        if region.is_empty() { self.project.region.as_str() } else { region }
    }

    /// True when visibility is on an Amazon OpenSearch Service domain (no Elasticsearch container):
    /// `visibility.backend = "opensearch"` outside the local profile. The local profile keeps its
    /// container whatever config.toml (which overlays every profile) says: its Temporal containers
    /// sign requests with the local key pair, which AWS does not accept.
    #[must_use]
    pub fn uses_opensearch(&self) -> bool {
        self.visibility.backend == VisibilityBackend::Opensearch && !self.is_local()
    }

    /// The region requests to the OpenSearch domain are signed for: `opensearch.region`, else
    /// `project.region` (the DSQL cluster's).
    #[must_use]
    pub fn opensearch_region(&self) -> &str {
        let region = self.opensearch.region.trim();
        if region.is_empty() { self.project.region.as_str() } else { region }
    }

    /// The host the Temporal containers connect to, by backend: for `postgres` the gateway's
    /// compose service ([`GATEWAY_SERVICE`](crate::render::GATEWAY_SERVICE)), or the local stand-in's
    /// `local.postgres_host` when `local.gateway.enabled` is false; for `dsql` the [cluster's endpoint](Self::cluster_endpoint),
    /// `None` when there is no cluster yet (`cargo xtask infra apply` creates one).
    #[must_use]
    pub fn endpoint(&self) -> Option<String> {
        match self.dsql.backend {
            Backend::Postgres if self.uses_gateway() => Some(crate::render::GATEWAY_SERVICE.to_owned()),
            Backend::Postgres => Some(self.local.postgres_host.trim().to_owned()),
            Backend::Dsql => self.cluster_endpoint(),
        }
    }

    /// The Aurora DSQL cluster's endpoint, whatever the backend: `dsql.endpoint`, else
    /// `<identifier>.dsql.<region>.on.aws`, else `None`.
    #[must_use]
    pub fn cluster_endpoint(&self) -> Option<String> {
        let explicit = self.dsql.endpoint.trim();
        if !explicit.is_empty() {
            return Some(explicit.to_owned());
        }
        let id = self.dsql.identifier.trim();
        (!id.is_empty()).then(|| format!("{id}.dsql.{}.on.aws", self.project.region))
    }

    /// The DSQL cluster identifier: `dsql.identifier`, else the first label of a DSQL endpoint.
    #[must_use]
    pub fn cluster_id(&self) -> Option<String> {
        let id = self.dsql.identifier.trim();
        if !id.is_empty() {
            return Some(id.to_owned());
        }
        let endpoint = self.dsql.endpoint.trim();
        endpoint.split_once(".dsql.").filter(|_| endpoint.ends_with(".on.aws")).map(|(id, _)| id.to_owned())
    }

    /// Ready connections the reservoir holds: `dsql.reservoir.target_ready`, or `dsql.max_conns` when 0.
    #[must_use]
    pub fn reservoir_target(&self) -> u32 {
        match self.dsql.reservoir.target_ready {
            0 => self.dsql.max_conns,
            n => n,
        }
    }

    /// The reservoir's startup threshold: `dsql.reservoir.low_watermark`, or the target when 0.
    #[must_use]
    pub fn reservoir_low_watermark(&self) -> u32 {
        match self.dsql.reservoir.low_watermark {
            0 => self.reservoir_target(),
            n => n,
        }
    }

    /// True for the local PostgreSQL stand-in.
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.dsql.backend == Backend::Postgres
    }

    /// True when the Temporal containers reach the local PostgreSQL through the dsql-local
    /// gateway (TLS against the local CA, IAM tokens signed with the local key pair).
    #[must_use]
    pub fn uses_gateway(&self) -> bool {
        self.is_local() && self.local.gateway.enabled
    }

    /// TLS with certificate and host verification: `dsql.tls`, always on through the gateway
    /// (it refuses plaintext, like DSQL).
    #[must_use]
    pub fn tls(&self) -> bool {
        self.dsql.tls || self.uses_gateway()
    }
}
