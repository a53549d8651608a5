//! `tdsql-ops schema setup|update|status|plan|verify`: the embedded Temporal schema on the local
//! PostgreSQL (postgres dialect, plain TCP) or on Aurora DSQL (dsql dialect, TLS verify-full, IAM
//! token). `cargo xtask schema` resolves the profile's defaults and runs this.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use tdsql_reservoir::connect::iam_action;
use tdsql_reservoir::{
    ConnectConfig, ConnectError, IamTokenConfig, IamTokenProvider, Metrics, PgConnection, PgConnector,
    StaticPassword, Tls, TokenProvider,
};
use tdsql_schema::{Dialect, Event, Migrator, Options, Outcome, Plan, Request, SchemaVersion, Status};

/// Where the schema lives and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// SQL dialect: `dsql` (Aurora DSQL: TLS, IAM token, async indexes) or `postgres` (local stand-in)
    #[arg(long, global = true, default_value = "postgres")]
    dialect: Dialect,
    /// Host: the cluster endpoint (`<id>.dsql.<region>.on.aws`) or the PostgreSQL host
    #[arg(long, global = true, default_value = "127.0.0.1")]
    endpoint: String,
    /// AWS region the IAM token is signed for (dsql dialect) [default: the endpoint's]
    #[arg(long, global = true)]
    region: Option<String>,
    /// Port
    #[arg(long, global = true, default_value_t = 5432)]
    port: u16,
    /// Database role [default: admin for dsql, postgres for postgres]
    #[arg(long, global = true)]
    user: Option<String>,
    /// Database to connect to (DSQL has only `postgres`)
    #[arg(long, global = true, default_value = "postgres")]
    database: String,
    /// `db_name` of the version rows: the server's `databaseName` [default: --database]
    #[arg(long, global = true)]
    db_name: Option<String>,
    /// Seconds to wait for another migrator's lock
    #[arg(long, global = true, default_value_t = 120)]
    lock_wait: u64,
    /// dsql dialect: trust only the CA in this PEM file instead of the public roots (the local
    /// profile's dsql-local gateway)
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print the statements a run would execute; write nothing
    #[arg(long, global = true)]
    dry_run: bool,
    /// Show every statement as it runs
    #[arg(short, long, global = true)]
    verbose: bool,
}

/// `tdsql-ops schema ...`.
#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Install the schema (default: the latest version); completes an unfinished run
    Setup {
        /// Version to install, e.g. 1.0 [default: the latest]
        #[arg(long, value_parser = known_version)]
        version: Option<SchemaVersion>,
        /// Drop every table first (asks for confirmation unless --yes)
        #[arg(long)]
        overwrite: bool,
        /// Do not ask before --overwrite drops tables
        #[arg(long)]
        yes: bool,
    },
    /// Apply the versions after the installed one
    Update {
        /// Version to reach [default: the latest]
        #[arg(long, value_parser = known_version)]
        version: Option<SchemaVersion>,
    },
    /// Installed vs expected version, the lock, unfinished runs and index jobs
    Status,
    /// Print the statements `setup` would run, for this dialect; writes nothing
    Plan {
        /// Version to plan for [default: the latest]
        #[arg(long, value_parser = known_version)]
        version: Option<SchemaVersion>,
        /// Plan a setup --overwrite
        #[arg(long, conflicts_with = "offline")]
        overwrite: bool,
        /// Do not connect: plan a setup on an empty database
        #[arg(long)]
        offline: bool,
    },
    /// Compare the live catalog with the embedded schema; non-zero exit on drift
    Verify {
        /// Version to compare with [default: the installed one]
        #[arg(long, value_parser = known_version)]
        version: Option<SchemaVersion>,
    },
}

/// `--version`: a version of the embedded schema; anything else is refused before connecting,
/// with the versions there are.
fn known_version(text: &str) -> Result<SchemaVersion, String> {
    let schema =
        tdsql_schema::Schema::embedded().map_err(|e| format!("the embedded schema is broken: {e}"))?;
    let version: SchemaVersion = text.parse().map_err(|e| {
        let known: Vec<String> = schema.versions().iter().map(ToString::to_string).collect();
        format!("{e}; known versions: {}", known.join(", "))
    })?;
    schema.find(version).map_err(|e| e.to_string())?;
    Ok(version)
}

/// A resolved, validated connection target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    dialect: Dialect,
    host: String,
    port: u16,
    user: String,
    database: String,
    db_name: String,
    /// Only for the dsql dialect.
    region: Option<String>,
    /// The CA to trust instead of the public roots (dsql dialect).
    ca_file: Option<std::path::PathBuf>,
}

impl Resolved {
    fn describe(&self) -> String {
        format!("{}:{}/{} as {} ({} dialect)", self.host, self.port, self.database, self.user, self.dialect)
    }
}

/// The region in a standard DSQL endpoint name, `<id>.dsql.<region>.on.aws`.
fn endpoint_region(endpoint: &str) -> Option<&str> {
    let rest = endpoint.strip_suffix(".on.aws")?;
    let (head, region) = rest.rsplit_once('.')?;
    let (_, service) = head.rsplit_once('.')?;
    let valid = service.starts_with("dsql")
        && !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(region)
}

impl Target {
    fn resolve(&self) -> Result<Resolved> {
        let user = self.user.clone().unwrap_or_else(|| match self.dialect {
            Dialect::Dsql => "admin".to_owned(),
            Dialect::Postgres => "postgres".to_owned(),
        });
        let mut resolved = Resolved {
            dialect: self.dialect,
            host: self.endpoint.trim().to_owned(),
            port: self.port,
            user,
            database: self.database.clone(),
            db_name: self.db_name.clone().unwrap_or_else(|| self.database.clone()),
            region: None,
            ca_file: self.ca_file.clone(),
        };
        if resolved.host.is_empty() {
            bail!(
                "no endpoint: pass --endpoint, or set dsql.identifier (with project.region) or dsql.endpoint \
                 (`cargo xtask config set dsql.identifier <id>`)"
            );
        }
        if self.dialect == Dialect::Dsql {
            resolved.region = Some(dsql_region(&resolved.host, self.region.as_deref())?);
            if resolved.database != "postgres" {
                bail!(
                    "--database {}: Aurora DSQL has exactly one database, `postgres` (CREATE DATABASE is not \
                     supported); use --database postgres (config key dsql.database)",
                    resolved.database
                );
            }
            if resolved.db_name != "postgres" {
                bail!(
                    "--db-name {}: on Aurora DSQL the server's databaseName is `postgres`, and the version row \
                     must carry it or the server will not find it",
                    resolved.db_name
                );
            }
        }
        Ok(resolved)
    }
}

/// The region to sign the IAM token for: `--region`, which must agree with the endpoint's own.
fn dsql_region(endpoint: &str, region: Option<&str>) -> Result<String> {
    let region = region.map(str::trim).filter(|r| !r.is_empty());
    match (region, endpoint_region(endpoint)) {
        (Some(given), Some(named)) if given != named => bail!(
            "--region {given} does not match --endpoint {endpoint}, which is in {named}: the IAM token must be \
             signed for the endpoint's region; fix project.region (or --region) or the endpoint"
        ),
        (Some(given), _) => Ok(given.to_owned()),
        (None, Some(named)) => Ok(named.to_owned()),
        (None, None) => bail!(
            "--endpoint {endpoint} needs a region: its name is not <id>.dsql.<region>.on.aws, so pass --region \
             (config key project.region)"
        ),
    }
}

async fn connect(target: &Resolved) -> Result<PgConnection> {
    let (config, tokens): (ConnectConfig, Arc<dyn TokenProvider>) = match target.dialect {
        Dialect::Postgres => {
            let mut config = ConnectConfig::local(&target.host, target.port, &target.user, &target.database);
            config.application_name = Some("tdsql-schema".to_owned());
            // The local profile uses trust auth; PGPASSWORD serves any other local server.
            let password =
                std::env::var("PGPASSWORD").map_or_else(|_| StaticPassword::none(), StaticPassword::new);
            (config, Arc::new(password))
        }
        Dialect::Dsql => {
            let region = target.region.clone().expect("resolved for dsql");
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region.clone()))
                .load()
                .await;
            let mut settings = IamTokenConfig::new(&target.host, &target.user);
            settings.region = Some(region);
            let tokens = IamTokenProvider::new(&sdk, settings, Metrics::new())
                .context("cannot sign IAM tokens for the DSQL endpoint")?;
            let mut config = ConnectConfig::dsql(&target.host);
            config.port = target.port;
            config.user.clone_from(&target.user);
            config.database.clone_from(&target.database);
            config.tls = Tls::VerifyFull;
            config.ca_file.clone_from(&target.ca_file);
            config.application_name = Some("tdsql-schema".to_owned());
            (config, Arc::new(tokens))
        }
    };
    let connector = PgConnector::new(config, tokens)?;
    connector.connect().await.map_err(|error| anyhow::anyhow!("{}", refused(target, &error)))
}

/// The message for a failed connect: what the server or the network said, with its causes, then
/// what follows from this target (for DSQL, where the token's region came from, which tells a
/// missing permission from a wrong region).
fn refused(target: &Resolved, error: &ConnectError) -> String {
    let mut text = format!("cannot connect to {}: {error}", target.describe());
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let region = target.region.as_deref().unwrap_or_default();
    let action = iam_action(&target.user);
    let mapping = if target.user == "admin" {
        String::new()
    } else {
        format!(", or role {} is not mapped to that identity", target.user)
    };
    let identity = "`aws sts get-caller-identity` shows the identity the token was signed with";
    let advice = match (target.dialect, error) {
        (Dialect::Dsql, ConnectError::AccessDenied { .. }) => match endpoint_region(&target.host) {
            Some(named) => format!(
                "\nthe token was signed for {region}, the region in the endpoint's name ({named}), so the region is \
                 right: the AWS identity lacks {action} on this cluster{mapping}; {identity}"
            ),
            None => format!(
                "\nthe token was signed for {region} (--region, config key project.region), and the endpoint's name \
                 does not say the cluster's region: if the cluster is elsewhere, fix project.region; otherwise the \
                 AWS identity lacks {action} on this cluster{mapping}; {identity}"
            ),
        },
        (Dialect::Dsql, ConnectError::TokenExpired { .. }) => {
            "\nthe token was signed moments ago, so this machine's clock is off: compare `date -u` with a time \
             server and fix the clock"
                .to_owned()
        }
        (Dialect::Postgres, ConnectError::Failed { .. } | ConnectError::Timeout { .. }) => {
            "; is the local stack up? (`cargo xtask up` publishes its PostgreSQL on 127.0.0.1)".to_owned()
        }
        _ => String::new(),
    };
    text.push_str(&advice);
    text
}

impl SchemaArgs {
    pub(crate) async fn run(self) -> Result<()> {
        if let SchemaCommand::Plan { version, offline: true, .. } = self.command {
            let mut options = Options::new(self.target.dialect);
            options.db_name = self.target.db_name.clone().unwrap_or_else(|| self.target.database.clone());
            let schema = tdsql_schema::Schema::embedded().context("the embedded schema is broken")?;
            return print_plan(&Migrator::plan_fresh(schema, &options, version)?);
        }
        let target = self.target.resolve()?;
        let mut options = Options::new(target.dialect);
        options.db_name.clone_from(&target.db_name);
        options.lock_wait = Duration::from_secs(self.target.lock_wait);
        let connection = connect(&target).await?;
        let verbose = self.target.verbose;
        let mut migrator = Migrator::new(connection.client(), options)
            .context("the embedded schema is broken")?
            .observe(progress_printer(verbose));
        let started = Instant::now();
        match self.command {
            SchemaCommand::Setup { version, overwrite, yes } => {
                let request = Request::Setup { version, overwrite };
                let plan = migrator.plan(request).await?;
                if self.target.dry_run {
                    return print_plan(&plan);
                }
                if !plan.drop_tables.is_empty() && !yes {
                    confirm_drop(&plan, &target)?;
                }
                let outcome = migrator.run(request).await?;
                report(&outcome, &target, started.elapsed());
            }
            SchemaCommand::Update { version } => {
                let request = Request::Update { version };
                if self.target.dry_run {
                    return print_plan(&migrator.plan(request).await?);
                }
                let outcome = migrator.run(request).await?;
                report(&outcome, &target, started.elapsed());
            }
            SchemaCommand::Plan { version, overwrite, .. } => {
                print_plan(&migrator.plan(Request::Setup { version, overwrite }).await?)?;
            }
            SchemaCommand::Status => print_status(&migrator.status().await?, &target),
            SchemaCommand::Verify { version } => {
                let drift = migrator.verify(version).await?;
                let installed = migrator.installed().await?.map(|(v, _)| v);
                let at = version.or(installed).unwrap_or_else(|| migrator.schema().latest());
                if drift.is_empty() {
                    println!("no drift: {} matches the embedded schema {at}", target.describe());
                    return Ok(());
                }
                for difference in &drift {
                    println!("{difference}");
                }
                bail!(
                    "{} difference(s) between {} and the embedded schema {at}; `cargo xtask schema setup \
                     --overwrite` rebuilds an installation that holds no data worth keeping",
                    drift.len(),
                    target.describe()
                );
            }
        }
        Ok(())
    }
}

fn print_plan(plan: &Plan) -> Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{plan}")?;
    out.flush()?;
    eprintln!("plan only: nothing was written");
    Ok(())
}

fn confirm_drop(plan: &Plan, target: &Resolved) -> Result<()> {
    let count = plan.drop_tables.len();
    let what = format!(
        "--overwrite drops {count} table(s) ({}) from {}",
        preview(&plan.drop_tables),
        target.describe()
    );
    if !std::io::stdin().is_terminal() {
        bail!("{what}; pass --yes to confirm (stdin is not a terminal, so nothing can be asked)");
    }
    eprint!("{what}.\nType `yes` to drop them: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("not confirmed: nothing was dropped");
    }
    Ok(())
}

fn preview(tables: &[String]) -> String {
    let shown: Vec<&str> = tables.iter().take(4).map(String::as_str).collect();
    if tables.len() > shown.len() { format!("{}, …", shown.join(", ")) } else { shown.join(", ") }
}

fn report(outcome: &Outcome, target: &Resolved, elapsed: Duration) {
    match outcome {
        Outcome::UpToDate { installed } => {
            println!("schema already at {installed} for db_name {}: nothing to do", target.db_name);
        }
        Outcome::Applied { from, to, statements, dropped } => {
            let from = from.map_or_else(|| "nothing".to_owned(), |v| v.to_string());
            let dropped =
                if *dropped > 0 { format!(", after dropping {dropped} table(s)") } else { String::new() };
            println!(
                "schema at {to} for db_name {} (from {from}): {statements} statement(s) in {:.2}s{dropped}",
                target.db_name,
                elapsed.as_secs_f64()
            );
        }
        other => println!("{other:?}"),
    }
}

fn print_status(status: &Status, target: &Resolved) {
    println!("database    {}", target.describe());
    println!("db_name     {}", status.db_name);
    match status.installed {
        Some(installed) => {
            let min = status.min_compatible.map_or_else(String::new, |m| format!(" (min compatible {m})"));
            println!("installed   {installed}{min}");
        }
        None => println!("installed   none"),
    }
    let verdict = match status.installed {
        Some(v) if v >= status.expected => "up to date".to_owned(),
        Some(_) => "behind: run `cargo xtask schema update`".to_owned(),
        None => "not installed: run `cargo xtask schema setup`".to_owned(),
    };
    println!("expected    {}: {verdict}", status.expected);
    match &status.lock {
        None => println!("lock        none yet (no migrator has run)"),
        Some(lock) => {
            match (&lock.holder, lock.expires_in_secs) {
                (Some(holder), Some(secs)) if secs > 0.0 => {
                    println!("lock        held by {holder}, expires in {secs:.0}s");
                }
                (Some(holder), _) => println!("lock        expired (was held by {holder})"),
                (None, _) => println!("lock        free"),
            }
            match &lock.unfinished {
                Some(u) => {
                    let error = u.last_error.as_ref().map_or_else(String::new, |e| format!(": {e}"));
                    let since = u.started_at.as_ref().map_or_else(String::new, |s| format!(" since {s} UTC"));
                    println!(
                        "unfinished  applying {}{since}{error}; `cargo xtask schema setup` completes it",
                        u.version
                    );
                }
                None => println!("unfinished  none"),
            }
        }
    }
    if target.dialect == Dialect::Dsql {
        if status.pending_jobs.is_empty() {
            println!("index jobs  none pending");
        }
        for job in &status.pending_jobs {
            let details = job.details.as_ref().map_or_else(String::new, |d| format!(": {d}"));
            println!("index job   {} {}{details}", job.job_id, job.status);
        }
    }
}

/// Prints progress to stderr: versions and index jobs always, each statement with `--verbose`.
fn progress_printer(verbose: bool) -> impl FnMut(&Event) + Send + Sync {
    let mut waiting_for: Option<String> = None;
    move |event| match event {
        Event::LockWaiting { holder, expires_in } if waiting_for.as_ref() != Some(holder) => {
            eprintln!(
                "waiting for another migrator ({holder}) to finish; its lock expires in {}s unless renewed",
                expires_in.as_secs()
            );
            waiting_for = Some(holder.clone());
        }
        Event::LockTakenOver { previous } => {
            eprintln!("took over the lock of {previous}: that process is gone");
        }
        Event::Dropping { table } if verbose => eprintln!("dropping {table}"),
        Event::VersionStarted { version, statements } => {
            eprintln!("applying schema {version} ({statements} statement(s))");
        }
        Event::Statement { number, total, summary, .. } if verbose => {
            eprintln!("  [{number}/{total}] {summary}");
        }
        Event::IndexJobWaiting { index, job_id } => eprintln!("  waiting for index {index} (job {job_id})"),
        Event::IndexJobDone { index, waited } => {
            eprintln!("  index {index} is ready ({:.1}s)", waited.as_secs_f64());
        }
        Event::VersionRecorded { version } => eprintln!("  recorded {version} in schema_version"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        schema: SchemaArgs,
    }

    fn resolve(args: &[&str]) -> Result<Resolved> {
        let cli = Cli::try_parse_from(std::iter::once("schema").chain(args.iter().copied()))?;
        cli.schema.target.resolve()
    }

    const ENDPOINT: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";

    #[test]
    fn dsql_defaults_to_admin_and_the_endpoints_region() {
        let resolved = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "status"]).unwrap();
        assert_eq!(resolved.user, "admin");
        assert_eq!(resolved.region.as_deref(), Some("us-east-1"));
        assert_eq!((resolved.database.as_str(), resolved.db_name.as_str()), ("postgres", "postgres"));
        let local = resolve(&["status", "--port", "15432"]).unwrap();
        assert_eq!((local.user.as_str(), local.host.as_str(), local.port), ("postgres", "127.0.0.1", 15432));
        assert_eq!(local.region, None);
    }

    #[test]
    fn an_endpoint_without_a_region_names_both() {
        let err = resolve(&["--dialect", "dsql", "--endpoint", "db.internal.example", "status"]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("--endpoint db.internal.example") && message.contains("--region"),
            "{message}"
        );
        let ok = resolve(&[
            "--dialect",
            "dsql",
            "--endpoint",
            "db.internal.example",
            "--region",
            "eu-west-1",
            "status",
        ]);
        assert_eq!(ok.unwrap().region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn a_region_that_contradicts_the_endpoint_names_both() {
        let err = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "--region", "eu-west-1", "setup"])
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("--region eu-west-1") && message.contains(ENDPOINT), "{message}");
        assert!(message.contains("us-east-1"), "{message}");
    }

    #[test]
    fn another_database_on_dsql_is_rejected_with_the_reason() {
        let err = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "--database", "temporal", "setup"])
            .unwrap_err();
        assert!(err.to_string().contains("exactly one database, `postgres`"), "{err}");
        let err = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "--db-name", "temporal", "setup"])
            .unwrap_err();
        assert!(err.to_string().contains("databaseName is `postgres`"), "{err}");
        // The local stand-in may use any database.
        assert!(resolve(&["--database", "temporal", "setup"]).is_ok());
    }

    #[test]
    fn unknown_versions_and_dialects_are_refused_at_parse_time() {
        let err = resolve(&["setup", "--version", "one"]).unwrap_err().to_string();
        assert!(
            err.contains(
                "`one` is not a schema version (expected something like 1.1); known versions: 1.0, 1.1"
            ),
            "{err}"
        );
        for command in ["setup", "update", "plan", "verify"] {
            let err = resolve(&[command, "--version", "2.0"]).unwrap_err().to_string();
            assert!(err.contains("unknown schema version 2.0; known versions: 1.0, 1.1"), "{command}: {err}");
        }
        assert!(resolve(&["setup", "--version", "v1.0"]).is_ok());
        let err = resolve(&["--dialect", "mysql", "status"]).unwrap_err().to_string();
        assert!(err.contains("known dialects: dsql, postgres"), "{err}");
    }

    fn denied(target: &Resolved) -> ConnectError {
        ConnectError::AccessDenied {
            host: target.host.clone(),
            user: target.user.clone(),
            message: "unable to accept connection, access denied".to_owned(),
        }
    }

    #[test]
    fn access_denied_on_a_standard_endpoint_is_a_missing_permission_not_the_region() {
        let target = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "setup"]).unwrap();
        let text = refused(&target, &denied(&target));
        assert!(
            text.starts_with(&format!(
                "cannot connect to {ENDPOINT}:5432/postgres as admin (dsql dialect): {ENDPOINT} denied access to \
                 admin: unable to accept connection, access denied;"
            )),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\nthe token was signed for us-east-1, the region in the endpoint's name (us-east-1), so the region \
                 is right: the AWS identity lacks dsql:DbConnectAdmin on this cluster; `aws sts get-caller-identity` \
                 shows the identity the token was signed with"
            ),
            "{text}"
        );
        let app = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "--user", "app", "setup"]).unwrap();
        let text = refused(&app, &denied(&app));
        assert!(
            text.contains(
                "lacks dsql:DbConnect on this cluster, or role app is not mapped to that identity;"
            ),
            "{text}"
        );
        assert!(text.contains("`AWS IAM GRANT app TO '<role arn>'`"), "{text}");
        assert!(!text.contains("DbConnectAdmin"), "{text}");
    }

    #[test]
    fn access_denied_on_an_endpoint_without_a_region_points_at_the_region_too() {
        let target = resolve(&[
            "--dialect",
            "dsql",
            "--endpoint",
            "db.internal.example",
            "--region",
            "eu-west-1",
            "status",
        ])
        .unwrap();
        let text = refused(&target, &denied(&target));
        assert!(
            text.contains(
                "the token was signed for eu-west-1 (--region, config key project.region), and the endpoint's name \
                 does not say the cluster's region: if the cluster is elsewhere, fix project.region; otherwise the \
                 AWS identity lacks dsql:DbConnectAdmin"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_expired_token_points_at_the_clock() {
        let target = resolve(&["--dialect", "dsql", "--endpoint", ENDPOINT, "status"]).unwrap();
        let expired = ConnectError::TokenExpired { host: target.host.clone(), user: target.user.clone() };
        let text = refused(&target, &expired);
        assert!(text.contains("refused the IAM token of admin as expired (signature expired)"), "{text}");
        assert!(text.contains("this machine's clock is off: compare `date -u`"), "{text}");
        assert!(!text.contains("DbConnect"), "an expired token is not a permission problem: {text}");
    }

    #[test]
    fn endpoint_regions_are_read_from_standard_names_only() {
        assert_eq!(endpoint_region(ENDPOINT), Some("us-east-1"));
        assert_eq!(endpoint_region("x.dsql-fnh4.eu-west-2.on.aws"), Some("eu-west-2"));
        assert_eq!(endpoint_region("localhost"), None);
        assert_eq!(endpoint_region("x.example.on.aws"), None);
    }
}
