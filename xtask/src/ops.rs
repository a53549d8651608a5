//! The `tdsql-ops` helper binary: commands that need the AWS SDK, TLS or a database driver run
//! there, so `cargo xtask --help` and the Docker-only commands never compile those crates. The
//! first command that needs it pays the build once; later runs reuse it.

use crate::exec::{CARGO, Cmd};

/// `cargo run --quiet --package tdsql-ops -- <args>`: builds the helper when stale, then runs it.
pub(crate) fn command<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new(CARGO).args(["run", "--quiet", "--package", "tdsql-ops", "--"]).args(args)
}
