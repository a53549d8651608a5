//! Terraform for the infra tests: the local binary plus a CLI config that installs the AWS
//! provider from a local filesystem mirror (no provider can be downloaded on the build machines).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::exec::TERRAFORM;

/// Where the harness found Terraform and the config it wrote.
pub(super) struct Terraform {
    pub(super) binary: PathBuf,
    pub(super) mirror: PathBuf,
    pub(super) cli_config: PathBuf,
}

const PROVIDER: &str = "registry.terraform.io/hashicorp/aws";

pub(super) fn prepare(scratch: &Path) -> Result<Terraform> {
    let binary = TERRAFORM.locate()?;
    let mirror = find_mirror().with_context(|| {
        format!(
            "no local Terraform provider mirror holding {PROVIDER} was found (looked at \
             TDSQL_TF_PROVIDER_MIRROR, /opt/tf-plugins, ~/.terraform.d/plugins, \
             /usr/local/share/terraform/plugins, /usr/share/terraform/plugins); set \
             TDSQL_TF_PROVIDER_MIRROR to a directory laid out as <host>/<namespace>/<type>/<version>/<os_arch>/"
        )
    })?;
    let cli_config = scratch.join("terraform.rc");
    let text = format!(
        "# Written by `cargo xtask test`: install the AWS provider from the local mirror only.\n\
         provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"{PROVIDER}\"]\n  }}\n  direct {{\n    exclude = [\"{PROVIDER}\"]\n  }}\n}}\n",
        mirror.display()
    );
    std::fs::write(&cli_config, text).with_context(|| format!("writing {}", cli_config.display()))?;
    Ok(Terraform { binary, mirror, cli_config })
}

fn find_mirror() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates = std::env::var_os("TDSQL_TF_PROVIDER_MIRROR").map(PathBuf::from).into_iter().chain([
        PathBuf::from("/opt/tf-plugins"),
        home.join(".terraform.d/plugins"),
        home.join(".local/share/terraform/plugins"),
        PathBuf::from("/usr/local/share/terraform/plugins"),
        PathBuf::from("/usr/share/terraform/plugins"),
    ]);
    for dir in candidates {
        if dir.join(PROVIDER).is_dir() {
            return Ok(dir);
        }
    }
    bail!("not found")
}
