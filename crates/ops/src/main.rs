//! `tdsql-ops`: the commands of `cargo xtask` that need the AWS SDK or a database driver.
//!
//! The xtask builds and runs this binary on demand, so that `cargo xtask --help` and the
//! commands that only drive Docker never compile the AWS SDK (about 200 crates).

mod bootstrap_state;
mod cost;
mod infra_status;
mod opensearch_index;
mod pki;
mod schema;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use aws_credential_types::provider::ProvideCredentials as _;
use clap::{Parser, Subcommand};

/// Helper binary of `cargo xtask`; not meant to be run by hand.
#[derive(Debug, Parser)]
#[command(name = "tdsql-ops", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve AWS credentials through the default chain and print where they came from
    AwsCredentials,
    /// The embedded Temporal schema: setup, update, status, plan, verify
    Schema(schema::SchemaArgs),
    /// Ask AWS for the state of the project's cluster and tables; JSON on stdout
    InfraStatus(infra_status::InfraStatusArgs),
    /// Create (or check) the S3 bucket and DynamoDB lock table of the Terraform state
    BootstrapState(bootstrap_state::BootstrapStateArgs),
    /// What the cluster cost in a window, from CloudWatch's DPU and storage metrics
    Cost(cost::CostArgs),
    /// Add the cost of a load run (DPUs per workflow) to its JSON report
    CostLoad(cost::LoadCostArgs),
    /// Project a 30-day month at N workflows per second from a load report's cost
    CostEstimate(cost::EstimateArgs),
    /// Create or keep the local CA and the dsql-local gateway's certificate
    Pki(pki::PkiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::AwsCredentials => aws_credentials().await,
            Command::Schema(args) => args.run().await,
            Command::InfraStatus(args) => args.run().await,
            Command::BootstrapState(args) => args.run().await,
            Command::Cost(args) => args.run().await,
            Command::CostLoad(args) => args.run().await,
            Command::CostEstimate(args) => args.run(),
            Command::Pki(args) => args.run(),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves credentials the way every AWS call of the project will, and says from where.
async fn aws_credentials() -> Result<()> {
    let config = aws_config::load_from_env().await;
    let provider = config.credentials_provider().context("no credentials provider is configured")?;
    let credentials =
        provider.provide_credentials().await.context("the default credential chain found no credentials")?;
    let region = config.region().map_or_else(|| "no region set".to_owned(), |r| format!("region {r}"));
    // The key id identifies the credentials without revealing them; the secret is never printed.
    let key = credentials.access_key_id();
    let shown = format!("{}…", &key[..key.len().min(4)]);
    println!("access key {shown}, {region}");
    Ok(())
}
