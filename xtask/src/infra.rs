//! `cargo xtask infra plan|apply|status|output|import|destroy`: the long-lived AWS resources of
//! `terraform/shared` (an Aurora DSQL cluster, optionally the two DynamoDB coordination tables and
//! the OpenSearch domain of visibility).
//!
//! Terraform does the work (local binary, else its official image through Docker); this command
//! feeds it the project's settings, saves and applies plans, explains its known failures, writes
//! what it created back into `config.toml`, and asks AWS (through `tdsql-ops`) how things stand.

pub(crate) mod settings;
mod state;
mod terraform;

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::context::Context;
use crate::exec::CommandFailed;
use crate::ops;

use self::settings::{Backend, Settings, WriteBack};
use self::state::{PlanJson, PlanSummary, StateFile};
use self::terraform::{Failure, Workspace};

/// Arguments of `cargo xtask infra`.
#[derive(Debug, Args)]
pub(crate) struct InfraArgs {
    #[command(subcommand)]
    command: InfraCommand,
}

#[derive(Debug, Subcommand)]
enum InfraCommand {
    /// Show what `apply` would change (terraform init + plan, saved to a plan file)
    Plan(PlanArgs),
    /// Create or update the cluster (and tables), then write their names into config.toml
    Apply(ApplyArgs),
    /// Ask AWS for the state of the cluster and tables, and say what to do when one is missing
    Status,
    /// Print the terraform outputs (identifier, ARN, endpoint, region, table names)
    Output(OutputArgs),
    /// Adopt an existing Aurora DSQL cluster: into the terraform state (`terraform import`) and
    /// config.toml, or with --config-only into config.toml alone
    Import(ImportArgs),
    /// Delete the cluster and tables for good; asks for the project name to be typed back
    Destroy(DestroyArgs),
    /// Where the terraform state lives (`infra.state.*` in config.toml)
    #[command(subcommand)]
    State(StateCommand),
    /// Create the S3 bucket (versioned, encrypted, no public access) and the DynamoDB lock table
    /// that infra.state.* names; checks them when they exist
    BootstrapState,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Move this clone's local state into the S3 backend that infra.state.* configures (refuses to
    /// overwrite a state already there), and keep the local file as terraform.tfstate.migrated
    Migrate,
}

/// Flags shared by `plan` and `apply`.
#[derive(Debug, Args)]
struct PlanArgs {
    /// Skip the check of project.region against the regions known to offer Aurora DSQL
    #[arg(long)]
    any_region: bool,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Apply without asking (the plan is still printed first)
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Machine-readable output (`terraform output -json`)
    #[arg(long)]
    json: bool,
    /// Only this output, raw (e.g. dsql_endpoint)
    name: Option<String>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Identifier of the existing cluster (26 characters; `aws dsql list-clusters` lists them)
    identifier: String,
    /// Only write dsql.identifier and dsql.endpoint into config.toml: the cluster is used as it
    /// is, and terraform neither manages nor ever deletes it
    #[arg(long)]
    config_only: bool,
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Debug, Args)]
struct DestroyArgs {
    /// The project name, typed back without a prompt (for scripts); there is no `--yes` for destroy
    #[arg(long, value_name = "PROJECT_NAME")]
    confirm: Option<String>,
    /// Turn Aurora DSQL deletion protection off first (an extra apply); without it, destroy stops
    /// while protection is on
    #[arg(long)]
    disable_deletion_protection: bool,
}

impl InfraArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        match self.command {
            InfraCommand::Plan(args) => plan(ctx, &args).map(|_| ()),
            InfraCommand::Apply(args) => apply(ctx, &args),
            InfraCommand::Status => status(ctx),
            InfraCommand::Output(args) => output(ctx, &args),
            InfraCommand::Import(args) => import(ctx, &args),
            InfraCommand::Destroy(args) => destroy(ctx, &args),
            InfraCommand::State(StateCommand::Migrate) => migrate(ctx),
            InfraCommand::BootstrapState => bootstrap_state(ctx),
        }
    }
}

/// Settings, workspace and state, checked against each other before Terraform runs.
struct Prepared {
    settings: Settings,
    workspace: Workspace,
    state: StateFile,
    /// Where the state is: the local file or `s3://bucket/key`.
    location: String,
}

fn prepare(ctx: &Context) -> Result<Prepared> {
    let settings = Settings::load(ctx)?;
    let workspace = Workspace::locate()?;
    if workspace.uses_docker() {
        eprintln!("note: no local terraform found; running {} through Docker", terraform::TERRAFORM_IMAGE);
    }
    let (state, location) = match &settings.backend {
        Backend::Local => {
            (StateFile::read(&workspace.state_file)?, workspace.state_file.display().to_string())
        }
        Backend::S3(s3) => (read_remote_state(ctx, &workspace, &settings.backend, &s3.url())?, s3.url()),
    };
    check_state_project(&settings, &location, &state)?;
    Ok(Prepared { settings, workspace, state, location })
}

/// init + `terraform state pull`: the checks that run before a plan read the shared state too.
fn read_remote_state(
    ctx: &Context,
    workspace: &Workspace,
    backend: &Backend,
    url: &str,
) -> Result<StateFile> {
    if let Backend::S3(s3) = backend {
        check_no_local_state(workspace, s3)?;
    }
    if ctx.dry_run {
        // Reading it needs an init, which writes; the plan shows the init it would run.
        eprintln!("note: dry run: the state in {url} is not read");
        return Ok(StateFile::default());
    }
    init(ctx, workspace, backend)?;
    let json = workspace
        .terraform(["state", "pull"])
        .read(ctx)
        .map_err(|err| explain(err, &format!("reading the terraform state from {url} failed")))?;
    StateFile::parse(&json, url)
}

/// A state written for another project (or another configuration) must not be planned against:
/// Terraform would rename or replace that project's resources.
fn check_state_project(settings: &Settings, location: &str, state: &StateFile) -> Result<()> {
    let foreign = state.foreign_resources();
    if !foreign.is_empty() {
        bail!(
            "the terraform state at {location} is not one of terraform/shared (it manages {}); move it aside, or \
             point {} at an empty directory (infra.state.key at another object) for this project",
            foreign.join(", "),
            terraform::STATE_DIR_ENV
        );
    }
    match state.project() {
        Some(project) if project != settings.project => bail!(
            "the terraform state at {location} belongs to project `{project}`, but project.name in {} is `{}`; \
             set project.name back to `{project}` to manage that project's cluster, or give `{}` a state of its \
             own: move {location} aside (it still tracks `{project}`'s cluster) or set {} to an empty directory \
             (with the S3 backend: another infra.state.key)",
            settings.config_file.display(),
            settings.project,
            settings.project,
            terraform::STATE_DIR_ENV
        ),
        _ => Ok(()),
    }
}

fn check_region(settings: &Settings, args: &PlanArgs) -> Result<()> {
    let region = settings.region.as_str();
    if terraform::local_endpoint().is_some() {
        if !terraform::MOTO_DSQL_REGIONS.contains(&region) && !args.any_region {
            bail!(
                "project.region `{region}` has no Aurora DSQL on the local AWS API (moto offers it only in {}); set \
                 project.region in {} to one of them, or pass --any-region if your local API has it",
                terraform::MOTO_DSQL_REGIONS.join(", "),
                settings.config_file.display()
            );
        }
        return Ok(());
    }
    if !terraform::DSQL_REGIONS.contains(&region) && !args.any_region {
        bail!(
            "Aurora DSQL is not offered in project.region `{region}` (regions known to have it: {}); set \
             project.region in {} to one of them, or pass --any-region if AWS has added `{region}` since this list \
             was written",
            terraform::DSQL_REGIONS.join(", "),
            settings.config_file.display()
        );
    }
    Ok(())
}

/// config.toml names a cluster this state does not manage: an apply would create a second one and
/// repoint config.toml, leaving the first running unnoticed.
fn check_identifier(settings: &Settings, state: &StateFile) -> Result<()> {
    let Some(configured) = settings.cluster() else {
        return Ok(());
    };
    match state.cluster_identifier() {
        Some(managed) if managed == configured => Ok(()),
        Some(managed) => {
            eprintln!(
                "warning: the cluster configured in {} is `{configured}`, but terraform manages cluster \
                 `{managed}`; apply writes `{managed}` (identifier and endpoint) back",
                settings.config_file.display()
            );
            Ok(())
        }
        None => bail!(
            "the cluster configured in {} (dsql.identifier or dsql.endpoint) is `{configured}`, one this terraform \
             state does not manage; apply would create a second cluster. Run `cargo xtask infra import \
             {configured}` to let terraform manage that cluster, use it as it is (no `infra apply` needed), or \
             remove dsql.identifier and dsql.endpoint from {} to let terraform create and manage a new one",
            settings.config_file.display(),
            settings.config_file.display()
        ),
    }
}

/// opensearch.create with an endpoint this state's domain does not have: an apply would create a
/// second domain and repoint opensearch.endpoint away from the one it names.
fn check_opensearch(settings: &Settings, state: &StateFile) -> Result<()> {
    let (Some(configured), true) = (&settings.opensearch_endpoint, settings.create_opensearch) else {
        return Ok(());
    };
    let managed = state.opensearch_domain().map(|(_, host)| format!("https://{host}"));
    if managed.as_deref().is_some_and(|m| m == configured.trim_end_matches('/')) {
        return Ok(());
    }
    bail!(
        "opensearch.endpoint in {} is `{configured}`, a domain this terraform state does not manage, and \
         opensearch.create is true: apply would create another domain. Set opensearch.create = false to use \
         `{configured}` as it is, or empty opensearch.endpoint to let terraform create (and manage) one",
        settings.config_file.display()
    )
}

/// `-var` arguments from the settings and the environment.
fn plan_vars(settings: &Settings) -> Vec<String> {
    let mut vars = vec![
        format!("project_name={}", settings.project),
        format!("region={}", settings.region),
        format!("create_tables={}", settings.create_tables),
        format!("opensearch_enabled={}", settings.create_opensearch),
    ];
    if let Some(table) = &settings.rate_limiter_table {
        vars.push(format!("rate_limiter_table={table}"));
    }
    if let Some(table) = &settings.conn_lease_table {
        vars.push(format!("conn_lease_table={table}"));
    }
    vars.extend(terraform::endpoint_vars());
    vars
}

fn with_vars(args: Vec<String>, vars: &[String]) -> Vec<String> {
    let mut args = args;
    for var in vars {
        args.push("-var".to_owned());
        args.push(var.clone());
    }
    args
}

/// `-no-color` when nobody reads colours (tests, CI logs).
fn colour_args() -> Vec<String> {
    if std::io::stderr().is_terminal() { Vec::new() } else { vec!["-no-color".to_owned()] }
}

/// The `-backend-config` arguments of `init` for the configured backend.
fn backend_args(workspace: &Workspace, backend: &Backend) -> Vec<String> {
    match backend {
        Backend::Local => vec![format!("-backend-config=path={}", workspace.state_file.display())],
        Backend::S3(s3) => s3
            .init_config(terraform::local_s3_endpoint())
            .into_iter()
            .map(|config| format!("-backend-config={config}"))
            .collect(),
    }
}

/// With the S3 backend, a local state that still manages resources has to be migrated, not
/// forgotten (a plan against the other state would not see them).
fn check_no_local_state(workspace: &Workspace, s3: &settings::S3Backend) -> Result<()> {
    if StateFile::read(&workspace.state_file)?.is_empty() {
        return Ok(());
    }
    bail!(
        "infra.state.backend is s3 ({}), but the local state {} still manages resources; run `cargo xtask infra \
         state migrate` to move it there, or set infra.state.backend = \"local\" to keep using it",
        s3.describe(),
        workspace.state_file.display()
    )
}

/// `terraform init`, unless an earlier one still holds.
fn init(ctx: &Context, workspace: &Workspace, backend: &Backend) -> Result<()> {
    if !ctx.dry_run {
        workspace.sync_module()?;
        workspace.declare_s3_backend(matches!(backend, Backend::S3(_)))?;
    }
    let backend_args = backend_args(workspace, backend);
    if workspace.is_initialised(&backend_args) {
        return Ok(());
    }
    let reconfigure = check_backend_switch(ctx, workspace, backend)?;
    let mut args = vec!["init".to_owned(), "-input=false".to_owned()];
    if reconfigure {
        args.push("-reconfigure".to_owned());
    }
    args.extend(backend_args.iter().cloned());
    args.extend(colour_args());
    workspace.terraform(args).run(ctx).map_err(|err| explain(err, "terraform init failed"))?;
    if !ctx.dry_run {
        workspace.mark_initialised(&backend_args)?;
    }
    Ok(())
}

/// Refuses a switch of backend that would leave the state behind (a plan against the empty new
/// one would create a second cluster); returns whether `init` needs `-reconfigure`, which is
/// safe once these checks pass: nothing is left behind.
fn check_backend_switch(ctx: &Context, workspace: &Workspace, backend: &Backend) -> Result<bool> {
    let recorded = workspace.initialised_backend();
    let record_file = workspace.data_dir().join("terraform.tfstate");
    match backend {
        Backend::Local => {
            if let Some(s3) = recorded.as_ref().filter(|r| r.kind == "s3") {
                bail!(
                    "this working directory keeps its terraform state in s3://{}/{} (since its last init), but \
                     infra.state.backend is local: a plan against the empty local state would create a second \
                     cluster. Set infra.state.backend = \"s3\" (and its bucket) again; to go back to a local state on \
                     purpose, run `terraform -chdir={} state pull > {}` first, then delete {}",
                    s3.setting("bucket").unwrap_or("?"),
                    s3.setting("key").unwrap_or("?"),
                    workspace.work_dir.display(),
                    workspace.state_file.display(),
                    record_file.display()
                );
            }
            Ok(false)
        }
        Backend::S3(s3) => {
            check_no_local_state(workspace, s3)?;
            // A state file without resources (left by a destroy) makes the first init against S3
            // offer to migrate it, a prompt that -input=false turns into an error.
            let file = &workspace.state_file;
            if file.is_file() && !ctx.dry_run {
                let unused = file.with_extension("tfstate.unused");
                std::fs::rename(file, &unused)
                    .with_context(|| format!("moving {} to {}", file.display(), unused.display()))?;
                eprintln!(
                    "note: moved {} (it manages no resources) to {}: the state is in {} now",
                    file.display(),
                    unused.display(),
                    s3.url()
                );
            }
            if let Some(before) = recorded.as_ref().filter(|r| r.kind == "s3")
                && (before.setting("bucket") != Some(s3.bucket.as_str())
                    || before.setting("key") != Some(s3.key.as_str()))
            {
                bail!(
                    "infra.state now names {}, but this working directory was initialised with the state in \
                     s3://{}/{}; set infra.state.bucket and infra.state.key back, or, if the state object was copied \
                     to the new place on purpose, delete {} and rerun",
                    s3.url(),
                    before.setting("bucket").unwrap_or("?"),
                    before.setting("key").unwrap_or("?"),
                    record_file.display()
                );
            }
            Ok(recorded.is_some())
        }
    }
}

/// init + plan (saved) + its summary; `None` under `--dry-run`, where nothing was planned.
fn plan(ctx: &Context, args: &PlanArgs) -> Result<Option<(Prepared, PlanSummary)>> {
    plan_checked(ctx, args, true)
}

/// init + plan; with `summarize`, the saved plan is read back (`show -json`, a few seconds) for
/// the summary and the drift warnings, else the summary only says whether anything changes.
fn plan_checked(ctx: &Context, args: &PlanArgs, summarize: bool) -> Result<Option<(Prepared, PlanSummary)>> {
    let prepared = prepare(ctx)?;
    check_region(&prepared.settings, args)?;
    check_identifier(&prepared.settings, &prepared.state)?;
    check_opensearch(&prepared.settings, &prepared.state)?;
    let summary = plan_with(ctx, &prepared, &plan_vars(&prepared.settings), summarize)?;
    Ok(summary.map(|s| (prepared, s)))
}

fn plan_with(
    ctx: &Context,
    prepared: &Prepared,
    vars: &[String],
    summarize: bool,
) -> Result<Option<PlanSummary>> {
    let workspace = &prepared.workspace;
    init(ctx, workspace, &prepared.settings.backend)?;
    let mut args = vec![
        "plan".to_owned(),
        "-input=false".to_owned(),
        "-detailed-exitcode".to_owned(),
        format!("-out={}", workspace.plan_file.display()),
    ];
    args.extend(colour_args());
    // -detailed-exitcode: 0 = nothing to do, 2 = changes (read them from the saved plan), 1 = error.
    let changes = match workspace.terraform(with_vars(args, vars)).run(ctx) {
        Ok(()) => false,
        Err(err) if err.downcast_ref::<CommandFailed>().is_some_and(|f| f.exit_code() == 2) => true,
        Err(err) => return Err(explain(err, "terraform plan failed")),
    };
    if ctx.dry_run {
        return Ok(None);
    }
    if !changes {
        let summary = PlanSummary::default();
        print_summary(&summary);
        return Ok(Some(summary));
    }
    if !summarize {
        return Ok(Some(PlanSummary { outputs_change: true, ..PlanSummary::default() }));
    }
    let summary = read_plan(ctx, workspace)?;
    print_summary(&summary);
    Ok(Some(summary))
}

fn read_plan(ctx: &Context, workspace: &Workspace) -> Result<PlanSummary> {
    let json = workspace
        .terraform(["show", "-json", "-no-color", &workspace.plan_file.display().to_string()])
        .read(ctx)
        .context("reading the saved plan back")?;
    Ok(PlanJson::parse(&json)?.summary())
}

fn print_summary(summary: &PlanSummary) {
    for identifier in &summary.clusters_deleted_outside {
        eprintln!(
            "warning: Aurora DSQL cluster `{identifier}` in the terraform state no longer exists: it was deleted \
             outside terraform. `cargo xtask infra apply` creates a new, empty cluster (new identifier, written \
             into config.toml); afterwards run `cargo xtask schema setup --profile dsql` to create the schema again"
        );
    }
    for table in &summary.tables_deleted_outside {
        eprintln!(
            "warning: DynamoDB table `{table}` in the terraform state no longer exists (deleted outside terraform); \
             `cargo xtask infra apply` creates it again, empty"
        );
    }
    if summary.has_changes() {
        eprintln!("\nplanned changes:");
        for line in &summary.changes {
            eprintln!("  {line}");
        }
        if summary.changes.is_empty() {
            eprintln!("  (outputs only)");
        }
    } else {
        eprintln!("\nno changes: the infrastructure matches the configuration");
    }
}

fn apply(ctx: &Context, args: &ApplyArgs) -> Result<()> {
    // With --yes nobody reads a summary before the apply; terraform has printed the plan anyway.
    let Some((prepared, summary)) = plan_checked(ctx, &args.plan, !args.yes)? else {
        // Dry run: show what would follow the plan.
        let workspace = Workspace::locate()?;
        apply_plan_cmd(&workspace).run(ctx)?;
        workspace.terraform(["output", "-json"]).run(ctx)?;
        println!(
            "# then: write dsql.identifier, dsql.endpoint, the table names and opensearch.endpoint into {}",
            crate::config::user_file()?.display()
        );
        return Ok(());
    };
    if summary.has_changes() {
        if !args.yes {
            confirm_apply()?;
        }
        apply_plan_cmd(&prepared.workspace).run(ctx).map_err(|err| explain(err, "terraform apply failed"))?;
    }
    let outputs = read_outputs(ctx, &prepared.workspace)?;
    report_outputs(&outputs);
    if let Some(before) = prepared.state.cluster_identifier()
        && before != outputs.identifier
    {
        // prevent_destroy rules out a replacement by terraform: the old cluster vanished outside it.
        eprintln!(
            "warning: cluster `{before}` in the terraform state had been deleted outside terraform; apply created \
             `{}` (new and empty): run `cargo xtask schema setup --profile dsql` to create the schema in it",
            outputs.identifier
        );
    }
    let values = WriteBack {
        identifier: Some(outputs.identifier.clone()),
        endpoint: Some(outputs.endpoint.clone()),
        rate_limiter_table: Some(outputs.rate_limiter_table.clone()).filter(|t| !t.is_empty()),
        conn_lease_table: Some(outputs.conn_lease_table.clone()).filter(|t| !t.is_empty()),
        opensearch_endpoint: Some(&outputs.opensearch_endpoint)
            .filter(|e| !e.is_empty())
            .map(|host| format!("https://{host}")),
    };
    if settings::write_back(ctx, &prepared.settings, &values)? {
        eprintln!(
            "wrote dsql.identifier, dsql.endpoint, the table names and opensearch.endpoint into {}",
            prepared.settings.config_file.display()
        );
    }
    Ok(())
}

fn apply_plan_cmd(workspace: &Workspace) -> crate::exec::Cmd {
    let mut args = vec!["apply".to_owned(), "-input=false".to_owned()];
    args.extend(colour_args());
    args.push(workspace.plan_file.display().to_string());
    workspace.terraform(args)
}

fn confirm_apply() -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "apply needs a confirmation and stdin is not a terminal; rerun with --yes to apply the plan above"
        );
    }
    eprint!("apply these changes? [y/N] ");
    std::io::stderr().flush()?;
    let answer = read_line()?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        return Ok(());
    }
    bail!(
        "apply cancelled; nothing was changed (the plan is kept; rerun `cargo xtask infra apply` to decide again)"
    )
}

fn read_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the answer from stdin")?;
    Ok(line)
}

/// The outputs of `terraform/shared` that the xtask uses.
#[derive(Debug, Deserialize)]
struct Outputs {
    #[serde(rename = "dsql_cluster_identifier", deserialize_with = "value")]
    identifier: String,
    #[serde(rename = "dsql_endpoint", deserialize_with = "value")]
    endpoint: String,
    #[serde(rename = "dsql_cluster_arn", deserialize_with = "value")]
    arn: String,
    #[serde(deserialize_with = "value")]
    region: String,
    #[serde(deserialize_with = "value")]
    rate_limiter_table: String,
    #[serde(deserialize_with = "value")]
    conn_lease_table: String,
    /// Absent from a state last applied before the module had a domain.
    #[serde(default, deserialize_with = "value")]
    opensearch_domain_name: String,
    #[serde(default, deserialize_with = "value")]
    opensearch_endpoint: String,
}

/// `terraform output -json` wraps every output as `{"value": ..., "type": ...}`.
fn value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped {
        value: String,
    }
    Ok(Wrapped::deserialize(deserializer)?.value)
}

fn read_outputs(ctx: &Context, workspace: &Workspace) -> Result<Outputs> {
    let json = workspace
        .terraform(["output", "-json", "-no-color"])
        .read(ctx)
        .context("reading terraform outputs")?;
    serde_json::from_str(&json).context("terraform outputs lack a value of terraform/shared/outputs.tf")
}

fn report_outputs(outputs: &Outputs) {
    println!("cluster     {}", outputs.identifier);
    println!("arn         {}", outputs.arn);
    println!("endpoint    {}", outputs.endpoint);
    println!("region      {}", outputs.region);
    if !outputs.rate_limiter_table.is_empty() {
        println!("rate limiter table  {}", outputs.rate_limiter_table);
    }
    if !outputs.conn_lease_table.is_empty() {
        println!("conn lease table    {}", outputs.conn_lease_table);
    }
    if !outputs.opensearch_domain_name.is_empty() {
        println!("opensearch  {}  https://{}", outputs.opensearch_domain_name, outputs.opensearch_endpoint);
    }
}

fn output(ctx: &Context, args: &OutputArgs) -> Result<()> {
    let prepared = prepare(ctx)?;
    if prepared.state.is_empty() && !ctx.dry_run {
        bail!(
            "no outputs yet: the terraform state at {} manages nothing; run `cargo xtask infra apply` first",
            prepared.location
        );
    }
    init(ctx, &prepared.workspace, &prepared.settings.backend)?;
    let mut cli = vec!["output".to_owned()];
    cli.extend(colour_args());
    if args.json {
        cli.push("-json".to_owned());
    }
    if let Some(name) = &args.name {
        if !args.json {
            cli.push("-raw".to_owned());
        }
        cli.push(name.clone());
    }
    prepared.workspace.terraform(cli).run(ctx)
}

/// The JSON printed by `tdsql-ops infra-status`.
#[derive(Debug, Deserialize)]
struct StatusReport {
    region: String,
    cluster: Option<ClusterStatus>,
    tables: Vec<TableStatus>,
    #[serde(default)]
    opensearch: Option<DomainStatus>,
    #[serde(default)]
    opensearch_index: Option<IndexStatus>,
}

/// The visibility index as the domain answered a signed `HEAD <endpoint>/<index>`.
#[derive(Debug, Deserialize)]
struct IndexStatus {
    index: String,
    url: String,
    /// present, missing, refused, unexpected, unreachable or unsigned.
    presence: String,
    status: Option<u16>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DomainStatus {
    name: String,
    found: bool,
    endpoint: Option<String>,
    processing: Option<bool>,
    deleted: Option<bool>,
    engine_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClusterStatus {
    identifier: String,
    found: bool,
    status: Option<String>,
    endpoint: Option<String>,
    deletion_protection: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct TableStatus {
    role: String,
    name: String,
    found: bool,
    status: Option<String>,
    item_count: Option<i64>,
    ttl_attribute: Option<String>,
    ttl_status: Option<String>,
}

fn status(ctx: &Context) -> Result<()> {
    let prepared = prepare(ctx)?;
    let Prepared { settings, state, location, .. } = &prepared;
    match &settings.backend {
        Backend::Local => println!("state       local {location}"),
        Backend::S3(s3) => println!("state       {}", s3.describe()),
    }
    let identifier = settings.identifier.as_deref().or_else(|| state.cluster_identifier());
    let Some(identifier) = identifier else {
        bail!(
            "no cluster yet: dsql.identifier is not set in {} and the terraform state at {location} manages none; \
             run `cargo xtask infra apply` to create one",
            settings.config_file.display()
        );
    };
    let region = state.output("region").unwrap_or(&settings.region).to_owned();
    let mut cli = vec![
        "infra-status".to_owned(),
        "--region".to_owned(),
        region,
        "--cluster".to_owned(),
        identifier.to_owned(),
    ];
    let tables = [
        (
            "rate_limiter",
            settings.rate_limiter_table.as_deref().or_else(|| state.output("rate_limiter_table")),
        ),
        ("conn_lease", settings.conn_lease_table.as_deref().or_else(|| state.output("conn_lease_table"))),
    ];
    for (role, name) in tables {
        if let Some(name) = name {
            cli.push("--table".to_owned());
            cli.push(format!("{role}={name}"));
        }
    }
    // The domain terraform manages, else the one opensearch.endpoint names (made elsewhere).
    let managed_domain = state.opensearch_domain().map(|(name, _)| name.to_owned());
    let domain = if let Some(name) = &managed_domain {
        cli.extend(["--opensearch-domain".to_owned(), name.clone()]);
        true
    } else if settings.opensearch_visibility
        && let Some(host) = settings.opensearch_endpoint.as_deref().and_then(endpoint_host)
    {
        cli.extend(["--opensearch-endpoint".to_owned(), host.to_owned()]);
        true
    } else {
        false
    };
    // And the visibility index on it, where Temporal looks for it: opensearch.endpoint when set.
    if domain {
        cli.extend([
            "--opensearch-index".to_owned(),
            settings.opensearch_index.clone(),
            "--opensearch-region".to_owned(),
            settings.opensearch_region.clone(),
        ]);
        if let Some(endpoint) = &settings.opensearch_endpoint {
            cli.extend(["--opensearch-url".to_owned(), endpoint.clone()]);
        }
    }
    let report = ask_aws(ctx, cli)?;
    print_status(&report, state, settings)
}

/// The host of an `https://<host>[/]` endpoint.
fn endpoint_host(endpoint: &str) -> Option<&str> {
    let host = endpoint.strip_prefix("https://")?;
    Some(host.strip_suffix('/').unwrap_or(host)).filter(|h| !h.is_empty())
}

/// Runs `tdsql-ops <cli>` (an `infra-status` query; it runs under `--dry-run` too, being
/// read-only) and parses its report.
fn ask_aws(ctx: &Context, cli: Vec<String>) -> Result<StatusReport> {
    let json = ops::command(cli).read(ctx).map_err(|err| {
        explain(err, "asking AWS for the cluster and tables failed (tdsql-ops infra-status)")
    })?;
    serde_json::from_str(&json).context("tdsql-ops infra-status printed something other than its JSON report")
}

/// `infra import`: an existing cluster into the state (unless `--config-only`) and config.toml.
/// Checks first that AWS has it, so a typo fails before Terraform runs; afterwards a plan shows
/// how far the cluster is from terraform/shared (tags, deletion protection) without changing it.
fn import(ctx: &Context, args: &ImportArgs) -> Result<()> {
    let identifier = args.identifier.trim();
    if identifier.len() != 26 || !identifier.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        bail!(
            "`{identifier}` is not an Aurora DSQL cluster identifier (26 lower-case letters and digits, the first \
             label of its endpoint); `aws dsql list-clusters --region <region>` lists yours"
        );
    }
    let prepared = prepare(ctx)?;
    let Prepared { settings, workspace, state, location } = &prepared;
    check_region(settings, &args.plan)?;
    if let Some(configured) = settings.cluster().filter(|c| *c != identifier) {
        bail!(
            "the cluster configured in {} is already `{configured}`; remove it (`cargo xtask config set \
             dsql.identifier \"\" dsql.endpoint \"\"`) to adopt `{identifier}` instead, or run `cargo xtask infra \
             import {configured}`",
            settings.config_file.display()
        );
    }
    let managed = state.cluster_identifier();
    if let Some(managed) = managed.filter(|m| *m != identifier) {
        bail!(
            "the terraform state at {location} already manages cluster `{managed}`, and it holds one cluster; to \
             adopt `{identifier}` for another project, give it a state of its own ({} set to an empty directory and \
             another project.name), or run `cargo xtask infra destroy` first to delete `{managed}`",
            terraform::STATE_DIR_ENV
        );
    }

    let cli =
        ["infra-status", "--region", &settings.region, "--cluster", identifier].map(str::to_owned).to_vec();
    let report = ask_aws(ctx, cli)?;
    let cluster = report.cluster.context("tdsql-ops infra-status reported no cluster")?;
    if !cluster.found {
        bail!(
            "there is no Aurora DSQL cluster `{identifier}` in {} (project.region in {}); check the identifier \
             (`aws dsql list-clusters --region {}`) and project.region, then run `cargo xtask infra import` again",
            report.region,
            settings.config_file.display(),
            report.region
        );
    }
    eprintln!(
        "found cluster {identifier} in {}: {}, deletion protection {}",
        report.region,
        cluster.status.as_deref().unwrap_or("status unknown"),
        match cluster.deletion_protection {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        }
    );

    if args.config_only {
        write_identifier(ctx, settings, identifier)?;
        eprintln!(
            "terraform does not manage `{identifier}`: `infra apply` will not touch or duplicate it while \
             dsql.identifier names it, and `infra destroy` never deletes it; `cargo xtask infra import \
             {identifier}` (without --config-only) hands it to terraform later"
        );
        return Ok(());
    }

    if managed.is_some() {
        eprintln!("the terraform state already manages `{identifier}`; nothing to import");
    } else {
        init(ctx, workspace, &settings.backend)?;
        let mut cli = vec!["import".to_owned(), "-input=false".to_owned()];
        cli.extend(colour_args());
        let mut cli = with_vars(cli, &plan_vars(settings));
        cli.extend(["aws_dsql_cluster.this".to_owned(), identifier.to_owned()]);
        workspace.terraform(cli).run(ctx).map_err(|err| explain(err, "terraform import failed"))?;
    }
    let summary = plan_with(ctx, &prepared, &plan_vars(settings), true)?;
    write_identifier(ctx, settings, identifier)?;
    if summary.is_some_and(|s| s.has_changes()) {
        eprintln!(
            "the cluster differs from terraform/shared as planned above (nothing was changed); `cargo xtask infra \
             apply` brings it in line: tags Name, Project and ManagedBy, deletion protection from terraform.tfvars, \
             and the coordination tables when enabled"
        );
    }
    Ok(())
}

/// Writes `dsql.identifier` and its `dsql.endpoint` (table names are left as they are).
fn write_identifier(ctx: &Context, settings: &Settings, identifier: &str) -> Result<()> {
    let endpoint = settings::endpoint_of(identifier, &settings.region);
    let values = WriteBack {
        identifier: Some(identifier.to_owned()),
        endpoint: Some(endpoint.clone()),
        rate_limiter_table: None,
        conn_lease_table: None,
        opensearch_endpoint: None,
    };
    if settings::write_back(ctx, settings, &values)? {
        eprintln!(
            "wrote dsql.identifier = {identifier} and dsql.endpoint = {endpoint} into {}",
            settings.config_file.display()
        );
    }
    Ok(())
}

fn print_status(report: &StatusReport, state: &StateFile, settings: &Settings) -> Result<()> {
    let mut problems = Vec::new();
    println!("region      {}", report.region);
    if let Some(cluster) = &report.cluster {
        if cluster.found {
            let protection = match cluster.deletion_protection {
                Some(true) => "on",
                Some(false) => "off",
                None => "unknown",
            };
            let derived = settings::endpoint_of(&cluster.identifier, &report.region);
            println!(
                "cluster     {}  {}  deletion protection {protection}",
                cluster.identifier,
                cluster.status.as_deref().unwrap_or("unknown")
            );
            println!("endpoint    {derived}");
            if let Some(api) = cluster.endpoint.as_deref().filter(|e| *e != derived) {
                println!("            (the API reports {api})");
            }
        } else {
            println!("cluster     {}  NOT FOUND", cluster.identifier);
            let managed = state.cluster_identifier() == Some(cluster.identifier.as_str());
            problems.push(if managed {
                format!(
                    "cluster `{}` is in the terraform state but not in AWS ({}): it was deleted outside terraform; run \
                     `cargo xtask infra apply` to create a new one (config.toml is updated), then `cargo xtask schema \
                     setup --profile dsql`",
                    cluster.identifier, report.region
                )
            } else {
                format!(
                    "cluster `{}` (dsql.identifier in {}) does not exist in {}; fix dsql.identifier, or remove it and \
                     run `cargo xtask infra apply` to create a cluster",
                    cluster.identifier,
                    settings.config_file.display(),
                    report.region
                )
            });
        }
    }
    for table in &report.tables {
        if table.found {
            let ttl = match (&table.ttl_attribute, &table.ttl_status) {
                (Some(attr), Some(status)) => format!("ttl {attr} {status}"),
                (None, Some(status)) => format!("ttl {status}"),
                _ => "ttl unknown".to_owned(),
            };
            let items = table.item_count.map_or_else(|| "items unknown".to_owned(), |n| format!("items {n}"));
            println!(
                "table       {} ({})  {}  {items}  {ttl}",
                table.name,
                table.role,
                table.status.as_deref().unwrap_or("unknown")
            );
        } else {
            println!("table       {} ({})  NOT FOUND", table.name, table.role);
            problems.push(format!(
                "table `{}` does not exist in {}; run `cargo xtask infra apply` with coordination.{}.enabled = true to \
                 create it",
                table.name, report.region, table.role
            ));
        }
    }
    if let Some(domain) = &report.opensearch {
        print_domain(domain, settings, &mut problems);
    }
    if let Some(index) = &report.opensearch_index {
        print_index(index, settings, &mut problems);
    }
    match problems.len() {
        0 => Ok(()),
        1 => bail!("{}", problems.remove(0)),
        _ => bail!("{}", problems.join("\n")),
    }
}

/// `infra bootstrap-state`: the bucket and lock table of the S3 backend, through `tdsql-ops`
/// (which creates what is missing and checks what exists), then the keys that use them.
fn bootstrap_state(ctx: &Context) -> Result<()> {
    let settings = Settings::load(ctx)?;
    let Backend::S3(s3) = &settings.backend else {
        bail!(
            "infra.state.backend is local in {}, so there is no state bucket to create; name one first: `cargo \
             xtask config set infra.state.backend s3 infra.state.bucket <bucket>` (optionally infra.state.lock_table \
             <table> for DynamoDB locking), then run `cargo xtask infra bootstrap-state` again",
            settings.config_file.display()
        );
    };
    let mut cli = vec![
        "bootstrap-state".to_owned(),
        "--region".to_owned(),
        s3.region.clone(),
        "--bucket".to_owned(),
        s3.bucket.clone(),
    ];
    if let Some(table) = &s3.lock_table {
        cli.extend(["--lock-table".to_owned(), table.clone()]);
    }
    ops::command(cli).run(ctx).map_err(|err| {
        explain(err, &format!("creating the state bucket {} failed (tdsql-ops bootstrap-state)", s3.bucket))
    })?;
    if ctx.dry_run {
        return Ok(());
    }
    let lock = match &s3.lock_table {
        Some(table) => format!("infra.state.lock_table = \"{table}\""),
        None => "no lock_table: terraform locks with a lock file next to the state (use_lockfile)".to_owned(),
    };
    println!(
        "\nthe terraform state can live in {} now; the keys in {} that say so:\n  [infra.state]\n  backend = \
         \"s3\"\n  bucket = \"{}\"\n  key = \"{}\"\n  region = \"{}\"\n  {lock}\nnext: `cargo xtask infra state \
         migrate` moves an existing local state there; a new clone with these keys plans against it",
        s3.url(),
        settings.config_file.display(),
        s3.bucket,
        s3.key,
        s3.region
    );
    Ok(())
}

fn print_domain(domain: &DomainStatus, settings: &Settings, problems: &mut Vec<String>) {
    if !domain.found {
        println!("opensearch  {}  NOT FOUND", domain.name);
        problems.push(format!(
            "OpenSearch domain `{}` does not exist; set opensearch.create = true and run `cargo xtask infra apply` to \
             create one, or fix opensearch.endpoint in {}",
            domain.name,
            settings.config_file.display()
        ));
        return;
    }
    let state = match (domain.deleted, domain.processing) {
        (Some(true), _) => "DELETING",
        (_, Some(true)) => "processing (a change or the creation is being applied)",
        (_, Some(false)) => "ready (processing false)",
        _ => "unknown",
    };
    let endpoint = domain.endpoint.as_deref().map(|e| format!("https://{e}"));
    println!(
        "opensearch  {}  {}  {state}",
        domain.name,
        domain.engine_version.as_deref().unwrap_or("engine unknown")
    );
    println!("            {}", endpoint.as_deref().unwrap_or("no endpoint yet"));
    if let (Some(actual), Some(configured)) = (&endpoint, &settings.opensearch_endpoint)
        && configured.trim_end_matches('/') != actual
    {
        problems.push(format!(
            "opensearch.endpoint in {} is `{configured}`, but domain `{}` answers at {actual}; run `cargo xtask infra \
             apply` to write it back, or fix the key",
            settings.config_file.display(),
            domain.name
        ));
    } else if settings.opensearch_visibility && settings.opensearch_endpoint.is_none() {
        problems.push(format!(
            "visibility.backend is opensearch but opensearch.endpoint is empty in {}; run `cargo xtask infra apply` \
             to write the domain's endpoint",
            settings.config_file.display()
        ));
    }
}

/// The visibility index line. A missing index or a refused request is a problem while visibility
/// is on OpenSearch; no answer is only reported (a domain in a VPC does not answer a laptop).
fn print_index(index: &IndexStatus, settings: &Settings, problems: &mut Vec<String>) {
    let reason = index.reason.as_deref().unwrap_or("no reason given");
    let status = index.status.map_or_else(|| "no status".to_owned(), |s| s.to_string());
    let line = match index.presence.as_str() {
        "present" => "present".to_owned(),
        "missing" => "MISSING (404)".to_owned(),
        "refused" => "REFUSED (403: the domain's access policy does not allow your principal)".to_owned(),
        "unreachable" => format!("UNREACHABLE ({reason})"),
        "unsigned" => format!("NOT CHECKED ({reason})"),
        _ => format!("UNEXPECTED (HTTP {status})"),
    };
    println!("index       {}  {line}", index.index);
    if !settings.opensearch_visibility {
        return;
    }
    match index.presence.as_str() {
        "missing" => problems.push(format!(
            "the visibility index `{}` does not exist ({} answered 404); `cargo xtask --profile dsql up` creates it              (its opensearch-setup job; `cargo xtask --profile dsql logs opensearch-setup` shows why an earlier run              did not)",
            index.index, index.url
        )),
        "refused" => problems.push(format!(
            "the OpenSearch domain refused a request signed for region {} ({} answered 403): its access policy must              allow your principal es:ESHttp* (terraform/shared allows the principal that applied it and the              opensearch_principals variable), and opensearch.region must be the domain's region",
            settings.opensearch_region, index.url
        )),
        _ => {}
    }
}

/// `infra state migrate`: the local state into the configured S3 backend (init against S3, a
/// check that nothing is there yet, `terraform state push`), then the local file moved aside so
/// that nothing reads it again.
fn migrate(ctx: &Context) -> Result<()> {
    let settings = Settings::load(ctx)?;
    let workspace = Workspace::locate()?;
    let Backend::S3(s3) = &settings.backend else {
        bail!(
            "infra.state.backend is local in {}, so there is nowhere to migrate to; configure the S3 backend \
             first (`cargo xtask config set infra.state.backend s3 infra.state.bucket <bucket>`; README.md, \
             \"Shared Terraform state\"), then run `cargo xtask infra state migrate` again",
            settings.config_file.display()
        );
    };
    let local_file = &workspace.state_file;
    if !local_file.is_file() {
        bail!(
            "there is no local state at {} to migrate; with infra.state.backend = s3, plan and apply already use \
             {}",
            local_file.display(),
            s3.describe()
        );
    }
    let local = StateFile::read(local_file)?;
    check_state_project(&settings, &local_file.display().to_string(), &local)?;
    let kept = local_file.with_extension("tfstate.migrated");
    if ctx.dry_run {
        println!("# first: move {} to {}", local_file.display(), kept.display());
        init(ctx, &workspace, &settings.backend)?;
        println!("# then: check that {} holds no state yet", s3.url());
        workspace.terraform(["state".to_owned(), "push".to_owned(), kept.display().to_string()]).run(ctx)?;
        return Ok(());
    }
    // Moved aside first: `init` would otherwise offer to migrate it itself, which needs a prompt.
    std::fs::rename(local_file, &kept)
        .with_context(|| format!("moving {} to {}", local_file.display(), kept.display()))?;
    if let Err(err) = push_into(ctx, &workspace, &settings.backend, s3, &kept) {
        std::fs::rename(&kept, local_file).with_context(|| {
            format!("moving {} back to {} after: {err:#}", kept.display(), local_file.display())
        })?;
        return Err(
            err.context(format!("nothing was migrated; the local state is still {}", local_file.display()))
        );
    }
    let mut managed: Vec<String> =
        local.cluster_identifier().map(|c| format!("cluster {c}")).into_iter().collect();
    managed.extend(local.table_names().into_iter().map(|t| format!("table {t}")));
    eprintln!(
        "moved the terraform state of project `{}` ({}) from {} into {}; the local file is kept as {} (nothing \
         reads it any more: delete it once `cargo xtask infra plan` shows no changes). Everyone with \
         infra.state.backend = \"s3\", infra.state.bucket = \"{}\" and the same key now plans against it",
        settings.project,
        if managed.is_empty() { "no resources".to_owned() } else { managed.join(", ") },
        local_file.display(),
        s3.describe(),
        kept.display(),
        s3.bucket
    );
    Ok(())
}

/// init against S3, a check that it holds no state yet, and `terraform state push <local>`.
fn push_into(
    ctx: &Context,
    workspace: &Workspace,
    backend: &Backend,
    s3: &settings::S3Backend,
    local: &std::path::Path,
) -> Result<()> {
    init(ctx, workspace, backend)?;
    let remote = workspace
        .terraform(["state", "pull"])
        .read(ctx)
        .map_err(|err| explain(err, &format!("reading the terraform state from {} failed", s3.url())))?;
    let remote = StateFile::parse(&remote, &s3.url())?;
    if !remote.is_empty() {
        bail!(
            "{} already holds a terraform state (project `{}`, cluster {}); `state migrate` does not overwrite \
             it. If it is this project's shared state (someone migrated first), the local state is an old copy: \
             move it aside and run `cargo xtask infra plan`; otherwise point infra.state.key at another object",
            s3.url(),
            remote.project().unwrap_or("unknown"),
            remote.cluster_identifier().unwrap_or("none")
        );
    }
    workspace
        .terraform(["state".to_owned(), "push".to_owned(), local.display().to_string()])
        .run(ctx)
        .map_err(|err| explain(err, &format!("terraform state push into {} failed", s3.url())))
}

/// Files added to the throwaway copy of the module that `destroy` runs in: they lift
/// `prevent_destroy`, which Terraform only accepts as a literal in the configuration.
const DESTROY_OVERRIDE: &str =
    "# Written by `cargo xtask infra destroy` into a throwaway copy of terraform/shared.
resource \"aws_dsql_cluster\" \"this\" {
  lifecycle {
    prevent_destroy = false
  }
}

resource \"aws_dynamodb_table\" \"rate_limiter\" {
  lifecycle {
    prevent_destroy = false
  }
}

resource \"aws_dynamodb_table\" \"conn_lease\" {
  lifecycle {
    prevent_destroy = false
  }
}

resource \"aws_opensearch_domain\" \"visibility\" {
  lifecycle {
    prevent_destroy = false
  }
}
";

fn destroy(ctx: &Context, args: &DestroyArgs) -> Result<()> {
    let prepared = prepare(ctx)?;
    let Prepared { settings, workspace, state, location } = &prepared;
    if state.is_empty() {
        bail!(
            "nothing to destroy: the terraform state at {location} manages no resources (if the cluster was \
             created elsewhere, delete it where it was created)"
        );
    }
    let identifier = state.cluster_identifier().unwrap_or("(none)");
    let tables = state.table_names();
    eprintln!("this deletes, with all their data:");
    eprintln!("  Aurora DSQL cluster {identifier} ({})", settings.region);
    for table in &tables {
        eprintln!("  DynamoDB table {table}");
    }
    let domain = state.opensearch_domain().map(|(name, _)| name.to_owned());
    if let Some(domain) = &domain {
        eprintln!("  OpenSearch domain {domain} (every workflow's visibility records)");
    }
    confirm_destroy(&settings.project, args.confirm.as_deref())?;

    let mut vars = plan_vars(settings);
    if state.deletion_protection() == Some(true) {
        if !args.disable_deletion_protection {
            bail!(
                "deletion protection is on for cluster {identifier}, so AWS refuses to delete it; run `cargo xtask \
                 infra destroy --disable-deletion-protection` to turn it off and destroy in one go, or set \
                 deletion_protection = false in {} and run `cargo xtask infra apply` first",
                workspace.work_dir.join("terraform.tfvars").display()
            );
        }
        vars.push("deletion_protection=false".to_owned());
        eprintln!("turning deletion protection off for cluster {identifier}");
        init(ctx, workspace, &settings.backend)?;
        // Confirmed by the typed name like the destroy itself, so no saved plan in between.
        let mut apply_args = vec!["apply".to_owned(), "-input=false".to_owned(), "-auto-approve".to_owned()];
        apply_args.extend(colour_args());
        workspace
            .terraform(with_vars(apply_args, &vars))
            .run(ctx)
            .map_err(|err| explain(err, "turning deletion protection off failed"))?;
    } else {
        init(ctx, workspace, &settings.backend)?;
    }

    let scratch = workspace.scratch(&workspace.work_dir.join(".destroy"));
    if !ctx.dry_run {
        workspace.fill_scratch(&scratch, &[("destroy_override.tf", DESTROY_OVERRIDE)])?;
    }
    // The typed project name was the confirmation: one `apply -destroy` (plan and apply in one
    // process, a provider start less than a saved destroy plan).
    let mut destroy_args = vec![
        "apply".to_owned(),
        "-destroy".to_owned(),
        "-input=false".to_owned(),
        "-auto-approve".to_owned(),
    ];
    destroy_args.extend(colour_args());
    let result = scratch
        .terraform(with_vars(destroy_args, &vars))
        .run(ctx)
        .map_err(|err| explain(err, "terraform destroy failed"));
    if !ctx.dry_run {
        let _ = std::fs::remove_dir_all(&scratch.work_dir);
    }
    result?;
    if ctx.dry_run {
        println!(
            "# then: remove dsql.identifier, dsql.endpoint{} from {}",
            if domain.is_some() {
                ", the table names and opensearch.endpoint"
            } else {
                " and the table names"
            },
            settings.config_file.display()
        );
        return Ok(());
    }
    eprintln!(
        "destroyed cluster {identifier}{}{}",
        if tables.is_empty() { String::new() } else { format!(" and tables {}", tables.join(", ")) },
        domain.as_ref().map(|d| format!(" and OpenSearch domain {d}")).unwrap_or_default()
    );
    if settings::clear(ctx, settings, domain.is_some())? {
        eprintln!(
            "cleared dsql.identifier, dsql.endpoint{} in {}",
            if domain.is_some() {
                ", the table names and opensearch.endpoint"
            } else {
                " and the table names"
            },
            settings.config_file.display()
        );
    }
    Ok(())
}

fn confirm_destroy(project: &str, confirm: Option<&str>) -> Result<()> {
    let typed = match confirm {
        Some(typed) => typed.to_owned(),
        None if std::io::stdin().is_terminal() => {
            eprint!("type the project name `{project}` to destroy them: ");
            std::io::stderr().flush()?;
            read_line()?.trim().to_owned()
        }
        None => bail!(
            "destroy needs the project name typed back and stdin is not a terminal; pass --confirm {project} to \
             destroy without a prompt"
        ),
    };
    if typed != project {
        bail!("`{typed}` is not the project name `{project}`; nothing was destroyed");
    }
    Ok(())
}

/// Why `init` got no provider, and the two ways to get one.
fn provider_advice(mirror: bool) -> String {
    let cli_config = std::env::var("TF_CLI_CONFIG_FILE").ok().filter(|v| !v.is_empty());
    let cause = match (&cli_config, mirror) {
        (Some(file), true) => format!(
            "the provider mirror that TF_CLI_CONFIG_FILE ({file}) names does not hold hashicorp/aws (the directory \
             is missing or lacks this version and platform)"
        ),
        (None, true) => {
            "the provider mirror of your terraform CLI configuration does not hold hashicorp/aws".to_owned()
        }
        (_, false) => "the Terraform registry (registry.terraform.io) was unreachable".to_owned(),
    };
    format!(
        "could not get the hashicorp/aws provider: {cause}. Either let terraform reach \
         registry.terraform.io (network, or HTTPS_PROXY for a proxy), or install it from a provider mirror: point \
         TF_CLI_CONFIG_FILE at a CLI configuration whose provider_installation has a filesystem_mirror holding \
         hashicorp/aws at the version in terraform/shared/{lock} (`terraform providers mirror <dir>` fills one on a \
         machine with network)",
        lock = terraform::LOCK_FILE
    )
}

/// Adds what a known Terraform failure means and what to run; other failures pass unchanged.
fn explain(err: anyhow::Error, what: &str) -> anyhow::Error {
    let Some(failed) = err.downcast_ref::<CommandFailed>() else {
        return err.context(what.to_owned());
    };
    let advice = match terraform::classify(&failed.to_string()) {
        Some(Failure::NoCredentials) => "no usable AWS credentials: sign in (`aws sso login`, or set AWS_PROFILE, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and retry; `cargo xtask doctor --profile dsql` shows what \
             the credential chain finds"
            .to_owned(),
        Some(Failure::AccessDenied) => "AWS refused the call: the credentials lack permissions. `infra` needs \
             dsql:CreateCluster, GetCluster, UpdateCluster, DeleteCluster, TagResource, UntagResource, \
             ListTagsForResource and dynamodb:CreateTable, DescribeTable, DeleteTable, UpdateTimeToLive, \
             DescribeTimeToLive, DescribeContinuousBackups, TagResource, ListTagsOfResource; with \
             opensearch.create also es:CreateDomain, DescribeDomain, DescribeDomainConfig, UpdateDomainConfig, \
             DeleteDomain, GetCompatibleVersions, AddTags, ListTags and iam:GetRole (for an assumed role)"
            .to_owned(),
        Some(Failure::PreventDestroy(resources)) => format!(
            "the plan would destroy {} (prevent_destroy in terraform/shared/main.tf forbids it); this happens when \
             coordination tables or opensearch.create are switched off or a change forces a replacement. Undo that change in config.toml, \
             or run `cargo xtask infra destroy` to delete everything deliberately",
            if resources.is_empty() { "a protected resource".to_owned() } else { resources.join(", ") }
        ),
        Some(Failure::DeletionProtection) => "AWS refused to delete the cluster because its deletion protection is \
             on; rerun `cargo xtask infra destroy --disable-deletion-protection`"
            .to_owned(),
        Some(Failure::RegionWithoutDsql) => "Aurora DSQL is not available in project.region (its API did not \
             answer there; a local AWS API such as moto serves it in us-east-1 and us-east-2 only); set \
             project.region in config.toml to a region that has it, e.g. `cargo xtask config set project.region \
             us-east-1`"
            .to_owned(),
        Some(Failure::StateLocked) => "another terraform run holds the state lock; wait for it to finish (or, if it \
             crashed, run `terraform force-unlock <id>` in terraform/shared)"
            .to_owned(),
        Some(Failure::ProviderUnavailable { mirror }) => provider_advice(mirror),
        Some(Failure::ProviderNotInLockFile) => format!(
            "the hashicorp/aws provider package for this platform has no checksum in \
             terraform/shared/{lock} (the committed lock file), so terraform refuses it. With access to the Terraform \
             registry, record the hashes of every platform contributors use and commit the file: `{command}`",
            lock = terraform::LOCK_FILE,
            command = terraform::LOCK_COMMAND
        ),
        None => return err.context(what.to_owned()),
    };
    err.context(format!("{what}: {advice}"))
}
