//! `cargo xtask`: the one command contributors run to build, deploy and test Temporal on Aurora DSQL.
//!
//! `main` only parses and dispatches; every command lives in its own module as an args struct
//! with a `run` method. External tools are only ever started through [`exec`].

mod build;
mod config;
mod context;
mod cost;
mod doctor;
mod dsql_local;
mod exec;
mod harness;
mod infra;
mod ops;
mod paths;
mod profile;
mod schema;
mod stack;
mod suite;
mod workflows;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::{Context, GlobalArgs};

/// Temporal on Aurora DSQL, from a fresh clone to a running, observable cluster.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the fork's runtime image (temporal-dsql-server) with docker buildx, for one or all architectures
    Build(build::BuildArgs),
    /// Check every prerequisite at once and print what is missing and how to fix it
    Doctor(doctor::DoctorArgs),
    /// Show, edit, check and render the configuration: init, show, set, validate, render
    Config(config::ConfigArgs),
    /// The long-lived AWS resources (Aurora DSQL cluster, coordination tables) through Terraform
    Infra(infra::InfraArgs),
    /// Run the whole test suite: starts PostgreSQL, moto and friends, then fmt, clippy and tests
    Test(harness::TestArgs),
    /// Run one check per feature against the running frontend (activity, signals and queries,
    /// timer, child, retry, update, continue-as-new, schedule, Nexus endpoints, visibility)
    Smoke(suite::SmokeArgs),
    /// The Temporal schema on the profile's database: setup, update, status, plan, verify
    Schema(schema::SchemaArgs),
    /// Start workflows at a fixed rate against the running frontend; report rate, latency,
    /// (with --metrics) the persistence layer's health and (--cost) DPUs per workflow
    Load(Box<suite::LoadArgs>),
    /// What the Aurora DSQL cluster costs (profile dsql): DPUs, storage, rate, a 30-day month and
    /// the free tier, from CloudWatch; --estimate projects a month at N workflows per second
    Cost(cost::CostArgs),
    /// Bring the stack up: config, preflight, infra, build, schema, render, compose, readiness, URLs
    Up(stack::up::UpArgs),
    /// Stop the stack and remove its containers (--volumes: and its data)
    Down(stack::DownArgs),
    /// List the stack's containers and their health
    Ps(stack::PsArgs),
    /// Show the logs of the stack or of one service
    Logs(stack::LogsArgs),
    /// Restart services of the stack (all when none is named)
    Restart(stack::RestartArgs),
    /// Run the dsql-local gateway (DSQL's connection and statement semantics in front of any
    /// PostgreSQL) by hand: `cargo xtask dsql-local serve --help`
    DsqlLocal(dsql_local::DsqlLocalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Context::new(cli.global).and_then(|ctx| match cli.command {
        Command::Build(args) => args.run(&ctx),
        Command::Doctor(args) => args.run(&ctx),
        Command::Infra(args) => args.run(&ctx),
        Command::Test(args) => args.run(&ctx),
        Command::Config(args) => args.run(&ctx),
        Command::Smoke(args) => args.run(&ctx),
        Command::Load(args) => (*args).run(&ctx),
        Command::Cost(args) => args.run(&ctx),
        Command::Up(args) => args.run(&ctx),
        Command::Down(args) => args.run(&ctx),
        Command::Ps(args) => args.run(&ctx),
        Command::Logs(args) => args.run(&ctx),
        Command::Restart(args) => args.run(&ctx),
        Command::Schema(args) => args.run(&ctx),
        Command::DsqlLocal(args) => args.run(&ctx),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints the error chain and turns it into the process exit code: a failed child's own code when
/// one is in the chain, otherwise 1.
fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    let code = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<exec::CommandFailed>())
        .map_or(1, exec::CommandFailed::exit_code);
    ExitCode::from(code)
}
