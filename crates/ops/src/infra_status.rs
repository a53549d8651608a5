//! `tdsql-ops infra-status`: what AWS says about the project's long-lived resources, as JSON on
//! stdout for `cargo xtask infra status` (which owns the wording and the advice).
//!
//! A resource that does not exist is a result (`"found": false`), not an error: the xtask turns it
//! into what to run. Anything else the API refuses (credentials, permissions, a region without
//! the service) fails the command with the SDK's full error chain on stderr. The visibility index
//! on the OpenSearch domain is asked of the domain itself ([`crate::opensearch_index`]), and
//! whatever happens there is a result too.

use anyhow::{Context as _, Result, bail};
use aws_credential_types::provider::ProvideCredentials as _;
use aws_sdk_dsql::error::{DisplayErrorContext, ProvideErrorMetadata as _};
use aws_sdk_dsql::operation::get_cluster::GetClusterError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::TimeToLiveStatus;
use clap::Args;
use serde::Serialize;

use crate::opensearch_index::{self, IndexState};

/// Arguments of `tdsql-ops infra-status`.
#[derive(Debug, Args)]
pub(crate) struct InfraStatusArgs {
    /// AWS region of the resources
    #[arg(long)]
    region: String,
    /// Aurora DSQL cluster identifier to look up
    #[arg(long)]
    cluster: Option<String>,
    /// DynamoDB table to look up, as ROLE=NAME (roles: rate_limiter, conn_lease); repeatable
    #[arg(long = "table", value_parser = parse_table)]
    tables: Vec<(String, String)>,
    /// OpenSearch domain to look up by name
    #[arg(long)]
    opensearch_domain: Option<String>,
    /// OpenSearch domain to look up by its endpoint host (one made elsewhere), when no name is given
    #[arg(long)]
    opensearch_endpoint: Option<String>,
    /// Visibility index to ask the domain for (a SigV4-signed HEAD)
    #[arg(long)]
    opensearch_index: Option<String>,
    /// Where to ask for the index, https://<host> (opensearch.endpoint); default: the domain's endpoint
    #[arg(long)]
    opensearch_url: Option<String>,
    /// Region the index request is signed for (opensearch.region); default: --region
    #[arg(long)]
    opensearch_region: Option<String>,
}

pub(crate) fn parse_table(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((role, name)) if !role.is_empty() && !name.is_empty() => Ok((role.to_owned(), name.to_owned())),
        _ => Err(format!("`{value}` is not ROLE=NAME (e.g. rate_limiter=demo-dsql-rate-limiter)")),
    }
}

/// The whole answer.
#[derive(Debug, Serialize)]
struct Report {
    region: String,
    cluster: Option<ClusterState>,
    tables: Vec<TableState>,
    opensearch: Option<DomainState>,
    /// The visibility index on the domain, when asked for and there is an endpoint to ask.
    opensearch_index: Option<IndexState>,
}

/// One OpenSearch domain as DescribeDomain(s) describes it.
#[derive(Debug, Serialize)]
struct DomainState {
    /// The name asked for, or the endpoint when looked up by it and not found.
    name: String,
    found: bool,
    /// The domain's endpoint host.
    endpoint: Option<String>,
    /// True while a change (or the creation) is being applied.
    processing: Option<bool>,
    /// True once a deletion has started.
    deleted: Option<bool>,
    engine_version: Option<String>,
}

/// One Aurora DSQL cluster as GetCluster describes it.
#[derive(Debug, Serialize)]
struct ClusterState {
    identifier: String,
    found: bool,
    status: Option<String>,
    arn: Option<String>,
    /// The endpoint the API reports (absent in older API versions; local emulators may differ
    /// from the real `<id>.dsql.<region>.on.aws`).
    endpoint: Option<String>,
    deletion_protection: Option<bool>,
}

/// One DynamoDB table as DescribeTable and DescribeTimeToLive describe it.
#[derive(Debug, Serialize)]
struct TableState {
    role: String,
    name: String,
    found: bool,
    status: Option<String>,
    /// DynamoDB refreshes this about every six hours.
    item_count: Option<i64>,
    billing_mode: Option<String>,
    ttl_attribute: Option<String>,
    ttl_status: Option<String>,
}

impl InfraStatusArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .load()
            .await;
        let cluster = match &self.cluster {
            Some(identifier) => Some(cluster_state(&aws_sdk_dsql::Client::new(&config), identifier).await?),
            None => None,
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let mut tables = Vec::new();
        for (role, name) in &self.tables {
            tables.push(table_state(&dynamodb, role, name).await?);
        }
        let opensearch = match (&self.opensearch_domain, &self.opensearch_endpoint) {
            (Some(name), _) => Some(domain_by_name(&aws_sdk_opensearch::Client::new(&config), name).await?),
            (None, Some(host)) => {
                Some(domain_by_endpoint(&aws_sdk_opensearch::Client::new(&config), host).await?)
            }
            (None, None) => None,
        };
        let url = self.opensearch_url.clone().or_else(|| {
            let endpoint = opensearch.as_ref().and_then(|d| d.endpoint.as_deref());
            endpoint.map(|host| format!("https://{host}"))
        });
        let opensearch_index = match (&self.opensearch_index, url) {
            (Some(index), Some(url)) => {
                let region = self.opensearch_region.as_deref().unwrap_or(&self.region);
                Some(index_state(&config, &url, index, region).await)
            }
            _ => None,
        };
        let report = Report { region: self.region, cluster, tables, opensearch, opensearch_index };
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(())
    }
}

/// The index check with credentials from the same chain as every other call, all within
/// [`opensearch_index::TIMEOUT`] (a credential process or SSO may be slow too).
async fn index_state(config: &aws_config::SdkConfig, url: &str, index: &str, region: &str) -> IndexState {
    let started = tokio::time::Instant::now();
    let credentials = match config.credentials_provider() {
        None => Err("no AWS credentials provider is configured".to_owned()),
        Some(provider) => {
            match tokio::time::timeout(opensearch_index::TIMEOUT, provider.provide_credentials()).await {
                Ok(Ok(credentials)) => Ok(credentials),
                Ok(Err(err)) => {
                    Err(format!("no AWS credentials to sign with: {}", DisplayErrorContext(&err)))
                }
                Err(_) => Err("the AWS credential chain gave no credentials in time".to_owned()),
            }
        }
    };
    let left =
        opensearch_index::TIMEOUT.saturating_sub(started.elapsed()).max(std::time::Duration::from_secs(1));
    opensearch_index::check(url, index, region, credentials, left).await
}

async fn cluster_state(client: &aws_sdk_dsql::Client, identifier: &str) -> Result<ClusterState> {
    match client.get_cluster().identifier(identifier).send().await {
        Ok(out) => Ok(ClusterState {
            identifier: identifier.to_owned(),
            found: true,
            status: Some(out.status().as_str().to_owned()),
            arn: Some(out.arn().to_owned()),
            endpoint: out.endpoint().map(str::to_owned),
            deletion_protection: Some(out.deletion_protection_enabled()),
        }),
        Err(err) if err.as_service_error().is_some_and(GetClusterError::is_resource_not_found_exception) => {
            Ok(ClusterState {
                identifier: identifier.to_owned(),
                found: false,
                status: None,
                arn: None,
                endpoint: None,
                deletion_protection: None,
            })
        }
        Err(err) => {
            let code = err.code().unwrap_or("no error code").to_owned();
            bail!("GetCluster {identifier} failed ({code}): {}", DisplayErrorContext(&err))
        }
    }
}

fn domain_state(status: &aws_sdk_opensearch::types::DomainStatus) -> DomainState {
    DomainState {
        name: status.domain_name().to_owned(),
        found: true,
        endpoint: status.endpoint().map(str::to_owned),
        processing: status.processing(),
        deleted: status.deleted(),
        engine_version: status.engine_version().map(str::to_owned),
    }
}

fn domain_not_found(name: &str) -> DomainState {
    DomainState {
        name: name.to_owned(),
        found: false,
        endpoint: None,
        processing: None,
        deleted: None,
        engine_version: None,
    }
}

async fn domain_by_name(client: &aws_sdk_opensearch::Client, name: &str) -> Result<DomainState> {
    use aws_sdk_opensearch::operation::describe_domain::DescribeDomainError;
    match client.describe_domain().domain_name(name).send().await {
        Ok(out) => Ok(out.domain_status().map_or_else(|| domain_not_found(name), domain_state)),
        Err(err)
            if err.as_service_error().is_some_and(DescribeDomainError::is_resource_not_found_exception) =>
        {
            Ok(domain_not_found(name))
        }
        Err(err) => {
            let code = err.code().unwrap_or("no error code").to_owned();
            bail!("DescribeDomain {name} failed ({code}): {}", DisplayErrorContext(&err))
        }
    }
}

/// The domain of the region whose endpoint is `host` (DescribeDomains takes five names at a time).
async fn domain_by_endpoint(client: &aws_sdk_opensearch::Client, host: &str) -> Result<DomainState> {
    let names = client
        .list_domain_names()
        .send()
        .await
        .map_err(|err| anyhow::anyhow!("ListDomainNames failed: {}", DisplayErrorContext(&err)))?;
    let names: Vec<String> =
        names.domain_names().iter().filter_map(|d| d.domain_name().map(str::to_owned)).collect();
    for chunk in names.chunks(5) {
        let described = client
            .describe_domains()
            .set_domain_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("DescribeDomains failed: {}", DisplayErrorContext(&err)))?;
        if let Some(status) = described.domain_status_list().iter().find(|d| d.endpoint() == Some(host)) {
            return Ok(domain_state(status));
        }
    }
    Ok(domain_not_found(host))
}

async fn table_state(client: &aws_sdk_dynamodb::Client, role: &str, name: &str) -> Result<TableState> {
    let described = match client.describe_table().table_name(name).send().await {
        Ok(out) => out,
        Err(err)
            if err.as_service_error().is_some_and(DescribeTableError::is_resource_not_found_exception) =>
        {
            return Ok(TableState {
                role: role.to_owned(),
                name: name.to_owned(),
                found: false,
                status: None,
                item_count: None,
                billing_mode: None,
                ttl_attribute: None,
                ttl_status: None,
            });
        }
        Err(err) => {
            let code = err.code().unwrap_or("no error code").to_owned();
            bail!("DescribeTable {name} failed ({code}): {}", DisplayErrorContext(&err))
        }
    };
    let table = described.table().with_context(|| format!("DescribeTable {name} returned no table"))?;
    let ttl =
        client.describe_time_to_live().table_name(name).send().await.map_err(|err| {
            anyhow::anyhow!("DescribeTimeToLive {name} failed: {}", DisplayErrorContext(&err))
        })?;
    let ttl = ttl.time_to_live_description();
    Ok(TableState {
        role: role.to_owned(),
        name: name.to_owned(),
        found: true,
        status: table.table_status().map(|s| s.as_str().to_owned()),
        item_count: table.item_count(),
        billing_mode: table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str().to_owned()),
        ttl_attribute: ttl.and_then(|t| t.attribute_name()).map(str::to_owned),
        ttl_status: ttl
            .and_then(|t| t.time_to_live_status())
            .map(TimeToLiveStatus::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_table;

    #[test]
    fn a_table_is_role_equals_name() {
        assert_eq!(parse_table("conn_lease=x-y").unwrap(), ("conn_lease".to_owned(), "x-y".to_owned()));
        assert!(parse_table("conn_lease").unwrap_err().contains("ROLE=NAME"));
        assert!(parse_table("=x").is_err());
    }
}
