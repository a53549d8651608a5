//! The `tdsql-workflows` binary (the Temporal SDK behind `smoke` and `load`), built and run on
//! demand so that `cargo xtask --help` never compiles the SDK's ~290 crates.
//!
//! The SDK's build needs `protoc` (through `prost-wkt-types`). Users have only Rust, so the
//! workspace's tiny `tdsql-protoc` helper prints the path of a vendored protoc binary and that
//! path reaches cargo as `PROTOC`. The helper is its own crate rather than an xtask dependency: its
//! binaries for eight platforms weigh about 29 MB to download, which only users of the suite pay.

use std::ffi::OsStr;

use anyhow::{Context as _, Result, bail};

use crate::context::Context;
use crate::exec::{CARGO, Cmd};

/// `cargo run --quiet --package tdsql-workflows -- <args>`, with `PROTOC` for the SDK's build.
///
/// `PROTOC` is context rather than part of the plan (its value is a path in cargo's registry), so
/// a dry run neither computes nor prints it.
pub(crate) fn command<I, S>(ctx: &Context, args: I) -> Result<Cmd>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let cmd = Cmd::new(CARGO).args(["run", "--quiet", "--package", "tdsql-workflows", "--"]).args(args);
    if ctx.dry_run {
        return Ok(cmd);
    }
    Ok(cmd.hidden_env("PROTOC", protoc(ctx)?))
}

/// The `protoc` for the SDK's build: `$PROTOC` when the user set one, else the vendored binary
/// whose path `tdsql-protoc` prints (building that helper takes about a second, once).
pub(crate) fn protoc(ctx: &Context) -> Result<String> {
    if let Some(path) = std::env::var_os("PROTOC").filter(|p| !p.is_empty()) {
        return Ok(path.to_string_lossy().into_owned());
    }
    let out = Cmd::new(CARGO)
        .args(["run", "--quiet", "--package", "tdsql-protoc"])
        .read(ctx)
        .context("cannot locate the vendored protoc (needed to build the Temporal SDK); set PROTOC to a protoc binary instead")?;
    let path = out.trim();
    if path.is_empty() {
        bail!("tdsql-protoc printed no path; set PROTOC to a protoc binary instead");
    }
    Ok(path.to_owned())
}
