//! `cargo xtask schema setup|update|status|plan|verify`: the embedded Temporal-on-DSQL schema.
//!
//! The xtask only fills in the profile's defaults and hands over to `tdsql-ops schema` (the
//! database driver, TLS and the AWS SDK live there). Local profile: the `postgresql` container on
//! 127.0.0.1:`local.postgres_port`, user `postgres`, no TLS, postgres dialect. DSQL profile: the
//! configured endpoint, user `admin`, IAM token, TLS verified, dsql dialect. Under `--dry-run`,
//! `setup` and `update` print the statements they would run and write nothing; `status`, `plan`
//! and `verify` only read anyway.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use tdsql_config_renderer::{Backend, Config};

use crate::context::Context;
use crate::exec::Cmd;
use crate::{config, ops, paths};

/// Where the schema lives; every flag defaults to the profile's configuration.
#[derive(Debug, Default, Args)]
pub(crate) struct ConnectionArgs {
    /// Database host: the DSQL endpoint [default: dsql.endpoint, else <dsql.identifier>.dsql.<project.region>.on.aws;
    /// local profile: 127.0.0.1]
    #[arg(long, global = true, value_name = "HOST")]
    endpoint: Option<String>,
    /// AWS region the IAM token is signed for [default: project.region; dsql profile only]
    #[arg(long, global = true)]
    region: Option<String>,
    /// Port [default: dsql.port; local profile: local.postgres_port]
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Database role [default: dsql.user (admin); local profile: postgres]
    #[arg(long, global = true)]
    user: Option<String>,
    /// Database [default: dsql.database, which is also the server's databaseName]
    #[arg(long, global = true)]
    database: Option<String>,
    /// Seconds to wait while another migrator holds the schema lock
    #[arg(long, global = true, value_name = "SECONDS")]
    lock_wait: Option<u64>,
}

/// Arguments of `cargo xtask schema`.
#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    #[command(subcommand)]
    command: SchemaCommand,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Install the schema (default: the version the server expects); running it again completes
    /// an unfinished run and is otherwise a no-op
    #[command(disable_version_flag = true)]
    Setup {
        /// Version to install, e.g. 1.0 [default: the latest]
        #[arg(long)]
        version: Option<String>,
        /// Drop every table first (asks for confirmation unless --yes)
        #[arg(long)]
        overwrite: bool,
        /// Do not ask before --overwrite drops tables
        #[arg(long)]
        yes: bool,
    },
    /// Apply the versions after the installed one
    #[command(disable_version_flag = true)]
    Update {
        /// Version to reach [default: the latest]
        #[arg(long)]
        version: Option<String>,
    },
    /// Show installed vs expected version, the lock, unfinished runs and pending index jobs
    Status,
    /// Print the statements `setup` would run for this profile's dialect; writes nothing
    #[command(disable_version_flag = true)]
    Plan {
        /// Version to plan for [default: the latest]
        #[arg(long)]
        version: Option<String>,
        /// Plan a setup --overwrite
        #[arg(long, conflicts_with = "offline")]
        overwrite: bool,
        /// Do not connect: the statements of a setup on an empty database
        #[arg(long)]
        offline: bool,
    },
    /// Compare the live catalog with the embedded schema; non-zero exit on any drift
    #[command(disable_version_flag = true)]
    Verify {
        /// Version to compare with [default: the installed one]
        #[arg(long)]
        version: Option<String>,
    },
}

impl SchemaArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let config = config::load(ctx).context("cannot work out where the database is from the config")?;
        // Every schema command either only reads or, under --dry-run, is told to write nothing:
        // so it runs even under --dry-run, and prints the statements it would execute.
        let mut cmd = self.command_for(ctx, &config)?;
        if config.uses_gateway() && !matches!(self.command, SchemaCommand::Plan { offline: true, .. }) {
            for (key, value) in gateway_credentials(ctx)? {
                cmd = cmd.hidden_env(key, value);
            }
            // No session token or profile of the user's shell may join the local key pair.
            cmd = cmd.env_remove("AWS_SESSION_TOKEN").env_remove("AWS_PROFILE");
        }
        cmd.run_now()
    }

    /// The `tdsql-ops schema ...` command line for this profile.
    fn command_for(&self, ctx: &Context, config: &Config) -> Result<Cmd> {
        let mut args = vec!["schema".to_owned()];
        if let SchemaCommand::Plan { offline: true, .. } = self.command {
            // Nothing to connect to: only the dialect and the version rows' db_name matter.
            let dialect = if config.is_local() && !config.uses_gateway() { "postgres" } else { "dsql" };
            let database = self.connection.database.clone().unwrap_or_else(|| config.dsql.database.clone());
            args.extend(["--dialect".to_owned(), dialect.to_owned(), "--db-name".to_owned(), database]);
        } else {
            // Relative to the repository root, where tdsql-ops runs (and plans read the same anywhere).
            let generated = config::generated_dir(ctx);
            let generated = generated.strip_prefix(paths::project_root()).unwrap_or(&generated);
            args.extend(self.connection.to_args(config, generated)?);
        }
        if ctx.verbose > 0 {
            args.push("--verbose".to_owned());
        }
        let version = |args: &mut Vec<String>, version: &Option<String>| {
            if let Some(v) = version {
                args.extend(["--version".to_owned(), v.clone()]);
            }
        };
        match &self.command {
            SchemaCommand::Setup { version: v, overwrite, yes } => {
                args.push("setup".to_owned());
                version(&mut args, v);
                if *overwrite {
                    args.push("--overwrite".to_owned());
                }
                if *yes {
                    args.push("--yes".to_owned());
                }
                if ctx.dry_run {
                    args.push("--dry-run".to_owned());
                }
            }
            SchemaCommand::Update { version: v } => {
                args.push("update".to_owned());
                version(&mut args, v);
                if ctx.dry_run {
                    args.push("--dry-run".to_owned());
                }
            }
            SchemaCommand::Status => args.push("status".to_owned()),
            SchemaCommand::Plan { version: v, overwrite, offline } => {
                args.push("plan".to_owned());
                version(&mut args, v);
                if *overwrite {
                    args.push("--overwrite".to_owned());
                }
                if *offline {
                    args.push("--offline".to_owned());
                }
            }
            SchemaCommand::Verify { version: v } => {
                args.push("verify".to_owned());
                version(&mut args, v);
            }
        }
        Ok(ops::command(args))
    }
}

/// The local key pair (`generated/dsql-local/keypair.env`, written by `config render`) as the AWS
/// credentials tdsql-ops signs the gateway's IAM tokens with; the variables of the user's shell
/// would sign for another identity. A dry run without a render plans without them.
fn gateway_credentials(ctx: &Context) -> Result<Vec<(String, String)>> {
    let path = config::generated_dir(ctx).join(tdsql_config_renderer::render::LOCAL_KEYPAIR_ENV);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) if ctx.dry_run => return Ok(Vec::new()),
        Err(err) => bail!(
            "cannot read the local key pair {} ({err}): run `cargo xtask config render` (or `cargo xtask up`), \
             which creates it",
            path.display()
        ),
    };
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| matches!(key.trim(), "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY"))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    if vars.len() != 2 {
        bail!(
            "{} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY: delete it and run `cargo xtask config render` to \
             make a new key pair (then `cargo xtask restart`)",
            path.display()
        );
    }
    Ok(vars)
}

impl ConnectionArgs {
    /// The connection flags of `tdsql-ops schema`, flags first, then the profile's configuration.
    fn to_args(&self, config: &Config, generated: &std::path::Path) -> Result<Vec<String>> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        let database = self.database.clone().unwrap_or_else(|| config.dsql.database.clone());
        match config.dsql.backend {
            // The local profile's DSQL path: the gateway on the host's loopback, its name in the
            // certificate and the token (`localhost`), the local CA, tokens signed with the local
            // key pair (handed to tdsql-ops as AWS credentials by `gateway_credentials`).
            Backend::Postgres if config.uses_gateway() => {
                flag("dialect", "dsql".to_owned());
                flag("endpoint", self.endpoint.clone().unwrap_or_else(|| "localhost".to_owned()));
                flag("region", self.region.clone().unwrap_or_else(|| config.project.region.clone()));
                flag("port", self.port.unwrap_or(config.local.gateway.port).to_string());
                flag("user", self.user.clone().unwrap_or_else(|| config.dsql.user.clone()));
                let ca = generated.join(tdsql_config_renderer::render::GATEWAY_PKI_DIR).join("ca.crt");
                flag("ca-file", ca.display().to_string());
            }
            Backend::Postgres => {
                flag("dialect", "postgres".to_owned());
                flag("endpoint", self.endpoint.clone().unwrap_or_else(|| "127.0.0.1".to_owned()));
                flag("port", self.port.unwrap_or(config.local.postgres_port).to_string());
                flag("user", self.user.clone().unwrap_or_else(|| "postgres".to_owned()));
            }
            _ => {
                let Some(endpoint) = self.endpoint.clone().or_else(|| config.endpoint()) else {
                    bail!(
                        "no DSQL endpoint: dsql.endpoint and dsql.identifier are empty; create a cluster with \
                         `cargo xtask infra apply`, set one with `cargo xtask config set dsql.identifier <id>`, \
                         or pass --endpoint"
                    );
                };
                flag("dialect", "dsql".to_owned());
                flag("endpoint", endpoint);
                let region = self.region.clone().unwrap_or_else(|| config.project.region.clone());
                if !region.trim().is_empty() {
                    flag("region", region);
                }
                flag("port", self.port.unwrap_or(config.dsql.port).to_string());
                flag("user", self.user.clone().unwrap_or_else(|| config.dsql.user.clone()));
            }
        }
        // The version row's db_name must be the server's databaseName, which is dsql.database.
        flag("database", database.clone());
        flag("db-name", database);
        if let Some(seconds) = self.lock_wait {
            flag("lock-wait", seconds.to_string());
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;
    use crate::profile::Profile;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: SchemaCommand,
        #[command(flatten)]
        connection: ConnectionArgs,
    }

    fn ctx(dry_run: bool, verbose: u8) -> Context {
        Context { dry_run, verbose, profile: Profile { name: "test".to_owned() } }
    }

    fn local() -> Config {
        let mut config = Config::default();
        config.dsql.backend = Backend::Postgres;
        config
    }

    fn dsql() -> Config {
        let mut config = Config::default();
        config.project.region = "eu-west-1".to_owned();
        config.dsql.identifier = "abcdefghijklmnopqrstuvwxyz".to_owned();
        config
    }

    fn line(ctx: &Context, config: &Config, args: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("schema").chain(args.iter().copied())).unwrap();
        let schema = SchemaArgs { command: cli.command, connection: cli.connection };
        match schema.command_for(ctx, config) {
            Ok(cmd) => cmd.display(),
            Err(err) => format!("error: {err}"),
        }
    }

    /// `--version` of these subcommands must not clash with the `--version` flag the xtask
    /// propagates to every command.
    #[test]
    fn the_real_command_line_is_consistent() {
        use clap::CommandFactory as _;
        crate::Cli::command().debug_assert();
        let cli = crate::Cli::try_parse_from(["xtask", "schema", "setup", "--version", "1.0"]).unwrap();
        assert!(matches!(
            cli.command,
            crate::Command::Schema(SchemaArgs { command: SchemaCommand::Setup { version: Some(ref v), .. }, .. }) if v == "1.0"
        ));
    }

    /// Command construction for both profiles, against the committed snapshot
    /// (`UPDATE_EXPECT=1` rewrites it).
    #[test]
    fn schema_commands_match_the_snapshot() {
        let (plain, dry, dry_verbose) = (ctx(false, 0), ctx(true, 0), ctx(true, 1));
        let cases: Vec<(&str, &Context, Config, Vec<&str>)> = vec![
            ("local setup", &plain, local(), vec!["setup"]),
            ("local setup --dry-run", &dry, local(), vec!["setup"]),
            ("local update --dry-run -v", &dry_verbose, local(), vec!["update", "--version", "1.1"]),
            ("local setup --overwrite --yes", &plain, local(), vec!["setup", "--overwrite", "--yes"]),
            ("local status on another port", &plain, local(), vec!["status", "--port", "5433"]),
            ("local plan 1.0", &plain, local(), vec!["plan", "--version", "1.0"]),
            ("local verify", &plain, local(), vec!["verify", "--lock-wait", "5"]),
            ("dsql setup", &plain, dsql(), vec!["setup"]),
            ("dsql plan --dry-run", &dry, dsql(), vec!["plan"]),
            ("dsql plan --offline", &plain, dsql(), vec!["plan", "--offline"]),
            (
                "dsql status, explicit endpoint",
                &plain,
                dsql(),
                vec![
                    "status",
                    "--endpoint",
                    "zyxwvutsrqponmlkjihgfedcba.dsql.us-east-2.on.aws",
                    "--region",
                    "us-east-2",
                ],
            ),
            ("dsql setup, no cluster yet", &plain, Config::default(), vec!["setup"]),
            ("dsql plan --offline, no cluster yet", &plain, Config::default(), vec!["plan", "--offline"]),
        ];
        let mut out = String::new();
        for (name, ctx, config, args) in cases {
            out.push_str(&format!(
                "# {name}: cargo xtask schema {}\n{}\n",
                args.join(" "),
                line(ctx, &config, &args)
            ));
        }
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/schema_commands.txt");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, &out).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_EXPECT=1 to create it", path.display()));
        assert_eq!(out, expected, "differs from {}; run with UPDATE_EXPECT=1 to accept", path.display());
    }
}
