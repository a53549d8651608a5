//! `tdsql-workflows`: the workflow suite behind `cargo xtask smoke` and `cargo xtask load`.
//!
//! It lives in its own binary because the Temporal SDK is about 290 crates: the xtask builds and
//! runs it on demand, so `cargo xtask --help` never compiles the SDK.

mod client;
mod cpu;
mod defs;
mod duration;
mod load;
mod memory;
mod metrics;
mod report;
mod smoke;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Workflow checks and load against a Temporal frontend.
#[derive(Debug, Parser)]
#[command(name = "tdsql-workflows", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one check per feature (activity, signals and queries, timer, child, retry, update,
    /// continue-as-new, schedule, Nexus endpoints, visibility) and report each
    Smoke(smoke::SmokeArgs),
    /// Start workflows at a fixed rate (open loop) with workers in this process and report the
    /// achieved rate and start-to-completion latency
    Load(Box<load::LoadArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Smoke(args) => args.run().await,
        Command::Load(args) => (*args).run().await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {}", client::describe(&err));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    /// Every command line the xtask's plan snapshots hand to this binary parses here: the two
    /// flag sets cannot drift apart unnoticed.
    #[test]
    fn accepts_what_the_xtask_passes() {
        let expect = concat!(env!("CARGO_MANIFEST_DIR"), "/../../xtask/tests/snapshots");
        let mut seen = 0;
        for name in ["suite_smoke.txt", "suite_load.txt"] {
            let plans = std::fs::read_to_string(format!("{expect}/{name}")).unwrap();
            for line in plans.lines() {
                let (_, args) = line.split_once(" -- ").unwrap_or_else(|| panic!("no ` -- ` in {line}"));
                let argv = std::iter::once("tdsql-workflows").chain(args.split_whitespace());
                if let Err(err) = Cli::try_parse_from(argv) {
                    panic!("the xtask passes `{args}`, which does not parse:\n{err}");
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 5);
    }
}
