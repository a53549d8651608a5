//! Global flags and the per-invocation context every command receives.

use anyhow::Result;
use clap::{ArgAction, Args};

use crate::profile::Profile;

/// Flags accepted by every command.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Print the exact external commands instead of running them; writes nothing
    #[arg(long, global = true)]
    pub(crate) dry_run: bool,
    /// More output (repeat for even more): shows read-only probes as they run
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Deployment profile: a directory under profiles/ with a profile.toml
    #[arg(long, global = true, default_value = "local", env = "TDSQL_PROFILE")]
    pub(crate) profile: String,
}

/// What every command gets: the global flags, validated.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) dry_run: bool,
    pub(crate) verbose: u8,
    pub(crate) profile: Profile,
}

impl Context {
    pub(crate) fn new(args: GlobalArgs) -> Result<Self> {
        let profile = Profile::find(&args.profile)?;
        Ok(Self { dry_run: args.dry_run, verbose: args.verbose, profile })
    }
}
