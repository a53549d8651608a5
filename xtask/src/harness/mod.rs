//! `cargo xtask test`: the one test command.
//!
//! It provides the real services the suite needs (a throwaway PostgreSQL, a moto server for the
//! AWS APIs, a Terraform CLI config pointing at a local provider mirror, the Python-packaged tools),
//! hands their addresses (and the moto executable, for tests that run a private one) to the tests
//! through environment variables, runs `cargo fmt --check`, clippy and the workspace tests, and
//! removes the services afterwards, also on failure or Ctrl-C.

mod cleanup;
mod postgres;
mod pytools;
mod terraform;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;

use crate::context::Context;
use crate::exec::{CARGO, Cmd};
use crate::paths;

pub(crate) use cleanup::Cleanup;

/// Arguments of `cargo xtask test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (quicker local iterations; CI never skips them)
    #[arg(long)]
    no_lint: bool,
    /// Start the services, print their environment as `export` lines, and wait for Ctrl-C;
    /// lets you run `cargo nextest run -p <crate>` by hand against them
    #[arg(long, conflicts_with = "no_lint")]
    serve: bool,
    /// Extra arguments for the test runner (nextest, else cargo test), e.g. a test name filter
    #[arg(last = true)]
    runner_args: Vec<String>,
}

/// One row of the timing summary.
struct Stage {
    name: &'static str,
    elapsed: Duration,
    ok: bool,
}

impl TestArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        if ctx.dry_run {
            bail!("`cargo xtask test` starts real services and has no --dry-run; drop the flag");
        }
        let cleanup = Cleanup::install()?;
        let mut stages: Vec<Stage> = Vec::new();
        let result = self.run_stages(ctx, &cleanup, &mut stages);
        cleanup.run_all();
        print_summary(&stages);
        result
    }

    fn run_stages(self, ctx: &Context, cleanup: &Cleanup, stages: &mut Vec<Stage>) -> Result<()> {
        let started = Instant::now();
        let services = Services::start(ctx, cleanup);
        stages.push(Stage { name: "services", elapsed: started.elapsed(), ok: services.is_ok() });
        let services = services?;

        if self.serve {
            for (key, value) in &services.env {
                println!("export {key}='{value}'");
            }
            eprintln!("services are up; press Ctrl-C to stop them");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }

        let mut plan: Vec<(&'static str, Cmd)> = Vec::new();
        if !self.no_lint {
            plan.push(("fmt", Cmd::new(CARGO).args(["fmt", "--all", "--", "--check"])));
            plan.push((
                "clippy",
                Cmd::new(CARGO).args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ]),
            ));
        }
        let nextest = which::which("cargo-nextest").is_ok();
        if nextest {
            plan.push((
                "tests",
                Cmd::new(CARGO)
                    .args(["nextest", "run", "--workspace", "--locked", "--no-fail-fast"])
                    .args(&self.runner_args),
            ));
            if self.runner_args.is_empty() {
                plan.push(("doctests", Cmd::new(CARGO).args(["test", "--workspace", "--locked", "--doc"])));
            }
        } else {
            plan.push((
                "tests",
                Cmd::new(CARGO)
                    .args(["test", "--workspace", "--locked", "--no-fail-fast", "--"])
                    .args(&self.runner_args),
            ));
        }

        for (name, cmd) in plan {
            let cmd = services.env.iter().fold(cmd, |cmd, (k, v)| cmd.hidden_env(k, v));
            let started = Instant::now();
            let result = cmd.run(ctx);
            stages.push(Stage { name, elapsed: started.elapsed(), ok: result.is_ok() });
            result?;
        }
        Ok(())
    }
}

fn print_summary(stages: &[Stage]) {
    eprintln!();
    eprintln!("{:<10} {:>9}  result", "stage", "seconds");
    for stage in stages {
        let result = if stage.ok { "ok" } else { "FAILED" };
        eprintln!("{:<10} {:>9.1}  {result}", stage.name, stage.elapsed.as_secs_f64());
    }
}

/// The running services and the environment that tells the tests where they are.
struct Services {
    env: Vec<(String, String)>,
}

impl Services {
    fn start(ctx: &Context, cleanup: &Cleanup) -> Result<Self> {
        let scratch = paths::xtask_target_dir();
        std::fs::create_dir_all(&scratch)?;
        let mut env = Vec::new();

        // The Temporal SDK behind tdsql-workflows needs protoc to build (clippy and the tests).
        env.push(("PROTOC".to_owned(), crate::workflows::protoc(ctx)?));

        let tools = pytools::ensure(&scratch.join("venv"))?;
        env.push(("TDSQL_HADOLINT".to_owned(), tools.hadolint.display().to_string()));
        env.push(("TDSQL_SHELLCHECK".to_owned(), tools.shellcheck.display().to_string()));
        env.push(("TDSQL_TEMPORAL_CLI".to_owned(), tools.temporal.display().to_string()));
        env.push(("TDSQL_COMPOSE".to_owned(), tools.compose.display().to_string()));
        // For tests that need a moto of their own (stopped and restarted mid-test).
        env.push(("TDSQL_MOTO_SERVER".to_owned(), tools.moto_server.display().to_string()));

        let pg = postgres::start(ctx, &scratch, cleanup)?;
        eprintln!("  postgresql: {}", pg.redacted_url);
        env.push(("TDSQL_TEST_PG_URL".to_owned(), pg.url));
        if let Some(bindir) = pg.bindir {
            env.push(("TDSQL_PG_BINDIR".to_owned(), bindir.display().to_string()));
        }

        let moto = pytools::start_moto(&tools, &scratch, cleanup)?;
        eprintln!("  moto:       {moto}");
        env.push(("TDSQL_TEST_AWS_ENDPOINT".to_owned(), moto));

        match terraform::prepare(&scratch) {
            Ok(tf) => {
                eprintln!("  terraform:  {} (provider mirror {})", tf.binary.display(), tf.mirror.display());
                env.push(("TDSQL_TERRAFORM".to_owned(), tf.binary.display().to_string()));
                env.push(("TF_CLI_CONFIG_FILE".to_owned(), tf.cli_config.display().to_string()));
            }
            // The infra tests fail with this reason; every other test can still run.
            Err(err) => {
                eprintln!("  terraform:  unavailable: {err:#}");
                env.push(("TDSQL_TEST_TERRAFORM_UNAVAILABLE".to_owned(), format!("{err:#}")));
            }
        }
        Ok(Self { env })
    }
}
