//! The configuration `infra` needs (through [`crate::config`]), and the write-back of what
//! `apply` created (through its comment-preserving, atomic editor).
//!
//! Written back: `dsql.identifier`, `dsql.endpoint` (terraform's `dsql_endpoint` output), the
//! table names and `opensearch.endpoint` (`https://` and the `opensearch_endpoint` output). config.toml sits above every profile's profile.toml, which is safe for these keys:
//! they only ever name the Aurora DSQL cluster, and the local profile connects to its own
//! `local.postgres_host` whatever they hold.

use std::path::PathBuf;

use anyhow::Result;
use tdsql_config_renderer::{StateBackend, VisibilityBackend};

use crate::config;
use crate::context::Context;

/// The keys `apply` fills in and `destroy` clears.
pub(crate) const IDENTIFIER: &str = "dsql.identifier";
pub(crate) const ENDPOINT: &str = "dsql.endpoint";
pub(crate) const RATE_LIMITER_TABLE: &str = "coordination.rate_limiter.table";
pub(crate) const CONN_LEASE_TABLE: &str = "coordination.conn_lease.table";
pub(crate) const OPENSEARCH_ENDPOINT: &str = "opensearch.endpoint";

/// What `infra` reads from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `project.name`
    pub(crate) project: String,
    /// `project.region`
    pub(crate) region: String,
    /// `dsql.identifier`, when set.
    pub(crate) identifier: Option<String>,
    /// `dsql.endpoint`, when set (by any layer; it only ever names the DSQL cluster).
    pub(crate) endpoint: Option<String>,
    /// See [`Settings::cluster`].
    cluster: Option<String>,
    /// Create the coordination tables: `coordination.rate_limiter.enabled || coordination.conn_lease.enabled`.
    pub(crate) create_tables: bool,
    /// `coordination.rate_limiter.table`, when set.
    pub(crate) rate_limiter_table: Option<String>,
    /// `coordination.conn_lease.table`, when set.
    pub(crate) conn_lease_table: Option<String>,
    /// Create the OpenSearch domain of visibility: `opensearch.create`.
    pub(crate) create_opensearch: bool,
    /// `opensearch.endpoint`, when set.
    pub(crate) opensearch_endpoint: Option<String>,
    /// Whether Temporal's visibility is on OpenSearch (`visibility.backend = "opensearch"`).
    pub(crate) opensearch_visibility: bool,
    /// `opensearch.index`: the visibility index `status` asks the domain for.
    pub(crate) opensearch_index: String,
    /// `opensearch.region`, else `project.region`: the region requests to the domain are signed for.
    pub(crate) opensearch_region: String,
    /// The user's config file (written back after apply and destroy).
    pub(crate) config_file: PathBuf,
    /// Where the Terraform state lives (`infra.state.*`).
    pub(crate) backend: Backend,
}

/// Where the Terraform state of `terraform/shared` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The state file of the working directory (`terraform.tfstate`).
    Local,
    /// An S3 object (`infra.state.backend = "s3"`).
    S3(S3Backend),
}

/// Terraform's `backend "s3"` settings from `infra.state.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Backend {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) region: String,
    /// DynamoDB lock table; `None` = S3's own lock file (`use_lockfile`).
    pub(crate) lock_table: Option<String>,
}

impl S3Backend {
    /// `s3://bucket/key`.
    pub(crate) fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The URL, the region and how the state is locked, for messages and `status`.
    pub(crate) fn describe(&self) -> String {
        let lock = match &self.lock_table {
            Some(table) => format!("DynamoDB table {table}"),
            None => "S3 lock file".to_owned(),
        };
        format!("{} ({}, lock: {lock})", self.url(), self.region)
    }

    /// The `-backend-config` values of `terraform init`. A local AWS API (moto) gets the endpoint
    /// from AWS_ENDPOINT_URL like the provider; it needs path-style URLs and has no STS.
    pub(crate) fn init_config(&self, local_api: bool) -> Vec<String> {
        let mut config = vec![
            format!("bucket={}", self.bucket),
            format!("key={}", self.key),
            format!("region={}", self.region),
            "encrypt=true".to_owned(),
        ];
        match &self.lock_table {
            Some(table) => config.push(format!("dynamodb_table={table}")),
            None => config.push("use_lockfile=true".to_owned()),
        }
        if local_api {
            config.extend(
                [
                    "use_path_style=true",
                    "skip_credentials_validation=true",
                    "skip_requesting_account_id=true",
                    "skip_metadata_api_check=true",
                    "skip_region_validation=true",
                ]
                .map(str::to_owned),
            );
        }
        config
    }
}

impl Settings {
    /// The effective config of the profile. A coordination table that is enabled but not named
    /// yet is pending (it is what `apply` is for), not an error, here.
    pub(crate) fn load(ctx: &Context) -> Result<Self> {
        let effective = config::load_before_infra(ctx)?;
        let set = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let coordination = &effective.coordination;
        Ok(Self {
            project: effective.project.name.clone(),
            region: effective.project.region.clone(),
            identifier: set(&effective.dsql.identifier),
            endpoint: set(&effective.dsql.endpoint),
            cluster: effective.cluster_id(),
            create_tables: coordination.rate_limiter.enabled || coordination.conn_lease.enabled,
            rate_limiter_table: set(&coordination.rate_limiter.table),
            conn_lease_table: set(&coordination.conn_lease.table),
            create_opensearch: effective.opensearch.create,
            opensearch_endpoint: set(&effective.opensearch.endpoint),
            opensearch_visibility: effective.visibility.backend == VisibilityBackend::Opensearch,
            opensearch_index: effective.opensearch.index.clone(),
            opensearch_region: effective.opensearch_region().to_owned(),
            config_file: effective.user_file.clone(),
            backend: match effective.infra.state.backend {
                StateBackend::S3 => {
                    let state = &effective.infra.state;
                    Backend::S3(S3Backend {
                        bucket: state.bucket.trim().to_owned(),
                        key: state.key_for(&effective.project.name),
                        region: effective.state_region().to_owned(),
                        lock_table: set(&state.lock_table),
                    })
                }
                _ => Backend::Local,
            },
        })
    }

    /// The cluster the configuration names: `dsql.identifier`, else the first label of a DSQL
    /// `dsql.endpoint` (a cluster set by hand through its endpoint only).
    pub(crate) fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }
}

/// The values `apply` writes into the config file; `None` clears the key (after destroy).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WriteBack {
    pub(crate) identifier: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) rate_limiter_table: Option<String>,
    pub(crate) conn_lease_table: Option<String>,
    /// `https://<host>` of the domain terraform created.
    pub(crate) opensearch_endpoint: Option<String>,
}

impl WriteBack {
    /// What the configuration holds now.
    fn current(settings: &Settings) -> Self {
        Self {
            identifier: settings.identifier.clone(),
            endpoint: settings.endpoint.clone(),
            rate_limiter_table: settings.rate_limiter_table.clone(),
            conn_lease_table: settings.conn_lease_table.clone(),
            opensearch_endpoint: settings.opensearch_endpoint.clone(),
        }
    }

    /// `(key, value)` pairs; an empty value clears the key.
    pub(crate) fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            (IDENTIFIER, self.identifier.as_deref().unwrap_or_default()),
            (ENDPOINT, self.endpoint.as_deref().unwrap_or_default()),
            (RATE_LIMITER_TABLE, self.rate_limiter_table.as_deref().unwrap_or_default()),
            (CONN_LEASE_TABLE, self.conn_lease_table.as_deref().unwrap_or_default()),
            (OPENSEARCH_ENDPOINT, self.opensearch_endpoint.as_deref().unwrap_or_default()),
        ]
    }
}

/// Writes the values into the user's config file (comments kept, atomic) unless it already holds
/// them; returns whether it wrote. A table or domain that was not created leaves its key alone, so
/// a name (or the endpoint of a domain made elsewhere) the user chose survives an apply without them. The endpoint is always written with the
/// identifier, so the two never name different clusters.
pub(crate) fn write_back(ctx: &Context, settings: &Settings, values: &WriteBack) -> Result<bool> {
    let current = WriteBack::current(settings);
    let keep_tables = |v: &Option<String>, c: &Option<String>| v.clone().or_else(|| c.clone());
    let wanted = WriteBack {
        rate_limiter_table: keep_tables(&values.rate_limiter_table, &current.rate_limiter_table),
        conn_lease_table: keep_tables(&values.conn_lease_table, &current.conn_lease_table),
        opensearch_endpoint: keep_tables(&values.opensearch_endpoint, &current.opensearch_endpoint),
        ..values.clone()
    };
    if wanted == current {
        return Ok(false);
    }
    config::write_back(ctx, &wanted.pairs())?;
    Ok(true)
}

/// Clears every key `apply` wrote, the endpoint included (after destroy); `opensearch.endpoint`
/// only when the destroyed state had a domain (else it names one made elsewhere). Returns whether
/// it wrote.
pub(crate) fn clear(ctx: &Context, settings: &Settings, had_domain: bool) -> Result<bool> {
    let current = WriteBack::current(settings);
    let cleared = WriteBack {
        opensearch_endpoint: if had_domain { None } else { current.opensearch_endpoint.clone() },
        ..WriteBack::default()
    };
    if current == cleared {
        return Ok(false);
    }
    config::write_back(ctx, &cleared.pairs())?;
    Ok(true)
}

/// The endpoint of cluster `identifier` in `region`, as terraform/shared's `dsql_endpoint` output
/// builds it (the provider has no endpoint attribute).
pub(crate) fn endpoint_of(identifier: &str, region: &str) -> String {
    format!("{identifier}.dsql.{region}.on.aws")
}
