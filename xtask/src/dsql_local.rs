//! `cargo xtask dsql-local`: the dsql-local gateway (crate `tdsql-dsql-local`), built on first
//! use like `tdsql-ops`, so `cargo xtask --help` never compiles PostgreSQL's parser.

use std::ffi::OsString;

use anyhow::Result;
use clap::Args;

use crate::context::Context;
use crate::exec::{CARGO, Cmd};

/// Arguments of `cargo xtask dsql-local`.
#[derive(Debug, Args)]
pub(crate) struct DsqlLocalArgs {
    /// The gateway's own command line, e.g. `serve --upstream postgres://... --pki-dir DIR`,
    /// `pki --dir DIR --endpoint NAME` or `token`; `--help` lists them
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

impl DsqlLocalArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        command(self.args).run(ctx)
    }
}

/// `cargo run --quiet --release --package tdsql-dsql-local -- <args>`: a release build, since the
/// gateway sits in every query's path.
pub(crate) fn command<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new(CARGO)
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "tdsql-dsql-local",
            "--bin",
            "tdsql-dsql-local",
            "--",
        ])
        .args(args)
}
