//! `tdsql-ops pki`: the local CA and the dsql-local gateway's certificate, for `config render`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use tdsql_local_pki::{Change, ReplaceReason, ensure_pki};

/// Create or keep the local CA and the gateway's certificate in a directory
#[derive(Debug, Args)]
pub(crate) struct PkiArgs {
    /// The directory of ca.crt, ca.key, server.crt and server.key (created with mode 0700)
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A host name or IP address the server certificate names (repeat for each)
    #[arg(long = "endpoint", value_name = "NAME", required = true)]
    endpoints: Vec<String>,
}

impl PkiArgs {
    pub(crate) fn run(&self) -> Result<()> {
        let (paths, change) = ensure_pki(&self.dir, &self.endpoints)
            .with_context(|| format!("cannot prepare the local PKI in {}", self.dir.display()))?;
        let ca = describe(&change.ca);
        let server = describe(&change.server);
        for (path, what) in [
            (&paths.ca_cert, &ca),
            (&paths.ca_key, &ca),
            (&paths.server_cert, &server),
            (&paths.server_key, &server),
        ] {
            println!("{what} {}", path.display());
        }
        Ok(())
    }
}

/// `created`, `kept`, or `replaced (why)`: the first word is what happened to the file.
fn describe(change: &Change) -> String {
    match change {
        Change::Created => "created".to_owned(),
        Change::Kept => "kept".to_owned(),
        Change::Replaced(reason) => {
            let why = match reason {
                ReplaceReason::ExpiresSoon { days_left } => format!("expires in {days_left} days"),
                ReplaceReason::NamesChanged { previous } => format!("it named {}", previous.join(", ")),
                ReplaceReason::NewCa => "new CA".to_owned(),
                ReplaceReason::Invalid { reason } => reason.clone(),
                _ => format!("{reason:?}"),
            };
            format!("replaced ({why})")
        }
        _ => format!("{change:?}"),
    }
}
