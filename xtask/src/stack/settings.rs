//! What the stack commands need from the effective configuration (`crate::config`): published
//! ports (preflight and URLs), the fork source, the visibility index and the cluster.

use anyhow::Result;

use crate::build::ForkSource;
use crate::config::{self, Effective};
use crate::context::Context;
use crate::paths;

/// Alloy's debug UI; not a config key (compose defaults `TDSQL_ALLOY_PORT` to it).
const ALLOY_PORT: u16 = 12345;

/// Host ports the stack publishes on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishedPorts {
    pub(crate) frontend_grpc: u16,
    pub(crate) frontend_http: u16,
    pub(crate) ui: u16,
    pub(crate) grafana: u16,
    pub(crate) mimir: u16,
    pub(crate) alloy: u16,
    /// The Elasticsearch container; `None` when visibility is on an OpenSearch domain.
    pub(crate) elasticsearch: Option<u16>,
    /// The local profile's PostgreSQL stand-in.
    pub(crate) postgres: Option<u16>,
    /// The local profile's dsql-local gateway.
    pub(crate) gateway: Option<u16>,
}

impl PublishedPorts {
    /// Every published port with what it is for, in a stable order.
    pub(crate) fn all(&self) -> Vec<(&'static str, u16)> {
        let mut ports = vec![
            ("Temporal frontend gRPC", self.frontend_grpc),
            ("Temporal frontend HTTP", self.frontend_http),
            ("Temporal UI", self.ui),
            ("Grafana", self.grafana),
            ("Mimir", self.mimir),
            ("Alloy", self.alloy),
        ];
        if let Some(port) = self.elasticsearch {
            ports.push(("Elasticsearch", port));
        }
        if let Some(port) = self.postgres {
            ports.push(("PostgreSQL", port));
        }
        if let Some(port) = self.gateway {
            ports.push(("dsql-local gateway", port));
        }
        ports
    }
}

/// The stack's view of the configuration.
#[derive(Debug)]
pub(crate) struct StackSettings {
    pub(crate) config: Effective,
    pub(crate) ports: PublishedPorts,
    /// The visibility index: `elasticsearch.index` (the setup job creates it), or `opensearch.index`.
    pub(crate) es_index: String,
    /// `dsql.identifier` (or the one in `dsql.endpoint`); `None` when no cluster is configured.
    pub(crate) cluster_id: Option<String>,
    /// Whether PostgreSQL stands in for DSQL (`dsql.backend = "postgres"`).
    pub(crate) local: bool,
    /// Keys `infra apply` has yet to fill in (see [`StackSettings::load_before_infra`]).
    pub(crate) pending: Vec<String>,
}

impl StackSettings {
    /// The effective, validated configuration of the context's profile.
    pub(crate) fn load(ctx: &Context) -> Result<Self> {
        Self::from_config(config::load(ctx)?)
    }

    /// Like [`StackSettings::load`], before `up`'s infra stage: on Aurora DSQL, values that
    /// `infra apply` fills in (an enabled coordination table without a name) are listed in
    /// `pending` rather than failing. The local profile never runs infra, so it stays strict.
    pub(crate) fn load_before_infra(ctx: &Context) -> Result<Self> {
        let settings = Self::from_config(config::load_before_infra(ctx)?)?;
        if settings.local && !settings.pending.is_empty() {
            // The strict load names the keys and how to fix them.
            return Self::load(ctx);
        }
        Ok(settings)
    }

    fn from_config(config: Effective) -> Result<Self> {
        let local = config.is_local();
        let ports = PublishedPorts {
            frontend_grpc: config.temporal.ports.frontend_grpc,
            frontend_http: config.temporal.ports.frontend_http,
            ui: config.temporal.ports.ui,
            grafana: config.observability.grafana_port,
            mimir: config.observability.mimir_port,
            alloy: ALLOY_PORT,
            elasticsearch: (!config.uses_opensearch()).then_some(config.elasticsearch.port),
            postgres: local.then_some(config.local.postgres_port),
            gateway: config.uses_gateway().then_some(config.local.gateway.port),
        };
        Ok(Self {
            ports,
            es_index: if config.uses_opensearch() {
                config.opensearch.index.clone()
            } else {
                config.elasticsearch.index.clone()
            },
            cluster_id: if local { None } else { config.cluster_id() },
            local,
            pending: config.loaded.pending.iter().map(|p| p.key.clone()).collect(),
            config,
        })
    }

    /// The endpoint the stack talks to (for the progress line).
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.config.endpoint()
    }

    /// Where the fork comes from: `fork.git` (+ `fork.git_ref`) when set, else the checkout at
    /// `fork.path` (relative to the repository root), exactly as `build` resolves it.
    pub(crate) fn fork_source(&self) -> ForkSource {
        self.config.fork.source(&paths::project_root())
    }
}
